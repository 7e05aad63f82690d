# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a workload has rolled out, by the rules `kubectl rollout status`
uses (k8s.io/kubectl polymorphichelpers/rollout_status.go), plus Jobs.
Objects are plain dicts as the API returns them."""

from __future__ import annotations

from dataclasses import dataclass

# The kinds a rollout can be waited for, with where their namespaced
# collection lives in the API. The one list: the wait, the module's choices
# and the tests take it from here.
KIND_PATHS = {
    "StatefulSet": "/apis/apps/v1/namespaces/{ns}/statefulsets",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "DaemonSet": "/apis/apps/v1/namespaces/{ns}/daemonsets",
    "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
    "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
}
KINDS = tuple(KIND_PATHS)


@dataclass(frozen=True)
class RolloutStatus:
    done: bool
    message: str
    failed: bool = False  # will not complete without a change (e.g. deadline exceeded)
    reason: str = ""


def _condition(obj: dict, ctype: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), None)


def _observed(obj: dict) -> bool:
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation") or 0
    observed = status.get("observedGeneration") or 0
    return observed > 0 and generation <= observed


def status_of(kind: str, obj: dict) -> RolloutStatus:
    return {"StatefulSet": statefulset, "Deployment": deployment, "DaemonSet": daemonset, "Job": job,
            "PersistentVolumeClaim": claim}[kind](obj)


def deployment(obj: dict) -> RolloutStatus:
    name = obj["metadata"]["name"]
    if not _observed(obj):
        return RolloutStatus(False, f"waiting for deployment {name!r} spec update to be observed")
    cond = _condition(obj, "Progressing")
    if cond and cond.get("reason") == "ProgressDeadlineExceeded":
        return RolloutStatus(False, f"deployment {name!r} exceeded its progress deadline", failed=True,
                             reason="ProgressDeadlineExceeded")
    spec_replicas = (obj.get("spec") or {}).get("replicas", 1)
    s = obj.get("status") or {}
    updated, replicas, available = s.get("updatedReplicas", 0), s.get("replicas", 0), s.get("availableReplicas", 0)
    if updated < spec_replicas:
        return RolloutStatus(False, f"{updated} of {spec_replicas} updated replicas of deployment {name!r} are available")
    if replicas > updated:
        return RolloutStatus(False, f"{replicas - updated} old replicas of deployment {name!r} are pending termination")
    if available < updated:
        return RolloutStatus(False, f"{available} of {updated} updated replicas of deployment {name!r} are available")
    return RolloutStatus(True, f"deployment {name!r} successfully rolled out")


def statefulset(obj: dict) -> RolloutStatus:
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    s = obj.get("status") or {}
    if not _observed(obj):
        return RolloutStatus(False, f"waiting for statefulset {name!r} spec update to be observed")
    replicas = spec.get("replicas", 1)
    ready = s.get("readyReplicas", 0)
    if ready < replicas:
        return RolloutStatus(False, f"{ready} of {replicas} pods of statefulset {name!r} are ready")
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        # OnDelete: pods change only when deleted; ready replicas is all we can check.
        return RolloutStatus(True, f"statefulset {name!r} has {ready} ready pods (updateStrategy OnDelete)")
    partition = ((strategy.get("rollingUpdate") or {}).get("partition")) or 0
    if partition:
        updated = s.get("updatedReplicas", 0)
        if updated < replicas - partition:
            return RolloutStatus(False, f"waiting for partitioned roll out of statefulset {name!r}: "
                                        f"{updated} of {replicas - partition} new pods updated")
        return RolloutStatus(True, f"partitioned roll out of statefulset {name!r} complete")
    if s.get("updateRevision") != s.get("currentRevision"):
        return RolloutStatus(False, f"waiting for statefulset {name!r} rolling update to complete: "
                                    f"{s.get('updatedReplicas', 0)} pods at revision {s.get('updateRevision')}")
    return RolloutStatus(True, f"statefulset {name!r} rolled out: {ready} pods at revision {s.get('currentRevision')}")


def daemonset(obj: dict) -> RolloutStatus:
    name = obj["metadata"]["name"]
    s = obj.get("status") or {}
    if not _observed(obj):
        return RolloutStatus(False, f"waiting for daemon set {name!r} spec update to be observed")
    desired = s.get("desiredNumberScheduled", 0)
    updated = s.get("updatedNumberScheduled", 0)
    available = s.get("numberAvailable", 0)
    if updated < desired:
        return RolloutStatus(False, f"{updated} of {desired} pods of daemon set {name!r} updated")
    if available < desired:
        return RolloutStatus(False, f"{available} of {desired} updated pods of daemon set {name!r} are available")
    return RolloutStatus(True, f"daemon set {name!r} rolled out on {desired} nodes")


def job(obj: dict) -> RolloutStatus:
    name = obj["metadata"]["name"]
    failed = _condition(obj, "Failed")
    if failed and failed.get("status") == "True":
        reason = failed.get("reason") or "Failed"
        return RolloutStatus(False, f"job {name!r} failed: {reason}: {failed.get('message', '')}".rstrip(": "),
                             failed=True, reason=reason)
    complete = _condition(obj, "Complete")
    if complete and complete.get("status") == "True":
        return RolloutStatus(True, f"job {name!r} completed")
    s = obj.get("status") or {}
    completions = (obj.get("spec") or {}).get("completions") or 1
    return RolloutStatus(False, f"job {name!r}: {s.get('succeeded', 0)} of {completions} completions, "
                                f"{s.get('active', 0)} active, {s.get('failed', 0)} failed")


def claim(obj: dict) -> RolloutStatus:
    """A claim is ready once Bound; Lost will not recover by waiting."""
    name = obj["metadata"]["name"]
    phase = (obj.get("status") or {}).get("phase", "Pending")
    if phase == "Bound":
        return RolloutStatus(True, f"claim {name!r} is bound to {(obj.get('spec') or {}).get('volumeName')}")
    if phase == "Lost":
        return RolloutStatus(False, f"claim {name!r} lost its volume", failed=True, reason="ClaimLost")
    return RolloutStatus(False, f"claim {name!r} is {phase}")


def mid_rollout(sts: dict) -> bool:
    """Whether a StatefulSet is in the middle of a rollout: its partition
    holds pods on the old revision, or its pods are not all on the update
    revision yet (an interrupted roll, or one stopped with rollback off).
    The one place this is decided."""
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    partition = ((spec.get("updateStrategy") or {}).get("rollingUpdate") or {}).get("partition") or 0
    return int(partition) > 0 or (status.get("currentRevision") or "") != (status.get("updateRevision") or "")
