# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a model folder that running pods read holds, and whether fetching
another source or revision would put other files into it.

The folder's own completion marker says what it holds (its "source": the
fetcher's identity of the source, written by _fetch.write_marker), whatever
the download mode was: a Job, or the init container of each pod. upgrade.yml
reads it (a short-lived pod on the node of a running pod, the pod's own
volume mounted read-only: roles/model_store/tasks/revision_guard*.yml) and
refuses a fetch into a folder
that holds something else, before any file is touched."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError
from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import build_source

# Fields of an identity that choose which files are fetched, not what is in them.
SELECTION = ("allow_patterns", "ignore_patterns")


def wanted_identity(params: dict) -> dict:
    """The identity the fetcher will give the source these model_store
    settings name (its own build_source, so the two cannot disagree)."""
    p = {"source": params.get("source"), "dest": "/models", "model_id": params.get("model_id") or None,
         "revision": params.get("revision") or None, "bucket": params.get("bucket") or None,
         "prefix": params.get("prefix") or "", "endpoint_url": params.get("endpoint_url") or None,
         "local_path": params.get("local_path") or None}
    return build_source(p).identity()


def describe(identity: dict) -> str:
    kind = identity.get("type")
    if kind == "s3":
        where = f" at {identity['endpoint']}" if identity.get("endpoint") else ""
        return f"s3://{identity.get('bucket')}/{identity.get('prefix') or ''}{where}"
    if kind in ("huggingface", "modelscope"):
        return f"{kind} {identity.get('model_id')} revision {identity.get('revision')}"
    if kind == "local":
        return f"the directory {identity.get('path')}"
    return str(identity)


def held_conflict(read: dict, params: dict) -> str:
    """Empty when fetching what ``params`` name into the folder that
    ``read`` (what model_store_read_script in
    roles/model_store/tasks/revision_guard.yml printed) describes would leave
    its files as they are; else what the folder holds, for the refusal. A
    folder with no marker holds no complete model: nothing a pod could be
    serving."""
    if read and read.get("error"):
        return f"what could not be read ({read['error']}): a fetch into it is not safe to allow"
    if not read or not read.get("marker"):
        return ""
    held = read.get("source")
    if not isinstance(held, dict):
        return "a completion marker without a source"
    try:
        wanted = wanted_identity(params)
    except InferopsError as exc:
        return f"{describe(held)} (the new source could not be named: {exc})"
    if params.get("revision") and "revision" not in wanted:
        # The fetcher would ignore it and keep the files: the new revision asked for would never come.
        return f"{describe(held)} (a {wanted.get('type')} source has no revisions: a new one is a new " \
               f"{'model_store_s3_prefix' if wanted.get('type') == 's3' else 'model_store_local_path'})"
    differs = [k for k in held.keys() & wanted.keys() if k not in SELECTION and held[k] != wanted[k]]
    return describe(held) if differs else ""


def folder_readers(pods: list, storage: str, claim: str, hostpath: str, subpath: str,
                   container: str = "vllm", volume: str = "models") -> list:
    """Where the folder ``subpath`` is read by running pods, one entry a
    distinct copy of it: {node, volume (the pod's, to mount), tolerations,
    pods}. A copy is a claim (storage claim or per_replica), or a node's
    hostPath folder (storage hostpath). Pods reading another folder, or a
    volume the download does not write (another claim or path), are not
    readers of this one."""
    copies: dict = {}
    for pod in pods or []:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") not in ("Running", "Pending") \
                or not spec.get("nodeName"):
            continue
        vol = next((v for v in spec.get("volumes") or [] if v.get("name") == volume), None)
        main = next((c for c in spec.get("containers") or [] if c.get("name") == container), None)
        if not vol or not main:
            continue
        mount = next((m["mountPath"] for m in main.get("volumeMounts") or [] if m.get("name") == volume), None)
        args = main.get("args") or []
        if not mount or not args or args[0].rstrip("/") != f"{mount.rstrip('/')}/{subpath.strip('/')}":
            continue
        pvc = (vol.get("persistentVolumeClaim") or {}).get("claimName")
        host = (vol.get("hostPath") or {}).get("path")
        if storage == "claim" and pvc == claim:
            key = ("claim", pvc)
        elif storage == "per_replica" and pvc:
            key = ("claim", pvc)
        elif storage == "hostpath" and host and host.rstrip("/") == hostpath.rstrip("/"):
            key = ("node", spec["nodeName"])
        else:
            continue
        entry = copies.setdefault(key, {"node": spec["nodeName"], "volume": {**vol, "name": volume},
                                        "tolerations": spec.get("tolerations") or [], "pods": []})
        entry["pods"].append(meta.get("name"))
    return [copies[k] for k in sorted(copies)]
