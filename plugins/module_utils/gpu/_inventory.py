# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node's GPU inventory as the gpu_node module reports it: GPU resources,
product labels, Ready, and whether HAMi's device plugin has registered the
node's GPUs."""

from __future__ import annotations

import json

from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _labels as L


# HAMi 2.7's text form, per GPU "ID,count,devmem,devcore,type,numa,health,index,mode:"
# (EncodeNodeDevices in pkg/device/devices.go at v2.7.1, read back by its
# DecodeNodeDevices with index as item 7 and mode as item 8). Older releases
# wrote the first seven fields only.
TEXT_FIELDS = ("id", "count", "devmem", "devcore", "type", "numa", "health", "index", "mode")


def parse_hami_register(value: str | None) -> list[dict]:
    """Decode HAMi's hami.io/node-nvidia-register annotation: the text form
    up to 2.7 (TEXT_FIELDS), or the JSON list from 2.8.0 on
    (MarshalNodeDevices), whose omitempty leaves out a zero index or numa
    and a false health. Unparseable text gives an empty list."""
    if not value:
        return []
    text = value.strip()
    if text.startswith("["):
        try:
            raw = json.loads(text)
        except ValueError:
            return []
        rows = [d for d in raw if isinstance(d, dict)] if isinstance(raw, list) else []
    else:
        rows = []
        for position, chunk in enumerate(c for c in text.split(":") if "," in c):
            items = chunk.split(",")
            if not 7 <= len(items) <= len(TEXT_FIELDS):
                continue
            row = dict(zip(TEXT_FIELDS, items))
            row.setdefault("index", position)
            row["health"] = row["health"].strip().lower() == "true"
            rows.append(row)
    devices = []
    for d in rows:
        try:
            devices.append({
                "id": d.get("id", ""),
                "index": int(d.get("index", 0) or 0),
                "split_count": int(d.get("count", 0) or 0),
                "memory_mib": int(d.get("devmem", 0) or 0),
                "cores": int(d.get("devcore", 0) or 0),
                "type": d.get("type", ""),
                "numa": int(d.get("numa", 0) or 0),
                "mode": d.get("mode", "hami-core") or "hami-core",
                "health": bool(d.get("health", False)),
            })
        except (TypeError, ValueError):
            continue
    return sorted(devices, key=lambda d: d["index"])  # HAMi lists them in map order


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
