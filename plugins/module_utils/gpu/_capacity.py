# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Will N more replicas of a GPU pod fit? One workload of the fleet
placement (_placement): per node, how many replicas its GPUs take by HAMi's
per-GPU rules (the room), and where HAMi's scheduler would put the ones
needed (its node and GPU policies). No I/O: the module reads the objects.

HAMi's rules live in _placement (read from Project-HAMi/HAMi at v2.7.1 and
v2.10.0); the helpers are importable from here as before.
docs/gpu_capacity.md lists them with what is not modelled."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _placement as P
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._placement import (  # noqa: F401 (re-exported)
    CONDITION_TAINTS, DEFAULT_GPU_NUM, FALLBACK_SPLIT_COUNT, FINISHED_PHASES, INT32_MAX, MAX_REPLICAS_PER_NODE,
    SCHEDULING_EFFECTS, TAINT_UNSCHEDULABLE, _integer, _ordinal, _requirement, _stand_in, _take, add_pod_usage,
    allocatable_room, container_request, describe_request, device_allowed, device_fits, extended_requests,
    holds_gpus, matches_required_affinity, memory_needed, node_devices, node_exclusions, node_ready, one_a_node,
    parse_allocation, place_replica, pod_node, pod_spec_of, quantity_int, replica_request, tolerates,
    untolerated_taints,
)

__all__ = [
    "CONDITION_TAINTS", "DEFAULT_GPU_NUM", "FALLBACK_SPLIT_COUNT", "FINISHED_PHASES", "INT32_MAX",
    "MAX_REPLICAS_PER_NODE", "SCHEDULING_EFFECTS", "TAINT_UNSCHEDULABLE", "InsufficientCapacity", "add_pod_usage",
    "allocatable_room", "check", "container_request", "describe_request", "device_allowed", "device_fits",
    "extended_requests", "holds_gpus", "matches_required_affinity", "memory_needed", "message", "node_devices",
    "node_exclusions", "node_ready", "one_a_node", "parse_allocation", "pending_replicas", "place_replica",
    "pod_node", "pod_spec_of", "quantity_int", "replica_request", "tolerates", "untolerated_taints",
    "_integer", "_ordinal", "_requirement", "_stand_in", "_take",
]


class InsufficientCapacity(InferopsError):
    """The new replicas do not fit; ``details`` carry the numbers."""


# --- the check --------------------------------------------------------------

def pending_replicas(pods: list[dict], namespace: str, name: str, current: int) -> list[str]:
    """The StatefulSet's own pods (ordinal below ``current``) that are not on
    a node yet: they need room as much as the new ones."""
    pending = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        owned = any(o.get("kind") == "StatefulSet" and o.get("name") == name for o in meta.get("ownerReferences") or [])
        ordinal = _ordinal(meta.get("name"))
        if meta.get("namespace") == namespace and owned and ordinal is not None and ordinal < current \
                and not pod_node(pod) and (pod.get("status") or {}).get("phase") not in FINISHED_PHASES:
            pending.append(meta["name"])
    return sorted(pending)


def _selector_text(spec: dict) -> str:
    text = ",".join(f"{k}={v}" for k, v in sorted((spec.get("nodeSelector") or {}).items()))
    if ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution"):
        text = f"{text} and the node affinity" if text else "the node affinity"
    return text


def check(template: dict, nodes: list[dict], pods: list[dict], replicas: int, current: int,
          name: str = "", namespace: str = "", group_size: int = 1, hami_version: str = "2.10.0") -> dict:
    """Whether ``replicas`` replicas of ``template`` fit, ``current`` being
    there already, each replica ``group_size`` pods of the template (a
    replica larger than a node). Every pod there counts as used, the
    workload's own included. Returns fits, needed (pods), room, request,
    nodes (per node: room, and new_replicas where HAMi's node and GPU
    policies put the needed pods, _placement) and msg (with the numbers)."""
    spec = pod_spec_of(template)
    requests = replica_request(template)
    annotations = ((template or {}).get("metadata") or {}).get("annotations") or {}
    additional = replicas - current
    pending = pending_replicas(pods, namespace, name, current) if additional > 0 else []
    needed = max(additional, 0) * group_size + len(pending)
    apart = one_a_node(template)
    rules = P.rules_for(hami_version)

    # The cluster with every pod's usage: the workload as a fleet of one whose
    # StatefulSet owns no pod, so its own pods count like any other.
    fleet = P._Fleet(nodes, pods, rules)
    workload = {"name": name or "workload", "namespace": namespace, "template": template, "replicas": needed,
                "statefulset": "\0"}
    w = P._prepare(workload, 0, "binpack", "spread", rules)
    w["apart"] = apart
    state = fleet.base(frozenset())
    excluded = fleet.cluster.exclusions(spec)

    reports = []
    for node_name, node in state.nodes.items():
        matches, reasons = excluded[node_name]
        devices = node.devices
        usable = [d for d in devices if d["health"] and not d["cordoned"]]
        share = requests[0] if requests else None
        report = {"name": node_name, "matches": matches, "excluded": list(reasons), "source": node.source,
                  "gpus": len(devices), "unhealthy_gpus": sum(1 for d in devices if not d["health"]),
                  "pods": node.pods, "new_replicas": 0, "room": 0,
                  "free_gpus": sum(1 for d in usable if d["used"] == 0),
                  "free_memory_mib": sum(max(d["memory_mib"] - d["used_memory_mib"], 0) for d in usable),
                  "usable_gpus": sum(1 for d in devices if share and device_fits(d, share, annotations))}
        reports.append(report)
        if report["excluded"] or not requests:
            continue
        # HAMi's scheduler fits each GPU; kube-scheduler, which runs HAMi as
        # its extender, first bounds the node by its allocatable.
        bound, binding = allocatable_room(node.obj, node.allocated, w["wanted"], node.allocatable)
        if apart is not None:
            # One pod of the workload a node, and none where one is already.
            taken = any(ns == namespace and P._labels_match(labels, apart) for ns, labels, _w in node.holders)
            bound = 0 if taken else min(bound, 1)
            report["one_a_node"] = True
            if taken:
                report["excluded_by_anti_affinity"] = True
        trial = P._copy_devices(devices)

        def walk(devs, request):
            return P.device_walk(devs, request, w["gpu_policy"], rules, w["weights"])

        while report["room"] < bound and place_replica(trial, requests, annotations, walk) is not None:
            report["room"] += 1
        # Named only where it binds: the GPUs would take one more.
        if binding and report["room"] == bound and place_replica(trial, requests, annotations, walk) is not None:
            report["bound_by"] = binding

    room = sum(r["room"] for r in reports)
    if requests and needed > 0:
        by_name = {r["name"]: r for r in reports}
        for position in range(needed):
            node, _gpus, _why = P._place_pod(state, fleet.cluster, w, f"{w['name']}-new-{position}", False)
            if node is None:
                break
            by_name[node.name]["new_replicas"] += 1
    fits = not requests or needed <= 0 or room >= needed
    result = {
        "fits": fits, "replicas": replicas, "current_replicas": current, "additional": max(additional, 0),
        "group_size": group_size,
        "pending": pending, "needed": needed, "room": room, "nodes": reports,
        "request": {"gpus": sum(r["gpus"] for r in requests), "containers": requests,
                    "description": describe_request(requests)},
    }
    result["msg"] = message(result, spec, name, namespace)
    return result


def _node_text(report: dict) -> str:
    if report["excluded"]:
        return f"{report['name']} excluded ({', '.join(report['excluded'])})"
    if report.get("excluded_by_anti_affinity"):
        return f"{report['name']} (0: holds one of its pods already, one a node)"
    detail = f"{report['usable_gpus']} of {report['gpus']} GPUs free"
    if report.get("bound_by"):
        detail += f", allocatable {report['bound_by']} full"
    if report["unhealthy_gpus"]:
        detail += f", {report['unhealthy_gpus']} unhealthy"
    return f"{report['name']} ({report['room']}: {detail})"


def message(result: dict, spec: dict, name: str = "", namespace: str = "") -> str:
    """e.g. 'scale ai/vllm to 6 needs 3 more replicas of 2 GPUs x 40960 MiB;
    the 4 nodes matching gpu=on have room for 1: gpu-a (1: 3 of 8 GPUs
    free), gpu-b (0: 1 of 8 GPUs free), gpu-c excluded (cordoned), ...'"""
    what = f"{namespace}/{name}" if namespace and name else (name or "the workload")
    needed, room, description = result["needed"], result["room"], result["request"]["description"]
    if not result["request"]["containers"]:
        return f"scale {what} to {result['replicas']}: its pods ask for no GPU; nothing to check"
    count = f"{needed} more {'replica' if needed == 1 else 'replicas'}"
    if result.get("group_size", 1) > 1:
        count = (f"{result['additional']} more {'group' if result['additional'] == 1 else 'groups'} of "
                 f"{result['group_size']} pods, one a node ({needed} pods)")
    if result["pending"]:
        count += f" ({result['additional']} new, {len(result['pending'])} Pending now)"
    matching = [r for r in result["nodes"] if r["matches"]]
    with_gpus = [r for r in matching if r["gpus"]]
    selector = _selector_text(spec)
    where = (f"the {len(matching)} {'node' if len(matching) == 1 else 'nodes'}"
             + (f" matching {selector}" if selector else "") + (" has" if len(matching) == 1 else " have"))
    listing = ", ".join(_node_text(r) for r in with_gpus) or "none has GPUs"
    extra = []
    if len(matching) > len(with_gpus) and with_gpus:
        extra.append(f"{len(matching) - len(with_gpus)} without GPUs")
    others = len(result["nodes"]) - len(matching)
    if others and selector:
        extra.append(f"{others} other {'node does' if others == 1 else 'nodes do'} not match")
    tail = f"; {'; '.join(extra)}" if extra else ""
    if needed <= 0:
        return (f"scale {what} to {result['replicas']}: nothing to add ({result['current_replicas']} now); "
                f"{where} room for {room} more of {description}: {listing}{tail}")
    if result["fits"]:
        return (f"scale {what} to {result['replicas']}: {count} of {description} fit; "
                f"{where} room for {room}: {listing}{tail}")
    return f"scale {what} to {result['replicas']} needs {count} of {description}; {where} room for {room}: " \
           f"{listing}{tail}"
