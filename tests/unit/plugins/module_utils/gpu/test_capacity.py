"""gpu/_capacity: HAMi's per-GPU fit of new replicas, node by node, from the
objects the module reads (nodes, pods, the pod template)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _capacity as cap

FIXTURES = Path(__file__).parent / "hami_fixtures"
H100_MIB = 81559


def fixture(name: str) -> str:
    # Exact bytes each HAMi release's encoder writes (hami_fixtures/README.md cites the source).
    return (FIXTURES / name).read_bytes().decode()


def node(name: str, register: str | None = "register-v2.10.0.txt", labels: dict | None = None, ready: bool = True,
         cordoned: bool = False, taints: list | None = None, annotations: dict | None = None,
         allocatable: dict | None = None) -> dict:
    notes = dict(annotations or {})
    if register:
        notes["hami.io/node-nvidia-register"] = fixture(register)
    spec = {"taints": taints or []}
    if cordoned:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": {"gpu": "on", **(labels or {})}, "annotations": notes},
            "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "allocatable": (HAMI_ALLOCATABLE if register else {}) if allocatable is None else allocatable}}


# What HAMi's device plugin advertises for 8 GPUs with its default split count
# of 10: 80 nvidia.com/gpu (one device ID per share); it advertises no
# gpumem or gpucores.
HAMI_ALLOCATABLE = {"nvidia.com/gpu": "80"}


def container(gpus=None, mem=None, pct=None, cores=None, name="vllm") -> dict:
    limits = {}
    for key, value in (("nvidia.com/gpu", gpus), ("nvidia.com/gpumem", mem),
                       ("nvidia.com/gpumem-percentage", pct), ("nvidia.com/gpucores", cores)):
        if value is not None:
            limits[key] = str(value)
    return {"name": name, "image": "vllm", "resources": {"limits": limits}}


def template(*containers, selector=None, tolerations=None, annotations=None, affinity=None) -> dict:
    spec = {"containers": list(containers), "nodeSelector": {"gpu": "on"} if selector is None else selector}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    if affinity is not None:
        spec["affinity"] = affinity
    return {"metadata": {"labels": {"app": "vllm"}, "annotations": annotations or {}}, "spec": spec}


def pod(name: str, on: str | None, *containers, annotations=None, phase="Running", namespace="other",
        owner: str | None = None) -> dict:
    meta = {"name": name, "namespace": namespace, "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "StatefulSet", "name": owner, "apiVersion": "apps/v1"}]
    spec = {"containers": list(containers)}
    if on:
        spec["nodeName"] = on
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def report(result: dict, name: str) -> dict:
    return next(r for r in result["nodes"] if r["name"] == name)


# --- the request of one replica ---------------------------------------------

def test_whole_gpu_request_takes_the_device_memory_and_all_cores():
    [r] = cap.replica_request(template(container(gpus=4)))
    assert r == {"container": "vllm", "gpus": 4, "memory_mib": None, "memory_percentage": 100, "cores": 100}
    assert cap.describe_request([r]) == "4 whole GPUs"


def test_sliced_request_is_memory_per_gpu_and_no_cores_unless_asked():
    [r] = cap.replica_request(template(container(gpus=2, mem=40960)))
    assert (r["gpus"], r["memory_mib"], r["memory_percentage"], r["cores"]) == (2, 40960, None, 0)
    [r] = cap.replica_request(template(container(gpus=1, pct=50, cores=30)))
    assert (r["memory_mib"], r["memory_percentage"], r["cores"]) == (None, 50, 30)
    assert cap.describe_request([r]) == "1 GPU x 50% memory, 30% cores"
    # gpumem wins over a percentage; a percentage of 100 is exclusive (gpucores 100, HAMi's webhook).
    [r] = cap.replica_request(template(container(gpus=1, mem=1000, pct=50)))
    assert (r["memory_mib"], r["memory_percentage"]) == (1000, None)
    [r] = cap.replica_request(template(container(gpus=1, pct=100)))
    assert r["cores"] == 100 and r["memory_percentage"] == 100
    # Cores above 100 count as 100; a percentage above 100 as 100.
    [r] = cap.replica_request(template(container(gpus=1, mem=10, cores=250)))
    assert r["cores"] == 100


def test_gpumem_without_a_gpu_count_gets_one_gpu_and_no_gpu_is_no_request():
    [r] = cap.replica_request(template(container(mem=20000)))
    assert r["gpus"] == 1 and r["memory_mib"] == 20000
    assert cap.replica_request(template(container())) == []
    assert cap.replica_request(template(container(gpus=0))) == []


def test_requests_are_read_like_hami_limits_then_requests():
    c = {"name": "a", "resources": {"requests": {"nvidia.com/gpu": 2, "nvidia.com/gpumem": "1k"}}}
    [r] = cap.replica_request({"spec": {"containers": [c]}})
    assert r["gpus"] == 2 and r["memory_mib"] == 1000


def test_bad_request_values_name_the_container():
    with pytest.raises(ParameterError, match="container vllm: nvidia.com/gpumem is '40.5'"):
        cap.replica_request(template(container(gpus=1, mem="40.5")))
    with pytest.raises(ParameterError, match="MiB per GPU"):
        cap.replica_request(template(container(gpus=1, mem="40Gi")))
    with pytest.raises(ParameterError, match="no spec.containers"):
        cap.replica_request({"spec": {}})


# --- a node's GPUs ---------------------------------------------------------

@pytest.mark.parametrize("register", ["register-v2.7.1.txt", "register-v2.8.0.txt", "register-v2.10.0.txt"])
def test_both_register_formats_give_eight_h100s(register):
    devices, source = cap.node_devices(node("n", register))
    assert source == "hami-register" and len(devices) == 8
    assert all(d["memory_mib"] == H100_MIB and d["split_count"] == 10 and d["cores"] == 100 and d["health"]
               for d in devices)
    result = cap.check(template(container(gpus=4)), [node("n", register)], [], replicas=2, current=0)
    assert result["fits"] and report(result, "n")["room"] == 2


def test_unhealthy_gpu_is_not_used():
    result = cap.check(template(container(gpus=4)), [node("n", "register-v2.10.0-gpu3-unhealthy.txt")], [], 2, 0)
    assert not result["fits"] and result["room"] == 1
    assert report(result, "n")["unhealthy_gpus"] == 1
    assert "n (1: 7 of 8 GPUs free, 1 unhealthy)" in result["msg"]


def test_cordoned_device_is_not_used():
    uuid = "GPU-00000000-0000-0000-0000-000000000005"
    n = node("n", annotations={"hami.io/device-cordon": f" {uuid} ,"})
    assert report(cap.check(template(container(gpus=4)), [n], [], 1, 0), "n")["room"] == 1


def test_node_without_register_falls_back_to_allocatable_and_the_memory_label():
    n = node("plain", register=None, labels={"nvidia.com/gpu.memory": "40960"},
             allocatable={"nvidia.com/gpu": "4"})
    devices, source = cap.node_devices(n)
    assert source == "allocatable" and len(devices) == 4 and devices[0]["memory_mib"] == 40960
    assert report(cap.check(template(container(gpus=2)), [n], [], 1, 0), "plain")["room"] == 2
    # One container per GPU without HAMi: two slices do not share a GPU.
    assert report(cap.check(template(container(gpus=1, mem=1000)), [n], [], 1, 0), "plain")["room"] == 4
    # No memory label: a MiB request cannot be checked, so it does not fit.
    bare = node("bare", register=None, allocatable={"nvidia.com/gpu": "4"})
    assert report(cap.check(template(container(gpus=1, mem=1000)), [bare], [], 1, 0), "bare")["room"] == 0
    cpu = node("cpu", register=None)
    assert report(cap.check(template(container(gpus=1)), [cpu], [], 1, 0), "cpu")["excluded"] == ["no GPUs"]


# --- fit rules --------------------------------------------------------------

def test_sliced_replicas_share_gpus_up_to_memory():
    # 81559 MiB per GPU: two 40960 MiB slices do not fit on one (81920 > 81559), one does with 40599 left.
    result = cap.check(template(container(gpus=2, mem=40960)), [node("n")], [], replicas=4, current=0)
    assert report(result, "n")["room"] == 4
    result = cap.check(template(container(gpus=2, mem=40000)), [node("n")], [], replicas=8, current=0)
    assert report(result, "n")["room"] == 8  # two per GPU, 2 GPUs each


def test_split_count_limits_tasks_per_gpu():
    # 10 tasks per GPU (deviceSplitCount): 100 MiB slices stop at 10 per GPU, not at the memory.
    result = cap.check(template(container(gpus=1, mem=100)), [node("n")], [], replicas=1, current=0)
    assert report(result, "n")["room"] == 80


def test_whole_gpu_needs_a_device_with_no_task_and_cores_zero_not_on_full_cores():
    devices = cap.node_devices(node("n"))[0]
    whole = cap.replica_request(template(container(gpus=1)))[0]
    slice_ = cap.replica_request(template(container(gpus=1, mem=100)))[0]
    cap._take(devices[0], 100, 0)
    assert not cap.device_fits(devices[0], whole)  # exclusive: the device has a task
    assert cap.device_fits(devices[0], slice_)
    cap._take(devices[1], 100, 100)
    assert not cap.device_fits(devices[1], slice_)  # cores 0 on a device whose cores are all taken


def test_gpu_type_and_uuid_annotations():
    n = node("n")
    only_a100 = template(container(gpus=1), annotations={"nvidia.com/use-gputype": "A100"})
    assert report(cap.check(only_a100, [n], [], 1, 0), "n")["room"] == 0
    h100 = template(container(gpus=1), annotations={"nvidia.com/use-gputype": "a100, h100"})
    assert report(cap.check(h100, [n], [], 1, 0), "n")["room"] == 8
    not_two = template(container(gpus=1), annotations={
        "nvidia.com/nouse-gpuuuid": "GPU-00000000-0000-0000-0000-000000000000,GPU-00000000-0000-0000-0000-000000000001"})
    assert report(cap.check(not_two, [n], [], 1, 0), "n")["room"] == 6


def test_two_gpu_containers_in_one_replica():
    t = template(container(gpus=3, name="a"), container(gpus=1, mem=1000, name="b"))
    result = cap.check(t, [node("n")], [], 1, 0)
    assert report(result, "n")["room"] == 2
    assert result["request"]["gpus"] == 4 and result["request"]["description"] == "3 whole GPUs + 1 GPU x 1000 MiB"


# --- what is used already ---------------------------------------------------

ALLOCATED = ("GPU-00000000-0000-0000-0000-000000000000,NVIDIA,81559,100:"
             "GPU-00000000-0000-0000-0000-000000000001,NVIDIA,81559,100:;"
             "GPU-00000000-0000-0000-0000-000000000002,NVIDIA,20000,30:;")


def test_allocation_annotation_is_parsed_as_hami_writes_it():
    assert cap.parse_allocation(ALLOCATED) == [
        [{"uuid": "GPU-00000000-0000-0000-0000-000000000000", "type": "NVIDIA", "memory_mib": 81559, "cores": 100},
         {"uuid": "GPU-00000000-0000-0000-0000-000000000001", "type": "NVIDIA", "memory_mib": 81559, "cores": 100}],
        [{"uuid": "GPU-00000000-0000-0000-0000-000000000002", "type": "NVIDIA", "memory_mib": 20000, "cores": 30}],
    ]
    # An init container with no GPU keeps its (empty) place.
    gpu = {"uuid": "GPU-1", "type": "NVIDIA", "memory_mib": 10, "cores": 0}
    assert cap.parse_allocation(";GPU-1,NVIDIA,10,0:;") == [[], [gpu]]
    assert cap.parse_allocation("") == []
    with pytest.raises(ValueError):
        cap.parse_allocation("GPU-1,NVIDIA:;")


def test_allocated_pod_is_counted_exactly_on_its_gpus():
    # The pod's spec says 1 GPU, but HAMi's annotation says which three it holds: the annotation wins.
    held = pod("p", "n", container(gpus=1), annotations={"hami.io/vgpu-devices-allocated": ALLOCATED})
    result = cap.check(template(container(gpus=1)), [node("n")], [held], 1, 0)
    r = report(result, "n")
    assert r["room"] == 5 and r["free_gpus"] == 5 and r["pods"] == 1
    assert r["free_memory_mib"] == 8 * H100_MIB - 2 * H100_MIB - 20000
    # A slice fits beside the 20000 MiB/30% one on GPU 2, not on GPUs 0 and 1.
    result = cap.check(template(container(gpus=1, mem=60000)), [node("n")], [held], 1, 0)
    assert report(result, "n")["room"] == 6


def test_unannotated_pods_are_placed_first_fit_and_finished_pods_ignored():
    pods = [pod("a", "n", container(gpus=4)), pod("b", "n", container(gpus=2, mem=40000)),
            pod("done", "n", container(gpus=8), phase="Succeeded"), pod("failed", "n", container(gpus=8), phase="Failed"),
            pod("pending", None, container(gpus=8), phase="Pending"), pod("cpu", "n", container())]
    result = cap.check(template(container(gpus=1)), [node("n")], pods, 1, 0)
    r = report(result, "n")
    assert r["pods"] == 2
    assert r["free_gpus"] == 2 and r["room"] == 2  # 4 whole + 2 with a 40000 MiB slice each
    assert report(cap.check(template(container(gpus=1, mem=40000)), [node("n")], pods, 1, 0), "n")["room"] == 6


def test_pod_assigned_by_hami_but_not_bound_counts_on_its_node():
    assigned = pod("a", None, container(gpus=8), annotations={"hami.io/vgpu-node": "n"}, phase="Pending")
    assert report(cap.check(template(container(gpus=1)), [node("n")], [assigned], 1, 0), "n")["room"] == 0


def test_pods_of_the_workload_hold_gpus_and_its_pending_ones_need_room():
    pods = [pod("vllm-0", "a", container(gpus=4), namespace="ai", owner="vllm"),
            pod("vllm-1", None, container(gpus=4), namespace="ai", owner="vllm", phase="Pending")]
    result = cap.check(template(container(gpus=4)), [node("a"), node("b")], pods, replicas=3, current=2,
                       name="vllm", namespace="ai")
    assert result["pending"] == ["vllm-1"] and result["additional"] == 1 and result["needed"] == 2
    assert result["room"] == 3 and result["fits"]
    assert "needs" not in result["msg"] and "2 more replicas (1 new, 1 Pending now) of 4 whole GPUs fit" in result["msg"]


# --- which nodes ------------------------------------------------------------

def test_toleration_rules():
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    assert cap.tolerates({"key": "nvidia.com/gpu", "operator": "Exists"}, taint)
    assert cap.tolerates({"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"}, taint)
    assert cap.tolerates({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}, taint)  # no operator: Equal
    assert not cap.tolerates({"key": "nvidia.com/gpu", "value": "other"}, taint)
    assert not cap.tolerates({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, taint)
    assert cap.tolerates({"operator": "Exists"}, taint)  # empty key + Exists: every taint
    assert not cap.tolerates({"key": "other", "operator": "Exists"}, taint)
    # (An empty key with Equal is refused by API validation, so ToleratesTaint never sees one.)
    numeric = {"key": "load", "value": "5", "effect": "NoSchedule"}
    assert cap.tolerates({"key": "load", "operator": "Gt", "value": "3"}, numeric)
    assert not cap.tolerates({"key": "load", "operator": "Lt", "value": "3"}, numeric)
    assert not cap.tolerates({"key": "load", "operator": "Gt", "value": "x"}, numeric)
    assert not cap.tolerates({"key": "load", "operator": "Bogus"}, numeric)


def test_nodes_excluded_with_their_reasons():
    nodes = [
        node("gpu-a"),
        node("gpu-b", ready=False, taints=[{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]),
        node("gpu-c", cordoned=True, taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]),
        node("gpu-d", taints=[{"key": "dedicated", "value": "train", "effect": "NoExecute"},
                              {"key": "soft", "effect": "PreferNoSchedule"}]),
        node("gpu-e", labels={"gpu": "off"}),
    ]
    result = cap.check(template(container(gpus=4)), nodes, [], replicas=3, current=0, name="vllm", namespace="ai")
    assert [r["excluded"] for r in result["nodes"]] == [
        [], ["NotReady"], ["cordoned"], ["taint dedicated=train:NoExecute"], ["nodeSelector"]]
    assert [r["matches"] for r in result["nodes"]] == [True, True, True, True, False]
    assert result["room"] == 2 and not result["fits"]
    assert report(result, "gpu-a")["new_replicas"] == 2


def test_tolerations_let_the_pod_onto_tainted_and_cordoned_nodes():
    dedicated = {"key": "dedicated", "value": "train", "effect": "NoSchedule"}
    nodes = [node("gpu-c", cordoned=True), node("gpu-d", taints=[dedicated])]
    tolerate = [{"key": "dedicated", "operator": "Equal", "value": "train", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
    result = cap.check(template(container(gpus=4), tolerations=tolerate), nodes, [], 4, 0)
    assert [r["excluded"] for r in result["nodes"]] == [[], []] and result["room"] == 4


def test_required_node_affinity():
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]},
                              {"key": "broken", "operator": "DoesNotExist"}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gpu-z"]}]},
    ]}}}
    nodes = [node("gpu-a", labels={"zone": "a"}), node("gpu-b", labels={"zone": "b", "broken": "yes"}),
             node("gpu-c", labels={"zone": "c"}), node("gpu-z")]
    result = cap.check(template(container(gpus=8), selector={}, affinity=affinity), nodes, [], 1, 0)
    assert [r["matches"] for r in result["nodes"]] == [True, False, False, True]
    assert report(result, "gpu-b")["excluded"] == ["node affinity"]
    assert cap._requirement({"operator": "NotIn", "values": ["x"]}, False, None)
    assert cap._requirement({"operator": "Gt", "values": ["3"]}, True, "4")
    assert not cap._requirement({"operator": "Lt", "values": ["3"]}, True, "4")


# --- the check and its message ----------------------------------------------

def test_refusal_message_gives_the_numbers():
    busy = [pod(f"x{i}", "gpu-a", container(gpus=1)) for i in range(5)] + \
        [pod(f"y{i}", "gpu-b", container(gpus=1)) for i in range(7)]
    nodes = [node("gpu-a"), node("gpu-b"), node("gpu-c", cordoned=True), node("gpu-d", labels={"gpu": "off"}),
             node("cpu-0", register=None)]
    result = cap.check(template(container(gpus=2, mem=40960)), nodes, busy, replicas=6, current=3,
                       name="vllm", namespace="ai")
    assert not result["fits"] and (result["needed"], result["room"]) == (3, 1)
    assert result["msg"] == (
        "scale ai/vllm to 6 needs 3 more replicas of 2 GPUs x 40960 MiB; the 4 nodes matching gpu=on have room for "
        "1: gpu-a (1: 3 of 8 GPUs free), gpu-b (0: 1 of 8 GPUs free), gpu-c excluded (cordoned); 1 without GPUs; "
        "1 other node does not match")
    a = report(result, "gpu-a")
    assert (a["gpus"], a["free_gpus"], a["usable_gpus"], a["free_memory_mib"], a["new_replicas"]) == \
        (8, 3, 3, 3 * H100_MIB, 1)


def test_enough_room_fits_and_says_so():
    result = cap.check(template(container(gpus=4), selector={"nvidia.com/gpu.present": "true"}),
                       [node(f"gpu-{i}", labels={"nvidia.com/gpu.present": "true"}) for i in range(4)], [], 8, 0,
                       name="vllm", namespace="ai")
    assert result["fits"] and result["room"] == 8 and result["needed"] == 8
    assert result["msg"].startswith("scale ai/vllm to 8: 8 more replicas of 4 whole GPUs fit; the 4 nodes matching "
                                    "nvidia.com/gpu.present=true have room for 8: gpu-0 (2: 8 of 8 GPUs free)")
    assert [r["new_replicas"] for r in result["nodes"]] == [2, 2, 2, 2]
    short = cap.check(template(container(gpus=4), selector={}),
                      [node(f"gpu-{i}") for i in range(4)], [], 9, 0, name="vllm", namespace="ai")
    assert not short["fits"] and short["msg"].startswith(
        "scale ai/vllm to 9 needs 9 more replicas of 4 whole GPUs; the 4 nodes have room for 8: ")


def test_scaling_down_or_to_the_same_count_has_nothing_to_check():
    result = cap.check(template(container(gpus=8)), [node("n", cordoned=True)], [], replicas=2, current=3,
                       name="vllm", namespace="ai")
    assert result["fits"] and result["needed"] == 0 and result["additional"] == 0 and result["room"] == 0
    assert result["msg"].startswith("scale ai/vllm to 2: nothing to add (3 now)")


def test_no_gpu_request_fits():
    result = cap.check(template(container()), [node("n")], [], 5, 0, name="web", namespace="ai")
    assert result["fits"] and "ask for no GPU" in result["msg"]


def test_result_is_json_serializable():
    json.dumps(cap.check(template(container(gpus=1)), [node("n")], [], 1, 0))


def test_allocatable_bounds_the_node_as_kube_scheduler_would():
    """kube-scheduler's NodeResourcesFit runs before HAMi's extender: a node
    whose allocatable nvidia.com/gpu is used up takes no more pods, whatever
    room its GPUs have (the sandbox advertises one nvidia.com/gpu per GPU)."""
    nodes = [node("gpu-a", allocatable={"nvidia.com/gpu": "8"})]
    template = {"spec": {"nodeSelector": {"gpu": "on"}, "containers": [container(gpus=1, mem=8192)]}}
    running = [{"metadata": {"name": f"other-{i}", "namespace": "x"},
                "spec": {"nodeName": "gpu-a", "containers": [container(gpus=1, mem=1024)]},
                "status": {"phase": "Running"}} for i in range(6)]
    result = cap.check(template, nodes, running, replicas=3, current=0, name="vllm", namespace="ai")
    assert result["room"] == 2 and result["fits"] is False
    assert result["nodes"][0]["bound_by"] == "nvidia.com/gpu"
    assert "gpu-a (2: 8 of 8 GPUs free, allocatable nvidia.com/gpu full)" in result["msg"]


def test_a_group_of_pods_one_a_node_counts_nodes_not_gpus():
    # vllm_serve's group (a replica larger than a node): each pod 2 of a node's 8 GPUs, never two of the workload's
    # pods on one node (required anti-affinity on the hostname, the scheduler's InterPodAffinity filter).
    apart = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "vllm"}}}]}}
    group = template(container(gpus=2), affinity=apart)
    nodes = [node(f"gpu-{i}") for i in range(4)]
    # One group of 2 runs on gpu-0 and gpu-1 (pods of the workload's namespace and labels).
    running = [pod(n, on, container(gpus=2), namespace="ai") for n, on in (("vllm-0", "gpu-0"), ("vllm-rank1-0", "gpu-1"))]
    for p in running:
        p["metadata"]["labels"] = {"app": "vllm"}
    one_more = cap.check(group, nodes, running, replicas=2, current=1, name="vllm", namespace="ai", group_size=2)
    assert one_more["fits"] and (one_more["needed"], one_more["room"]) == (2, 2)
    assert [r["room"] for r in one_more["nodes"]] == [0, 0, 1, 1]
    assert "gpu-0 (0: holds one of its pods already, one a node)" in one_more["msg"]
    assert one_more["msg"].startswith("scale ai/vllm to 2: 1 more group of 2 pods, one a node (2 pods) of 2 whole "
                                      "GPUs fit")
    two_more = cap.check(group, nodes, running, replicas=3, current=1, name="vllm", namespace="ai", group_size=2)
    assert not two_more["fits"] and (two_more["needed"], two_more["room"]) == (4, 2)
    assert two_more["msg"].startswith("scale ai/vllm to 3 needs 2 more groups of 2 pods, one a node (4 pods) of 2 "
                                      "whole GPUs; the 4 nodes matching gpu=on have room for 2")
    # Without the anti-affinity the same GPUs would hold 4 pods a node: the rule is what bounds it.
    assert cap.check(template(container(gpus=2)), nodes, running, replicas=3, current=1, name="vllm",
                     namespace="ai", group_size=2)["fits"]
    # Pods of another namespace, or other labels, do not keep a pod off a node.
    elsewhere = [dict(p, metadata={**p["metadata"], "namespace": "other"}) for p in running]
    assert [r["room"] for r in cap.check(group, nodes, elsewhere, 2, 1, "vllm", "ai", 2)["nodes"]] == [1, 1, 1, 1]
