# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: hami_registration
short_description: Whether HAMi has registered the GPUs of every labelled node, and what the hami role says about it
version_added: 0.4.0
positional: plugin_status, node_label, check_mode
description:
  - Given the labelled nodes as C(inferops.vllm.gpu_node) returns them, the device plugin DaemonSet's status (from
    C(inferops.vllm.workload_wait)) and the label, C(refusal) - empty when some node carries the label, every such
    node has its GPUs registered (healthy), and the device plugin is Ready on each; else why not - and, in check
    mode (where the install and the labels may only have been pretended), C(said) instead, what was found.
  - The rules are C(plugins/module_utils/gpu/_hami.py).
options:
  _input:
    description: The nodes.
    type: list
    elements: dict
    required: true
  plugin_status:
    description: The device plugin DaemonSet's status.
    type: dict
    required: true
  node_label:
    description: The label the device plugin selects.
    type: dict
    required: true
  check_mode:
    description: Whether the run is in check mode.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Fail unless every labelled node has registered its GPUs
  ansible.builtin.assert:
    that: "(nodes.nodes | inferops.vllm.hami_registration(plugin.status, {'gpu': 'on'})).refusal == ''"
"""

RETURN = r"""
_value:
  description: refusal and said.
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.gpu._hami import registration


class FilterModule:
    def filters(self):
        return {"hami_registration": registration}
