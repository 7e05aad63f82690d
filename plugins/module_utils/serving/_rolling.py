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
"replace"}}}`` (stateful_set_utils.go, getPatch).

While it rolls, the collection's KEDA ScaledObject of the StatefulSet is
paused (KEDA's own annotation, _autoscaling.py says which and why), and the
pause is lifted however the rollout ends: done, stopped, rolled back or not.
A scale-down in the middle would remove the pod being checked, a scale-up
would add pods to a revision under test."""

from __future__ import annotations

import json
import queue
import threading
import time

from ansible_collections.inferops.vllm.plugins.module_utils._errors import (
    ClusterError, EndpointError, InferopsError, NotFoundError, ParameterError, WaitFailed)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import (
    merge_patch, missing_namespace, request_json)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _diagnosis as diagnosis
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import RolloutWaiter, pod_ready, selector_string
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _autoscaling as keda

REVISION_LABEL = "controller-revision-hash"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# What the collection puts on the objects it creates (the roles' labels).
MANAGED_BY = ("app.kubernetes.io/managed-by", "inferops.vllm")
SCALEDOBJECTS = "/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects"


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


def pods_state(pods: dict[str, dict]) -> list[dict]:
    """Each pod's revision and readiness, by name (what a failed rollout
    leaves is what the operator must see)."""
    return [{"pod": name, "revision": revision_of(pod) or "(none)", "ready": pod_ready(pod),
             **({"deleting": True} if (pod.get("metadata") or {}).get("deletionTimestamp") else {})}
            for name, pod in sorted(pods.items(), key=lambda item: _ordinal_key(item[0]))]


def _ordinal_key(name: str):
    head, tail = name.rpartition("-")[::2]
    return (head, int(tail)) if tail.isdigit() else (name, -1)


def describe_pods(state: list[dict]) -> str:
    if not state:
        return "no pods"
    return ", ".join(f"{p['pod']} revision {p['revision']} {'Ready' if p['ready'] else 'not Ready'}"
                     + (" (being deleted)" if p.get("deleting") else "") for p in state)


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
                 request_timeout: float = 30.0, clock=time.monotonic, pause_autoscaling: bool = True):
        for param, value in (("name", name), ("namespace", namespace)):
            if not value:
                raise ParameterError(f"{param}: empty; give the StatefulSet's {param}")
        if timeout <= 0:
            raise ParameterError(f"timeout: must be more than 0 seconds, got {timeout:g}")
        self.api, self.name, self.namespace = api, name, namespace
        self.timeout, self.fail_fast, self.fail_fast_after = timeout, fail_fast, fail_fast_after
        self.check, self.rollback, self.log_lines = check, rollback, log_lines
        self.request_timeout, self.clock = request_timeout, clock
        self.pause_autoscaling = pause_autoscaling
        self.unseen = ""  # why the ScaledObjects could not be listed
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

    # -- KEDA ----------------------------------------------------------------
    def _scaled_objects(self) -> list[dict]:
        """The ScaledObjects that scale this StatefulSet; none where KEDA's
        CRD is not installed."""
        try:
            listed = request_json(self.api, "GET", SCALEDOBJECTS.format(namespace=self.namespace),
                                  timeout=self.request_timeout,
                                  action=f"listing the KEDA ScaledObjects of namespace {self.namespace}")
        except ClusterError as exc:
            if exc.details.get("status") == 404:
                return []
            if exc.details.get("status") == 403:
                # An account without KEDA's rules: said, not fatal (where
                # KEDA is not used the rollout must not need them).
                self.unseen = exc.msg
                return []
            raise
        return [o for o in listed.get("items") or [] if keda.scales(o, "StatefulSet", self.name)]

    def _autoscaling_plan(self) -> dict:
        """Which ScaledObjects to pause (the collection's, not paused by
        anyone else), which are paused already by a rollout of ours (cut
        short: lifted at the end of this one), and which are not ours."""
        found = {"pause": [], "ours_paused": [], "foreign": [], "paused_by_others": []}
        if not self.pause_autoscaling:
            return found
        for obj in self._scaled_objects():
            meta = obj.get("metadata") or {}
            annotations = meta.get("annotations") or {}
            if (meta.get("labels") or {}).get(MANAGED_BY[0]) != MANAGED_BY[1]:
                found["foreign"].append(meta["name"])
            elif keda.PAUSED_BY_ROLLOUT_ANNOTATION in annotations:
                found["ours_paused"].append(meta["name"])
            elif keda.paused_by_keda(obj):
                found["paused_by_others"].append(meta["name"])
            else:
                found["pause"].append(meta["name"])
        return found

    def _annotate(self, name: str, annotations: dict, action: str) -> None:
        merge_patch(self.api, f"{SCALEDOBJECTS.format(namespace=self.namespace)}/{name}",
                    {"metadata": {"annotations": annotations}}, timeout=self.request_timeout,
                    action=f"{action} KEDA ScaledObject {self.namespace}/{name}")

    def _pause(self, names: list[str], update: str) -> None:
        for name in names:
            self._annotate(name, {keda.PAUSED_ANNOTATION: "true", keda.PAUSED_BY_ROLLOUT_ANNOTATION: update},
                           "pausing")

    def _resume(self, names: list[str]) -> str | None:
        """Lift this rollout's pause; a sentence when that failed (the
        rollout's own outcome is not to be hidden by it)."""
        failed = []
        for name in names:
            try:
                self._annotate(name, {keda.PAUSED_ANNOTATION: None, keda.PAUSED_BY_ROLLOUT_ANNOTATION: None},
                               "resuming")
            except (ClusterError, NotFoundError) as exc:
                if exc.details.get("status") == 404:
                    continue  # deleted meanwhile: nothing left to resume
                failed.append(f"{name} ({exc.msg})")
        if not failed:
            return None
        return (f"KEDA is still paused for StatefulSet {self.namespace}/{self.name}: resuming ScaledObject(s) "
                f"{'; '.join(failed)} failed. Resume it by removing the annotations {keda.PAUSED_ANNOTATION} and "
                f"{keda.PAUSED_BY_ROLLOUT_ANNOTATION} (kubectl annotate scaledobject NAME -n {self.namespace} "
                f"{keda.PAUSED_ANNOTATION}- {keda.PAUSED_BY_ROLLOUT_ANNOTATION}-), or run the rollout again.")

    def _autoscaling_warnings(self, found: dict) -> list[str]:
        warnings = [f"KEDA ScaledObjects could not be listed, so none was paused: {self.unseen}"] if self.unseen else []
        warnings += [f"ScaledObject {n} scales this StatefulSet and was not created by the collection: it was not "
                     "paused, and may change the replica count during the rollout" for n in found["foreign"]]
        warnings += [f"ScaledObject {n} was paused already (not by a rollout of the collection's): left as it is"
                     for n in found["paused_by_others"]]
        return warnings

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
        result = {"revision": {"from": current, "to": update}, "replicas": [], "rolled_back": False,
                  "autoscaling_paused": []}
        found = self._autoscaling_plan()
        warnings = self._autoscaling_warnings(found)
        if warnings:
            result["warnings"] = warnings
        if not replicas or (current == update and not plan["behind"]):
            # Nothing to roll (no pods: a pod created later starts on the
            # update revision once the partition is 0). A pause a rollout cut
            # short left is lifted.
            moved = bool(plan["partition"])
            if not check_mode:
                if moved:
                    self._set_partition(0)
                problem = self._resume(found["ours_paused"])
                if problem:
                    raise ClusterError(problem)
            why = (f"StatefulSet {self.namespace}/{self.name} has no replicas" if not replicas
                   else f"every pod of StatefulSet {self.namespace}/{self.name} runs revision {update}")
            done = ([f"partition {plan['partition']} set to 0"] if moved else []) + (
                [f"KEDA resumed (ScaledObject {', '.join(found['ours_paused'])})"] if found["ours_paused"] else [])
            return {**result, "changed": bool(moved or found["ours_paused"]), "autoscaling_resumed":
                    found["ours_paused"], "elapsed_s": self._since(started),
                    "message": f"{why}: nothing to roll" + (f" ({'; '.join(done)})" if done else "")}
        order = rollout_order(replicas)
        if check_mode:
            to_pause = found["pause"] + found["ours_paused"]
            return {**result, "changed": True, "would_roll": [f"{self.name}-{o}" for o in order],
                    "would_pause_autoscaling": to_pause,
                    "message": f"would roll {len(order)} pod(s) of StatefulSet {self.namespace}/{self.name} "
                               f"from revision {current} to {update}, one at a time"
                               + (f", KEDA paused meanwhile (ScaledObject {', '.join(to_pause)})" if to_pause
                                  else ""), "elapsed_s": 0}
        paused = found["pause"] + found["ours_paused"]
        result["autoscaling_paused"] = paused
        try:
            # In the try: a pause that fails half-way is lifted like the rest.
            self._pause(found["pause"], update)
            done = self._roll(plan, order, result, started)
        except InferopsError as exc:
            problem = self._resume(paused)
            exc.details["autoscaling_resumed"] = [] if problem else paused
            if warnings:
                exc.details.setdefault("warnings", warnings)
            if problem:
                exc.msg += "\n" + problem
                exc.args = (exc.msg,)
            raise
        except BaseException:
            self._resume(paused)  # interrupted: best effort, a later run lifts what is left
            raise
        problem = self._resume(paused)
        if problem:
            kept = {k: v for k, v in done.items() if k not in ("message", "changed")}
            raise ClusterError(f"{done['message']}; but {problem}", **kept)
        return {**done, "autoscaling_resumed": paused}

    def _roll(self, plan: dict, order: list[int], result: dict, started: float) -> dict:
        update, current = plan["update"], plan["current"]
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
                           f"{update}, one at a time, each Ready and answering"
                           + (f" (KEDA paused meanwhile: ScaledObject {', '.join(result['autoscaling_paused'])})"
                              if result["autoscaling_paused"] else "")}

    def _stopped(self, result: dict, pod: str, exc, current: str, started: float):
        """The first bad replica: roll back (when asked) and fail, saying why."""
        details = {k: v for k, v in exc.details.items() if k in ("diagnosis", "status")}
        failure = {"pod": pod, "reason": exc.msg, **details}
        message = f"upgrade stopped at pod {pod}: {exc.msg}"
        if not self.rollback:
            pods, listed = self._pods_now()
            raise WaitFailed(message + f"\nNot rolled back (rollback is off): the pods below {pod} still run "
                             f"revision {current}; the StatefulSet's partition keeps them there.\nThe pods now: "
                             f"{listed}.", failed_pod=failure, rolled_back=False, replicas=result["replicas"],
                             pods=pods, elapsed_s=self._since(started))
        try:
            restored = self._roll_back(current)
        except (WaitFailed, EndpointError, NotFoundError, ClusterError) as again:
            pods, listed = self._pods_now()
            raise WaitFailed(message + f"\nThe rollback to revision {current} failed too: {again.msg}"
                             + f"\nThe pods now: {listed}.",
                             failed_pod=failure, rolled_back=False, rollback_error=again.msg, pods=pods,
                             replicas=result["replicas"], elapsed_s=self._since(started)) from again
        raise WaitFailed(message + f"\nRolled back to revision {current}: {len(restored)} pod(s) Ready and "
                         "answering again.", failed_pod=failure, rolled_back=True, restored=restored,
                         replicas=result["replicas"], elapsed_s=self._since(started))

    def _pods_now(self) -> tuple[list[dict], str]:
        """Each pod's revision and readiness now, and the same in words."""
        try:
            state = pods_state(self._pods(self._get()))
        except InferopsError as exc:
            return [], f"(they could not be listed: {exc.msg})"
        return state, describe_pods(state)

    def _roll_back(self, current: str) -> list[dict]:
        self._restore(current)
        return self._wait_restored(current)

    def _restore(self, current: str) -> None:
        """The template of revision ``current`` put back (and the last
        applied record with it); the new revision's pods that are not Ready
        deleted."""
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

    def _wait_restored(self, current: str) -> list[dict]:
        """Every pod on revision ``current`` and Ready (and answering, when checked)."""
        sts = self._observed()
        restored = []
        for ordinal in range((sts.get("spec") or {}).get("replicas", 1)):
            name = f"{self.name}-{ordinal}"
            self._wait_pod(sts, name, current, self.timeout)
            restored.append({"pod": name, "revision": current,
                             **({"check": self.check(name)} if self.check else {})})
        return restored

    def _since(self, started: float) -> float:
        return round(self.clock() - started, 3)


class GroupRollout(GatedRollout):
    """A replica larger than a node: a group of pods, pod i of every rank's
    StatefulSet (rank 0, ``name``, serves the API; ``ranks`` are the others).
    A group is replaced together: the partition of every rank's StatefulSet
    is lowered to the same ordinal at once, so that the controller of each
    replaces its pod i; every pod of the group must run its update revision
    and be Ready, and the leader answer, before the next group is touched.
    The groups go highest ordinal first, as single pods do. On the first bad
    group the rollout stops and (with rollback) every rank's template goes
    back to the revision its other pods run, the workers are waited for, then
    the leaders, each leader checked."""

    def __init__(self, api, name: str, namespace: str, ranks: list[str], timeout: float, fail_fast: list[str],
                 fail_fast_after: float, check=None, rollback: bool = True, log_lines: int = 20,
                 request_timeout: float = 30.0, clock=time.monotonic, pause_autoscaling: bool = True):
        super().__init__(api, name, namespace, timeout, fail_fast, fail_fast_after, check, rollback, log_lines,
                         request_timeout, clock, pause_autoscaling)
        # Workers serve no API: only the leader is checked; KEDA never scales a group.
        self.workers = [GatedRollout(api, rank, namespace, timeout, fail_fast, fail_fast_after, None, rollback,
                                     log_lines, request_timeout, clock, False) for rank in ranks]

    def plan(self) -> dict:
        plan = super().plan()
        plan["workers"] = [w.plan() for w in self.workers]
        for worker in plan["workers"]:
            if worker["replicas"] != plan["replicas"]:
                raise ParameterError(f"StatefulSet {self.namespace}/{worker['sts']['metadata']['name']} has "
                                     f"{worker['replicas']} replicas and {self.name} has {plan['replicas']}: the "
                                     "ranks of a group must have as many (apply the same count to every rank)")
        # Nothing to roll only when no rank has a pod to replace.
        if any(w["current"] != w["update"] or w["behind"] for w in plan["workers"]):
            plan["behind"] = plan["behind"] or ["(a worker rank)"]
        return plan

    def _set_partition(self, partition: int) -> None:
        super()._set_partition(partition)
        for worker in self.workers:
            worker._set_partition(partition)

    def _roll(self, plan: dict, order: list[int], result: dict, started: float) -> dict:
        update, current = plan["update"], plan["current"]
        members = [(self, plan)] + list(zip(self.workers, plan["workers"]))
        for ordinal in order:
            pod = f"{self.name}-{ordinal}"
            group = [f"{m.name}-{ordinal}" for m, _plan in members]
            step_started = self.clock()
            try:
                for member, _plan in members:
                    GatedRollout._set_partition(member, ordinal)
                for member, member_plan in reversed(members):  # the workers first: the leader waits for them
                    member._wait_pod(member_plan["sts"], f"{member.name}-{ordinal}", member_plan["update"],
                                     self.timeout)
                answer = self.check(pod) if self.check else None
            except (WaitFailed, EndpointError, NotFoundError, ClusterError) as exc:
                self._stopped(result, pod, exc, current, started)
            result["replicas"].append({"pod": pod, "group": group, "revision": update,
                                       "ready_s": self._since(step_started),
                                       **({"check": answer} if answer is not None else {})})
        return {**result, "changed": True, "elapsed_s": self._since(started),
                "message": f"rolled {len(order)} group(s) of {len(members)} pods (StatefulSets "
                           f"{', '.join(m.name for m, _plan in members)}) to their new revision, one group at a time, "
                           "each Ready and its leader answering"}

    def _roll_back(self, current: str) -> list[dict]:
        currents = [(w, w.plan()["current"]) for w in self.workers]
        self._restore(current)
        for worker, worker_current in currents:
            worker._restore(worker_current)
        for worker, worker_current in currents:
            worker._wait_restored(worker_current)
        return self._wait_restored(current)

    def _pods_now(self) -> tuple[list[dict], str]:
        states, words = [], []
        for member in [self] + self.workers:
            state, listed = GatedRollout._pods_now(member)
            states += state
            words.append(listed)
        return states, "; ".join(words)
