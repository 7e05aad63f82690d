# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's GPU inventory as the gpu_node module reports it: GPU resources,
product labels, Ready, and whether HAMi's device plugin has registered the
node's GPUs."""

from __future__ import annotations

import json

from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _labels as L


def parse_hami_register(value: str | None) -> list[dict]:
    """Decode HAMi's hami.io/node-nvidia-register annotation.

    HAMi >= 2.5 writes a JSON list of devices (id, index, count, devmem,
    devcore, type, numa, mode, health); older releases wrote
    'ID,count,devmem,devcore,type,numa,health[,mode,index]:' per GPU. Both are
    read. Unparseable text gives an empty list."""
    if not value:
        return []
    text = value.strip()
    if text.startswith("["):
        try:
            devices = json.loads(text)
        except ValueError:
            return []
        return [
            {
                "id": d.get("id", ""),
                "index": int(d.get("index", 0) or 0),
                "split_count": int(d.get("count", 0) or 0),
                "memory_mib": int(d.get("devmem", 0) or 0),
                "cores": int(d.get("devcore", 0) or 0),
                "type": d.get("type", ""),
                "numa": int(d.get("numa", 0) or 0),
                "mode": d.get("mode", "hami-core") or "hami-core",
                # JSON omits false booleans (omitempty), so absent means unhealthy.
                "health": bool(d.get("health", False)),
            }
            for d in devices
            if isinstance(d, dict)
        ]
    devices = []
    for position, chunk in enumerate(c for c in text.split(":") if "," in c):
        items = chunk.split(",")
        if len(items) not in (7, 9):
            continue
        try:
            devices.append(
                {
                    "id": items[0],
                    "index": int(items[8]) if len(items) == 9 else position,
                    "split_count": int(items[1]),
                    "memory_mib": int(items[2]),
                    "cores": int(items[3]),
                    "type": items[4],
                    "numa": int(items[5]),
                    "mode": items[7] if len(items) == 9 else "hami-core",
                    "health": items[6].strip().lower() == "true",
                }
            )
        except ValueError:
            continue
    return devices


def node_inventory(node: dict) -> dict:
    """Summarize one node (as a dict) for the module's result."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    capacity = status.get("capacity") or {}
    allocatable = status.get("allocatable") or {}
    devices = parse_hami_register(annotations.get(L.HAMI_REGISTER_ANNOTATION))
    ready = next((c.get("status") == "True" for c in status.get("conditions") or [] if c.get("type") == "Ready"), False)
    handshake = next((annotations[k] for k in L.HAMI_HANDSHAKE_ANNOTATIONS if k in annotations), None)
    return {
        "name": meta.get("name"),
        "ready": ready,
        "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
        "labels": labels,
        "taints": (node.get("spec") or {}).get("taints") or [],
        "gpu_capacity": {r: capacity[r] for r in L.GPU_RESOURCES if r in capacity},
        "gpu_allocatable": {r: allocatable[r] for r in L.GPU_RESOURCES if r in allocatable},
        "gpu_product": labels.get(L.GPU_PRODUCT_LABEL),
        "gpu_count_label": labels.get(L.GPU_COUNT_LABEL),
        "gpu_memory_label_mib": labels.get(L.GPU_MEMORY_LABEL),
        "hami": {
            "registered": bool(devices) and all(d["health"] for d in devices),
            "devices": devices,
            "healthy_devices": sum(1 for d in devices if d["health"]),
            "handshake": handshake,
        },
    }
