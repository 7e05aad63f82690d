# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet: the models of one inventory (``inferops_models``), each served by
the vllm_serve role and fetched by the model_store role. Pure logic, no I/O.

An entry is the model's ``name`` and any of the two roles' variables, by
their full names (``model_store_source``, ``vllm_serve_replicas``...): the
same variables as the one-model case, per model. From it come:

- the member's role variables, with the names derived from ``name``
  (StatefulSet, Service, Secret) and from its store;
- its store: the download. Entries whose source, model and revision are the
  same share one store (one claim, one download Job, fetched and verified
  once). A store is named after its model (the last part of the model id,
  S3 prefix or local path), so that the name does not depend on the order of
  the list; ``model_store_name`` in an entry names it explicitly.

Without ``inferops_models`` the inventory's variables are the one model, as
before; with it, the variables that name one model's objects may not also be
set for the whole inventory (they would give every model the same names)."""

from __future__ import annotations

import difflib
import re

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import PLAN_FLAGS, hami_resources, parse_args

# What makes two entries the same download.
STORE_IDENTITY = ("model_store_source", "model_store_model_id", "model_store_revision", "model_store_endpoint_url",
                  "model_store_s3_bucket", "model_store_s3_prefix", "model_store_local_path")
# The role defaults of those (roles/model_store/defaults/main.yml), for entries and inventories that leave them out.
STORE_IDENTITY_DEFAULTS = {"model_store_source": "s3"}
# The names of one model's objects: derived per entry in a fleet, so not to be
# set for the whole inventory.
ONE_MODEL_ONLY = ("model_store_name", "model_store_claim_name", "model_store_subpath", "model_store_job_name",
                  "model_store_credentials_secret", "model_store_guard_statefulset", "model_store_teardown_statefulset",
                  "vllm_serve_name", "vllm_serve_served_model_name", "vllm_serve_model_claim", "vllm_serve_model_subpath",
                  "vllm_serve_api_key_secret")
# What fleet_members reads from the inventory (playbooks/fleet.yml asks for
# exactly these; a unit test holds the two together): the identity of a
# download, the storage mode, and the one-model names.
INVENTORY_KEYS = STORE_IDENTITY + ("model_store_storage",) + ONE_MODEL_ONLY
# Derived for every member; an entry gives `name` (and may pin the store's name) instead.
DERIVED = ("vllm_serve_name", "model_store_guard_statefulset", "model_store_teardown_statefulset",
           "vllm_serve_model_claim", "vllm_serve_model_subpath")
# A member's name becomes a StatefulSet name and, for a group, <name>-rank<k>
# (serving/_inputs.py checks the full length once the plan knows the group).
NAME = re.compile(r"^[a-z]([-a-z0-9]{0,46}[a-z0-9])?$")
STORE_NAME_MAX = 40
ROLE_PREFIXES = ("model_store_", "vllm_serve_")


def store_slug(identity: dict) -> str:
    """A store's default name: the last part of what it fetches, as a
    Kubernetes name (lowercase, dashes)."""
    source = identity.get("model_store_source") or "s3"
    where = {"s3": identity.get("model_store_s3_prefix") or identity.get("model_store_s3_bucket"),
             "local": identity.get("model_store_local_path")}.get(source) or identity.get("model_store_model_id") or ""
    last = str(where).rstrip("/").rsplit("/", 1)[-1]
    slug = re.sub(r"[^a-z0-9-]+", "-", last.lower()).strip("-")[:STORE_NAME_MAX].strip("-")
    return slug if slug and slug[0].isalpha() else f"model-{slug}".strip("-")


def _close(key: str, allowed: set[str]) -> str:
    near = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean {near[0]}?)" if near else ""


def members(models, allowed: list[str] | set[str], inventory: dict | None = None, selected: str = "") -> dict:
    """The fleet's members and stores, or ParameterError listing every
    problem. ``allowed``: the roles' variables an entry may set (their
    argument specs); ``inventory``: the store-identity and one-model
    variables the inventory sets for all (``None`` values are unset);
    ``selected``: one member's name (a day-2 run on one model), or empty."""
    inventory = {k: v for k, v in (inventory or {}).items() if v is not None}
    allowed = set(allowed) - set(DERIVED)
    problems = []
    if not isinstance(models, list) or not models:
        raise ParameterError("inferops_models: give a list of models, each a mapping with at least `name` and the "
                             "model's source (model_store_*) and serving (vllm_serve_*) variables")
    clashing = sorted(k for k in ONE_MODEL_ONLY if k in inventory)
    if clashing:
        problems.append(f"inferops_models is set, and so is {', '.join(clashing)} for the whole inventory: in a fleet "
                        "each model's names derive from its entry's `name`; remove them from the inventory (or set "
                        "them in one entry)")
    seen_names, seen_served = {}, {}
    entries = []
    for position, entry in enumerate(models):
        where = f"inferops_models[{position}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: is {type(entry).__name__}, give a mapping with `name`")
            continue
        name = str(entry.get("name") or "")
        if not NAME.match(name):
            problems.append(f"{where}: name {name!r} must be a lowercase DNS label of at most 48 characters starting "
                            "with a letter (it names the StatefulSet, Service and Secret), e.g. chat-small")
        elif name in seen_names:
            problems.append(f"{where}: name {name!r} is also inferops_models[{seen_names[name]}]'s; names must differ")
        else:
            seen_names[name] = position
        where = f"inferops_models[{position}] ({name})" if name else where
        for key in entry:
            if key == "name":
                continue
            if key in DERIVED:
                problems.append(f"{where}: {key} is derived from `name` in a fleet; leave it out")
            elif not key.startswith(ROLE_PREFIXES) or key not in allowed:
                problems.append(f"{where}: {key} is not a variable of the model_store or vllm_serve role{_close(key, allowed)}")
        served = str(entry.get("vllm_serve_served_model_name") or name)
        if served in seen_served:
            problems.append(f"{where}: served model name {served!r} is also inferops_models[{seen_served[served]}]'s; "
                            "clients pick a model by this name, so give each its own (vllm_serve_served_model_name)")
        else:
            seen_served[served] = position
        entries.append((name, entry))
    if problems:
        raise ParameterError("; ".join(problems))

    stores: dict[tuple, dict] = {}
    by_name: dict[str, tuple] = {}
    result = []
    for name, entry in entries:
        identity = {k: entry.get(k, inventory.get(k, STORE_IDENTITY_DEFAULTS.get(k, ""))) for k in STORE_IDENTITY}
        # "models/x/" and "models/x" are the same folder.
        key = tuple(str(identity[k] or "").rstrip("/") for k in STORE_IDENTITY)
        store_name = str(entry.get("model_store_name") or "")
        if key in stores:
            store = stores[key]
            if store_name and store_name != store["name"]:
                problems.append(f"inferops_models ({name}): model_store_name {store_name!r}, but {store['members'][0]} "
                                f"fetches the same model and revision into {store['name']!r}; one download serves both: "
                                "give both the same model_store_name, or leave it out")
                continue
            first = False
        else:
            store_name = store_name or store_slug(identity)
            if store_name in by_name:
                other = stores[by_name[store_name]]
                problems.append(f"inferops_models ({name}): its model would be stored as {store_name!r}, like "
                                f"{other['members'][0]}'s, which is another model or revision; give one of them "
                                "model_store_name (e.g. " + f"{store_name}-2)")
                continue
            store = {"name": store_name, "identity": identity, "members": [], "host": name}
            stores[key] = store
            by_name[store_name] = key
            first = True
        store["members"].append(name)
        # Only a shared claim is fetched once for all; a download into each
        # pod's own volume (per_replica, hostpath) is rendered by each member.
        if str(entry.get("model_store_storage", inventory.get("model_store_storage", "claim"))) != "claim":
            first = True
        claim = entry.get("model_store_claim_name") or f"models-{store['name']}"
        subpath = entry.get("model_store_subpath") or store["name"]
        role_vars = {k: v for k, v in entry.items() if k != "name"}
        role_vars.update({
            "vllm_serve_name": name,
            "vllm_serve_served_model_name": entry.get("vllm_serve_served_model_name") or name,
            "vllm_serve_model_claim": claim,
            "vllm_serve_model_subpath": subpath,
            "model_store_name": store["name"],
            "model_store_guard_statefulset": name,
            "model_store_teardown_statefulset": name,
        })
        result.append({"name": name, "store": store["name"], "fetches": first, "vars": role_vars,
                       "store_members": store["members"]})
    if problems:
        raise ParameterError("; ".join(problems))
    if selected:
        chosen = [m for m in result if m["name"] == selected]
        if not chosen:
            raise ParameterError(f"inferops_model: {selected!r} is not in inferops_models (its models: "
                                 f"{', '.join(m['name'] for m in result)})")
        # A day-2 run on one model: its store is fetched by it (scale, upgrade, teardown of that model only).
        chosen[0]["fetches"] = True
        result = chosen
    return {"members": result,
            "stores": [{"name": s["name"], "members": s["members"], "identity": s["identity"]} for s in stores.values()]}


def one_model(selected: str = "", name: str = "") -> dict:
    """The one-model case (no inferops_models): the inventory's variables are
    the member; ``inferops_model`` may name it (its vllm_serve_name) or be empty."""
    if selected and name and selected != name:
        raise ParameterError(f"inferops_model: {selected!r}, but this inventory serves one model, {name!r} "
                             "(vllm_serve_name); leave inferops_model out, or list the models in inferops_models")
    return {"members": [{"name": name, "store": "", "fetches": True, "vars": {}}], "stores": []}


# --- what each model asks of the GPUs, for the placement -------------------

def _pipeline_parallel(extra_args) -> int:
    """--pipeline-parallel-size (or -pp) among the extra args, read by the
    serving plan's own parser; 1 when not given."""
    sizes = [value for flag, value in parse_args(extra_args)
             if PLAN_FLAGS.get(flag) == "pipeline_parallel_size" and value is not None]
    return int(sizes[-1]) if sizes else 1


def workload(request: dict) -> dict:
    """One model as the placement reads it: the pod template its StatefulSet
    will have (GPU limits, GPU-type annotation, nodeSelector, tolerations,
    one pod a node for a group), its replicas and pods a replica, and the
    smallest slice it could serve in (for the suggestions). From the serving
    plan when it ran (``request['plan']``), else from the GPUs given."""
    name = request["name"]
    plan = request.get("plan") or {}
    slice_mib = int(request.get("gpu_memory_request_mib") or 0)
    card_mib = int(request.get("gpu_memory_mib") or 0)
    if plan:
        limits = dict((plan.get("resources") or {}).get("limits") or {})
        annotations = dict(plan.get("annotations") or {})
        nodes = int((plan.get("group") or {}).get("nodes") or 1)
    else:
        tp = int(request.get("tensor_parallel_size") or 0)
        if tp <= 0:
            raise ParameterError(
                f"{name}: vllm_serve_tensor_parallel_size is 0 (the serving plan chooses it from the model's "
                "config.json), and the config is not at hand before the first download; give the GPUs of a replica "
                "(vllm_serve_tensor_parallel_size), or the config (vllm_serve_model_config), so that the fleet can be "
                "placed before anything is fetched")
        gpus = tp * _pipeline_parallel(request.get("extra_args"))
        per_node = int(request.get("gpus_per_node") or 8)
        nodes = -(-gpus // per_node)
        pod_gpus = gpus // nodes if gpus % nodes == 0 else gpus
        limits, annotations = hami_resources(pod_gpus, slice_mib if 0 < slice_mib < card_mib or not card_mib else None,
                                             request.get("gpu_cores_percent"), request.get("gpu_types"))
    selector = dict(request.get("selector") or {})
    spec = {"nodeSelector": dict(request.get("node_selector") or {}),
            "tolerations": list(request.get("tolerations") or []),
            "containers": [{"name": "vllm", "resources": {"limits": limits, "requests": dict(limits)}}]}
    if nodes > 1:
        spec["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}]}}
    return {"name": name, "namespace": request["namespace"], "statefulset": name,
            "template": {"metadata": {"labels": selector, "annotations": annotations}, "spec": spec},
            "replicas": int(request.get("replicas") or 0), "group_size": nodes,
            "min_memory_mib": smallest_slice_mib(plan) if plan and "nvidia.com/gpumem" in limits else None}


def smallest_slice_mib(plan: dict) -> int | None:
    """The smallest slice (MiB a GPU) in which the plan's vLLM still holds one
    sequence of its max_model_len: weights and overheads a GPU plus that
    sequence's KV cache, over the memory utilization. None when the plan
    does not say."""
    memory = plan.get("memory") or {}
    try:
        fixed_gib = float(memory["weights_per_gpu_gib"]) + float(memory["overhead_per_gpu_gib"])
        kv_bytes = float(memory["kv_bytes_per_token_per_gpu"]) * int(plan.get("max_model_len") or 0)
        util = float(memory.get("gpu_memory_utilization") or 0.9)
    except (KeyError, TypeError, ValueError):
        return None
    return int(-(-(fixed_gib * 1024 + kv_bytes / 2 ** 20) // util))
