"""The simulated nodes: GPU nodes shaped as NVIDIA's GPU feature discovery
and HAMi's device plugin leave a real one, CPU nodes, all managed by kwok
(annotation kwok.x-k8s.io/node=fake). Waiting for them watches the API."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from sandboxctl.state import LOOPBACK, SandboxError, api_client, create_objects, save_state

from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _informer as informer

# Shape of the simulated GPU nodes (overridable per `up`).
DEFAULT_GPU_NODES = 4
DEFAULT_GPUS_PER_NODE = 8
DEFAULT_GPU_MEMORY_MIB = 81559  # what NVML reports for an H100 80GB HBM3
DEFAULT_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
DEFAULT_CPU_NODES = 1
ZONES = ("sandbox-a", "sandbox-b")
# kwok only manages nodes carrying this annotation.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SANDBOX_NODE_LABEL = "inferops.io/sandbox-node"


# The HAMi release whose device plugin "registered" each simulated GPU node,
# by node number: a mix, as a cluster has while HAMi is upgraded, so that a
# verify is proved on both formats.
REGISTER_FORMATS = ("2.10.0", "2.7.1")
# HAMi's deviceSplitCount (chart value devicePlugin.deviceSplitCount, 10 by
# default at v2.7.1 and v2.10.0): the tasks one GPU takes, written as each
# GPU's `count` in the registration, and the device IDs the device plugin
# advertises per GPU (pkg/device-plugin/nvidiadevice/nvinternal/rm/devices.go
# GetPluginDevices: one "<uuid>-<i>" for i < count), so a node of 8 GPUs
# advertises nvidia.com/gpu 80.
SPLIT_COUNT = 10
# What HAMi's scheduler leaves to its extender: every resource of its
# managedResources is ignoredByScheduler (charts/hami/templates/scheduler/
# configmapnew.yaml at v2.7.1, _helpers.tpl hami-vgpu.scheduler.managedResources
# at v2.10.0). The sandbox has no HAMi extender: its kube-scheduler ignores
# these (NodeResourcesFit ignoredResources) and still counts nvidia.com/gpu,
# the node-level bound a kubelet applies when it admits the pod.
HAMI_IGNORED_RESOURCES = ("nvidia.com/gpumem", "nvidia.com/gpucores", "nvidia.com/gpumem-percentage",
                          "nvidia.com/priority")


def gpu_register_annotation(node: str, gpus: int, mem_mib: int, product: str, hami: str = "2.10.0") -> str:
    """hami.io/node-nvidia-register exactly as that HAMi release's device
    plugin writes it (tests/unit/plugins/module_utils/gpu/hami_fixtures has
    the encoders' output and cites their source):
    2.7.1: per GPU "ID,count,devmem,devcore,type,numa,health,index,mode:",
    type "NVIDIA-" + NVML's name; from 2.8.0: a JSON list, NVML's name as
    type, zero index and numa and false health left out (omitempty)."""
    nvml_name = product.replace("-", " ")  # GPU feature discovery's label of NVML's name
    rows = [(f"GPU-{node}-{i:02d}", i, 0 if i < gpus // 2 or gpus == 1 else 1) for i in range(gpus)]
    if hami == "2.7.1":
        return "".join(f"{uuid},{SPLIT_COUNT},{mem_mib},100,NVIDIA-{nvml_name},{numa},true,{index},hami-core:"
                       for uuid, index, numa in rows)
    devices = []
    for uuid, index, numa in rows:
        device = {"id": uuid}
        if index:
            device["index"] = index
        device.update(count=SPLIT_COUNT, devmem=mem_mib, devcore=100, type=nvml_name)
        if numa:
            device["numa"] = numa
        device.update(mode="hami-core", health=True)
        devices.append(device)
    return json.dumps(devices, separators=(",", ":"))


def gpu_node_manifest(name: str, zone: str, gpus: int, mem_mib: int, product: str, hami: str = "2.10.0") -> dict:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1],
                "hami.io/node-nvidia-register": gpu_register_annotation(name, gpus, mem_mib, product, hami),
                # 2.7.1's device plugin reports itself; from 2.8.0 only the
                # scheduler writes the handshake (Requesting_, again from 2.9.0).
                "hami.io/node-handshake": f"Reported {now}" if hami == "2.7.1" else f"Requesting_{now}",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                SANDBOX_NODE_LABEL: "gpu",
                "topology.kubernetes.io/region": "sandbox",
                "topology.kubernetes.io/zone": zone,
                "node.kubernetes.io/instance-type": f"sandbox-{gpus}x-{product.lower()}",
                # What NVIDIA's GPU feature discovery puts on real GPU nodes.
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": str(mem_mib),
            },
        },
        "spec": {},
        "status": {
            "capacity": gpu_resources(gpus),
            "allocatable": gpu_resources(gpus),
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def gpu_resources(gpus: int) -> dict:
    """What a node with HAMi's device plugin advertises: nvidia.com/gpu, the
    split count's device IDs per GPU, and nothing of gpumem or gpucores
    (HAMi registers only its resourceName with the kubelet; memory and cores
    are its scheduler's, read from the registration annotation)."""
    res = {"cpu": "192", "memory": "2Ti", "pods": "110", "ephemeral-storage": "4Ti"}
    if gpus:
        res["nvidia.com/gpu"] = str(gpus * SPLIT_COUNT)
    return res


def scheduler_config(kubeconfig: str) -> str:
    """The sandbox kube-scheduler's KubeSchedulerConfiguration: HAMi's
    managed resources other than nvidia.com/gpu left out of NodeResourcesFit,
    as HAMi's own kube-scheduler leaves them to its extender."""
    return json.dumps({
        "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "leaderElection": {"leaderElect": False},
        "profiles": [{"schedulerName": "default-scheduler", "pluginConfig": [
            {"name": "NodeResourcesFit", "args": {"ignoredResources": list(HAMI_IGNORED_RESOURCES)}}]}],
    }, indent=2)


def cpu_node_manifest(name: str, zone: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                SANDBOX_NODE_LABEL: "cpu",
                "topology.kubernetes.io/region": "sandbox",
                "topology.kubernetes.io/zone": zone,
            },
        },
        "spec": {},
        "status": {
            "capacity": gpu_resources(0),
            "allocatable": gpu_resources(0),
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def create_nodes(kubeconfig: Path, manifests: list[dict]) -> None:
    create_objects(kubeconfig, "/api/v1/nodes", manifests)


def node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def wait_nodes_ready(kubeconfig: Path, names: set[str], timeout: float) -> None:
    """Watch nodes until every named node reports Ready=True."""
    def done(nodes: list[dict]) -> bool:
        return names <= {n["metadata"]["name"] for n in nodes if node_ready(n)}

    try:
        informer.wait_until(api_client(kubeconfig), "/api/v1/nodes", done, timeout,
                            query=[("labelSelector", SANDBOX_NODE_LABEL)])
    except TimeoutError as exc:
        raise SandboxError(f"nodes not Ready after {timeout:.0f}s ({exc})") from None


def wait_default_service_account(kubeconfig: Path, timeout: float) -> None:
    """Pods are refused until the controller-manager creates the default
    ServiceAccount; watch for it."""
    try:
        informer.wait_until(api_client(kubeconfig), "/api/v1/namespaces/default/serviceaccounts", bool, timeout,
                            query=[("fieldSelector", "metadata.name=default")])
    except TimeoutError:
        raise SandboxError("the default ServiceAccount did not appear: is kube-controller-manager running?") from None


def add_nodes(state: dict, gpu_nodes: int, gpus: int, mem_mib: int, product: str, cpu_nodes: int) -> None:
    kubeconfig = Path(state["kubeconfig"])
    start = len(state["gpu_nodes"])
    gpu_names = [f"gpu-node-{i}" for i in range(start, start + gpu_nodes)]
    cpu_start = len(state["cpu_nodes"])
    cpu_names = [f"cpu-node-{i}" for i in range(cpu_start, cpu_start + cpu_nodes)]
    manifests = [
        gpu_node_manifest(n, ZONES[(start + i) % len(ZONES)], gpus, mem_mib, product,
                          REGISTER_FORMATS[(start + i) % len(REGISTER_FORMATS)])
        for i, n in enumerate(gpu_names)
    ] + [cpu_node_manifest(n, ZONES[(cpu_start + i) % len(ZONES)]) for i, n in enumerate(cpu_names)]
    for m in manifests:
        # Registered with its addresses and kubelet port, as a kubelet
        # registers its node: the API server finds a node's kubelet (logs,
        # port-forward) by them. kwok's node-initialize stage would add them
        # too, but a loaded machine once left a node without them ("no
        # preferred addresses found"); kwok keeps what is there.
        m["status"]["addresses"] = [{"type": "InternalIP", "address": LOOPBACK},
                                    {"type": "Hostname", "address": m["metadata"]["name"]}]
        m["status"]["daemonEndpoints"] = {"kubeletEndpoint": {"Port": state["ports"]["kwok"]}}
    create_nodes(kubeconfig, manifests)
    wait_nodes_ready(kubeconfig, set(gpu_names) | set(cpu_names), timeout=120 + len(manifests))
    state["gpu_nodes"] += gpu_names
    state["cpu_nodes"] += cpu_names
    save_state(state)
