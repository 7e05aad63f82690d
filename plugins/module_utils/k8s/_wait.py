# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for a workload to roll out by watching it and its pods, and say why
when it does not (diagnosis)."""

from __future__ import annotations

import queue
import threading
import time

from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _diagnosis as diagnosis, _rollout as rollout
from ansible_collections.inferops.vllm.plugins.module_utils._errors import (
    ClusterError, NotFoundError, ParameterError, WaitFailed,
)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import missing_namespace, request_json, request_text
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer


def selector_string(selector: dict | None) -> str:
    """A LabelSelector object as the string form list calls take."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pod_log_tail(api, namespace: str, pod: str, container: str, lines: int, timeout: float) -> list[str]:
    """Last lines of the container's previous run (the one that crashed), or
    of the current one when there is no previous run."""
    errors = []
    for previous in ("true", "false"):
        try:
            text = request_text(api, f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
                                [("container", container), ("previous", previous), ("tailLines", str(lines))],
                                timeout=timeout)
            if text:
                return text.rstrip("\n").splitlines()[-lines:]
        except Exception as exc:  # noqa: BLE001 - logs are a best effort
            errors.append(getattr(exc, "reason", None) or str(exc).splitlines()[0])
    return [f"(logs unavailable: {errors[-1] if errors else 'empty'})"]


class RolloutWaiter:
    def __init__(self, api, kind: str, name: str, namespace: str, timeout: float,
                 fail_fast: list[str], fail_fast_after: float, log_lines: int = 20,
                 request_timeout: float = 30.0, clock=time.monotonic):
        if kind not in rollout.KINDS:
            raise ParameterError(f"kind: {kind!r} is not one of {', '.join(rollout.KINDS)}")
        unknown = sorted(set(fail_fast) - set(diagnosis.PERMANENT_CAUSES))
        if unknown:
            raise ParameterError(f"fail_fast: unknown cause(s) {', '.join(unknown)}; "
                                 f"choose from {', '.join(diagnosis.PERMANENT_CAUSES)}")
        if timeout <= 0:
            raise ParameterError(f"timeout: must be more than 0 seconds, got {timeout}")
        for param, value in (("name", name), ("namespace", namespace)):
            if not value:
                raise ParameterError(f"{param}: empty; give the {kind}'s {param}")
        if log_lines < 0:
            raise ParameterError(f"log_lines: must be 0 or more, got {log_lines}")
        if fail_fast_after < 0:
            raise ParameterError(f"fail_fast_after: must be 0 or more seconds, got {fail_fast_after}")
        self.api, self.kind, self.name, self.namespace = api, kind, name, namespace
        self.timeout, self.fail_fast, self.fail_fast_after = timeout, set(fail_fast), fail_fast_after
        self.log_lines, self.request_timeout, self.clock = log_lines, request_timeout, clock
        # Set once both watches have listed: from then on no change is missed.
        self.watching = threading.Event()
        # The failed container runs seen while waiting, by (pod uid, container,
        # restart): the Job controller deletes a failed Job's running pods, and
        # what they said goes with them.
        self.runs: dict[tuple, dict] = {}

    def _diagnose(self, obj: dict, pods: list[dict], with_events: bool) -> list[diagnosis.Finding]:
        ns = self.namespace
        events, nodes = [], {}
        if with_events:
            events = request_json(self.api, "GET", f"/api/v1/namespaces/{ns}/events",
                                  timeout=self.request_timeout, action="listing events").get("items", [])
            # The nodes of pods that are not Ready, to tell a node's silence from the pod's.
            for name in sorted({(p.get("spec") or {}).get("nodeName") for p in pods
                                if (p.get("spec") or {}).get("nodeName") and not pod_ready(p)}):
                try:
                    nodes[name] = request_json(self.api, "GET", f"/api/v1/nodes/{name}", timeout=self.request_timeout,
                                               action=f"reading node {name}")
                except ClusterError:
                    pass  # not allowed to read nodes, or gone: the pod's own findings stand
            # The nodes an unscheduled pod is pinned to, to name one that is not Ready.
            for selector in sorted({",".join(f"{k}={v}" for k, v in sorted(((p.get("spec") or {}).get("nodeSelector")
                                                                           or {}).items()))
                                    for p in pods if not (p.get("spec") or {}).get("nodeName")} - {""}):
                try:
                    listed = request_json(self.api, "GET", "/api/v1/nodes", query=[("labelSelector", selector)],
                                          timeout=self.request_timeout, action="listing nodes")
                except ClusterError:
                    continue
                nodes.update({n["metadata"]["name"]: n for n in listed.get("items", []) if not pod_ready(n)})
        claims = {}
        if any((v.get("persistentVolumeClaim") for p in pods for v in (p.get("spec") or {}).get("volumes") or [])):
            claims = {c["metadata"]["name"]: c for c in request_json(
                self.api, "GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
                timeout=self.request_timeout, action="listing claims").get("items", [])}
        self.remember_runs(pods)
        return diagnosis.diagnose_workload(self.kind, obj, pods, events, claims, nodes,
                                           failed_runs=list(self.runs.values()))

    def remember_runs(self, pods: list[dict]) -> None:
        """Keep each failed run of these pods. For a Job, a run that left no
        termination message (its container's terminationMessagePolicy is File
        and it wrote no file) gets its log tail, read while the pod is there."""
        for pod in pods:
            for run in diagnosis.failed_runs(pod):
                key = (run.get("uid"), run["container"], run["restartCount"])
                if key in self.runs:
                    continue
                if self.kind == "Job" and "message" not in run and self.log_lines:
                    run["log_tail"] = pod_log_tail(self.api, self.namespace, run["pod"], run["container"],
                                                   self.log_lines, self.request_timeout)
                self.runs[key] = run

    def _with_logs(self, findings: list[diagnosis.Finding]) -> list[diagnosis.Finding]:
        for f in findings:
            if f.cause == "CrashLoopBackOff" and f.container:
                pod = f.object.split("/")[-1]
                f.log_tail = pod_log_tail(self.api, self.namespace, pod, f.container, self.log_lines,
                                          self.request_timeout)
        return findings

    def diagnose(self, obj: dict, pods: list[dict], with_events: bool) -> list[diagnosis.Finding]:
        """The findings for these pods of the workload (for a caller that
        waits on some of its pods only)."""
        return self._diagnose(obj, pods, with_events)

    def explain(self, obj: dict, pods: list[dict]) -> list[diagnosis.Finding]:
        """The full diagnosis, with events and crashed containers' logs."""
        return self._with_logs(self._diagnose(obj, pods, with_events=True))

    def wait(self) -> dict:
        base = rollout.KIND_PATHS[self.kind].format(ns=self.namespace)
        try:
            obj = request_json(self.api, "GET", f"{base}/{self.name}", timeout=self.request_timeout,
                               action=f"reading {self.kind} {self.namespace}/{self.name}")
        except ClusterError as exc:
            if exc.details.get("status") == 404:
                raise missing_namespace(self.api, self.namespace, self.request_timeout) or NotFoundError(
                    f"name: {self.kind} {self.name!r} does not exist in namespace {self.namespace!r}") from exc
            raise
        selector = selector_string((obj.get("spec") or {}).get("selector"))
        started = self.clock()
        changes: queue.Queue = queue.Queue()
        stop = threading.Event()
        workload = Informer(self.api, base, [("fieldSelector", f"metadata.name={self.name}")], changes, stop,
                            self.request_timeout)
        # A claim has no pods: watch a pod list that is always empty.
        pod_query = [("labelSelector", selector)] if selector else []
        if self.kind == "PersistentVolumeClaim":
            pod_query = [("fieldSelector", "metadata.name=inferops-no-such-pod")]
        pods = Informer(self.api, f"/api/v1/namespaces/{self.namespace}/pods", pod_query, changes, stop,
                        self.request_timeout)
        workload.start()
        pods.start()
        first_ready = None
        seen_since: dict[tuple, float] = {}
        try:
            while True:
                now = self.clock()
                for informer in (workload, pods):
                    if informer.error:
                        raise informer.error
                current = workload.snapshot()
                if workload.synced.is_set() and not current:
                    raise WaitFailed(f"{self.kind} {self.namespace}/{self.name} was deleted while waiting")
                obj = current[0] if current else obj
                pod_list = pods.snapshot()
                if workload.synced.is_set() and pods.synced.is_set():
                    self.watching.set()
                if first_ready is None and any(pod_ready(p) for p in pod_list):
                    first_ready = now - started
                self.remember_runs(pod_list)
                status = rollout.status_of(self.kind, obj)
                if status.done and workload.synced.is_set() and pods.synced.is_set():
                    return {
                        "rolled_out": True,
                        "message": status.message,
                        "elapsed_s": round(now - started, 3),
                        "first_pod_ready_s": None if first_ready is None else round(first_ready, 3),
                        "all_ready_s": round(now - started, 3),
                        "pods": sorted(p["metadata"]["name"] for p in pod_list),
                        "status": obj.get("status") or {},
                        "watch": {"relists": workload.relists + pods.relists,
                                  "reconnects": workload.reconnects + pods.reconnects},
                    }
                if status.failed:
                    self._fail(obj, pod_list, f"{status.message}", started, first_ready)

                # Fail fast on causes that waiting will not fix, once they
                # have persisted for fail_fast_after seconds.
                findings = self._diagnose(obj, pod_list, with_events=False) if pod_list else []
                permanent = {(f.cause, f.object) for f in diagnosis.final_findings(findings, pod_list, self.fail_fast)}
                seen_since = {k: seen_since.get(k, now) for k in permanent}
                due = [k for k, t in seen_since.items() if now - t >= self.fail_fast_after]
                if due:
                    self._fail(obj, pod_list, f"{self.kind} {self.namespace}/{self.name} will not roll out: "
                               f"{due[0][0]} (not waiting for the timeout)", started, first_ready)
                remaining = self.timeout - (now - started)
                if remaining <= 0:
                    self._fail(obj, pod_list, f"timed out after {self.timeout:g}s waiting for {self.kind} "
                               f"{self.namespace}/{self.name}: {status.message}", started, first_ready)
                wake = remaining
                if seen_since:
                    wake = min(wake, max(0.05, min(seen_since.values()) + self.fail_fast_after - now))
                try:
                    changes.get(timeout=wake)
                    # Drain what piled up: one evaluation for a burst of events.
                    while True:
                        changes.get_nowait()
                except queue.Empty:
                    pass
        finally:
            workload.close()
            pods.close()

    def _fail(self, obj: dict, pods: list[dict], message: str, started: float, first_ready) -> None:
        findings = self._with_logs(self._diagnose(obj, pods, with_events=True))
        text = message
        if findings:
            text += "\n" + "\n".join("- " + f.summary() for f in findings)
        raise WaitFailed(
            text,
            rolled_out=False,
            diagnosis=[f.as_dict() for f in findings],
            elapsed_s=round(self.clock() - started, 3),
            first_pod_ready_s=None if first_ready is None else round(first_ready, 3),
            status=obj.get("status") or {},
        )
