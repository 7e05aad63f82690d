"""inferops.vllm.gpu_capacity against the sandbox's GPU nodes (kwok, 8
simulated H100s each, registered as HAMi 2.10 and 2.7 write it): room for
whole-GPU replicas, GPUs held by running pods subtracted, a cordoned node
left out, and the refusal with the numbers."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

from support.ansible import run_module

pytestmark = pytest.mark.integration
IMAGE = "registry.invalid/vllm-openai:v0.12.0"
GPUS_PER_REPLICA = 4  # two replicas per 8-GPU node


def holds_gpus(pod: dict) -> bool:
    return any(name.startswith("nvidia.com/") for c in pod["spec"].get("containers") or []
               for name in ((c.get("resources") or {}).get("limits") or {}))


def idle_gpu_nodes(sandbox, kube, at_least: int) -> list[str]:
    """The sandbox's GPU nodes that take pods and on which no pod holds GPUs,
    once there are ``at_least`` of them: the GPU workloads of earlier tests'
    namespaces go in the background, and are watched going (the HAMi device
    plugin's pods, which hold no GPU, stay)."""
    schedulable = []
    for name in sandbox.gpu_nodes:
        node = kube.get(f"/api/v1/nodes/{name}")
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
        tainted = any(t.get("effect") in ("NoSchedule", "NoExecute") for t in node["spec"].get("taints") or [])
        if ready and not node["spec"].get("unschedulable") and not tainted:
            schedulable.append(name)
    idle: list[str] = []

    def enough(pods: list[dict]) -> bool:
        busy = {p["spec"].get("nodeName") for p in pods if holds_gpus(p)}
        idle[:] = sorted(n for n in schedulable if n not in busy)
        return len(idle) >= at_least

    wait_until(kube.api, "/api/v1/pods", enough, 180, [("fieldSelector", "status.phase!=Succeeded,status.phase!=Failed")])
    return idle


def pod_template(nodes: list[str], gpus: int = GPUS_PER_REPLICA) -> dict:
    # The label the sandbox's GPU nodes carry (GPU feature discovery's), and,
    # so that what other tests left running does not change the numbers,
    # only the nodes found idle. The sandbox has no HAMi scheduler to keep a
    # node's whole GPUs apart (its kube-scheduler counts 80 device IDs a
    # node, HAMi's split count): the running replicas are spread one a node
    # and at most two, as HAMi would place 4-GPU replicas on 8-GPU nodes.
    return {
        "metadata": {"labels": {"app": "cap"}},
        "spec": {
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "DoNotSchedule",
                                           "labelSelector": {"matchLabels": {"app": "cap"}}}],
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}}},
            "containers": [{"name": "vllm", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
        },
    }


def statefulset(name: str, template: dict, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": template["metadata"]["labels"]}, "template": template}}


def capacity(sandbox, name: str, namespace: str, replicas: int, check: bool = False, **extra) -> dict:
    return run_module("inferops.vllm.gpu_capacity", {"name": name, "namespace": namespace, "replicas": replicas,
                                                     **extra}, kubeconfig=sandbox.kubeconfig, check=check)


def by_name(result: dict) -> dict:
    return {n["name"]: n for n in result["nodes"]}


def test_room_running_pods_and_cordon(sandbox, namespace, kube):
    idle = idle_gpu_nodes(sandbox, kube, at_least=2)
    k = len(idle)  # 4 in a fresh sandbox: 8 replicas of 4 GPUs fit, 9 do not
    template = pod_template(idle)
    kube.create(statefulset("cap", template, replicas=0), namespace)

    result = capacity(sandbox, "cap", namespace, 2 * k)
    assert result.get("failed") is not True, result.get("msg")
    assert (result["fits"], result["needed"], result["room"], result["current_replicas"]) == (True, 2 * k, 2 * k, 0)
    assert result["changed"] is False
    assert result["request"]["description"] == "4 whole GPUs"
    assert result["request"]["containers"] == [{"container": "vllm", "gpus": 4, "memory_mib": None,
                                                "memory_percentage": 100, "cores": 100}]
    nodes = by_name(result)
    for name in idle:
        assert nodes[name]["excluded"] == [] and nodes[name]["source"] == "hami-register"
        assert (nodes[name]["gpus"], nodes[name]["free_gpus"], nodes[name]["room"], nodes[name]["new_replicas"]) == \
            (8, 8, 2, 2)
        assert nodes[name]["free_memory_mib"] == 8 * 81559
    for name in set(sandbox.gpu_nodes) - set(idle):
        assert nodes[name]["excluded"] == ["node affinity"]
    for name in sandbox.cpu_nodes:
        assert nodes[name]["matches"] is False and nodes[name]["excluded"][0] == "nodeSelector"

    short = capacity(sandbox, "cap", namespace, 2 * k + 1)
    assert short["failed"] is True and short["fits"] is False
    assert (short["needed"], short["room"]) == (2 * k + 1, 2 * k)
    listing = ", ".join(f"{n} (2: 8 of 8 GPUs free)" for n in idle)
    others = len(sandbox.gpu_nodes) + len(sandbox.cpu_nodes) - k
    assert short["msg"] == (
        f"scale {namespace}/cap to {2 * k + 1} needs {2 * k + 1} more replicas of 4 whole GPUs; the {k} nodes matching "
        f"nvidia.com/gpu.present=true and the node affinity have room for {2 * k}: {listing}; "
        f"{others} other {'node does' if others == 1 else 'nodes do'} not match"), short["msg"]
    reported = capacity(sandbox, "cap", namespace, 2 * k + 1, fail_when_short=False)
    assert reported.get("failed") is not True and reported["fits"] is False and reported["room"] == 2 * k

    # Three replicas running (kwok runs what the scheduler placed): their 12 GPUs are taken.
    kube.patch("apps/v1", "StatefulSet", namespace, "cap", body={"spec": {"replicas": 3}})
    kube.wait_for(("apps/v1", "StatefulSet", namespace),
                  lambda s: s["metadata"]["name"] == "cap" and (s.get("status") or {}).get("readyReplicas") == 3, 180)
    placed = {}
    for pod in kube.list("v1", "Pod", namespace, label_selector="app=cap"):
        placed[pod["spec"]["nodeName"]] = placed.get(pod["spec"]["nodeName"], 0) + 1
    result = capacity(sandbox, "cap", namespace, 2 * k)
    assert result.get("failed") is not True, result.get("msg")
    assert (result["current_replicas"], result["needed"], result["room"], result["fits"]) == (3, 2 * k - 3, 2 * k - 3,
                                                                                              True)
    nodes = by_name(result)
    for name in idle:
        held = placed.get(name, 0)
        assert (nodes[name]["pods"], nodes[name]["free_gpus"], nodes[name]["room"]) == (held, 8 - 4 * held, 2 - held)
    short = capacity(sandbox, "cap", namespace, 2 * k + 1, check=True)  # check mode: the same check, read only
    assert short["failed"] is True and (short["needed"], short["room"]) == (2 * k - 2, 2 * k - 3)
    assert f"needs {2 * k - 2} more replicas of 4 whole GPUs" in short["msg"]
    for name in idle:
        held = placed.get(name, 0)
        assert f"{name} ({2 - held}: {8 - 4 * held} of 8 GPUs free)" in short["msg"]

    # A cordoned node is left out, with what it could have taken.
    target = max(idle, key=lambda n: (2 - placed.get(n, 0), n))
    kube.patch("v1", "Node", None, target, body={"spec": {"unschedulable": True}})
    try:
        cordoned = capacity(sandbox, "cap", namespace, 3, fail_when_short=False)
        assert cordoned["fits"] is True and cordoned["needed"] == 0  # nothing to add: fits whatever the room
        node = by_name(cordoned)[target]
        assert node["excluded"] == ["cordoned"] and node["room"] == 0
        assert cordoned["room"] == 2 * k - 3 - (2 - placed.get(target, 0))
        refused = capacity(sandbox, "cap", namespace, 2 * k)
        assert refused["failed"] is True and f"{target} excluded (cordoned)" in refused["msg"]
    finally:
        kube.patch("v1", "Node", None, target, body={"spec": {"unschedulable": None}})


def test_template_of_a_statefulset_not_created_yet(sandbox, namespace, kube):
    idle = idle_gpu_nodes(sandbox, kube, at_least=1)
    result = capacity(sandbox, "later", namespace, len(idle), pod_template=pod_template(idle, gpus=8))
    assert result.get("failed") is not True, result.get("msg")
    assert (result["fits"], result["current_replicas"], result["needed"], result["room"]) == (True, 0, len(idle),
                                                                                              len(idle))
    assert result["request"]["description"] == "8 whole GPUs"

    missing = capacity(sandbox, "later", namespace, 1)
    assert missing["failed"] is True
    assert missing["msg"].startswith(f"name: StatefulSet {namespace}/later not found; give pod_template")
    bad = capacity(sandbox, "later", namespace, 1, pod_template={"spec": {"containers": [
        {"name": "vllm", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "40Gi"}}}]}})
    assert bad["failed"] is True and "nvidia.com/gpumem" in bad["msg"] and "MiB per GPU" in bad["msg"]
