"""gpu/_placement: where HAMi's scheduler puts every replica of a fleet, by
its node and GPU policies per release. The expectations are worked out by
hand from HAMi's formulas (Project-HAMi/HAMi, the file and function named
in each test), not read back from the code."""

from __future__ import annotations

import json
import random
import time

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _placement as P
from support.fleet import A100, H100, big_fleet, foreign_pod, gpu_container, gpu_node, model_template

H100_MIB = 81559


def fleet(name, container, replicas, namespace="ai", **kwargs):
    template_args = {k: kwargs.pop(k) for k in ("selector", "annotations", "tolerations", "labels") if k in kwargs}
    return {"name": name, "namespace": namespace, "template": model_template(container, **template_args),
            "replicas": replicas, **kwargs}


def gpus_of(result, pod):
    placement = next(p for p in result["placements"] if p["pod"] == pod)
    return placement["node"], [g["index"] for g in placement["gpus"]]


def own_pod(name, node, container, statefulset, namespace="ai", labels=None):
    pod = foreign_pod(name, node, container, namespace=namespace)
    pod["metadata"]["ownerReferences"] = [{"kind": "StatefulSet", "name": statefulset, "apiVersion": "apps/v1"}]
    pod["metadata"]["labels"] = labels or {"app": statefulset}
    return pod


# --- GPUs on a node: the GPU policy ------------------------------------------------
# The node: 8 H100s, NUMA 0 for GPUs 0-3 and 1 for 4-7 (support/fleet.py). Two
# slices of 8192 MiB, one after the other.
#
# v2.10.0 (gpu_policy.go ComputeScore): the NVIDIA request's type "NVIDIA" is not
# the device's type (the model name), so a device scores its usage alone: 0 when
# empty, 10 * (1/10 + 0/100 + 8192/81559) = 2.004 with one slice. Less: binpack
# (score, NUMA) ascending, spread score descending then NUMA ascending; Fit
# (device.go) walks from the end.
#   first slice, all 0: order 0..7 both ways -> GPU 7.
#   second: spread puts GPU 7 first (highest score) -> walk meets 6; binpack puts
#   it last -> 7.
# v2.7.1: ComputeScore adds the request (all devices equal when empty); Less:
# NUMA first (binpack: higher NUMA first; spread: lower first), then the score.
#   binpack: [4,5,6,7,0,1,2,3] -> GPU 3, then 3 again (the highest score of NUMA 0, last).
#   spread: [0..3,4..7] -> GPU 7; then NUMA 1 sorted by score descending [7,4,5,6] -> 6.

@pytest.mark.parametrize("version,policy,expected", [
    ("2.10.0", "spread", [7, 6]), ("2.10.0", "binpack", [7, 7]),
    ("2.7.1", "spread", [7, 6]), ("2.7.1", "binpack", [3, 3]),
])
def test_gpu_policy_orders_devices_as_hami_does(version, policy, expected):
    result = P.place_fleet([fleet("chat", gpu_container(1, mem=8192), 2)], [gpu_node("n")], [],
                           gpu_policy=policy, hami_version=version)
    assert result["fits"]
    assert [gpus_of(result, f"chat-{i}")[1][0] for i in range(2)] == expected


def test_device_score_formulas_per_release():
    device = {"split_count": 10, "cores": 100, "memory_mib": H100_MIB, "used": 1, "used_cores": 0,
              "used_memory_mib": 8192, "type": H100[0], "numa": 1}
    request = {"gpus": 2, "memory_mib": 8192, "memory_percentage": None, "cores": 30}
    # v2.10.0: usage only (type mismatch): 10 * (0.1 + 0 + 8192/81559)
    assert P.device_score(device, request, "2.10.0") == pytest.approx(10 * (0.1 + 8192 / H100_MIB), rel=1e-6)
    # v2.7.1: request += Nums (2), cores, memory: 10 * (3/10 + 30/100 + 16384/81559)
    assert P.device_score(device, request, "2.7.1") == pytest.approx(10 * (0.3 + 0.3 + 16384 / H100_MIB), rel=1e-6)
    # v2.7.1's percentage in integer arithmetic: 50 % counts 0 MiB, 100 % the whole device.
    half = dict(request, memory_mib=None, memory_percentage=50, cores=0, gpus=1)
    assert P.device_score(device, half, "2.7.1") == pytest.approx(10 * (0.2 + 0 + 8192 / H100_MIB), rel=1e-6)


def test_pod_annotation_overrides_the_gpu_policy():
    template_binpack = fleet("chat", gpu_container(1, mem=8192), 2,
                             annotations={"hami.io/gpu-scheduler-policy": "binpack"})
    result = P.place_fleet([template_binpack], [gpu_node("n")], [])
    assert [gpus_of(result, f"chat-{i}")[1][0] for i in range(2)] == [7, 7]
    # v2.10.0's mutex policy is not modelled: placed in spread's order, and said.
    mutex = P.place_fleet([fleet("chat", gpu_container(1), 1, annotations={"hami.io/gpu-scheduler-policy": "mutex"})],
                          [gpu_node("n")], [])
    assert mutex["fits"] and mutex["notes"] and "'mutex' is not modelled" in mutex["notes"][0]


# --- nodes: the node policy ------------------------------------------------------
# node_policy.go ComputeDefaultScore: node a holds one whole GPU (HAMi's
# allocation annotation): 10 * (1/80 + 100/800 + 81559/652472) = 2.625; b: 0.
# NodeScoreList.Less + scheduler.go Filter (the last after sort.Sort, the only
# node returned): binpack takes the highest score, spread the lowest.

def whole_gpu_on(node, index):
    return foreign_pod(f"train-{node}", node, gpu_container(1), allocated=f"GPU-{node}-{index},NVIDIA,{H100_MIB},100:;")


@pytest.mark.parametrize("version", ["2.7.1", "2.10.0"])
def test_node_policy_binpack_and_spread(version):
    nodes, pods = [gpu_node("a"), gpu_node("b")], [whole_gpu_on("a", 0)]
    fleet_state = P._Fleet(nodes, pods, version).base(frozenset())
    assert P.node_score(fleet_state.nodes["a"].devices, version) == pytest.approx(2.625)
    assert P.node_score(fleet_state.nodes["b"].devices, version) == 0
    work = [fleet("chat", gpu_container(1), 4)]
    binpack = P.place_fleet(work, nodes, pods, node_policy="binpack", hami_version=version)
    assert [gpus_of(binpack, f"chat-{i}")[0] for i in range(4)] == ["a", "a", "a", "a"]
    # spread: b (0 < 2.625); then a and b both 2.625 (a tie: the first name); then b; then a.
    spread = P.place_fleet(work, nodes, pods, node_policy="spread", hami_version=version)
    assert [gpus_of(spread, f"chat-{i}")[0] for i in range(4)] == ["b", "a", "b", "a"]
    # The pod's own annotation wins over the default.
    annotated = [fleet("chat", gpu_container(1), 1, annotations={"hami.io/node-scheduler-policy": "spread"})]
    assert gpus_of(P.place_fleet(annotated, nodes, pods, hami_version=version), "chat-0")[0] == "b"


def test_release_rules_map_to_the_nearest_known():
    assert [P.rules_for(v) for v in ("2.6.0", "2.7.1", "2.8.3", "2.9.0", "2.10.0", "2.11.2", "v3.0")] == \
        ["2.7.1", "2.7.1", "2.7.1", "2.10.0", "2.10.0", "2.10.0", "2.10.0"]
    assert P.place_fleet([], [gpu_node("n")], [], hami_version="2.8.1")["rules"] == "2.7.1"


# --- per-GPU rules --------------------------------------------------------------

def test_split_count_limits_tasks_per_gpu():
    # Fit: Count <= Used refuses (CardTimeSlicingExhausted); a split count of 2 takes two slices (the
    # allocatable, which the device plugin makes GPUs x split count, is raised so that it is not what binds).
    node = gpu_node("n", gpus=1, split=2)
    node["status"]["allocatable"] = {"nvidia.com/gpu": "10"}
    result = P.place_fleet([fleet("tiny", gpu_container(1, mem=100), 3)], [node], [])
    assert not result["fits"] and [u["pod"] for u in result["unplaced"]] == ["tiny-2"]
    assert result["unplaced"][0]["reasons"] == {"n": "0 of 1 GPUs with 100 MiB free, needs 1 (1 split count)"}


def test_whole_gpu_is_exclusive():
    # A whole GPU asks the device's memory (100 %) and 100 cores (defaultExclusiveCoreIfNeeded): beside a
    # slice, Fit refuses it on memory, which it checks first.
    pods = [foreign_pod("notebook", "n", gpu_container(1, mem=1000))]
    result = P.place_fleet([fleet("chat", gpu_container(1), 1)], [gpu_node("n", gpus=1)], pods)
    assert result["unplaced"][0]["reasons"]["n"] == "0 of 1 GPUs free, needs 1 (1 memory)"
    # gpucores 100 with room in memory: refused as exclusive (Totalcore == 100 && Coresreq == 100 && Used > 0).
    result = P.place_fleet([fleet("chat", gpu_container(1, mem=1000, cores=100), 1)], [gpu_node("n", gpus=1)], pods)
    assert result["unplaced"][0]["reasons"]["n"] == "0 of 1 GPUs with 1000 MiB free, needs 1 (1 exclusive (in use))"
    # And a slice cannot join a GPU held whole.
    pods = [whole_gpu_on("n", 0)]
    result = P.place_fleet([fleet("chat", gpu_container(1, mem=1000), 1)], [gpu_node("n", gpus=1)], pods)
    assert result["unplaced"][0]["reasons"]["n"] == "0 of 1 GPUs with 1000 MiB free, needs 1 (1 memory)"


def test_taints_and_selectors_exclude_nodes_with_reasons():
    taint = {"key": "dedicated", "value": "train", "effect": "NoSchedule"}
    nodes = [gpu_node("a", taints=[taint]), gpu_node("b", A100), gpu_node("c", cordoned=True)]
    work = [fleet("chat", gpu_container(8), 1, selector={"nvidia.com/gpu.product": H100[1]})]
    result = P.place_fleet(work, nodes, [])
    assert result["unplaced"][0]["reasons"] == {
        "a": "excluded (taint dedicated=train:NoSchedule)", "b": "excluded (nodeSelector)",
        "c": "excluded (cordoned)"}
    assert [n["excluded"] for n in result["nodes"]] == [["taint dedicated=train:NoSchedule"], ["nodeSelector"],
                                                        ["cordoned"]]
    tolerated = [fleet("chat", gpu_container(8), 1, tolerations=[{"key": "dedicated", "operator": "Exists"}],
                       selector={"nvidia.com/gpu.product": H100[1]})]
    assert gpus_of(P.place_fleet(tolerated, nodes, []), "chat-0")[0] == "a"


def test_allocatable_bounds_the_node():
    # kube-scheduler's NodeResourcesFit before HAMi: 2 nvidia.com/gpu advertised, 2 taken by pods.
    node = gpu_node("n")
    node["status"]["allocatable"] = {"nvidia.com/gpu": "2"}
    result = P.place_fleet([fleet("chat", gpu_container(1, mem=1000), 3)], [node], [])
    assert [u["pod"] for u in result["unplaced"]] == ["chat-2"]
    assert result["unplaced"][0]["reasons"] == {"n": "allocatable nvidia.com/gpu full"}


# --- what runs already ---------------------------------------------------------

def test_existing_pods_annotated_exactly_and_stand_in_first_fit():
    annotated = foreign_pod("train", "n", gpu_container(1), allocated=f"GPU-n-5,NVIDIA,{H100_MIB},100:;")
    plain = foreign_pod("notebook", "n", gpu_container(1, mem=20000))
    result = P.place_fleet([fleet("chat", gpu_container(1), 6)], [gpu_node("n")], [annotated, plain])
    gpus = {g["index"]: g for g in result["nodes"][0]["gpus"]}
    assert [t["pod"] for t in gpus[5]["tasks"]] == ["other/train"]  # where HAMi's annotation says
    assert [t["pod"] for t in gpus[0]["tasks"]] == ["other/notebook"]  # the stand-in: the first GPU that fits
    assert gpus[0]["used_memory_mib"] == 20000 and gpus[0]["tasks"][0]["existing"]
    assert len(result["placements"]) == 6 and result["fits"]
    assert sorted(g for p in result["placements"] for g in gpus_of(result, p["pod"])[1]) == [1, 2, 3, 4, 6, 7]


def test_running_replicas_stay_and_scale_down_frees_gpus():
    pods = [own_pod(f"chat-{i}", "n", gpu_container(4), "chat") for i in range(2)]
    pods[0]["metadata"]["annotations"] = {
        "hami.io/vgpu-devices-allocated": "".join(f"GPU-n-{g},NVIDIA,{H100_MIB},100:" for g in range(4)) + ";"}
    pods[1]["metadata"]["annotations"] = {
        "hami.io/vgpu-devices-allocated": "".join(f"GPU-n-{g},NVIDIA,{H100_MIB},100:" for g in range(4, 8)) + ";"}
    # One replica: chat-1 (ordinal 1) is being removed; its four GPUs take the other model.
    work = [fleet("chat", gpu_container(4), 1), fleet("embed", gpu_container(4), 1)]
    result = P.place_fleet(work, [gpu_node("n")], pods)
    assert result["fits"]
    assert [(p["pod"], p["existing"]) for p in result["placements"]] == [("chat-0", True), ("embed-0", False)]
    assert gpus_of(result, "chat-0")[1] == [0, 1, 2, 3] and sorted(gpus_of(result, "embed-0")[1]) == [4, 5, 6, 7]
    # Two replicas: both stay, nothing left for embed.
    work[0]["replicas"] = 2
    assert [u["pod"] for u in P.place_fleet(work, [gpu_node("n")], pods)["unplaced"]] == ["embed-0"]


def test_a_group_is_one_pod_a_node():
    nodes = [gpu_node(n) for n in ("a", "b", "c")]
    result = P.place_fleet([fleet("big", gpu_container(2), 2, group_size=2)], nodes, [])
    assert [p["pod"] for p in result["placements"]] == ["big-0", "big-rank1-0", "big-1"]
    assert len({p["node"] for p in result["placements"]}) == 3
    [left] = result["unplaced"]
    assert left["pod"] == "big-rank1-1" and set(left["reasons"].values()) == {"holds a pod of big already (one a node)"}


# --- the table -------------------------------------------------------------------

def test_table_rows_and_text():
    work = [fleet("chat", gpu_container(1, mem=8192, cores=30), 1), fleet("embed", gpu_container(1, mem=4096), 1)]
    result = P.place_fleet(work, [gpu_node("n")], [], gpu_policy="binpack")
    assert result["table"] == [{"node": "n", "gpu": 7, "type": H100[0], "memory": f"12288/{H100_MIB} MiB",
                                "cores": "30/100", "tasks": "chat-0 (8192 MiB, 30%), embed-0 (4096 MiB)"}]
    assert result["table_text"].splitlines()[0].split() == ["NODE", "GPU", "TYPE", "MEMORY", "CORES", "TASKS"]
    assert result["msg"] == "2 replicas of 2 models placed on 1 GPUs of 1 nodes" and result["notes"] == []
    json.dumps(result)


# --- suggestions: each checked by placing again, and one step beyond -------------

def fits_with(work, nodes, pods, name, **change):
    changed = []
    for w in work:
        w = json.loads(json.dumps(w))
        if w["name"] == name:
            if "replicas" in change:
                w["replicas"] = change["replicas"]
            limits = w["template"]["spec"]["containers"][0]["resources"]["limits"]
            if "memory" in change:
                limits["nvidia.com/gpumem"] = str(change["memory"])
            if "cores" in change:
                limits["nvidia.com/gpucores"] = str(change["cores"])
            if "product" in change:
                w["template"]["spec"]["nodeSelector"]["nvidia.com/gpu.product"] = change["product"]
        changed.append(w)
    return P.place_fleet(changed, nodes, pods)["fits"]


def suggestion(result, change):
    return next(s for s in result["suggestions"] if s["change"] == change)


def test_suggestions_replicas_and_memory():
    # 2 GPUs of 81559 MiB: two 30000 MiB slices a GPU, so 4 of 6 fit; 6 fit at 81559 // 3 = 27186 MiB.
    nodes = [gpu_node("n", gpus=2)]
    work = [fleet("embed", gpu_container(1, mem=30000), 6, min_memory_mib=20000)]
    result = P.place_fleet(work, nodes, [])
    assert not result["fits"] and [u["pod"] for u in result["unplaced"]] == ["embed-4", "embed-5"]
    assert suggestion(result, "replicas")["to"] == 4
    assert fits_with(work, nodes, [], "embed", replicas=4) and not fits_with(work, nodes, [], "embed", replicas=5)
    assert suggestion(result, "gpu_memory_mib")["to"] == 27186
    assert fits_with(work, nodes, [], "embed", memory=27186) and not fits_with(work, nodes, [], "embed", memory=27187)
    assert "embed: 4 replicas instead of 6" in result["msg"]
    # No gpumem at or above min_memory_mib fits: said, not offered.
    work[0]["min_memory_mib"] = 28000
    none = suggestion(P.place_fleet(work, nodes, []), "gpu_memory_mib")
    assert none["to"] is None and "not even 28000 MiB" in none["text"]


def test_suggestion_cores():
    # One GPU: four slices of 40 % cores do not fit (100 / 40 = 2); at 25 % they do, at 26 % not.
    nodes = [gpu_node("n", gpus=1)]
    work = [fleet("chat", gpu_container(1, mem=8192, cores=40), 4)]
    result = P.place_fleet(work, nodes, [])
    assert suggestion(result, "gpu_cores")["to"] == 25
    assert fits_with(work, nodes, [], "chat", cores=25) and not fits_with(work, nodes, [], "chat", cores=26)


def test_suggestion_another_gpu_type():
    # The model asks for H100 nodes (nodeSelector); the one H100 node is full, the A100 node is free.
    nodes = [gpu_node("h", H100, gpus=2), gpu_node("a", A100, gpus=4)]
    work = [fleet("chat", gpu_container(1), 4, selector={"nvidia.com/gpu.product": H100[1]})]
    result = P.place_fleet(work, nodes, [])
    kind = suggestion(result, "gpu_type")
    assert kind["to"] == A100[0] and A100[1] in kind["text"]
    assert fits_with(work, nodes, [], "chat", product=A100[1])
    # The same through HAMi's annotation (CheckType: a case-insensitive substring of the GPU's type).
    work = [fleet("chat", gpu_container(1), 4, annotations={"nvidia.com/use-gputype": "h100"})]
    kind = suggestion(P.place_fleet(work, nodes, []), "gpu_type")
    assert kind["to"] == A100[0] and kind["from"] == H100[0]
    work[0]["template"]["metadata"]["annotations"]["nvidia.com/use-gputype"] = A100[0]
    assert P.place_fleet(work, nodes, [])["fits"]


def test_no_suggestion_for_a_later_workload_that_cannot_help():
    # model b is placed after a; a does not fit whatever b asks.
    nodes = [gpu_node("n", gpus=1)]
    work = [fleet("a", gpu_container(2), 1), fleet("b", gpu_container(1, mem=1000), 1)]
    result = P.place_fleet(work, nodes, [])
    assert [u["pod"] for u in result["unplaced"]] == ["a-0"]
    assert all(s["workload"] == "a" for s in result["suggestions"])
    assert suggestion(result, "replicas")["to"] == 0


# --- a large fleet ---------------------------------------------------------------

def test_500_nodes_50_models_fits_and_does_not():
    work, nodes, pods = big_fleet()
    started = time.perf_counter()
    result = P.place_fleet(work, nodes, pods)
    took = time.perf_counter() - started
    assert result["fits"] and len(result["placements"]) == sum(w["replicas"] for w in work)
    assert took < 20  # about 0.3 s on a 2-core machine; a loose bound against a quadratic slip
    # No pod on a node it may not go to: tainted (every 25th) and cordoned (every 40th) nodes hold none.
    used = {p["node"] for p in result["placements"]}
    assert not any(int(n[-4:]) % 25 == 24 or int(n[-4:]) % 40 == 39 for n in used)
    # H100-only models on H100 nodes (i % 5 < 3).
    for p in result["placements"]:
        if int(p["workload"][-2:]) % 6 == 5:
            assert int(p["node"][-4:]) % 5 < 3
    # One model too many: 400 replicas of 8 whole GPUs.
    huge = {"name": "huge", "namespace": "ai", "replicas": 400, "template": model_template(gpu_container(8))}
    result = P.place_fleet(work + [huge], nodes, pods)
    assert not result["fits"] and {u["workload"] for u in result["unplaced"]} == {"huge"}
    to = suggestion(result, "replicas")["to"]
    assert 0 < to < 400 and len(result["unplaced"]) == 400 - to
    assert P.place_fleet(work + [dict(huge, replicas=to)], nodes, pods)["fits"]
    assert not P.place_fleet(work + [dict(huge, replicas=to + 1)], nodes, pods)["fits"]


def test_deterministic_whatever_the_order_of_the_nodes():
    work, nodes, pods = big_fleet(nodes=60, models=12)
    first = P.place_fleet(work, nodes, pods)
    shuffled = list(nodes)
    random.Random(1).shuffle(shuffled)
    again = P.place_fleet(work, shuffled, pods)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)


def test_bad_input_is_named():
    with pytest.raises(ParameterError, match="replicas is -1"):
        P.place_fleet([fleet("a", gpu_container(1), -1)], [], [])
    with pytest.raises(ParameterError, match="names repeat"):
        P.place_fleet([fleet("a", gpu_container(1), 1), fleet("a", gpu_container(1), 1)], [], [])
    with pytest.raises(ParameterError, match="binpack or spread"):
        P.place_fleet([], [], [], node_policy="random")
