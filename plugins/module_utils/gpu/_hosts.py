# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The GPU hosts of an inventory as Kubernetes nodes, and what the gpu_node
role's teardown says it did (roles/gpu_node/tasks/cluster.yml, teardown.yml)."""

from __future__ import annotations


def node_names(hosts: list, mapping: dict | None = None) -> list[str]:
    """Each GPU host's node name, in the inventory's order: the mapping's
    (gpu_node_k8s_node_names), else the inventory name; each node once."""
    names: list[str] = []
    for host in hosts or []:
        name = str((mapping or {}).get(host, host))
        if name not in names:
            names.append(name)
    return names


def teardown_said(result: dict, labels: dict, taints: list, selector: str, check_mode: bool = False) -> str:
    """What the teardown took off which nodes (``result``: the gpu_node
    module's, or a skipped task's when no GPU node was found)."""
    if (result or {}).get("skipped"):
        return f"No GPU node found (the inventory lists no GPU hosts and no node matches {selector})."
    what = ", ".join(labels or {})
    if taints:
        what += " and taints " + ", ".join(t.get("key", "?") for t in taints)
    changed = (result or {}).get("changed_nodes") or []
    where = ", ".join(changed) if changed else "no node had them any more"
    return f"{what}{' would be' if check_mode else ''} taken off: {where}."
