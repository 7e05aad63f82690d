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

import queue
import threading
import time

from ansible_collections.inferops.vllm.plugins.module_utils._errors import (
    ClusterError, EndpointError, NotFoundError, ParameterError, WaitFailed)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import (
    merge_patch, missing_namespace, request_json)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import RolloutWaiter, pod_ready, selector_string

REVISION_LABEL = "controller-revision-hash"


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

    def _wait(self, timeout: float) -> dict:
        return RolloutWaiter(self.api, "StatefulSet", self.name, self.namespace, timeout, self.fail_fast,
                             self.fail_fast_after, self.log_lines, self.request_timeout).wait()

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
                self._wait(self.timeout)
                found = self._pods(plan["sts"]).get(pod)
                if found is None or revision_of(found) != update or not pod_ready(found):
                    raise WaitFailed(f"pod {pod} is not a Ready pod of revision {update} after the rollout step")
                answer = self.check(pod) if self.check else None
            except (WaitFailed, EndpointError) as exc:
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
        except (WaitFailed, EndpointError, ClusterError) as again:
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
        # A JSON patch replaces the template whole: a merge patch would keep
        # what the new revision added (an env var, an annotation).
        request_json(self.api, "PATCH", self.path, body=[
            {"op": "replace", "path": "/spec/template", "value": template_of_revision(revision)},
            {"op": "replace", "path": "/spec/updateStrategy",
             "value": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
        ], content_type="application/json-patch+json", timeout=self.request_timeout,
            action=f"restoring StatefulSet {self.namespace}/{self.name}'s template of revision {current}")
        sts = self._observed()
        # The pods made from the bad revision: replaced now, whatever their
        # state (with podManagementPolicy OrderedReady the controller would
        # wait forever for a broken one to become Ready).
        for name, pod in self._pods(sts).items():
            if revision_of(pod) != current and not pod["metadata"].get("deletionTimestamp"):
                try:
                    request_json(self.api, "DELETE", f"/api/v1/namespaces/{self.namespace}/pods/{name}",
                                 timeout=self.request_timeout, action=f"deleting pod {name} of the new revision")
                except ClusterError as exc:
                    if exc.details.get("status") != 404:
                        raise
        self._wait(self.timeout)
        restored = []
        for name in sorted(self._pods(sts)):
            restored.append({"pod": name, "revision": current,
                             **({"check": self.check(name)} if self.check else {})})
        return restored

    def _since(self, started: float) -> float:
        return round(self.clock() - started, 3)
