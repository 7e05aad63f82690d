# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the model_store role's short-lived pods answered: the pod that reads
a model folder's completion marker (tasks/revision_guard*.yml) and the one
that removes a previous revision's folder (tasks/remove_revision*.yml). Each
writes one JSON line to its termination-message file, which the kubelet
copies into the pod's status (containerStatuses[].state.terminated.message)
after an exit 0; the role reads the pods back and this module reads the
answers."""

from __future__ import annotations

import json

from ansible_collections.inferops.vllm.plugins.module_utils.model._held import held_conflict

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def pod_answer(pods: list, job: str) -> dict | None:
    """The JSON object the Succeeded pod of Job ``job`` left as its
    termination message (its last line), or None when there is none."""
    for pod in pods or []:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if (meta.get("labels") or {}).get(JOB_NAME_LABEL) != job or status.get("phase") != "Succeeded":
            continue
        for container in status.get("containerStatuses") or []:
            message = ((container.get("state") or {}).get("terminated") or {}).get("message")
            if message is None:
                continue
            line = message.strip().split("\n")[-1]
            if not line.startswith("{"):
                return None
            try:
                answer = json.loads(line)
            except ValueError:
                return None
            return answer if isinstance(answer, dict) else None
    return None


def guard_held(copies: list, pods: list, waited: list, params: dict, job_prefix: str) -> list:
    """One entry a copy of the folder the running pods read (its readers and
    node, the marker its read pod found, and what it holds when fetching the
    source ``params`` name into it would change its files, else empty).
    ``waited`` is workload_wait's answer for each read Job, in the same
    order; a read that did not finish, or gave no answer, is a conflict."""
    held = []
    for index, copy in enumerate(copies or []):
        wait = waited[index] if index < len(waited or []) else {}
        if wait.get("rolled_out") is False:
            marker = {"error": f"the read pod did not finish: {wait.get('msg') or ''}"}
        else:
            marker = pod_answer(pods, f"{job_prefix}-{index}") or {"error": "the read pod gave no answer"}
        held.append({"pods": copy["pods"], "node": copy["node"], "marker": marker,
                     "held": held_conflict(marker, params)})
    return held


def prune_report(pods: list, claims: list, job_prefix: str, folder: str = "") -> dict:
    """What the removal pod of each claim did: ``said`` (per claim, removed,
    or kept and why), ``msg`` (the same, about ``folder``) and whether any
    removed the folder."""
    said, removed = [], False
    for index, claim in enumerate(claims or []):
        answer = pod_answer(pods, f"{job_prefix}-{index}") or {"reason": "its pod gave no answer"}
        removed = removed or bool(answer.get("removed"))
        said.append(f"{claim['name']}: " + ("removed" if answer.get("removed") else f"kept, {answer.get('reason', '?')}"))
    return {"said": "; ".join(said), "msg": f"The previous folder {folder}: {'; '.join(said)}.", "removed": removed}
