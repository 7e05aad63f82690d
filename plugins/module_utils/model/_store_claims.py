# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which claims hold the model, which pods use them, and what the
model_store teardown and the removal of a previous revision do with them
(roles/model_store/tasks/teardown*.yml, remove_revision*.yml).

The model's claims are the shared claim the role made (storage claim: its
name and the collection's managed-by label), or the claims the StatefulSets
of the vLLM deployment made from their claim template (storage per_replica:
told by their labels and names, ``k8s/_set_claims``). A claim without those
labels is never the model's, whatever its name."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._ownership import created_by_collection
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._set_claims import model_volumes, set_claims
from ansible_collections.inferops.vllm.plugins.module_utils.model._held import folder_readers
from ansible_collections.inferops.vllm.plugins.module_utils.model._store import VOLUME

# vllm_serve's selector and rank label (roles/vllm_serve/vars/main.yml), which
# each rank's StatefulSet puts on the claims it makes from its template.
RANK_LABEL = "inferops.io/node-rank"
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# The collection's own pods that mount the model's claims (vLLM's, whose model path is known, and the role's Jobs').
OWN_PODS = ("vllm", "model-fetch", "model-read", "model-prune", "model-wipe")
# The download Jobs, and those an interrupted teardown left.
TEARDOWN_JOBS = ("model-fetch", "model-wipe")


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _labels(obj: dict) -> dict:
    return _meta(obj).get("labels") or {}


def _claims_mounted(pod: dict) -> list[str]:
    return [(v.get("persistentVolumeClaim") or {}).get("claimName") for v in (pod.get("spec") or {}).get("volumes") or []
            if (v.get("persistentVolumeClaim") or {}).get("claimName")]


def model_claims(claims: list, storage: str, claim_name: str, statefulset: str) -> list:
    """The model's claims among ``claims`` (API objects): the shared one
    (storage claim) or every rank's per-replica ones (storage per_replica)."""
    if storage == "claim":
        return [c for c in claims or [] if _meta(c).get("name") == claim_name and created_by_collection(c)]
    if storage == "per_replica":
        selector = {NAME_LABEL: "vllm", INSTANCE_LABEL: statefulset}
        return set_claims(claims, statefulset, selector, RANK_LABEL, VOLUME)
    return []


def _by_kind(found: list) -> dict:
    """kubernetes.core.k8s_info's answers of a loop, by the kind asked for."""
    out = {}
    for answer in found or []:
        out[(answer.get("item") or {}).get("kind")] = answer.get("resources") or []
    return out


def teardown_plan(found: list, settings: dict, check_mode: bool = False) -> dict:
    """From the teardown's reads (claims, Jobs, pods and volumes, each a
    k8s_info answer of one loop): the model's claims, the download and wipe
    Jobs to delete, the pods that still mount a claim (the teardown refuses
    while there are any: a claim in use is not deleted until they stop), and
    the claims whose volume must be set to Retain first (unless the files are
    to be deleted); ``refusal`` says why nothing is deleted, when it is not."""
    s, read = settings, _by_kind(found)
    live = read.get("PersistentVolumeClaim", [])
    claims = model_claims(live, s["storage"], s["claim_name"], s["teardown_statefulset"])
    names = [_meta(c)["name"] for c in claims]
    users = []
    for pod in read.get("Pod", []):
        labels = _labels(pod)
        # In check mode the vLLM pods are still there (their teardown only pretended).
        if _meta(pod).get("deletionTimestamp") or labels.get(NAME_LABEL) in TEARDOWN_JOBS or (
                check_mode and labels.get(INSTANCE_LABEL) == s["teardown_statefulset"]):
            continue
        users += [f"{_meta(pod)['name']} (claim {claim})" for claim in _claims_mounted(pod) if claim in names]
    jobs = [j for j in read.get("Job", []) if _labels(j).get(NAME_LABEL) in TEARDOWN_JOBS
            and _labels(j).get(INSTANCE_LABEL) == s["name"]]
    retained = {_meta(v).get("name") for v in read.get("PersistentVolume", [])
                if (v.get("spec") or {}).get("persistentVolumeReclaimPolicy") == "Retain"}
    # A claim not bound (Pending) has no volume, and so no files.
    retain = [] if s.get("teardown_delete_data") else [
        c for c in claims if (c.get("spec") or {}).get("volumeName") and c["spec"]["volumeName"] not in retained]
    refusal = "" if not users else (
        f"Pods in {s['namespace']} still mount the model's claim: {', '.join(users)}. A claim in use is not deleted "
        "until they stop (kubernetes.io/pvc-protection), so nothing of the model was deleted. Stop them (they are not "
        "the vLLM service this teardown removed: check vllm_serve_name), then run the teardown again.")
    return {"claims": claims, "claim_names": names, "live_claims": live, "jobs": jobs, "users": users,
            "retain": retain, "refusal": refusal}


def _where(pv: dict) -> str:
    spec = pv.get("spec") or {}
    if "hostPath" in spec:
        return f", {spec['hostPath'].get('path')}"
    if "nfs" in spec:
        return f", {spec['nfs'].get('server')}:{spec['nfs'].get('path')}"
    if "csi" in spec:
        return f", {spec['csi'].get('driver')} {spec['csi'].get('volumeHandle')}"
    return ""


def teardown_report(volumes: list, plan: dict, settings: dict) -> str:
    """Where the model's files are once the claims are gone: each volume
    that held one of the model's claims (this run's, or an earlier
    teardown's; never the volume of someone else's live claim)."""
    s = settings
    if s["storage"] == "hostpath":
        return f"The model's files stay in {s['hostpath']}/{s['subpath']} on each GPU node that fetched them."
    held = model_volumes(volumes, s["namespace"], plan.get("live_claims"), plan.get("claims"),
                         s["teardown_statefulset"] if s["storage"] == "per_replica" else "", VOLUME,
                         s["claim_name"] if s["storage"] == "claim" else "")
    if not held:
        return f"No volume holds a claim of the model ({s['namespace']}/{s['claim_name']})."
    what = ": the model was deleted from it" if s.get("teardown_delete_data") else \
        f": it keeps the model, in {s['subpath']}"
    return " ".join(f"Volume {pv['metadata']['name']} (claim {pv['spec']['claimRef']['name']}, "
                    f"{(pv.get('status') or {}).get('phase') or '?'}, reclaim policy "
                    f"{pv['spec'].get('persistentVolumeReclaimPolicy')}{_where(pv)}){what}." for pv in held)


def prune_targets(pods: list, claims: list, settings: dict) -> dict:
    """For remove_revision: the model's claims that may hold the previous
    folder (each with the node and tolerations of a running pod that has it
    attached, where the removal must run: a ReadWriteOnce claim is per node),
    and the pods that may read that folder: vLLM pods whose model path is it,
    and any pod that is not the collection's mounting one of those claims
    (what it reads is not known). ``kept`` says why the folder stays, when it
    does (readers, or no claim)."""
    s = settings
    ours = model_claims(claims, s["storage"], s["claim_name"], s["guard_statefulset"])
    names = [_meta(c)["name"] for c in ours]
    readers = [p for copy in folder_readers(pods, s["storage"], s["claim_name"], s["hostpath"], s["previous_subpath"])
               for p in copy["pods"]]
    running = [p for p in pods or [] if not _meta(p).get("deletionTimestamp")
               and (p.get("status") or {}).get("phase") in ("Pending", "Running")]
    readers += [_meta(p)["name"] for p in running if _labels(p).get(NAME_LABEL) not in OWN_PODS
                and set(_claims_mounted(p)) & set(names)]
    targets = []
    for name in names:
        host = next((p for p in running if (p.get("status") or {}).get("phase") == "Running"
                     and (p.get("spec") or {}).get("nodeName") and name in _claims_mounted(p)), None)
        targets.append({"name": name, "node": (host or {}).get("spec", {}).get("nodeName", ""),
                        "tolerations": (host or {}).get("spec", {}).get("tolerations") or []})
    kept = ""
    if readers:
        kept = f"{s['previous_subpath']} kept: running pods may read it: {', '.join(readers)}."
    elif not targets:
        kept = f"{s['previous_subpath']} kept: no claim of the model is left in {s['guard_namespace']}."
    return {"claims": targets, "readers": readers, "kept": kept}
