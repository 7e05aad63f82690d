# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A StatefulSet's new revision rolled one replica at a time, by lowering
``spec.updateStrategy.rollingUpdate.partition`` (the controller updates only
the pods whose ordinal is at least the partition, highest first). Each new
pod must be Ready and answer an endpoint check of its own before the next
one is touched; on the first that does not, the rollout stops and, unless
told otherwise, the template goes back to the revision the other pods still
run (its ControllerRevision), the new pods are replaced and the whole set is
verified again.

Kubernetes' StatefulSet controller (pkg/controller/statefulset,
stateful_set_control.go) labels each pod with its revision
(``controller-revision-hash``), keeps ``status.currentRevision`` until every
pod runs ``status.updateRevision``, and stores each revision's template in a
ControllerRevision whose ``data`` is ``{"spec": {"template": {..., "$patch":
"replace"}}}`` (stateful_set_utils.go, getPatch)."""

from __future__ import annotations

import json
import queue
import threading
import time

from ansible_collections.inferops.vllm.plugins.module_utils._errors import (
    ClusterError, EndpointError, NotFoundError, ParameterError, WaitFailed)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import (
    merge_patch, missing_namespace, request_json)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _diagnosis as diagnosis
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import RolloutWaiter, pod_ready, selector_string

REVISION_LABEL = "controller-revision-hash"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def revision_of(pod: dict) -> str:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL, "")


def template_of_revision(revision: dict) -> dict:
    """The pod template a StatefulSet ControllerRevision holds."""
    template = dict(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    template.pop("$patch", None)
    if not template:
        raise ClusterError(f"ControllerRevision {revision['metadata']['name']} holds no pod template")
    return template


def _is_observed(sts: dict) -> bool:
    return (sts.get("status") or {}).get("observedGeneration", 0) >= sts["metadata"].get("generation", 0)


def rollout_order(replicas: int) -> list[int]:
    """Highest ordinal first, as the controller updates them. The pods at or
    above a partition set before are on the new revision already; they are
    waited for and checked like the others."""
    return list(range(replicas - 1, -1, -1))


class GatedRollout:
    """``check(pod) -> dict`` asks one pod as a client would and raises
    EndpointError when it does not answer right; None skips the checks."""

    def __init__(self, api, name: str, namespace: str, timeout: float, fail_fast: list[str],
                 fail_fast_after: float, check=None, rollback: bool = True, log_lines: int = 20,
                 request_timeout: float = 30.0, clock=time.monotonic):
        for param, value in (("name", name), ("namespace", namespace)):
            if not value:
                raise ParameterError(f"{param}: empty; give the StatefulSet's {param}")
        if timeout <= 0:
            raise ParameterError(f"timeout: must be more than 0 seconds, got {timeout:g}")
        self.api, self.name, self.namespace = api, name, namespace
        self.timeout, self.fail_fast, self.fail_fast_after = timeout, fail_fast, fail_fast_after
        self.check, self.rollback, self.log_lines = check, rollback, log_lines
        self.request_timeout, self.clock = request_timeout, clock
        self.path = f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}"

    # -- reading -------------------------------------------------------------
    def _get(self) -> dict:
        try:
            return request_json(self.api, "GET", self.path, timeout=self.request_timeout,
                                action=f"reading StatefulSet {self.namespace}/{self.name}")
        except ClusterError as exc:
            if exc.details.get("status") == 404:
                raise missing_namespace(self.api, self.namespace, self.request_timeout) or NotFoundError(
                    f"name: StatefulSet {self.name!r} does not exist in namespace {self.namespace!r}; deploy it "
                    "first (playbooks/serve.yml)") from exc
            raise

    def _pods(self, sts: dict) -> dict[str, dict]:
        selector = selector_string((sts.get("spec") or {}).get("selector"))
        listed = request_json(self.api, "GET", f"/api/v1/namespaces/{self.namespace}/pods",
                              query=[("labelSelector", selector)], timeout=self.request_timeout,
                              action="listing pods").get("items", [])
        return {p["metadata"]["name"]: p for p in listed}

    def _observed(self) -> dict:
        """The StatefulSet once its controller has seen its latest spec (so
        that updateRevision names the revision of that spec), watched."""
        sts = self._get()
        if _is_observed(sts):
            return sts
        changes: queue.Queue = queue.Queue()
        informer = Informer(self.api, self.path.rpartition("/")[0], [("fieldSelector", f"metadata.name={self.name}")],
                            changes, threading.Event(), self.request_timeout)
        informer.start()
        deadline = self.clock() + self.request_timeout
        try:
            while True:
                if informer.error:
                    raise informer.error
                listed = informer.snapshot() if informer.synced.is_set() else []
                if listed and _is_observed(listed[0]):
                    return listed[0]
                remaining = deadline - self.clock()
                if remaining <= 0:
                    raise WaitFailed(f"the StatefulSet controller did not take in {self.namespace}/{self.name}'s "
                                     f"generation {sts['metadata'].get('generation')} within "
                                     f"{self.request_timeout:g}s: is kube-controller-manager running?")
                try:
                    changes.get(timeout=remaining)
                except queue.Empty:
                    pass
        finally:
            informer.close()

    # -- writing -------------------------------------------------------------
    def _set_partition(self, partition: int) -> None:
        merge_patch(self.api, self.path, {"spec": {"updateStrategy": {
            "type": "RollingUpdate", "rollingUpdate": {"partition": partition}}}},
            timeout=self.request_timeout, action=f"setting the partition of StatefulSet {self.namespace}/{self.name}")

    def _wait_pod(self, sts: dict, pod_name: str, revision: str, timeout: float) -> dict:
        """Watch the one pod until it runs ``revision`` and is Ready. Only its
        own state counts (another pod that is not Ready, such as a broken
        one the rollout is about to replace, does not hold the step); a
        cause that waiting will not fix ends the wait early, with the pod's
        diagnosis (workload_wait's)."""
        waiter = RolloutWaiter(self.api, "StatefulSet", self.name, self.namespace, timeout, self.fail_fast,
                               self.fail_fast_after, self.log_lines, self.request_timeout)
        changes: queue.Queue = queue.Queue()
        informer = Informer(self.api, f"/api/v1/namespaces/{self.namespace}/pods",
                            [("fieldSelector", f"metadata.name={pod_name}")], changes, threading.Event(),
                            self.request_timeout)
        informer.start()
        started, seen_since = self.clock(), {}
        try:
            while True:
                if informer.error:
                    raise informer.error
                now = self.clock()
                listed = informer.snapshot() if informer.synced.is_set() else []
                pod = listed[0] if listed else None
                made = pod is not None and not pod["metadata"].get("deletionTimestamp") \
                    and revision_of(pod) == revision
                if made and pod_ready(pod):
                    return pod
                pods = [pod] if made else []
                findings = waiter.diagnose(sts, pods, with_events=False) if pods else []
                final = {(f.cause, f.object) for f in diagnosis.final_findings(findings, pods, self.fail_fast)}
                seen_since = {k: seen_since.get(k, now) for k in final}
                due = [k for k, t in seen_since.items() if now - t >= self.fail_fast_after]
                remaining = timeout - (now - started)
                if due or remaining <= 0:
                    state = "not created yet" if pod is None else (
                        f"at revision {revision_of(pod)}" if revision_of(pod) != revision else "not Ready")
                    why = (f"{due[0][0]} (not waiting for the timeout)" if due
                           else f"timed out after {timeout:g}s: the pod is {state}")
                    found = waiter.explain(sts, pods)
                    raise WaitFailed(f"pod {self.namespace}/{pod_name} of revision {revision}: {why}"
                                     + "".join("\n- " + f.summary() for f in found),
                                     diagnosis=[f.as_dict() for f in found], pod=pod_name)
                wake = remaining
                if seen_since:
                    wake = min(wake, max(0.05, min(seen_since.values()) + self.fail_fast_after - now))
                try:
                    changes.get(timeout=wake)
                except queue.Empty:
                    pass
        finally:
            informer.close()

    # -- the rollout ---------------------------------------------------------
    def plan(self) -> dict:
        sts = self._observed()
        spec, status = sts.get("spec") or {}, sts.get("status") or {}
        strategy = spec.get("updateStrategy") or {}
        if strategy.get("type", "RollingUpdate") != "RollingUpdate":
            raise ParameterError(f"StatefulSet {self.namespace}/{self.name} has updateStrategy "
                                 f"{strategy.get('type')}: a gated rollout lowers rollingUpdate.partition, which "
                                 "only the RollingUpdate strategy has")
        replicas = spec.get("replicas", 1)
        partition = (strategy.get("rollingUpdate") or {}).get("partition") or 0
        current, update = status.get("currentRevision", ""), status.get("updateRevision", "")
        pods = self._pods(sts)
        behind = sorted(n for n, p in pods.items() if revision_of(p) != update)
        return {"sts": sts, "replicas": replicas, "partition": partition, "current": current, "update": update,
                "pods": pods, "behind": behind}

    def run(self, check_mode: bool) -> dict:
        started = self.clock()
        plan = self.plan()
        replicas, update, current = plan["replicas"], plan["update"], plan["current"]
        result = {"revision": {"from": current, "to": update}, "replicas": [], "rolled_back": False}
        if current == update and not plan["behind"]:
            changed = bool(plan["partition"])
            if changed and not check_mode:
                self._set_partition(0)
            return {**result, "changed": changed, "message": f"every pod of StatefulSet {self.namespace}/"
                    f"{self.name} runs revision {update}: nothing to roll", "elapsed_s": self._since(started)}
        order = rollout_order(replicas)
        if check_mode:
            return {**result, "changed": True, "would_roll": [f"{self.name}-{o}" for o in order],
                    "message": f"would roll {len(order)} pod(s) of StatefulSet {self.namespace}/{self.name} "
                               f"from revision {current} to {update}, one at a time", "elapsed_s": 0}
        for ordinal in order:
            pod = f"{self.name}-{ordinal}"
            step_started = self.clock()
            try:
                self._set_partition(ordinal)
                self._wait_pod(plan["sts"], pod, update, self.timeout)
                answer = self.check(pod) if self.check else None
            except (WaitFailed, EndpointError, NotFoundError, ClusterError) as exc:
                self._stopped(result, pod, exc, current, started)
            result["replicas"].append({"pod": pod, "revision": update, "ready_s": self._since(step_started),
                                       **({"check": answer} if answer is not None else {})})
        return {**result, "changed": True, "elapsed_s": self._since(started),
                "message": f"rolled {len(order)} pod(s) of StatefulSet {self.namespace}/{self.name} to revision "
                           f"{update}, one at a time, each Ready and answering"}

    def _stopped(self, result: dict, pod: str, exc, current: str, started: float):
        """The first bad replica: roll back (when asked) and fail, saying why."""
        details = {k: v for k, v in exc.details.items() if k in ("diagnosis", "status")}
        failure = {"pod": pod, "reason": exc.msg, **details}
        message = f"upgrade stopped at pod {pod}: {exc.msg}"
        if not self.rollback:
            raise WaitFailed(message + f"\nNot rolled back (rollback is off): the pods below {pod} still run "
                             f"revision {current}; the StatefulSet's partition keeps them there.",
                             failed_pod=failure, rolled_back=False, replicas=result["replicas"],
                             elapsed_s=self._since(started))
        try:
            restored = self._roll_back(current)
        except (WaitFailed, EndpointError, NotFoundError, ClusterError) as again:
            raise WaitFailed(message + f"\nThe rollback to revision {current} failed too: {again.msg}",
                             failed_pod=failure, rolled_back=False, rollback_error=again.msg,
                             replicas=result["replicas"], elapsed_s=self._since(started)) from again
        raise WaitFailed(message + f"\nRolled back to revision {current}: {len(restored)} pod(s) Ready and "
                         "answering again.", failed_pod=failure, rolled_back=True, restored=restored,
                         replicas=result["replicas"], elapsed_s=self._since(started))

    def _roll_back(self, current: str) -> list[dict]:
        revision = request_json(self.api, "GET", f"/apis/apps/v1/namespaces/{self.namespace}/controllerrevisions/"
                                f"{current}", timeout=self.request_timeout,
                                action=f"reading ControllerRevision {current}")
        template = template_of_revision(revision)
        sts = self._get()
        # A JSON patch replaces the template whole: a merge patch would keep
        # what the new revision added (an env var, an annotation).
        ops = [
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "add", "path": "/spec/updateStrategy/rollingUpdate",
             "value": {**((sts["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}), "partition": 0}},
        ]
        # The last applied definition (kubectl's and kubernetes.core's
        # client-side apply) is made to say the same: else a later apply of
        # it (scale.yml) would bring the failed template back, and what the
        # failed template left out would never be removed again.
        annotations = sts["metadata"].get("annotations") or {}
        if LAST_APPLIED in annotations:
            try:
                applied = json.loads(annotations[LAST_APPLIED])
                applied.setdefault("spec", {})["template"] = template
                applied["spec"].setdefault("updateStrategy", {}).setdefault("rollingUpdate", {})["partition"] = 0
                ops.append({"op": "replace", "path": "/metadata/annotations/" + LAST_APPLIED.replace("/", "~1"),
                            "value": json.dumps(applied, separators=(",", ":"), sort_keys=True)})
            except (ValueError, AttributeError, TypeError):
                pass  # not ours to mend: the template itself is restored all the same
        if "rollingUpdate" not in (sts["spec"].get("updateStrategy") or {}):
            ops.insert(1, {"op": "add", "path": "/spec/updateStrategy", "value": {"type": "RollingUpdate"}})
        request_json(self.api, "PATCH", self.path, body=ops, content_type="application/json-patch+json",
                     timeout=self.request_timeout,
                     action=f"restoring StatefulSet {self.namespace}/{self.name}'s template of revision {current}")
        sts = self._observed()
        # The new revision's pods that are not Ready go now (with
        # podManagementPolicy OrderedReady the controller would wait for a
        # broken one forever); the Ready ones the controller replaces one at
        # a time, as the PodDisruptionBudget expects.
        for name, pod in self._pods(sts).items():
            if revision_of(pod) != current and not pod_ready(pod) and not pod["metadata"].get("deletionTimestamp"):
                try:
                    request_json(self.api, "DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{name}",
                                 timeout=self.request_timeout, action=f"deleting pod {name} of the new revision")
                except ClusterError as exc:
                    if exc.details.get("status") != 404:
                        raise
        restored = []
        for ordinal in range((sts.get("spec") or {}).get("replicas", 1)):
            name = f"{self.name}-{ordinal}"
            self._wait_pod(sts, name, current, self.timeout)
            restored.append({"pod": name, "revision": current,
                             **({"check": self.check(name)} if self.check else {})})
        return restored

    def _since(self, started: float) -> float:
        return round(self.clock() - started, 3)
