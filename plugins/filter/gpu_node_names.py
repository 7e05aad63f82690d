# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: gpu_node_names
short_description: The Kubernetes node names of the inventory's GPU hosts
version_added: 0.4.0
positional: mapping
description:
  - Given the inventory's GPU hosts, each host's node name - the mapping's (C(gpu_node_k8s_node_names)), else the
    inventory name - in the inventory's order, each node once.
  - The rules are C(plugins/module_utils/gpu/_hosts.py).
options:
  _input:
    description: The GPU hosts (inventory names).
    type: list
    elements: str
    required: true
  mapping:
    description: Inventory name to node name, for hosts whose node is named otherwise.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: The GPU nodes
  ansible.builtin.debug:
    msg: "{{ groups['gpu_hosts'] | inferops.vllm.gpu_node_names({'gpu-01': 'gpu-01.example.internal'}) }}"
"""

RETURN = r"""
_value:
  description: The node names.
  type: list
  elements: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils.gpu._hosts import node_names


class FilterModule:
    def filters(self):
        return {"gpu_node_names": node_names}
