# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: gpu_node_teardown_said
short_description: What the gpu_node teardown took off which nodes
version_added: 0.4.0
positional: labels, taints, selector, check_mode
description:
  - Given the C(inferops.vllm.gpu_node) result of the teardown (or its skipped result when no GPU node was found), one
    sentence - the labels and taints taken off (or, in check mode, that would be) and the nodes that had them.
  - The rules are C(plugins/module_utils/gpu/_hosts.py).
options:
  _input:
    description: The registered result.
    type: dict
    required: true
  labels:
    description: The labels taken off (gpu_node_labels).
    type: dict
    required: true
  taints:
    description: The taints taken off (gpu_node_taints).
    type: list
    elements: dict
    required: true
  selector:
    description: The selector that found no node (gpu_node_cluster_selector).
    type: str
    required: true
  check_mode:
    description: Whether the run is in check mode.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Say which nodes changed
  ansible.builtin.debug:
    msg: "{{ result | inferops.vllm.gpu_node_teardown_said({'gpu': 'on'}, [], 'gpu=on') }}"
"""

RETURN = r"""
_value:
  description: The sentence.
  type: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils.gpu._hosts import teardown_said


class FilterModule:
    def filters(self):
        return {"gpu_node_teardown_said": teardown_said}
