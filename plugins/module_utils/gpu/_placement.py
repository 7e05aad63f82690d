# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HAMi's rules in one place, and the fleet placement built on them: where
HAMi's scheduler puts every replica of every model of a fleet, one pod after
another, by its node policy and GPU policy, from the objects read (nodes,
pods, pod templates). No I/O. _capacity.check (one workload) is built on
this module.

The per-GPU rules are read from Project-HAMi/HAMi at v2.7.1 and v2.10.0 (the
same in both unless said); the scheduling policies differ between the two
and are cited where they are implemented (HAMI_RULES). docs/gpu_capacity.md,
"Fleet placement", lists them with what is not modelled."""

from __future__ import annotations

import json
import re
import struct

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _labels as L
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._inventory import parse_hami_register

# Pods in these phases hold no GPU (HAMi: util.IsPodInTerminatedState,
# pkg/util/util.go, drops them from its usage cache).
FINISHED_PHASES = ("Succeeded", "Failed")
# The pods that hold GPUs, as a field selector: every one not finished.
UNFINISHED_SELECTOR = ",".join(f"status.phase!={phase}" for phase in FINISHED_PHASES)
# kube-scheduler's TaintToleration filter looks only at these effects
# (pkg/scheduler/framework/plugins/tainttoleration/taint_toleration.go, Filter).
SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")
# The taints the node lifecycle controller adds for a cordoned or a NotReady
# node: reported as "cordoned"/"NotReady", not again as taints.
TAINT_UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
CONDITION_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
# HAMi's chart defaults (charts/hami/templates/scheduler/device-configmap.yaml):
# defaultMemory 0 (no memory asked: the whole device's), defaultCores 0,
# defaultGPUNum 1 (a container with gpumem/gpucores and no gpu count gets 1).
DEFAULT_GPU_NUM = 1
# A node without HAMi's registration: the plain device plugin hands out whole
# GPUs, one container each.
FALLBACK_SPLIT_COUNT = 1
INT32_MAX = 2 ** 31 - 1
# Bound on the replicas counted per node (a request of tiny slices on many
# GPUs could otherwise count for long); more than any node holds.
MAX_REPLICAS_PER_NODE = 1024

_SUFFIXES = {"": 1, "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18,
             "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_QUANTITY = re.compile(r"\s*\+?(\d+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?\s*")


def quantity_int(value) -> int | None:
    """A whole-number Kubernetes quantity ("4", "1k", 4) as an int, or None
    when it is not one (extended resources must be whole numbers)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    match = _QUANTITY.fullmatch(str(value))
    if not match:
        return None
    return int(match.group(1)) * _SUFFIXES[match.group(2) or ""]


def _resource(container: dict, name: str, limits_only: bool = False):
    # GenerateResourceRequests (pkg/device/nvidia/device.go) reads each
    # resource from the limits, then from the requests.
    resources = container.get("resources") or {}
    for part in ("limits",) if limits_only else ("limits", "requests"):
        values = resources.get(part) or {}
        if name in values:
            return values[name]
    return None


def container_request(container: dict, where: str = "") -> dict | None:
    """What HAMi makes of one container's resources, or None when it asks
    for no GPU. Per GPU: memory_mib (nvidia.com/gpumem) or
    memory_percentage (nvidia.com/gpumem-percentage; 100 when neither is
    given), and cores (nvidia.com/gpucores).

    HAMi at v2.7.1 and v2.10.0, pkg/device/nvidia/device.go:
    - GenerateResourceRequests: with no gpumem and no gpumem-percentage, the
      percentage is 100 (chart defaultMemory 0): the whole device's memory;
      a percentage above 100 is 100, 0 or less is ignored; gpumem wins over a
      percentage (Fit uses the percentage only when Memreq is 0).
    - defaultExclusiveCoreIfNeeded (the admission webhook): a container with
      a gpu count, no gpucores and no gpumem (or gpumem-percentage 100) gets
      gpucores 100, the device to itself; otherwise cores default to the
      chart's defaultCores, 0.
    - mutateContainerResource: gpumem/gpucores in the limits without a gpu
      count get defaultGPUNum, 1.
    - Fit: gpucores above 100 count as 100."""
    label = where or container.get("name") or "container"

    def number(name: str, limits_only: bool = False) -> int | None:
        raw = _resource(container, name, limits_only)
        if raw is None:
            return None
        value = quantity_int(raw)
        if value is None or value < 0:
            raise ParameterError(f"{label}: {name} is {raw!r}; HAMi reads it as a whole number (e.g. "
                                 f"{'40960' if name == L.RESOURCE_GPUMEM else '1'})")
        return value

    gpus = number(L.RESOURCE_GPU)
    if gpus is None:
        if any(_resource(container, n, limits_only=True) is not None
               for n in (L.RESOURCE_GPUMEM, L.RESOURCE_GPUMEM_PERCENTAGE, L.RESOURCE_GPUCORES)):
            gpus = DEFAULT_GPU_NUM
        else:
            return None
    if gpus <= 0:
        return None
    memory = number(L.RESOURCE_GPUMEM)
    if memory is not None and memory > INT32_MAX:
        raise ParameterError(f"{label}: {L.RESOURCE_GPUMEM} is {memory}, beyond what HAMi accepts (it is MiB per GPU, "
                             "at most 2147483647; HAMi refuses the request); give MiB, e.g. 40960 for 40 GiB")
    percentage = number(L.RESOURCE_GPUMEM_PERCENTAGE)
    exclusive = (percentage == 100) if percentage is not None else memory is None
    if percentage is not None:
        percentage = min(percentage, 100) if percentage > 0 else None
    if memory:
        percentage = None
    else:
        memory = None
        if percentage is None:
            percentage = 100
    cores = number(L.RESOURCE_GPUCORES)
    if cores is None:
        cores = 100 if exclusive else 0
    return {"container": container.get("name"), "gpus": gpus, "memory_mib": memory,
            "memory_percentage": percentage, "cores": min(cores, 100)}


def pod_spec_of(template: dict) -> dict:
    """The pod spec of a template ({metadata, spec}) or of a bare pod spec."""
    template = template or {}
    if "containers" in template:
        return template
    return template.get("spec") or {}


def replica_request(template: dict, what: str = "pod_template") -> list[dict]:
    """The GPU requests of one replica, one per container that asks for GPUs
    (the app containers; HAMi places each in turn)."""
    spec = pod_spec_of(template)
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise ParameterError(f"{what}: no spec.containers; give the StatefulSet's spec.template (metadata and spec)")
    requests = []
    for position, container in enumerate(containers):
        if not isinstance(container, dict):
            raise ParameterError(f"{what}: spec.containers[{position}] is not a mapping")
        request = container_request(container, f"{what}: container {container.get('name') or position}")
        if request:
            requests.append(request)
    return requests


def describe_request(requests: list[dict]) -> str:
    """'4 whole GPUs', '2 GPUs x 40960 MiB', '1 GPU x 50% memory, 30% cores'."""
    parts = []
    for r in requests:
        gpus = f"{r['gpus']} {'GPU' if r['gpus'] == 1 else 'GPUs'}"
        if r["memory_percentage"] == 100 and r["cores"] == 100:
            parts.append(f"{r['gpus']} whole {'GPU' if r['gpus'] == 1 else 'GPUs'}")
            continue
        text = f"{gpus} x {r['memory_mib']} MiB" if r["memory_mib"] else f"{gpus} x {r['memory_percentage']}% memory"
        if r["cores"]:
            text += f", {r['cores']}% cores"
        parts.append(text)
    return " + ".join(parts) if parts else "no GPU"


# --- a node's GPUs ---------------------------------------------------------

def node_devices(node: dict) -> tuple[list[dict], str | None]:
    """(devices, source): from HAMi's hami.io/node-nvidia-register (either
    format, parse_hami_register), else from status.allocatable nvidia.com/gpu
    with the memory of the label nvidia.com/gpu.memory (0 when absent: then
    only whole-GPU and percentage requests can fit)."""
    meta = node.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    cordoned = {u.strip() for u in str(annotations.get(L.HAMI_DEVICE_CORDON_ANNOTATION) or "").split(",") if u.strip()}
    registered = parse_hami_register(annotations.get(L.HAMI_REGISTER_ANNOTATION))
    if registered:
        devices = [{
            "id": d["id"], "index": d["index"], "type": d["type"], "health": d["health"],
            "cordoned": d["id"] in cordoned, "split_count": d["split_count"], "memory_mib": d["memory_mib"],
            "cores": d["cores"], "numa": d["numa"], "used": 0, "used_memory_mib": 0, "used_cores": 0,
        } for d in registered]
        return devices, "hami-register"
    count = quantity_int(((node.get("status") or {}).get("allocatable") or {}).get(L.RESOURCE_GPU)) or 0
    if count <= 0:
        return [], None
    memory = quantity_int(labels.get(L.GPU_MEMORY_LABEL)) or 0
    product = labels.get(L.GPU_PRODUCT_LABEL) or ""
    return [{
        "id": f"{meta.get('name')}/{i}", "index": i, "type": product, "health": True, "cordoned": False,
        "split_count": FALLBACK_SPLIT_COUNT, "memory_mib": memory, "cores": 100, "numa": 0,
        "used": 0, "used_memory_mib": 0, "used_cores": 0,
    } for i in range(count)], "allocatable"


def _listed(annotations: dict, key: str, matches) -> bool | None:
    raw = str(annotations.get(key) or "")
    if not raw.strip():
        return None  # an empty value is no constraint
    return any(matches(item.strip()) for item in raw.split(",") if item.strip())


def device_allowed(annotations: dict, device: dict) -> bool:
    """The pod's GPU type and UUID annotations (HAMi v2.10.0,
    pkg/device/devices.go CheckType: case-insensitive substring of the
    device type; CheckUUID: exact UUID; an empty value is no constraint)."""
    kind = str(device.get("type") or "").upper()

    def type_match(item):
        return item.upper() in kind

    def uuid_match(item):
        return item == device.get("id")

    if _listed(annotations, L.HAMI_USE_GPUTYPE, type_match) is False:
        return False
    if _listed(annotations, L.HAMI_NOUSE_GPUTYPE, type_match):
        return False
    if _listed(annotations, L.HAMI_USE_GPUUUID, uuid_match) is False:
        return False
    return not _listed(annotations, L.HAMI_NOUSE_GPUUUID, uuid_match)


def memory_needed(request: dict, device: dict) -> int:
    # Fit: Memreq when given, else Totalmem * MemPercentagereq / 100 (integer division).
    if request["memory_mib"]:
        return request["memory_mib"]
    return device["memory_mib"] * request["memory_percentage"] // 100


def device_refusal(device: dict, request: dict, annotations: dict | None = None) -> str | None:
    """Why ``device`` cannot take one GPU share of ``request`` (None: it
    can), checked in the order of HAMi's NvidiaGPUDevices.Fit
    (pkg/device/nvidia/device.go, v2.7.1 and v2.10.0): healthy, not cordoned
    (v2.10.0), type/UUID allowed, fewer tasks than the split count
    (Count <= Used: CardTimeSlicingExhausted), enough free memory and cores,
    gpucores 100 only on a device with no task (exclusive), and gpucores 0
    not on a device whose cores are all taken."""
    if not device["health"]:
        return "unhealthy"
    if device["cordoned"]:
        return "cordoned"
    if annotations and not device_allowed(annotations, device):
        return "type/UUID not allowed"
    if device["split_count"] <= device["used"]:
        return "split count"
    if device["memory_mib"] - device["used_memory_mib"] < memory_needed(request, device):
        return "memory"
    if device["cores"] - device["used_cores"] < request["cores"]:
        return "cores"
    if device["cores"] == 100 and request["cores"] == 100 and device["used"] > 0:
        return "exclusive (in use)"
    if device["cores"] != 0 and device["used_cores"] == device["cores"] and request["cores"] == 0:
        return "cores all taken"
    return None


def device_fits(device: dict, request: dict, annotations: dict | None = None) -> bool:
    """One GPU share of ``request`` fits on ``device`` (device_refusal)."""
    return device_refusal(device, request, annotations) is None


def _take(device: dict, memory: int, cores: int) -> None:
    # AddResourceUsage / getNodesUsage: one task, its memory and cores.
    device["used"] += 1
    device["used_memory_mib"] += memory
    device["used_cores"] += cores


def place_replica(devices: list[dict], requests: list[dict], annotations: dict | None = None,
                  order=None) -> list[tuple[dict, int, int]] | None:
    """Place one pod (each GPU container in turn, each on ``gpus`` distinct
    devices); commit and return what each device took, (device, MiB, cores)
    per GPU share, or None (devices left as they were) when it does not
    fit. ``order(devices, request)`` gives the devices in the order HAMi's
    Fit walks them (device_walk); None walks them as listed (first fit)."""
    before = [(d["used"], d["used_memory_mib"], d["used_cores"]) for d in devices]
    taken = []
    for request in requests:
        chosen = []
        for device in (order(devices, request) if order else devices):
            if len(chosen) == request["gpus"]:
                break
            if device_fits(device, request, annotations):
                chosen.append(device)
        if len(chosen) < request["gpus"]:
            for device, used in zip(devices, before):
                device["used"], device["used_memory_mib"], device["used_cores"] = used
            return None
        for device in chosen:
            memory = memory_needed(request, device)
            _take(device, memory, request["cores"])
            taken.append((device, memory, request["cores"]))
    return taken


def _stand_in(devices: list[dict], requests: list[dict], annotations: dict) -> list[tuple[dict, int, int]]:
    """A pod HAMi has not annotated (the sandbox has no HAMi scheduler): put
    its request where it fits first; what does not fit still goes on the
    least used devices, since the pod holds those GPUs all the same."""
    taken = []
    for request in requests:
        chosen = [d for d in devices if device_fits(d, request, annotations)][:request["gpus"]]
        if len(chosen) < request["gpus"]:
            rest = sorted((d for d in devices if d not in chosen), key=lambda d: (not d["health"], d["used"]))
            chosen += rest[:request["gpus"] - len(chosen)]
        for device in chosen:
            memory = memory_needed(request, device)
            _take(device, memory, request["cores"])
            taken.append((device, memory, request["cores"]))
    return taken


def parse_allocation(value: str | None) -> list[list[dict]]:
    """HAMi's hami.io/vgpu-devices-allocated: per container (each followed
    by ';'), per GPU 'UUID,Type,usedmem,usedcores:' (EncodePodSingleDevice /
    EncodeContainerDevices, read back by DecodePodDevices /
    DecodeContainerDevices, pkg/device/devices.go, v2.7.1 and v2.10.0).
    Raises ValueError on a malformed entry, as DecodeContainerDevices does."""
    if not value:
        return []
    containers = []
    for chunk in str(value).split(";"):
        gpus = []
        for item in chunk.split(":"):
            if "," not in item:
                continue
            fields = item.split(",")
            if len(fields) < 4:
                raise ValueError(f"allocation entry {item!r} has fewer than 4 fields")
            gpus.append({"uuid": fields[0], "type": fields[1], "memory_mib": int(fields[2]),
                         "cores": int(fields[3])})
        containers.append(gpus)
    while containers and not containers[-1]:
        containers.pop()  # the ';' after the last container
    return containers


def extended_requests(spec: dict) -> dict[str, int]:
    """The extended resources (nvidia.com/*) a pod asks for, summed over its
    containers: what kube-scheduler's NodeResourcesFit filter counts
    against the node's allocatable (pkg/scheduler/framework/plugins/
    noderesources/fit.go; for extended resources, requests equal limits)."""
    total: dict[str, int] = {}
    for container in spec.get("containers") or []:
        resources = container.get("resources") or {}
        for name, value in {**(resources.get("requests") or {}), **(resources.get("limits") or {})}.items():
            if name.startswith("nvidia.com/") and quantity_int(value):
                total[name] = total.get(name, 0) + quantity_int(value)
    return total


def allocatable_room(node: dict, used: dict[str, int], wanted: dict[str, int],
                     allocatable: dict[str, int] | None = None) -> tuple[int, str | None]:
    """How many more pods asking ``wanted`` the node's allocatable leaves
    room for, after ``used``, and the resource that binds (None: no bound).
    Only the resources the node advertises bound it: HAMi's device plugin
    advertises nvidia.com/gpu (one device ID per share, which the kubelet
    hands out at admission), while gpumem and gpucores are its scheduler's
    alone (the chart's scheduler config lists them as managed resources the
    kube-scheduler ignores). ``allocatable``: node_allocatable(node), when
    read already."""
    if allocatable is None:
        allocatable = node_allocatable(node)
    room, binding = MAX_REPLICAS_PER_NODE, None
    for name, amount in sorted(wanted.items()):
        if name not in allocatable:
            continue
        fits = max(allocatable[name] - used.get(name, 0), 0) // amount
        if fits < room:
            room, binding = fits, name
    return room, binding


def node_allocatable(node: dict) -> dict[str, int]:
    """The node's status.allocatable, as whole numbers."""
    return {k: quantity_int(v) or 0 for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()}


def pod_node(pod: dict) -> str | None:
    """Where the pod is: spec.nodeName, or HAMi's hami.io/vgpu-node for a pod
    HAMi has assigned and the binding has not reached yet."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return (pod.get("spec") or {}).get("nodeName") or annotations.get(L.HAMI_ASSIGNED_NODE_ANNOTATION)


def holds_gpus(pod: dict) -> bool:
    return ((pod.get("status") or {}).get("phase") not in FINISHED_PHASES) and bool(pod_node(pod))


def add_pod_usage(devices: list[dict], pod: dict) -> str | None:
    """Count a running (or assigned) pod on its node's devices. Returns how:
    'allocation' (HAMi's annotation, exactly), 'stand-in' (its request placed
    first fit), or None (it asks for no GPU)."""
    return pod_usage(devices, pod)[0]


def pod_usage(devices: list[dict], pod: dict) -> tuple[str | None, list[tuple[dict, int, int]]]:
    """add_pod_usage, with what each device took: (how, [(device, MiB, cores)])."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    by_id = {d["id"]: d for d in devices}
    try:
        allocation = parse_allocation(annotations.get(L.HAMI_ALLOCATED_ANNOTATION))
    except ValueError:
        allocation = []
    entries = [g for container in allocation for g in container]
    if entries and any(g["uuid"] in by_id for g in entries):
        taken = []
        for g in entries:
            if g["uuid"] in by_id:  # HAMi skips an unknown or stale UUID too
                _take(by_id[g["uuid"]], g["memory_mib"], g["cores"])
                taken.append((by_id[g["uuid"]], g["memory_mib"], g["cores"]))
        return "allocation", taken
    try:
        requests = replica_request(pod.get("spec") or {}, "pod")
    except ParameterError:
        return None, []  # a pod the API took but HAMi would not read: it holds no HAMi GPU
    if not requests:
        return None, []
    return "stand-in", _stand_in(devices, requests, annotations)


# --- may the pod go to the node? --------------------------------------------

def tolerates(toleration: dict, taint: dict) -> bool:
    """Kubernetes' Toleration.ToleratesTaint (k8s.io/api core/v1
    toleration.go, v0.35 to v0.36): an empty effect matches every effect; an
    empty key matches every key (operator Exists); Exists matches any value;
    Equal (or no operator) needs the same value; Lt/Gt compare integers
    (taint value < or > toleration value)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    if operator == "Exists":
        return True
    if operator in ("Lt", "Gt"):
        mine, theirs = _integer(toleration.get("value")), _integer(taint.get("value"))
        if mine is None or theirs is None:
            return False
        return theirs < mine if operator == "Lt" else theirs > mine
    return False


def _integer(value) -> int | None:
    text = str(value if value is not None else "")
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def untolerated_taints(node: dict, tolerations: list[dict]) -> list[dict]:
    """The node's NoSchedule/NoExecute taints no toleration tolerates."""
    return [t for t in (node.get("spec") or {}).get("taints") or []
            if t.get("effect") in SCHEDULING_EFFECTS and not any(tolerates(tol, t) for tol in tolerations or [])]


def _requirement(requirement: dict, present: bool, value) -> bool:
    # NodeSelectorRequirement (k8s.io/api core/v1 types.go): In, NotIn,
    # Exists, DoesNotExist, Gt, Lt (one value, an integer).
    operator, values = requirement.get("operator"), [str(v) for v in requirement.get("values") or []]
    if operator == "In":
        return present and str(value) in values
    if operator == "NotIn":
        return not present or str(value) not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(values) == 1:
        mine, theirs = _integer(values[0]), _integer(value)
        if mine is None or theirs is None:
            return False
        return theirs > mine if operator == "Gt" else theirs < mine
    return False


def matches_required_affinity(spec: dict, node: dict) -> bool:
    """requiredDuringSchedulingIgnoredDuringExecution: the terms are ORed; in
    a term the requirements are ANDed; an empty term matches nothing
    (k8s.io/api core/v1 types.go, NodeSelector and NodeSelectorTerm)."""
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if not required:
        return True
    meta = node.get("metadata") or {}
    labels = meta.get("labels") or {}
    fields = {"metadata.name": meta.get("name")}
    for term in required.get("nodeSelectorTerms") or []:
        expressions, by_field = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not expressions and not by_field:
            continue
        if all(_requirement(r, r.get("key") in labels, labels.get(r.get("key"))) for r in expressions) and \
                all(_requirement(r, r.get("key") in fields, fields.get(r.get("key"))) for r in by_field):
            return True
    return False


def node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def node_exclusions(node: dict, spec: dict) -> tuple[bool, list[str]]:
    """(matches, reasons): whether the node matches the pod's nodeSelector and
    required node affinity, and each reason it cannot take the pod."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    selector = spec.get("nodeSelector") or {}
    reasons = []
    if any(labels.get(k) != str(v) for k, v in selector.items()):
        reasons.append("nodeSelector")
    if not matches_required_affinity(spec, node):
        reasons.append("node affinity")
    matches = not reasons
    tolerations = spec.get("tolerations") or []
    ready = node_ready(node)
    if not ready:
        reasons.append("NotReady")
    # NodeUnschedulable filter (pkg/scheduler/framework/plugins/nodeunschedulable):
    # a pod that tolerates the unschedulable taint may go to a cordoned node.
    cordoned = bool((node.get("spec") or {}).get("unschedulable")) and not any(
        tolerates(t, {"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}) for t in tolerations)
    if cordoned:
        reasons.append("cordoned")
    for taint in untolerated_taints(node, tolerations):
        if (cordoned and taint.get("key") == TAINT_UNSCHEDULABLE) or (not ready and taint.get("key") in CONDITION_TAINTS):
            continue
        value = f"={taint['value']}" if taint.get("value") else ""
        reasons.append(f"taint {taint.get('key')}{value}:{taint.get('effect')}")
    return matches, reasons


def _ordinal(name: str) -> int | None:
    match = re.search(r"-(\d+)$", name or "")
    return int(match.group(1)) if match else None


def one_a_node(template: dict) -> dict | None:
    """The labels of a required pod anti-affinity on kubernetes.io/hostname
    that the template's own pods match: the scheduler's InterPodAffinity
    filter then puts at most one such pod on a node. Read: matchLabels terms
    in the pod's own namespace (what vllm_serve renders for a group of pods);
    other terms are not modelled."""
    labels = ((template or {}).get("metadata") or {}).get("labels") or {}
    terms = (((pod_spec_of(template).get("affinity") or {}).get("podAntiAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    for term in terms:
        selector = term.get("labelSelector") or {}
        wanted = selector.get("matchLabels") or {}
        if term.get("topologyKey") == "kubernetes.io/hostname" and wanted and not selector.get("matchExpressions") \
                and not term.get("namespaces") and not term.get("namespaceSelector") \
                and all(labels.get(k) == str(v) for k, v in wanted.items()):
            return wanted
    return None


# --- HAMi's scheduling policies ----------------------------------------------
#
# Where HAMi's scheduler puts a pod (Project-HAMi/HAMi, both tags unless said):
# - pkg/scheduler/scheduler.go, Filter (the kube-scheduler extender's filter):
#   getNodesUsage, calcScore, sort.Sort(nodeScores) and the LAST node of the
#   sorted list is the only one returned (ExtenderFilterResult.NodeNames =
#   [m.NodeID]); the pod is annotated with that node and its devices. So
#   HAMi, not kube-scheduler, picks the node, among the nodes kube-scheduler's
#   own filters passed to it (taints, selectors, NodeResourcesFit, ...).
# - pkg/scheduler/score.go, calcScore: per node, ComputeDefaultScore on the
#   usage before the pod, then fitInDevices per container, then
#   OverrideScore, which adds each device type's ScoreNode; NVIDIA's
#   ScoreNode returns 0 (pkg/device/nvidia/device.go) at both tags, and at
#   v2.10.0 it does not implement policyNeutralScorer, so nothing is added.
# - pkg/scheduler/policy/node_policy.go, ComputeDefaultScore: over all the
#   node's devices, Weight (10) * (sum Used / sum Count + sum Usedcores /
#   sum Totalcore + sum Usedmem / sum Totalmem), float32; v2.10.0 returns 0
#   when a total is 0. NodeScoreList.Less: spread sorts by score descending,
#   anything else (binpack, the default) ascending; the last is taken, so
#   binpack takes the highest score (the most used node), spread the lowest.
#   Equal scores: the node list is filled by one goroutine per node from a
#   map, so HAMi's order among equal scores is not defined; here the node
#   whose name sorts first wins.
# - score.go fitInDevices: per container request, DeviceListsScore.ComputeScore
#   for every device (gpu_policy.go), sort.Sort(node.Devices), then the
#   vendor's Fit, which walks the sorted list from the END
#   (`for i := len(devices) - 1; i >= 0; i--`, device.go Fit) and takes the
#   first devices that fit. Go's sort.Sort is an insertion sort (stable) up
#   to 12 elements, so equal devices keep the order of the node's register
#   (here: by index), and the walk meets the highest index first.
# - gpu_policy.go ComputeScore, v2.7.1: request = the container's Nums,
#   core = Coresreq, mem = Memreq, or for a percentage Totalmem *
#   (MemPercentagereq / 100) in integer arithmetic (so a whole GPU's 100 %
#   counts the device's memory and a smaller percentage 0); score = Weight *
#   ((request + Used) / Count + (core + Usedcores) / Totalcore + (mem +
#   Usedmem) / Totalmem). v2.10.0: a request counts only on a device whose
#   Type equals the request's type ("NVIDIA"), and then as 1 slot and
#   Totalmem * MemPercentagereq / 100; the register's type is the bare model
#   name from v2.8.0 ("NVIDIA H100 80GB HBM3"), so for NVIDIA GPUs the score
#   is the device's usage before the pod alone; each part has a weight
#   (hami.io/device-scoring-weights, slot=,core=,memory=; 1 each by default);
#   a device with Count, Totalcore or Totalmem 0 scores 0.
# - gpu_policy.go DeviceUsageList.Less, v2.7.1: NUMA first (binpack: higher
#   NUMA node sorts first; spread: lower first), then the score (binpack
#   ascending, spread descending). v2.10.0 (one policy, no numa-bind): the
#   score first (binpack ascending, spread descending), the NUMA node
#   ascending on a tie. The walk from the end thus meets, for binpack, the
#   most used device first, for spread the least used.
# - The policies: the chart's scheduler.defaultSchedulerPolicy
#   nodeSchedulerPolicy binpack, gpuSchedulerPolicy spread (values.yaml,
#   both tags), overridden per pod by hami.io/node-scheduler-policy and
#   hami.io/gpu-scheduler-policy (score.go calcScore /
#   resolveNodeSchedulerPolicy; util.GetGPUSchedulerPolicyByPod).

HAMI_RULES = ("2.7.1", "2.10.0")
NODE_POLICIES = ("binpack", "spread")
GPU_POLICIES = ("binpack", "spread")
WEIGHT = 10  # policy.Weight (v2.7.1 constant.go), util.Weight (v2.10.0)
DEVICE_SCORING_WEIGHTS = "hami.io/device-scoring-weights"  # v2.10.0 pkg/util/types.go
NVIDIA_REQUEST_TYPE = "NVIDIA"  # nvidia.NvidiaGPUDevice, the type of every NVIDIA request
_F32 = struct.Struct("f")


def _f32(value: float) -> float:
    # Go's float32 arithmetic: each operation rounded to float32 (rounding a
    # float64 +, -, *, / result to float32 gives the float32 operation's result).
    return _F32.unpack(_F32.pack(value))[0]


def rules_for(hami_version) -> str:
    """The HAMi release whose placement rules apply, 2.7.1 or 2.10.0: the
    nearest of the two (older than 2.7.1: 2.7.1; newer than 2.10.0: 2.10.0;
    between, by the minor version, an equal distance going to the newer)."""
    from ansible_collections.inferops.vllm.plugins.module_utils.gpu._hami import parse_version

    wanted = parse_version(hami_version, "hami_version")
    oldest, newest = parse_version(HAMI_RULES[0]), parse_version(HAMI_RULES[-1])
    if wanted <= oldest:
        return HAMI_RULES[0]
    if wanted >= newest:
        return HAMI_RULES[-1]
    return HAMI_RULES[0] if wanted[1] - oldest[1] < newest[1] - wanted[1] else HAMI_RULES[-1]


def node_score(devices: list[dict], rules: str = "2.10.0") -> float:
    """HAMi's node score before the pod (ComputeDefaultScore, above)."""
    used = cores = memory = total = total_cores = total_memory = 0
    for d in devices:
        used += d["used"]
        cores += d["used_cores"]
        memory += d["used_memory_mib"]
        total += d["split_count"]
        total_cores += d["cores"]
        total_memory += d["memory_mib"]
    if not total or not total_cores or not total_memory:
        return 0.0  # v2.10.0's guard; at v2.7.1 such a node holds no device a pod could fit on
    parts = _f32(_f32(used / total) + _f32(cores / total_cores))
    return _f32(WEIGHT * _f32(parts + _f32(memory / total_memory)))


_SCORES: dict = {}  # device_score's results: many devices and pods look alike


def device_score(device: dict, request: dict, rules: str = "2.10.0", weights: tuple = (1, 1, 1)) -> float:
    """HAMi's score of one device for one container's request (ComputeScore, above)."""
    key = (device["split_count"], device["cores"], device["memory_mib"], device["used"], device["used_cores"],
           device["used_memory_mib"], device.get("type") == NVIDIA_REQUEST_TYPE, request["gpus"],
           request["memory_mib"], request["memory_percentage"], request["cores"], rules, weights)
    score = _SCORES.get(key)
    if score is None:
        if len(_SCORES) > 100000:
            _SCORES.clear()
        score = _SCORES[key] = _device_score(device, request, rules, weights)
    return score


def _device_score(device: dict, request: dict, rules: str, weights: tuple) -> float:
    count, total_cores, total_memory = device["split_count"], device["cores"], device["memory_mib"]
    if not count or not total_cores or not total_memory:
        return 0.0
    slots = core = memory = 0
    if rules == "2.7.1":
        slots, core = request["gpus"], request["cores"]
        if request["memory_mib"]:
            memory = request["memory_mib"]
        else:
            memory = total_memory * (request["memory_percentage"] // 100)
    elif device.get("type") == NVIDIA_REQUEST_TYPE:
        slots, core = 1, request["cores"]
        memory = request["memory_mib"] or total_memory * request["memory_percentage"] // 100
    slot_part = _f32((slots + device["used"]) / count)
    core_part = _f32((core + device["used_cores"]) / total_cores)
    memory_part = _f32((memory + device["used_memory_mib"]) / total_memory)
    if rules == "2.7.1":
        total = _f32(_f32(slot_part + core_part) + memory_part)
    else:
        w_slot, w_core, w_memory = weights
        total = _f32(_f32(_f32(w_slot * slot_part) + _f32(w_core * core_part)) + _f32(w_memory * memory_part))
    return _f32(WEIGHT * total)


def device_walk(devices: list[dict], request: dict, gpu_policy: str = "spread", rules: str = "2.10.0",
                weights: tuple = (1, 1, 1)) -> list[dict]:
    """The devices in the order HAMi's Fit meets them: sorted by
    DeviceUsageList.Less (stable, as Go's insertion sort is for a node's
    few devices), then walked from the end (above)."""
    keyed = []
    for position, d in enumerate(devices):
        score = device_score(d, request, rules, weights)
        numa = d.get("numa", 0)
        if rules == "2.7.1":
            key = (-numa, score) if gpu_policy == "binpack" else (numa, -score)
        else:
            key = (score, numa) if gpu_policy == "binpack" else (-score, numa)
        keyed.append((key, position, d))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [d for _key, _pos, d in reversed(keyed)]


def scoring_weights(annotations: dict, rules: str) -> tuple:
    """hami.io/device-scoring-weights (v2.10.0, util.ParseDeviceScoringWeights:
    slot=,core=,memory=, each a whole number >= 0, all three given)."""
    raw = (annotations or {}).get(DEVICE_SCORING_WEIGHTS)
    if rules == "2.7.1" or raw is None:
        return (1, 1, 1)
    values = {}
    for item in str(raw).split(","):
        key, _sep, value = item.partition("=")
        if not re.fullmatch(r"\s*\d+\s*", value) or key.strip() not in ("slot", "core", "memory") \
                or key.strip() in values:
            raise ParameterError(f"{DEVICE_SCORING_WEIGHTS}: {raw!r} is not slot=N,core=N,memory=N (HAMi refuses it)")
        values[key.strip()] = int(value)
    if len(values) != 3:
        raise ParameterError(f"{DEVICE_SCORING_WEIGHTS}: {raw!r} needs slot, core and memory weights")
    return (values["slot"], values["core"], values["memory"])


def pod_policies(annotations: dict, node_policy: str, gpu_policy: str, rules: str) -> tuple[str, str, str | None]:
    """The node and GPU policy for a pod, and a note when a policy is not
    modelled: its hami.io/node-scheduler-policy and
    hami.io/gpu-scheduler-policy annotations over the defaults. Node:
    anything but spread sorts as binpack (NodeScoreList.Less). GPU: at
    v2.7.1 anything but binpack sorts as spread (DeviceUsageList.Less), and
    topology-aware's own choice in Fit is not modelled; v2.10.0's mutex, numa,
    topology-aware and comma chains are not modelled: spread's order stands in."""
    annotations = annotations or {}
    node = str(annotations.get(L.HAMI_NODE_POLICY, node_policy)).strip()
    gpu = str(annotations.get(L.HAMI_GPU_POLICY, gpu_policy)).strip()
    node = "spread" if node == "spread" else "binpack"
    note = None
    if gpu not in GPU_POLICIES:
        if rules == "2.10.0" or gpu == "topology-aware":
            note = (f"{L.HAMI_GPU_POLICY} {gpu!r} is not modelled (HAMi {rules}): its GPUs are taken in spread's "
                    "order, which may differ from HAMi's choice")
        gpu = "spread"
    return node, gpu, note


# --- the fleet ----------------------------------------------------------------

def _copy_devices(devices: list[dict]) -> list[dict]:
    return [dict(d, tasks=list(d["tasks"])) for d in devices]


class _Node:
    """One node as the placement sees it: its GPUs with their usage and
    tasks, what its allocatable has handed out, the pods on it (for the
    one-a-node rule), a version that changes with each pod placed."""

    __slots__ = ("name", "obj", "devices", "source", "allocatable", "allocated", "holders", "version", "pods", "_score")

    def __init__(self, name, obj, devices, source, allocatable=None):
        self.name, self.obj, self.devices, self.source = name, obj, devices, source
        self.allocatable = node_allocatable(obj) if allocatable is None else allocatable
        self.allocated, self.holders, self.version, self.pods, self._score = {}, [], 0, 0, None

    def clone(self) -> "_Node":
        other = _Node(self.name, self.obj, _copy_devices(self.devices), self.source, self.allocatable)
        other.allocated, other.holders, other.version, other.pods = dict(self.allocated), list(self.holders), \
            self.version, self.pods
        other._score = self._score
        return other

    def score(self, rules: str) -> float:
        if self._score is None or self._score[0] != self.version:
            self._score = (self.version, node_score(self.devices, rules))
        return self._score[1]

    def add(self, spec: dict, namespace: str, labels: dict, workload: str | None) -> None:
        for resource, amount in extended_requests(spec).items():
            self.allocated[resource] = self.allocated.get(resource, 0) + amount
        self.holders.append((namespace, labels, workload))
        self.version += 1


def _task(taken, workload: str, pod: str, existing: bool) -> list[dict]:
    gpus = []
    for device, memory, cores in taken:
        device["tasks"].append({"workload": workload, "pod": pod, "memory_mib": memory, "cores": cores,
                                "existing": existing})
        gpus.append({"id": device["id"], "index": device["index"], "type": device["type"], "memory_mib": memory,
                     "cores": cores})
    return gpus


class _Cluster:
    """The nodes read once: their GPUs, and the nodes a pod spec may go to
    (cached per spec); then the foreign pods' usage, once."""

    def __init__(self, nodes: list[dict]):
        self.order = sorted(nodes, key=lambda n: (n.get("metadata") or {}).get("name") or "")
        self.nodes = {}
        for node in self.order:
            devices, source = node_devices(node)
            for d in devices:
                d["tasks"] = []
            name = node["metadata"]["name"]
            self.nodes[name] = _Node(name, node, devices, source)
        self._static: dict[str, dict] = {}
        self._eligible: dict[int, tuple] = {}

    def exclusions(self, spec: dict) -> dict[str, tuple[bool, list[str]]]:
        """Per node: (matches, reasons) for the pod spec (node_exclusions,
        and "no GPUs" for a matching node without any)."""
        key = json.dumps([spec.get("nodeSelector") or {}, (spec.get("affinity") or {}).get("nodeAffinity") or {},
                          spec.get("tolerations") or []], sort_keys=True, default=str)
        if key not in self._static:
            found = {}
            for name, n in self.nodes.items():
                matches, reasons = node_exclusions(n.obj, spec)
                if not n.devices and matches:
                    reasons = reasons + ["no GPUs"]
                found[name] = (matches, reasons)
            self._static[key] = found
        return self._static[key]

    def eligible(self, spec: dict) -> tuple[dict, list[str]]:
        """(exclusions, the names of the nodes not excluded), cached per spec object."""
        key = id(spec)
        if key not in self._eligible or self._eligible[key][0] is not spec:
            excluded = self.exclusions(spec)
            self._eligible[key] = (spec, excluded, [n for n, (_m, reasons) in excluded.items() if not reasons])
        return self._eligible[key][1], self._eligible[key][2]


class _State:
    """The nodes' usage during one placement run."""

    def __init__(self, nodes: dict[str, _Node], rules: str):
        self.nodes, self.rules = nodes, rules
        self.failed: dict = {}  # (node, fit key) -> node version it did not fit at
        self.blocked: dict = {}  # (node, (fit key, workload)) -> (node version, _blocked)
        self.reasons: dict = {}  # (node, fit key) -> (version, reason)

    def clone(self) -> "_State":
        other = _State({k: n.clone() for k, n in self.nodes.items()}, self.rules)
        other.failed, other.blocked = dict(self.failed), dict(self.blocked)
        return other


def _labels_match(labels: dict, wanted: dict) -> bool:
    return all(labels.get(k) == str(v) for k, v in wanted.items())


def count_pod(node: _Node, pod: dict, label: str, workload: str | None = None) -> list[dict] | None:
    """Count a pod on its node (pod_usage) and record its tasks under
    ``label`` (``workload``: the fleet's workload it belongs to, if any);
    the GPUs it holds, or None when it holds none."""
    how, taken = pod_usage(node.devices, pod)
    meta = pod.get("metadata") or {}
    node.add(pod.get("spec") or {}, meta.get("namespace") or "", meta.get("labels") or {}, workload)
    if how is None:
        return None
    node.pods += 1
    return _task(taken, label, meta.get("name") or "" if workload else label, True)


def _prepare(workload: dict, position: int, node_policy: str, gpu_policy: str, rules: str) -> dict:
    """One workload of the fleet, read and checked."""
    if not isinstance(workload, dict) or not workload.get("name"):
        raise ParameterError(f"workloads[{position}]: needs at least name and template")
    name = str(workload["name"])
    template = workload.get("template") or {}
    replicas, group_size = workload.get("replicas", 1), workload.get("group_size", 1) or 1
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ParameterError(f"workloads[{position}] ({name}): replicas is {replicas!r}; give a whole number >= 0")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ParameterError(f"workloads[{position}] ({name}): group_size is {group_size!r}; give a whole number >= 1")
    spec = pod_spec_of(template)
    meta = template.get("metadata") or {}
    annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    requests = replica_request(template, f"workloads[{position}] ({name}): template")
    node_p, gpu_p, note = pod_policies(annotations, node_policy, gpu_policy, rules)
    weights = scoring_weights(annotations, rules)
    apart = one_a_node(template)
    constraints = {k: v for k, v in annotations.items()
                   if k in (L.HAMI_USE_GPUTYPE, L.HAMI_NOUSE_GPUTYPE, L.HAMI_USE_GPUUUID, L.HAMI_NOUSE_GPUUUID)}
    return {
        "name": name, "namespace": str(workload.get("namespace") or ""), "template": template, "spec": spec,
        "statefulset": str(workload.get("statefulset") or name), "replicas": replicas, "group_size": group_size,
        "min_memory_mib": workload.get("min_memory_mib"), "requests": requests, "annotations": constraints,
        "labels": labels, "wanted": extended_requests(spec), "node_policy": node_p, "note": note, "gpu_policy": gpu_p, "weights": weights,
        "apart": apart if apart is not None else ({} if group_size > 1 else None),
        "fit_key": json.dumps([requests, gpu_p, weights, constraints], sort_keys=True),
    }


def _pod_names(w: dict, ordinal: int) -> list[str]:
    # One StatefulSet a rank (roles/vllm_serve/templates/statefulset.yaml.j2): rank 0 is the
    # workload's own name, rank k <name>-rank<k>; pod i of each is <set>-<i>.
    sts = w["statefulset"]
    return [f"{sts}-{ordinal}"] + [f"{sts}-rank{k}-{ordinal}" for k in range(1, w["group_size"])]


def _owner(pod: dict, prepared: list[dict]) -> tuple[int, int] | None:
    """(workload position, ordinal) of a pod of the fleet's StatefulSets, or None."""
    meta = pod.get("metadata") or {}
    owners = {o.get("name") for o in meta.get("ownerReferences") or [] if o.get("kind") == "StatefulSet"}
    ordinal = _ordinal(meta.get("name"))
    if not owners or ordinal is None:
        return None
    for position, w in enumerate(prepared):
        if meta.get("namespace") != w["namespace"]:
            continue
        sets = {w["statefulset"]} | {f"{w['statefulset']}-rank{k}" for k in range(1, w["group_size"])}
        if owners & sets and meta.get("name") in _pod_names(w, ordinal):
            return position, ordinal
    return None


def _blocked(node: _Node, w: dict) -> str | None:
    """kube-scheduler's filters that change as pods are placed: the node's
    allocatable (NodeResourcesFit) and the one-a-node anti-affinity."""
    room, binding = allocatable_room(node.obj, node.allocated, w["wanted"], node.allocatable)
    if room < 1:
        return f"allocatable {binding} full"
    if w["apart"] is not None:
        for namespace, labels, workload in node.holders:
            if namespace == w["namespace"] and (
                    (w["apart"] and _labels_match(labels, w["apart"])) or (not w["apart"] and workload == w["name"])):
                return f"holds a pod of {w['name']} already (one a node)"
    return None


def _fit_reason(node: _Node, w: dict) -> str:
    """Why the pod's GPU containers do not fit on the node's GPUs: for the
    first container that does not, how many GPUs could take a share, and
    why the others cannot (device_refusal)."""
    trial = _copy_devices(node.devices)
    for request in w["requests"]:
        why: dict[str, int] = {}
        fitting = []
        for d in trial:
            reason = device_refusal(d, request, w["annotations"])
            if reason is None:
                fitting.append(d)
            else:
                why[reason] = why.get(reason, 0) + 1
        if len(fitting) < request["gpus"]:
            what = f" with {request['memory_mib']} MiB free" if request["memory_mib"] else " free"
            detail = ", ".join(f"{count} {reason}" for reason, count in sorted(why.items(), key=lambda i: (-i[1], i[0])))
            return f"{len(fitting)} of {len(trial)} GPUs{what}, needs {request['gpus']}" + (f" ({detail})" if detail else "")
        for d in fitting[:request["gpus"]]:
            _take(d, memory_needed(request, d), request["cores"])
    return "does not fit"


def _place_pod(state: _State, cluster: _Cluster, w: dict, pod: str, reasons: bool) -> tuple[_Node | None, list, dict]:
    """HAMi's choice for one pod: the best-scored node (node policy) among
    those that pass kube-scheduler's filters and on which every GPU
    container fits (GPU policy order). Returns (node, gpus, {}) or (None,
    [], reasons per node)."""
    rules, binpack = state.rules, w["node_policy"] == "binpack"
    excluded, eligible = cluster.eligible(w["spec"])
    failed, blocked_at, key = state.failed, state.blocked, (w["fit_key"], w["name"])
    keyed = []
    for name in eligible:
        node = state.nodes[name]
        version = node.version
        if failed.get((name, w["fit_key"])) == version:
            continue
        blocked = blocked_at.get((name, key))
        if blocked is None or blocked[0] != version:
            blocked = (version, _blocked(node, w))
            blocked_at[(name, key)] = blocked
        if blocked[1]:
            continue
        score = node.score(rules)
        keyed.append((-score if binpack else score, name))
    keyed.sort()

    def walk(devices, request):
        return device_walk(devices, request, w["gpu_policy"], rules, w["weights"])

    for _score, name in keyed:
        node = state.nodes[name]
        taken = place_replica(node.devices, w["requests"], w["annotations"], walk)
        if taken is not None:
            node.add(w["spec"], w["namespace"], w["labels"], w["name"])
            return node, _task(taken, w["name"], pod, False), {}
        state.failed[(name, w["fit_key"])] = node.version
    if not reasons:
        return None, [], {}
    why = {}
    for name, node in state.nodes.items():
        if excluded[name][1]:
            why[name] = f"excluded ({', '.join(excluded[name][1])})"
            continue
        blocked = _blocked(node, w)
        if blocked:
            why[name] = blocked
            continue
        cached = state.reasons.get((name, w["fit_key"]))
        if cached is None or cached[0] != node.version:
            cached = (node.version, _fit_reason(node, w))
            state.reasons[(name, w["fit_key"])] = cached
        why[name] = cached[1]
    return None, [], why


class _Fleet:
    """The fleet's cluster and pods, read once, for many placement runs
    (the plan and each suggestion tried)."""

    def __init__(self, nodes: list[dict], pods: list[dict], rules: str):
        self.cluster, self.rules = _Cluster(nodes), rules
        self.pods = [p for p in pods or [] if holds_gpus(p) and pod_node(p) in self.cluster.nodes]
        self._base: dict = {}

    def base(self, owned: frozenset) -> _State:
        """The nodes with the usage of every pod but those in ``owned`` (the
        fleet's own pods, counted per run)."""
        if owned not in self._base:
            nodes = {k: n.clone() for k, n in self.cluster.nodes.items()}
            for i, pod in enumerate(self.pods):
                if i not in owned:
                    meta = pod.get("metadata") or {}
                    count_pod(nodes[pod_node(pod)], pod, f"{meta.get('namespace')}/{meta.get('name')}")
            self._base = {owned: _State(nodes, self.rules)}
        return self._base[owned].clone()

    def owners(self, prepared: list[dict]) -> dict[int, tuple[int, int]]:
        """The fleet's own pods: pod position -> (workload position, ordinal)."""
        owners = {}
        for i, pod in enumerate(self.pods):
            owner = _owner(pod, prepared)
            if owner is not None:
                owners[i] = owner
        return owners

    def run(self, prepared: list[dict], reasons: bool = True, stop: bool = False, until: int | None = None,
            state: _State | None = None, start: int = 0) -> dict:
        """Place the fleet: its pods that stay where they are, then every
        replica not running, workload by workload, in ordinal order.
        ``until``: stop before that workload (a snapshot to go on from);
        ``state``/``start``: go on from such a snapshot; ``stop``: at the
        first pod that does not fit."""
        owners = self.owners(prepared)
        placements, unplaced, running = [], [], set()
        if state is None:
            state = self.base(frozenset(owners))
            for i, (position, ordinal) in sorted(owners.items(), key=lambda item: (item[1], item[0])):
                w = prepared[position]
                if ordinal >= w["replicas"]:
                    continue  # being removed: its GPUs are freed
                pod = self.pods[i]
                name = pod["metadata"]["name"]
                gpus = count_pod(state.nodes[pod_node(pod)], pod, w["name"], w["name"])
                placements.append({"workload": w["name"], "replica": ordinal, "pod": name, "node": pod_node(pod),
                                   "existing": True, "gpus": gpus or []})
        for i, (position, ordinal) in owners.items():
            if ordinal < prepared[position]["replicas"]:
                running.add((position, self.pods[i]["metadata"]["name"]))
        for position in range(start, len(prepared) if until is None else until):
            w = prepared[position]
            if not w["requests"]:
                continue
            for ordinal in range(w["replicas"]):
                for name in _pod_names(w, ordinal):
                    if (position, name) in running:
                        continue
                    node, gpus, why = _place_pod(state, self.cluster, w, name, reasons)
                    if node is None:
                        unplaced.append({"workload": w["name"], "replica": ordinal, "pod": name, "reasons": why})
                        if stop:
                            return {"state": state, "placements": placements, "unplaced": unplaced}
                        continue
                    placements.append({"workload": w["name"], "replica": ordinal, "pod": name, "node": node.name,
                                       "existing": False, "gpus": gpus})
        order = {w["name"]: i for i, w in enumerate(prepared)}
        placements.sort(key=lambda p: (order[p["workload"]], p["replica"], p["pod"]))
        return {"state": state, "placements": placements, "unplaced": unplaced}


# --- the plan and what would make it fit ----------------------------------------

def _pod_text(task: dict) -> str:
    cores = f", {task['cores']}%" if task["cores"] else ""
    return f"{task['pod']} ({task['memory_mib']} MiB{cores})"


def render_table(rows: list[dict]) -> str:
    """The table as aligned plain text (for Ansible's output)."""
    head = {"node": "NODE", "gpu": "GPU", "type": "TYPE", "memory": "MEMORY", "cores": "CORES", "tasks": "TASKS"}
    lines = [head] + [{k: str(r[k]) for k in head} for r in rows]
    widths = {k: max(len(line[k]) for line in lines) for k in head}
    return "\n".join("  ".join(line[k].ljust(widths[k]) for k in head).rstrip() for line in lines)


def _with_resource(template: dict, resource: str, value: int, only_present: bool = True) -> dict:
    """The template with ``resource`` set to ``value`` in every GPU container
    that asks for it (limits, and requests where given)."""
    template = json.loads(json.dumps(template))
    for container in pod_spec_of(template).get("containers") or []:
        resources = container.get("resources") or {}
        present = [part for part in ("limits", "requests") if resource in (resources.get(part) or {})]
        if not present and not only_present:
            present = ["limits"]
        for part in present:
            resources.setdefault(part, {})[resource] = str(value)
        if present:
            container["resources"] = resources
    return template


def _with_type(template: dict, device_type: str, product: str | None) -> dict:
    """The template with its GPU type constraints moved to ``device_type``:
    nvidia.com/use-gputype set to it where a use- or nouse-gputype was
    given (the nouse- dropped), a nodeSelector on nvidia.com/gpu.product set to ``product``."""
    template = json.loads(json.dumps(template))
    meta = template.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    if annotations.get(L.HAMI_USE_GPUTYPE) or annotations.get(L.HAMI_NOUSE_GPUTYPE):
        annotations[L.HAMI_USE_GPUTYPE] = device_type
        annotations.pop(L.HAMI_NOUSE_GPUTYPE, None)
    spec = pod_spec_of(template)
    if L.GPU_PRODUCT_LABEL in (spec.get("nodeSelector") or {}) and product:
        spec["nodeSelector"][L.GPU_PRODUCT_LABEL] = product
    return template


def _bisect(fits, low: int, high: int) -> int | None:
    """The largest value in [low, high) that fits, given that ``high`` does
    not: None when ``low`` does not fit; else a value v with fits(v) and not
    fits(v + 1)."""
    if not fits(low):
        return None
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low


def _suggestions(fleet: _Fleet, raw: list[dict], prepared: list[dict], position: int, first: int,
                 args: tuple) -> list[dict]:
    """The smallest single changes to workload ``position`` with which the
    whole fleet fits: fewer replicas, less gpumem, fewer gpucores, another
    GPU type; each tried by placing the fleet again (from a snapshot before
    the workload, the ones before it being unchanged). ``first``: the first
    workload with pods left out; a change to a later workload cannot help
    that one, unless fewer replicas free GPUs its running pods hold."""
    w, source = prepared[position], raw[position]
    owned = [ordinal for p, ordinal in fleet.owners(prepared).values() if p == position]
    if position > first and not owned:
        return []
    snapshot = fleet.run(prepared, reasons=False, until=position)["state"] if position == first else None
    out = []

    def fits_with(changed: dict) -> bool:
        trial = list(prepared)
        trial[position] = _prepare(changed, position, *args)
        frees = any(ordinal >= trial[position]["replicas"] for ordinal in owned)
        if snapshot is None or frees:
            return not fleet.run(trial, reasons=False, stop=True)["unplaced"]
        return not fleet.run(trial, reasons=False, stop=True, state=snapshot.clone(), start=position)["unplaced"]

    replicas = _bisect(lambda k: fits_with(dict(source, replicas=k)), 0, w["replicas"])
    if replicas is not None:
        out.append({"workload": w["name"], "change": "replicas", "from": w["replicas"], "to": replicas,
                    "text": f"{w['name']}: {replicas} replicas instead of {w['replicas']}"})
    if position > first:
        return out  # only fewer replicas (freeing its pods' GPUs) can reach the workload before it
    sliced = [r for r in w["requests"] if r["memory_mib"]]
    if sliced:
        current = max(r["memory_mib"] for r in sliced)
        low = w["min_memory_mib"] or 1
        if low < current:
            memory = _bisect(lambda m: fits_with(dict(source, template=_with_resource(
                source["template"], L.RESOURCE_GPUMEM, m))), low, current)
            if memory is not None:
                out.append({"workload": w["name"], "change": "gpu_memory_mib", "from": current, "to": memory,
                            "text": f"{w['name']}: {L.RESOURCE_GPUMEM} {memory} MiB per GPU instead of {current}"})
            else:
                out.append({"workload": w["name"], "change": "gpu_memory_mib", "from": current, "to": None,
                            "text": f"{w['name']}: no {L.RESOURCE_GPUMEM} fits, not even {low} MiB"})
    cored = [r for r in w["requests"] if r["cores"] and not (r["cores"] == 100 and r["memory_percentage"] == 100)]
    if cored:
        current = max(r["cores"] for r in cored)
        cores = _bisect(lambda c: fits_with(dict(source, template=_with_resource(
            source["template"], L.RESOURCE_GPUCORES, c))), 0, current)
        if cores is not None:
            out.append({"workload": w["name"], "change": "gpu_cores", "from": current, "to": cores,
                        "text": f"{w['name']}: {L.RESOURCE_GPUCORES} {cores} instead of {current}"})
    out += _type_suggestions(fleet, w, source, fits_with)
    return out


def _type_suggestions(fleet: _Fleet, w: dict, source: dict, fits_with) -> list[dict]:
    """Other GPU types the workload's constraints exclude, on which it fits."""
    selector = (w["spec"].get("nodeSelector") or {}).get(L.GPU_PRODUCT_LABEL)
    if not w["annotations"].get(L.HAMI_USE_GPUTYPE) and not w["annotations"].get(L.HAMI_NOUSE_GPUTYPE) \
            and selector is None:
        return []
    kinds: dict[str, str | None] = {}
    for node in fleet.cluster.nodes.values():
        product = ((node.obj.get("metadata") or {}).get("labels") or {}).get(L.GPU_PRODUCT_LABEL)
        for d in node.devices:
            if d["type"]:
                kinds.setdefault(d["type"], product)
    current = sorted({d["type"] for n in fleet.cluster.nodes.values() for d in n.devices
                      if d["type"] and device_allowed(w["annotations"], d)
                      and (selector is None or ((n.obj.get("metadata") or {}).get("labels") or {})
                           .get(L.GPU_PRODUCT_LABEL) == selector)})
    out = []
    for kind, product in sorted(kinds.items()):
        if kind in current or (selector is not None and not product):
            continue
        if fits_with(dict(source, template=_with_type(source["template"], kind, product))):
            out.append({"workload": w["name"], "change": "gpu_type", "from": ", ".join(current) or None, "to": kind,
                        "text": f"{w['name']}: GPU type {kind}" + (f" (nodes {L.GPU_PRODUCT_LABEL}={product})"
                                                                   if selector is not None else "")})
    return out


def place_fleet(workloads: list[dict], nodes: list[dict], pods: list[dict], *,
                node_policy: str = "binpack", gpu_policy: str = "spread", hami_version: str = "2.10.0") -> dict:
    """Place every replica of every workload of a fleet as HAMi would, one
    pod after another (workloads in list order, replicas in ordinal
    order); the fleet's running pods stay where they are, its pods of an
    ordinal at or above the replicas are being removed (their GPUs freed),
    every other pod's GPUs are used. Returns fits, placements, unplaced
    (with each node's reason), nodes, table, table_text, suggestions (when
    not fitting: per workload with replicas left out, the smallest single
    changes with which the whole fleet fits), rules (the HAMi release whose
    rules were applied) and msg."""
    if node_policy not in NODE_POLICIES or gpu_policy not in GPU_POLICIES:
        raise ParameterError(f"node_policy {node_policy!r} / gpu_policy {gpu_policy!r}: each is binpack or spread")
    rules = rules_for(hami_version)
    args = (node_policy, gpu_policy, rules)
    raw = list(workloads or [])
    prepared = [_prepare(w, i, *args) for i, w in enumerate(raw)]
    names = [w["name"] for w in prepared]
    if len(set(names)) != len(names):
        raise ParameterError(f"workloads: names repeat ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
    fleet = _Fleet(nodes, pods, rules)
    run = fleet.run(prepared)
    state, placements, unplaced = run["state"], run["placements"], run["unplaced"]

    gpu_workloads = [w for w in prepared if w["requests"]]
    node_reports, rows = [], []
    for name, node in sorted(state.nodes.items()):
        common = None
        for w in gpu_workloads:
            reasons = set(fleet.cluster.exclusions(w["spec"])[name][1])
            common = reasons if common is None else common & reasons
        excluded = [r for r in fleet.cluster.exclusions(gpu_workloads[0]["spec"])[name][1] if r in common] \
            if gpu_workloads else []
        gpus = []
        for d in node.devices:
            gpus.append({"id": d["id"], "index": d["index"], "type": d["type"], "memory_mib": d["memory_mib"],
                         "cores": d["cores"], "split_count": d["split_count"], "used_memory_mib": d["used_memory_mib"],
                         "used_cores": d["used_cores"], "tasks": [dict(t) for t in d["tasks"]]})
            if d["tasks"]:
                rows.append({"node": name, "gpu": d["index"], "type": d["type"],
                             "memory": f"{d['used_memory_mib']}/{d['memory_mib']} MiB",
                             "cores": f"{d['used_cores']}/{d['cores']}",
                             "tasks": ", ".join(_pod_text(t) for t in d["tasks"])})
        node_reports.append({"name": name, "excluded": excluded, "gpus": gpus})

    suggestions = []
    if unplaced:
        short = []
        for u in unplaced:
            if u["workload"] not in short:
                short.append(u["workload"])
        first = names.index(short[0])
        for w_name in short:
            suggestions += _suggestions(fleet, raw, prepared, names.index(w_name), first, args)

    result = {"fits": not unplaced, "rules": rules, "placements": placements, "unplaced": unplaced,
              "nodes": node_reports, "table": rows, "table_text": render_table(rows), "suggestions": suggestions,
              "notes": [f"{w['name']}: {w['note']}" for w in prepared if w["note"]]}
    result["msg"] = _fleet_message(result, prepared)
    return result


def _fleet_message(result: dict, prepared: list[dict]) -> str:
    placed = result["placements"]
    gpus = {(p["node"], g["id"]) for p in placed for g in p["gpus"]}
    nodes = {p["node"] for p in placed}
    models = [w for w in prepared if w["requests"]]
    replicas = sum(w["replicas"] for w in models)
    if result["fits"]:
        return f"{replicas} replicas of {len(models)} models placed on {len(gpus)} GPUs of {len(nodes)} nodes"
    by_workload: dict[str, list[str]] = {}
    for u in result["unplaced"]:
        by_workload.setdefault(u["workload"], []).append(u["pod"])
    parts = []
    for name, pods in by_workload.items():
        shown = ", ".join(pods[:5]) + (f" and {len(pods) - 5} more" if len(pods) > 5 else "")
        parts.append(f"{name}: {shown}")
    text = f"{len(result['unplaced'])} of the fleet's pods do not fit: " + "; ".join(parts)
    real = [s["text"] for s in result["suggestions"] if s["to"] is not None]
    if real:
        text += ". The whole fleet fits with any one of: " + "; ".join(real)
    else:
        text += ". No single change to those workloads makes the whole fleet fit"
    nothing = [s["text"] for s in result["suggestions"] if s["to"] is None]
    if nothing:
        text += " (" + "; ".join(nothing) + ")"
    return text
