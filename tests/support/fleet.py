"""A synthetic GPU fleet for the placement tests and benchmark: nodes as
HAMi v2.10.0's device plugin registers them, foreign pods (with and without
HAMi's allocation annotation) and models, all from one seed."""

from __future__ import annotations

import json
import random

H100 = ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3", 81559)
A100 = ("NVIDIA A100-SXM4-40GB", "NVIDIA-A100-SXM4-40GB", 40960)


def register(name: str, kind: tuple, gpus: int = 8, split: int = 10) -> str:
    model, _label, memory = kind
    return json.dumps([{"id": f"GPU-{name}-{i}", "index": i, "count": split, "devmem": memory, "devcore": 100,
                        "type": model, "numa": i * 2 // gpus, "mode": "hami-core", "health": True}
                       for i in range(gpus)], separators=(",", ":"))


def gpu_node(name: str, kind: tuple = H100, gpus: int = 8, taints=None, cordoned=False, labels=None,
             split: int = 10, ready: bool = True) -> dict:
    spec = {"taints": list(taints or [])}
    if cordoned:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": {"gpu": "on", "nvidia.com/gpu.product": kind[1], **(labels or {})},
                         "annotations": {"hami.io/node-nvidia-register": register(name, kind, gpus, split)}},
            "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "allocatable": {"nvidia.com/gpu": str(gpus * split)}}}


def gpu_container(gpus: int, mem: int | None = None, cores: int | None = None, name: str = "vllm") -> dict:
    limits = {"nvidia.com/gpu": str(gpus)}
    if mem is not None:
        limits["nvidia.com/gpumem"] = str(mem)
    if cores is not None:
        limits["nvidia.com/gpucores"] = str(cores)
    return {"name": name, "image": "vllm", "resources": {"limits": limits}}


def model_template(container: dict, selector: dict | None = None, annotations: dict | None = None,
                   tolerations=None, labels: dict | None = None) -> dict:
    spec = {"containers": [container], "nodeSelector": {"gpu": "on", **(selector or {})}}
    if tolerations:
        spec["tolerations"] = tolerations
    return {"metadata": {"labels": labels or {"app": "vllm"}, "annotations": annotations or {}}, "spec": spec}


def foreign_pod(name: str, node: str, container: dict, allocated: str | None = None, namespace: str = "other") -> dict:
    notes = {"hami.io/vgpu-devices-allocated": allocated} if allocated else {}
    return {"metadata": {"name": name, "namespace": namespace, "annotations": notes},
            "spec": {"nodeName": node, "containers": [container]}, "status": {"phase": "Running"}}


def big_fleet(seed: int = 27, nodes: int = 500, models: int = 50, scale: float = 1.0):
    """(workloads, nodes, pods): ``nodes`` nodes of 8 GPUs, 60 % H100 and 40 %
    A100, every 25th tainted, every 40th cordoned, foreign pods on every 5th
    (annotated, 2 whole GPUs) and every 7th (not annotated, a 20000 MiB
    slice); ``models`` models: whole-GPU TP 1/2/4/8 and slices, replicas
    1-20 (times ``scale``), every 6th only on H100s."""
    rng = random.Random(seed)
    node_list, pods = [], []
    for i in range(nodes):
        name = f"gpu-{i:04d}"
        kind = H100 if i % 5 < 3 else A100
        taints = [{"key": "dedicated", "value": "train", "effect": "NoSchedule"}] if i % 25 == 24 else []
        node_list.append(gpu_node(name, kind, taints=taints, cordoned=i % 40 == 39))
        if i % 5 == 0:
            entry = "".join(f"GPU-{name}-{g},NVIDIA,{kind[2]},100:" for g in (0, 1)) + ";"
            pods.append(foreign_pod(f"train-{i}", name, gpu_container(2), allocated=entry))
        if i % 7 == 0:
            pods.append(foreign_pod(f"notebook-{i}", name, gpu_container(1, mem=20000)))
    workloads = []
    for m in range(models):
        if m % 2 == 0:
            container = gpu_container(rng.choice((1, 2, 4, 8)))
        else:
            container = gpu_container(rng.choice((1, 1, 2)), mem=rng.choice((8192, 12000, 16384, 20000, 30000)),
                                      cores=rng.choice((None, 20, 30, 50)))
        selector = {"nvidia.com/gpu.product": H100[1]} if m % 6 == 5 else None
        workloads.append({"name": f"model-{m:02d}", "namespace": "ai", "replicas": max(1, int(rng.randint(1, 20) * scale)),
                          "template": model_template(container, selector=selector,
                                                     labels={"app": f"model-{m:02d}"})})
    return workloads, node_list, pods
