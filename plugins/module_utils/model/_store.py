# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the model_store role decides from its variables, before it asks the
cluster anything: which settings it refuses (each naming the variable, the
value and what would be right), the download's container and the model
volume for the Job or for vllm_serve's pods, the claim template of storage
per_replica, the download Job's name (after its pod template, which cannot
change once a Job is created), the annotations that say on the Job where the
model goes and which revision, and the fact the serving role reads.

``settings`` is the role's variables without their ``model_store_`` prefix
(roles/model_store/vars/main.yml gathers them); the source's credentials are
never among them."""

from __future__ import annotations

import hashlib
import json
import re

# A Kubernetes name (RFC 1123 label): what a namespace, and what the role names after model_store_name, must be.
NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
NAME_RULE = "lower-case letters, digits and '-' (63 at most, starting and ending with a letter or digit)"
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")
# What each source cannot do without.
SOURCE_NEEDS = {"s3": "s3_bucket", "huggingface": "model_id", "modelscope": "model_id", "local": "local_path"}
# Where the download, and every pod of the role's, mounts the model volume.
MOUNT = "/models"
VOLUME = "models"
FETCH_MODULE = "ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli"
# On the download Job: the model's folder inside the volume and the revision
# asked for ("" for the source's default, or a source without revisions), so
# that nothing has to read them back from its command line.
SUBPATH_ANNOTATION = "inferops.io/model-subpath"
REVISION_ANNOTATION = "inferops.io/model-revision"
# A path inside the volume: relative, and never above it.
ESCAPES = re.compile(r"^/|(^|/)\.\.(/|$)")


def _text(value) -> str:
    return "" if value is None else str(value)


def refusals(settings: dict) -> list[str]:
    """The role's settings that no run could apply, each its own sentence
    (empty when all are right). Checked before anything is read or changed."""
    s = settings
    out = []
    for key in ("namespace", "name"):
        if not NAME.fullmatch(_text(s.get(key))):
            out.append(f"model_store_{key}: {_text(s.get(key))!r} is not a Kubernetes name: use {NAME_RULE}.")
    if not QUANTITY.fullmatch(_text(s.get("size"))):
        out.append(f"model_store_size: {_text(s.get('size'))!r} is not a Kubernetes quantity; give one such as "
                   "100Gi.")
    needed = SOURCE_NEEDS.get(s.get("source"))
    if needed and not s.get(needed):
        out.append(f"model_store: source {s.get('source')} needs model_store_{needed}.")
    if not s.get("fetch_image"):
        out.append("model_store_fetch_image: empty; name an image that holds the collection's model_fetch code "
                   "(images/model-fetch/Containerfile).")
    try:
        concurrency = int(s.get("fetch_concurrency") or 0)
    except (TypeError, ValueError):
        concurrency = -1
    if concurrency < 0:
        out.append(f"model_store_fetch_concurrency: {_text(s.get('fetch_concurrency'))!r} must be a whole number, "
                   "0 or more (0: the fetcher's default).")
    if s.get("storage") != "claim" and s.get("download") != "init_container":
        out.append(f"model_store: storage {s.get('storage')} gives each pod a volume of its own, which one Job cannot "
                   "fill; set model_store_download: init_container.")
    return out


def teardown_refusals(settings: dict) -> list[str]:
    """What the teardown entry point refuses before it deletes anything."""
    s = settings
    out = []
    for key in ("namespace", "name"):
        if not NAME.fullmatch(_text(s.get(key))):
            out.append(f"model_store_{key}: {_text(s.get(key))!r} is not the name the model was deployed with "
                       f"({NAME_RULE}).")
    # A StatefulSet's name leaves room for its pods' and claims' suffixes.
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", _text(s.get("teardown_statefulset"))):
        out.append(f"model_store_teardown_statefulset: {_text(s.get('teardown_statefulset'))!r} is not the name of "
                   "the vLLM deployment the model was served by (vllm_serve_name: lower-case letters, digits and "
                   "'-', 52 at most).")
    try:
        timeout = int(s.get("teardown_timeout"))
    except (TypeError, ValueError):
        timeout = 0
    if timeout <= 0:
        out.append(f"model_store_teardown_timeout: {_text(s.get('teardown_timeout'))!r}: give more than 0 seconds.")
    if s.get("teardown_delete_data"):
        if s.get("storage") == "hostpath":
            out.append(f"model_store_teardown_delete_data: storage hostpath keeps the model in {s.get('hostpath')} on "
                       "each GPU node, which no teardown Job can reach on every node; delete that folder on the "
                       "nodes, and run without model_store_teardown_delete_data.")
        elif not s.get("fetch_image"):
            out.append("model_store_teardown_delete_data: a Job running model_store_fetch_image deletes the files, "
                       "and it is empty; give the image the download ran.")
        elif ESCAPES.search(_text(s.get("subpath"))):
            out.append(f"model_store_teardown_delete_data: model_store_subpath {_text(s.get('subpath'))} is not a "
                       "folder inside the claim.")
    return out


def remove_revision_refusals(settings: dict) -> list[str]:
    """What remove_revision refuses before it removes anything."""
    s = settings
    previous, current = _text(s.get("previous_subpath")), _text(s.get("subpath"))
    if s.get("storage") == "hostpath":
        why = (f"storage hostpath keeps a copy in {s.get('hostpath')} on each GPU node, which no Job reaches on every "
               f"node; remove {previous} there yourself")
    elif not s.get("fetch_image"):
        why = "a Job running model_store_fetch_image removes the folder, and it is empty"
    elif not previous or ESCAPES.search(previous) or previous.strip("/") == current.strip("/"):
        why = f"the previous folder {json.dumps(previous)} is not another folder inside the volume"
    else:
        return []
    return [f"model_store_remove_previous_revision: {why}. Nothing was removed."]


def fetch_args(s: dict) -> list[str]:
    """The download's arguments (fetch_cli's): no secret is ever among them."""
    args = ["--source", s["source"], "--dest", f"{MOUNT}/{s['subpath']}"]
    for flag, key in (("--model-id", "model_id"), ("--revision", "revision"), ("--endpoint-url", "endpoint_url")):
        if s.get(key):
            args += [flag, _text(s[key])]
    if s["source"] == "s3":
        args += ["--bucket", _text(s.get("s3_bucket")), "--prefix", _text(s.get("s3_prefix"))]
    if s["source"] == "local":
        args += ["--local-path", _text(s.get("local_path"))]
    concurrency = int(s.get("fetch_concurrency") or 0)
    if concurrency > 0:  # left out at 0, so that a Job made before this setting keeps its name
        args += ["--max-concurrency", str(concurrency)]
    args += [f"--allow-pattern={p}" for p in s.get("allow_patterns") or []]
    args += [f"--ignore-pattern={p}" for p in s.get("ignore_patterns") or []]
    return args


def fetch_container(s: dict) -> dict:
    """The container that fetches the model: the download Job's, or an init
    container of each vLLM pod (download init_container)."""
    return {
        "name": "model-fetch",
        "image": s["fetch_image"],
        "command": ["python3", "-m", FETCH_MODULE],
        "args": fetch_args(s),
        "envFrom": [{"secretRef": {"name": s["credentials_secret"]}}],
        "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT}],
        # The fetcher's last lines become the termination message when it fails, so
        # workload_wait can say its own error, not only BackoffLimitExceeded.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def model_volume(s: dict) -> dict:
    """The pods' model volume: the shared claim, or the node's cache folder;
    none with storage per_replica (the claim template makes one a pod)."""
    if s["storage"] == "claim":
        return {"name": VOLUME, "persistentVolumeClaim": {"claimName": s["claim_name"]}}
    if s["storage"] == "hostpath":
        return {"name": VOLUME, "hostPath": {"path": s["hostpath"], "type": "DirectoryOrCreate"}}
    return {}


def claim_template(s: dict) -> dict:
    """The StatefulSet's claim template with storage per_replica, else none."""
    if s["storage"] != "per_replica":
        return {}
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": s["size"]}}}
    if s.get("storage_class"):
        spec["storageClassName"] = s["storage_class"]
    return {"metadata": {"name": VOLUME}, "spec": spec}


def template_hash(container: dict, volume: dict, wait_timeout) -> str:
    """Ten hex digits of the download Job's pod template: the container, the
    volume and the deadline, serialized as Ansible's to_json does (so a Job
    an earlier release made under this name is the same Job)."""
    return hashlib.sha256(json.dumps([container, volume, wait_timeout]).encode()).hexdigest()[:10]


def plan(settings: dict) -> dict:
    """Everything the main entry point applies or exports, from the settings."""
    s = settings
    container, volume = fetch_container(s), model_volume(s)
    digest = template_hash(container, volume, s["wait_timeout"])
    subpath, revision = _text(s["subpath"]), _text(s.get("revision"))
    return {
        "fetch_container": container,
        "volume": volume,
        "claim_template": claim_template(s),
        "job_hash": digest,
        "job_name": f"{s['job_name']}-{digest}",
        "annotations": {SUBPATH_ANNOTATION: subpath, REVISION_ANNOTATION: revision},
        # What the serving role reads once the model is in place (the volume's name is added when known).
        "published": {"namespace": s["namespace"], "storage": s["storage"],
                      "claim": s["claim_name"] if s["storage"] == "claim" else "",
                      "subpath": subpath, "revision": revision, "volume": ""},
    }
