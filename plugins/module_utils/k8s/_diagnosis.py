# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why a workload is not rolling out, read from its pods, their events and
their claims (plain dicts as the API returns them). Each finding names the
cause, the object and what the cluster said. No API calls here."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

IMAGE_PULL_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
CONFIG_REASONS = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")

# kube-scheduler's VolumeBinding filter when its lister lacks the claim
# (pkg/scheduler/framework/plugins/volumebinding: "persistentvolumeclaim %q not found").
_STALE_CLAIM = re.compile(r'persistentvolumeclaim "([^"]+)" not found')

# Causes that do not go away by waiting: a wait may stop early on them.
PERMANENT_CAUSES = (
    "ImagePullBackOff",
    "PVCMissing",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "Unschedulable",
    "BackoffLimitExceeded",
    "DeadlineExceeded",
    "ProgressDeadlineExceeded",
)


@dataclass
class Finding:
    cause: str
    object: str  # kind/namespace/name
    message: str
    container: str | None = None
    image: str | None = None
    restart_count: int | None = None
    last_exit_code: int | None = None
    claim: str | None = None
    log_tail: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}

    def summary(self) -> str:
        text = f"{self.cause} on {self.object}: {self.message}"
        if self.log_tail:
            text += "\n  last log lines:\n    " + "\n    ".join(self.log_tail)
        return text


def what_it_said(text: str | None, log_tail: list[str] | None = None) -> str:
    """The gist of what a failed container said: the last line of its
    termination message (or of its log tail), and, when that line is the
    collection's fetch command's JSON result, its msg."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        lines = [line.strip() for line in log_tail or [] if line.strip() and not line.startswith("(logs unavailable")]
    if not lines:
        return ""
    last = lines[-1]
    try:
        result = json.loads(last)
    except ValueError:
        return last
    return str(result["msg"]) if isinstance(result, dict) and result.get("msg") else last


def failed_runs(pod: dict) -> list[dict]:
    """The container runs of a pod that ended with an exit code other than
    0, as the kubelet reports them (the current state, and the run before a
    restart): pod, container, exitCode, reason, finishedAt, restartCount and
    the termination message when there is one."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    runs = []
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        restarts = cs.get("restartCount", 0)
        for state, count in (((cs.get("lastState") or {}).get("terminated"), restarts - 1),
                             ((cs.get("state") or {}).get("terminated"), restarts)):
            if not state or state.get("exitCode") in (None, 0):
                continue
            run = {"pod": meta.get("name"), "uid": meta.get("uid"), "container": cs.get("name"),
                   "exitCode": state.get("exitCode"), "reason": state.get("reason"),
                   "finishedAt": state.get("finishedAt"), "restartCount": max(count, 0)}
            if state.get("message"):
                run["message"] = state["message"]
            runs.append({k: v for k, v in run.items() if v is not None})
    return runs


_runs_of = failed_runs


def _ref(pod: dict) -> str:
    m = pod["metadata"]
    return f"pod/{m.get('namespace')}/{m['name']}"


def _events_for(events: list[dict], kind: str, name: str) -> list[dict]:
    found = [e for e in events if (e.get("involvedObject") or {}).get("kind") == kind
             and (e.get("involvedObject") or {}).get("name") == name]
    return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def _node_state(node: dict) -> str:
    cond = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    return (f"{node['metadata']['name']} ({cond.get('reason') or 'no reason'}: "
            f"{cond.get('message') or 'no message'})")


def _ready(obj: dict) -> str | None:
    return next((c.get("status") for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"), None)


def diagnose_pod(pod: dict, events: list[dict], claims: dict[str, dict], nodes: dict[str, dict] | None = None) -> list[Finding]:
    """Findings for one pod; ``claims`` maps PVC name -> PVC of its namespace,
    ``nodes`` node name -> node, for the nodes the pods run on."""
    findings: list[Finding] = []
    ref = _ref(pod)
    status = pod.get("status") or {}
    pod_events = _events_for(events, "Pod", pod["metadata"]["name"])
    spec_images = {c["name"]: c.get("image") for c in (pod.get("spec") or {}).get("containers", []) +
                   (pod.get("spec") or {}).get("initContainers", [])}

    # Claims first: an unbound claim also shows up as Unschedulable, and the
    # claim is the real cause.
    pending_claims = []
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        claim_name = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        if not claim_name:
            continue
        claim = claims.get(claim_name)
        if claim is None:
            findings.append(Finding("PVCMissing", ref, f"PersistentVolumeClaim {claim_name!r} does not exist",
                                    claim=claim_name))
            pending_claims.append(claim_name)
        elif (claim.get("status") or {}).get("phase") != "Bound":
            claim_events = _events_for(events, "PersistentVolumeClaim", claim_name)
            said = claim_events[-1]["message"] if claim_events else "no event yet"
            sc = (claim.get("spec") or {}).get("storageClassName")
            findings.append(Finding(
                "PVCPending", f"persistentvolumeclaim/{claim['metadata'].get('namespace')}/{claim_name}",
                f"claim is {(claim.get('status') or {}).get('phase', 'Pending')} (storageClass {sc!r}): {said}",
                claim=claim_name))
            pending_claims.append(claim_name)

    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            stale = _STALE_CLAIM.search(cond.get("message") or "")
            if stale and stale.group(1) in claims:
                # The claim exists and is bound, yet the scheduler says "not found": its cache is behind the API
                # (seen right after a kube-apiserver restart). It tries the pod again when its informer sees the
                # claim, so waiting fixes this one.
                findings.append(Finding("SchedulerBehind", ref, f"the scheduler has not seen claim {stale.group(1)!r} "
                                        f"yet, which exists: it retries when its cache catches up "
                                        f"({cond.get('message')})", claim=stale.group(1)))
            elif not pending_claims:
                findings.append(Finding("Unschedulable", ref, cond.get("message") or "the scheduler found no node"))
                # The scheduler counts a NotReady node's taint without naming the node: name the
                # nodes the pod's nodeSelector points to that are not Ready.
                selector = (pod.get("spec") or {}).get("nodeSelector") or {}
                down = sorted(name for name, node in (nodes or {}).items() if selector and _ready(node) != "True"
                              and all(((node.get("metadata") or {}).get("labels") or {}).get(k) == v
                                      for k, v in selector.items()))
                if down:
                    findings.append(Finding("NodeNotReady", ref, "the node(s) its nodeSelector allows are not Ready: "
                                            + "; ".join(_node_state(nodes[name]) for name in down)))

    all_statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for cs in all_statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        image = spec_images.get(cs.get("name")) or cs.get("image")
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if reason in IMAGE_PULL_REASONS:
            findings.append(Finding("ImagePullBackOff", ref,
                                    f"cannot pull image {image!r} ({reason}): {waiting.get('message', '')}".rstrip(": "),
                                    container=cs["name"], image=image))
        elif reason == "CrashLoopBackOff":
            exit_info = ""
            if last:
                exit_info = f"; last exit code {last.get('exitCode')} ({last.get('reason', '')})"
                gist = what_it_said(last.get("message"))
                if gist:
                    exit_info += f": {gist}"
            findings.append(Finding("CrashLoopBackOff", ref,
                                    f"container {cs['name']!r} keeps crashing: restarted {cs.get('restartCount', 0)} times{exit_info}",
                                    container=cs["name"], image=image, restart_count=cs.get("restartCount", 0),
                                    last_exit_code=last.get("exitCode")))
        elif reason in CONFIG_REASONS:
            findings.append(Finding("CreateContainerConfigError", ref,
                                    f"container {cs['name']!r} cannot be created ({reason}): {waiting.get('message', '')}",
                                    container=cs["name"], image=image))
        if last.get("reason") == "OOMKilled":
            findings.append(Finding("OOMKilled", ref, f"container {cs['name']!r} was killed for using too much memory",
                                    container=cs["name"], restart_count=cs.get("restartCount", 0)))

    # Events the status does not carry: failed mounts and failed probes.
    seen = set()
    for ev in reversed(pod_events):
        reason, message = ev.get("reason"), ev.get("message", "")
        if reason == "FailedMount" and "FailedMount" not in seen:
            findings.append(Finding("FailedMount", ref, message))
            seen.add(reason)
        elif reason == "Unhealthy" and "ProbeFailed" not in seen:
            findings.append(Finding("ProbeFailed", ref, message))
            seen.add("ProbeFailed")
        elif reason in ("FailedCreatePodSandBox", "FailedAttachVolume") and reason not in seen:
            findings.append(Finding(reason, ref, message))
            seen.add(reason)
        elif reason == "NodeNotReady" and "NodeNotReady" not in seen:
            findings.append(Finding("NodeNotReady", ref, f"{message} (node {(pod.get('spec') or {}).get('nodeName')})"))
            seen.add(reason)

    # Not Ready and nothing above says why: say so, and whether its node is.
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not findings and node_name and _ready(pod) == "False" and not (pod.get("metadata") or {}).get("deletionTimestamp"):
        node = (nodes or {}).get(node_name)
        if node is not None and _ready(node) != "True":
            cond = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
            findings.append(Finding("NodeNotReady", ref, f"its node {node_name} is not Ready "
                                    f"({cond.get('reason') or 'no reason'}: {cond.get('message') or 'no message'}); "
                                    "the pod waits for the node's kubelet to report again"))
        else:
            running = [cs["name"] for cs in all_statuses if (cs.get("state") or {}).get("running")]
            findings.append(Finding("NotReady", ref, f"not Ready with no reason from its containers and no event "
                                    f"(containers running: {', '.join(running) or 'none'}; node {node_name}): a "
                                    "readiness probe failing without events, or a kubelet that stopped reporting"))
    return findings


def diagnose_workload(kind: str, obj: dict, pods: list[dict], events: list[dict], claims: dict[str, dict],
                      nodes: dict[str, dict] | None = None, failed_runs: list[dict] | None = None) -> list[Finding]:
    """Findings for a workload: its own failure conditions, its controller's
    complaints (e.g. a pod it could not create) and each pod's findings.
    ``failed_runs``: the failed container runs seen while waiting (failed_runs()
    of each pod, with a log_tail where the run left no message); the Job
    controller deletes a failed Job's running pods, so ``pods`` may no longer
    hold them. Default: those of ``pods``."""
    findings: list[Finding] = []
    meta = obj["metadata"]
    ref = f"{kind.lower()}/{meta.get('namespace')}/{meta['name']}"
    runs = failed_runs if failed_runs is not None else [r for p in pods for r in _runs_of(p)]
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if kind == "Job" and cond.get("type") == "Failed" and cond.get("status") == "True":
            failed = Finding(cond.get("reason") or "JobFailed", ref, cond.get("message") or "job failed")
            if runs:
                # What the fetcher (or any job's command) said, not only the Job controller's reason.
                last = max(runs, key=lambda r: r.get("finishedAt") or "")
                gist = what_it_said(last.get("message"), last.get("log_tail"))
                failed.message += (f"; container {last.get('container')!r} of pod {last.get('pod')} exited with "
                                   f"code {last.get('exitCode')}" + (f": {gist}" if gist else
                                                                     f" ({last.get('reason') or 'Error'})"))
                failed.container = last.get("container")
                failed.last_exit_code = last.get("exitCode")
                failed.log_tail = (last.get("message") or "").splitlines() or list(last.get("log_tail") or [])
            findings.append(failed)
        if cond.get("reason") == "ProgressDeadlineExceeded":
            findings.append(Finding("ProgressDeadlineExceeded", ref, cond.get("message", "")))
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            findings.append(Finding("FailedCreate", ref, cond.get("message", "")))
    if kind == "PersistentVolumeClaim":
        said = [e.get("message", "") for e in _events_for(events, kind, meta["name"])[-3:]]
        sc = (obj.get("spec") or {}).get("storageClassName")
        findings.append(Finding("PVCPending", ref, f"claim is {(obj.get('status') or {}).get('phase', 'Pending')} "
                                f"(storageClass {sc!r}): {'; '.join(said) or 'no event yet'}", claim=meta["name"]))
    for ev in _events_for(events, kind, meta["name"])[-3:]:
        if ev.get("type") == "Warning" and ev.get("reason") in ("FailedCreate", "FailedCreatePodSandBox"):
            findings.append(Finding("FailedCreate", ref, ev.get("message", "")))
    for pod in pods:
        findings.extend(diagnose_pod(pod, events, claims, nodes))
    # The same cause on many pods: keep the first of each (cause, message).
    unique, keys = [], set()
    for f in findings:
        key = (f.cause, f.message.split(": ", 1)[-1] if f.cause == "Unschedulable" else f.message, f.claim)
        if key not in keys:
            keys.add(key)
            unique.append(f)
    if not unique and kind in ("StatefulSet", "Deployment", "DaemonSet"):
        unique.append(progress_finding(kind, obj, pods))
    return unique


def _names(pods: list[dict], limit: int = 10) -> str:
    names = sorted(p["metadata"]["name"] for p in pods)
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def progress_finding(kind: str, obj: dict, pods: list[dict]) -> Finding:
    """When no pod has anything wrong to report and the workload is still
    not rolled out: what its pods are doing, by name, and, when every pod
    is Ready, that the controller's status has not caught up with them (a
    kube-controller-manager behind on its work, or not running), rather than
    an empty diagnosis."""
    meta = obj["metadata"]
    ref = f"{kind.lower()}/{meta.get('namespace')}/{meta['name']}"
    status = obj.get("status") or {}
    going = [p for p in pods if (p.get("metadata") or {}).get("deletionTimestamp")]
    live = [p for p in pods if p not in going]
    pending = [p for p in live if not (p.get("spec") or {}).get("nodeName")]
    not_ready = [p for p in live if p not in pending and _ready(p) != "True"]
    parts = [f"{len(live) - len(pending) - len(not_ready)} of {len(live)} pods Ready"]
    if pending:
        parts.append(f"not placed on a node yet: {_names(pending)}")
    if not_ready:
        parts.append(f"not Ready yet: {_names(not_ready)}")
    if going:
        parts.append(f"terminating: {_names(going)}")
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        if len(live) < desired:
            parts.append(f"{desired} nodes should run one, {len(live)} pods exist: the controller has not created "
                         "the others yet")
        counted = f"{status.get('numberAvailable', 0)} available of {desired}"
    else:
        counted = (f"{status.get('readyReplicas', 0)} ready, {status.get('updatedReplicas', 0)} updated of "
                   f"{(obj.get('spec') or {}).get('replicas', 1)}")
    if live and not pending and not not_ready and not going:
        parts.append(f"its status counts {counted}: the controller has not caught up with its pods "
                     "(kube-controller-manager behind on its work, or not running)")
    else:
        parts.append(f"its status counts {counted}")
    return Finding("Progressing", ref, "; ".join(parts))


def final_findings(findings: list[Finding], pods: list[dict], causes) -> list[Finding]:
    """The findings among causes that waiting will not fix. Unschedulable is
    not final while a pod of the same workload is still terminating: what it
    holds (GPUs above all) is freed when it goes, as in a rolling update that
    replaces pods, so the pending pod may yet fit."""
    terminating = any((p.get("metadata") or {}).get("deletionTimestamp") for p in pods)
    return [f for f in findings if f.cause in causes and not (f.cause == "Unschedulable" and terminating)]
