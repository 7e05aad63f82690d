# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gpu_node module's work: select nodes with one LIST, plan each node's
patch (node_patch), send the patches in parallel, report the inventory."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _node_patch as node_patch
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, NotFoundError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._inventory import node_inventory
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import merge_patch, pool_size, request_json

MAX_CONFLICT_RETRIES = 5


def select_nodes(api, names: list[str], label_selector: str | None, allow_missing: bool,
                 timeout: float | None = None) -> tuple[list[dict], list[str]]:
    """Return (nodes, missing names). One LIST, whatever the number of nodes."""
    query = [("labelSelector", label_selector)] if label_selector and not names else []
    listing = request_json(api, "GET", "/api/v1/nodes", query=query, timeout=timeout, action="listing nodes")
    by_name = {n["metadata"]["name"]: n for n in listing.get("items", [])}
    missing = [n for n in names if n not in by_name]
    if missing and not allow_missing:
        known = sorted(by_name)
        raise NotFoundError(
            f"names: node(s) {', '.join(missing)} not found in the cluster; the cluster has "
            f"{len(known)} node(s){': ' + ', '.join(known[:20]) if known else ''}. Fix the names (the Kubernetes "
            "node name may differ from the inventory host name) or set allow_missing: true",
            missing=missing,
        )
    selected = [by_name[n] for n in dict.fromkeys(names) if n in by_name]
    if label_selector and names:
        # Both given: the named nodes plus those the selector matches.
        matching = request_json(api, "GET", "/api/v1/nodes", query=[("labelSelector", label_selector)],
                                timeout=timeout, action="listing nodes")
        seen = {n["metadata"]["name"] for n in selected}
        selected += [n for n in matching.get("items", []) if n["metadata"]["name"] not in seen]
    elif label_selector:
        selected = list(by_name.values())
    return selected, missing


def apply(api, params: dict, check_mode: bool) -> dict:
    names = params.get("names") or []
    selector = params.get("label_selector")
    if not names and not selector:
        raise ParameterError("names or label_selector: give at least one to say which nodes to change or report")
    labels, annotations, taints = node_patch.validate_request(
        params.get("labels") or {}, params.get("annotations") or {}, params.get("taints") or [], params["state"]
    )
    if params.get("parallelism", 16) < 1:
        raise ParameterError(f"parallelism: must be 1 or more, got {params.get('parallelism')}")
    timeout = params.get("request_timeout")
    started = time.monotonic()
    nodes, missing = select_nodes(api, names, selector, params.get("allow_missing", False), timeout)
    if selector and not names and not nodes and (labels or annotations or taints) \
            and not params.get("allow_missing", False):
        raise NotFoundError(f"label_selector: {selector!r} matches no node, so there is no node to change; fix the "
                            f"selector (kubectl get nodes -l '{selector}' lists the same) or set allow_missing: true")

    def work(node: dict) -> tuple[dict, dict]:
        name = node["metadata"]["name"]
        for _attempt in range(MAX_CONFLICT_RETRIES):
            patch, diff = node_patch.plan_node(node, labels, annotations, taints, params["state"])
            if not patch:
                return node, {}
            if "spec" in patch:
                # Taints are replaced as a whole list: make the write conditional
                # on the version we planned from, and re-plan on conflict.
                patch.setdefault("metadata", {})["resourceVersion"] = node["metadata"]["resourceVersion"]
            try:
                result = merge_patch(api, f"/api/v1/nodes/{name}", patch, dry_run=check_mode, timeout=timeout,
                                     action=f"patching node {name}")
                return result, diff
            except ClusterError as exc:
                if exc.details.get("status") != 409:
                    raise
                node = request_json(api, "GET", f"/api/v1/nodes/{name}", timeout=timeout, action=f"reading node {name}")
        raise ClusterError(f"node {name} kept changing under us: gave up after {MAX_CONFLICT_RETRIES} conflicting writes")

    # No more at once than the client keeps connections for: beyond that each
    # request would open (and drop) a connection of its own.
    workers = max(1, min(params.get("parallelism", 16), pool_size(api), len(nodes) or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(work, nodes))

    changed_nodes = [o[0]["metadata"]["name"] for o in outcomes if o[1]]
    result = {
        "changed": bool(changed_nodes),
        "changed_nodes": changed_nodes,
        "missing": missing,
        "nodes": [node_inventory(o[0]) for o in outcomes],
        "elapsed_s": round(time.monotonic() - started, 3),
    }
    if changed_nodes:
        result["diff"] = {
            "before": {o[0]["metadata"]["name"]: o[1]["before"] for o in outcomes if o[1]},
            "after": {o[0]["metadata"]["name"]: o[1]["after"] for o in outcomes if o[1]},
        }
    return result
