# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the placement reads from the cluster, once: every node, and every
pod that may hold GPUs (not finished). Used by gpu_capacity and fleet_plan."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.gpu._placement import UNFINISHED_SELECTOR
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import request_json


def nodes_and_pods(api, timeout) -> tuple[list[dict], list[dict]]:
    """One list of the nodes, one of the unfinished pods of every namespace."""
    nodes = request_json(api, "GET", "/api/v1/nodes", timeout=timeout, action="listing nodes").get("items", [])
    pods = request_json(api, "GET", "/api/v1/pods", query=[("fieldSelector", UNFINISHED_SELECTOR)], timeout=timeout,
                        action="listing pods").get("items", [])
    return nodes, pods
