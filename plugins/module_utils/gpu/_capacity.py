# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Will N more replicas of a GPU pod fit? Per node, by HAMi's per-GPU rules:
the request of one replica (read from its pod template), each node's GPUs
(HAMi's register annotation), what the pods already there use (HAMi's
allocation annotation, or a first-fit stand-in), the nodes the pod may go
to (Ready, not cordoned, selector, node affinity, taints), and the new
replicas placed greedily. No I/O: the module reads the objects.

HAMi's rules are read from Project-HAMi/HAMi at v2.7.1 and v2.10.0 (the
same in both unless said); docs/gpu_capacity.md lists them with what is not
modelled."""

from __future__ import annotations

import re

from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _labels as L
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._inventory import parse_hami_register


class InsufficientCapacity(InferopsError):
    """The new replicas do not fit; ``details`` carry the numbers."""


# Pods in these phases hold no GPU (HAMi: util.IsPodInTerminatedState,
# pkg/util/util.go, drops them from its usage cache).
FINISHED_PHASES = ("Succeeded", "Failed")
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
            "cores": d["cores"], "used": 0, "used_memory_mib": 0, "used_cores": 0,
        } for d in registered]
        return devices, "hami-register"
    count = quantity_int(((node.get("status") or {}).get("allocatable") or {}).get(L.RESOURCE_GPU)) or 0
    if count <= 0:
        return [], None
    memory = quantity_int(labels.get(L.GPU_MEMORY_LABEL)) or 0
    product = labels.get(L.GPU_PRODUCT_LABEL) or ""
    return [{
        "id": f"{meta.get('name')}/{i}", "index": i, "type": product, "health": True, "cordoned": False,
        "split_count": FALLBACK_SPLIT_COUNT, "memory_mib": memory, "cores": 100,
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


def device_fits(device: dict, request: dict, annotations: dict | None = None) -> bool:
    """One GPU share of ``request`` on ``device``, by HAMi's
    NvidiaGPUDevices.Fit (pkg/device/nvidia/device.go, v2.7.1 and v2.10.0):
    healthy, not cordoned (v2.10.0), type/UUID allowed, fewer tasks than the
    split count (Count <= Used: CardTimeSlicingExhausted), enough free memory
    and cores, gpucores 100 only on a device with no task (exclusive), and
    gpucores 0 not on a device whose cores are all taken."""
    if not device["health"] or device["cordoned"]:
        return False
    if annotations and not device_allowed(annotations, device):
        return False
    if device["split_count"] <= device["used"]:
        return False
    if device["memory_mib"] - device["used_memory_mib"] < memory_needed(request, device):
        return False
    if device["cores"] - device["used_cores"] < request["cores"]:
        return False
    if device["cores"] == 100 and request["cores"] == 100 and device["used"] > 0:
        return False
    return not (device["cores"] != 0 and device["used_cores"] == device["cores"] and request["cores"] == 0)


def _take(device: dict, memory: int, cores: int) -> None:
    # AddResourceUsage / getNodesUsage: one task, its memory and cores.
    device["used"] += 1
    device["used_memory_mib"] += memory
    device["used_cores"] += cores


def place_replica(devices: list[dict], requests: list[dict], annotations: dict | None = None) -> bool:
    """Place one replica (each GPU container in turn, each on ``gpus``
    distinct devices, first fit); commit and return True when all fit,
    else leave the devices as they were."""
    before = [(d["used"], d["used_memory_mib"], d["used_cores"]) for d in devices]
    for request in requests:
        chosen = []
        for device in devices:
            if len(chosen) == request["gpus"]:
                break
            if device_fits(device, request, annotations):
                chosen.append(device)
        if len(chosen) < request["gpus"]:
            for device, used in zip(devices, before):
                device["used"], device["used_memory_mib"], device["used_cores"] = used
            return False
        for device in chosen:
            _take(device, memory_needed(request, device), request["cores"])
    return True


def _stand_in(devices: list[dict], requests: list[dict], annotations: dict) -> None:
    """A pod HAMi has not annotated (the sandbox has no HAMi scheduler): put
    its request where it fits first; what does not fit still goes on the
    least used devices, since the pod holds those GPUs all the same."""
    for request in requests:
        chosen = [d for d in devices if device_fits(d, request, annotations)][:request["gpus"]]
        if len(chosen) < request["gpus"]:
            rest = sorted((d for d in devices if d not in chosen), key=lambda d: (not d["health"], d["used"]))
            chosen += rest[:request["gpus"] - len(chosen)]
        for device in chosen:
            _take(device, memory_needed(request, device), request["cores"])


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


def allocatable_room(node: dict, used: dict[str, int], wanted: dict[str, int]) -> tuple[int, str | None]:
    """How many more pods asking ``wanted`` the node's allocatable leaves
    room for, after ``used``, and the resource that binds (None: no bound).
    Only the resources the node advertises bound it: HAMi's device plugin
    advertises nvidia.com/gpu (one device ID per share, which the kubelet
    hands out at admission), while gpumem and gpucores are its scheduler's
    alone (the chart's scheduler config lists them as managed resources the
    kube-scheduler ignores)."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    room, binding = MAX_REPLICAS_PER_NODE, None
    for name, amount in sorted(wanted.items()):
        if name not in allocatable:
            continue
        left = (quantity_int(allocatable.get(name)) or 0) - used.get(name, 0)
        fits = max(left, 0) // amount
        if fits < room:
            room, binding = fits, name
    return room, binding


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
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    by_id = {d["id"]: d for d in devices}
    try:
        allocation = parse_allocation(annotations.get(L.HAMI_ALLOCATED_ANNOTATION))
    except ValueError:
        allocation = []
    entries = [g for container in allocation for g in container]
    if entries and any(g["uuid"] in by_id for g in entries):
        for g in entries:
            if g["uuid"] in by_id:  # HAMi skips an unknown or stale UUID too
                _take(by_id[g["uuid"]], g["memory_mib"], g["cores"])
        return "allocation"
    try:
        requests = replica_request(pod.get("spec") or {}, "pod")
    except ParameterError:
        return None  # a pod the API took but HAMi would not read: it holds no HAMi GPU
    if not requests:
        return None
    _stand_in(devices, requests, annotations)
    return "stand-in"


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


# --- the check --------------------------------------------------------------

def _ordinal(name: str) -> int | None:
    match = re.search(r"-(\d+)$", name or "")
    return int(match.group(1)) if match else None


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


def check(template: dict, nodes: list[dict], pods: list[dict], replicas: int, current: int,
          name: str = "", namespace: str = "", group_size: int = 1) -> dict:
    """Whether ``replicas`` replicas of ``template`` fit, ``current`` being
    there already, each replica ``group_size`` pods of the template (a
    replica larger than a node). Returns fits, needed (pods), room, request,
    nodes (per node) and msg (with the numbers)."""
    spec = pod_spec_of(template)
    requests = replica_request(template)
    annotations = ((template or {}).get("metadata") or {}).get("annotations") or {}
    additional = replicas - current
    pending = pending_replicas(pods, namespace, name, current) if additional > 0 else []
    needed = max(additional, 0) * group_size + len(pending)
    apart = one_a_node(template)

    reports = []
    devices_of = {}
    for node in sorted(nodes, key=lambda n: (n.get("metadata") or {}).get("name") or ""):
        node_name = node["metadata"]["name"]
        devices, source = node_devices(node)
        devices_of[node_name] = devices
        matches, reasons = node_exclusions(node, spec)
        if not devices and matches:
            reasons.append("no GPUs")
        reports.append({"name": node_name, "matches": matches, "excluded": reasons, "source": source,
                        "gpus": len(devices), "unhealthy_gpus": sum(1 for d in devices if not d["health"]),
                        "pods": 0, "new_replicas": 0, "room": 0})

    by_name = {r["name"]: r for r in reports}
    allocated: dict[str, dict[str, int]] = {}
    for pod in pods:
        if not holds_gpus(pod):
            continue
        node_used = allocated.setdefault(pod_node(pod), {})
        for resource, amount in extended_requests(pod.get("spec") or {}).items():
            node_used[resource] = node_used.get(resource, 0) + amount
        devices = devices_of.get(pod_node(pod))
        if devices and add_pod_usage(devices, pod):
            by_name[pod_node(pod)]["pods"] += 1
    wanted = extended_requests(spec)
    nodes_by_name = {n["metadata"]["name"]: n for n in nodes}

    share = requests[0] if requests else None
    for report in reports:
        devices = devices_of[report["name"]]
        usable = [d for d in devices if d["health"] and not d["cordoned"]]
        report["free_gpus"] = sum(1 for d in usable if d["used"] == 0)
        report["free_memory_mib"] = sum(max(d["memory_mib"] - d["used_memory_mib"], 0) for d in usable)
        report["usable_gpus"] = sum(1 for d in devices if share and device_fits(d, share, annotations))
        if report["excluded"] or not requests:
            continue
        # HAMi's scheduler fits each GPU; kube-scheduler, which runs HAMi as
        # its extender, first bounds the node by its allocatable.
        bound, binding = allocatable_room(nodes_by_name[report["name"]], allocated.get(report["name"], {}), wanted)
        if apart is not None:
            # One pod of the workload a node, and none where one is already.
            taken = any(holds_gpus(pod) and pod_node(pod) == report["name"]
                        and (pod.get("metadata") or {}).get("namespace") == namespace
                        and all(((pod.get("metadata") or {}).get("labels") or {}).get(k) == str(v)
                                for k, v in apart.items()) for pod in pods)
            bound = 0 if taken else min(bound, 1)
            report["one_a_node"] = True
            if taken:
                report["excluded_by_anti_affinity"] = True
        trial = [dict(d) for d in devices]
        while report["room"] < bound and place_replica(trial, requests, annotations):
            report["room"] += 1
        # Named only where it binds: the GPUs would take one more.
        if binding and report["room"] == bound and place_replica(trial, requests, annotations):
            report["bound_by"] = binding

    room = sum(r["room"] for r in reports)
    left = needed
    for report in reports:
        report["new_replicas"] = min(report["room"], left)
        left -= report["new_replicas"]
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
