# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_store_prune_report
short_description: What each pod that removes a previous model revision's folder did
version_added: 0.4.0
positional: claims, job_prefix, folder
description:
  - Given the removal pods as C(kubernetes.core.k8s_info) returns them, and the claims they ran on (in the order of
    their Jobs, C(<job_prefix>-<index>)), C(said) (per claim, removed, or kept and why, from the pod's termination
    message), C(msg) (the same, about the folder) and C(removed) (whether any removed the folder).
  - The rules are C(plugins/module_utils/model/_store_answers.py).
options:
  _input:
    description: The pods.
    type: list
    elements: dict
    required: true
  claims:
    description: The claims (each with C(name)), as C(inferops.vllm.model_store_prune) gave them.
    type: list
    elements: dict
    required: true
  job_prefix:
    description: The Jobs' names without their index.
    type: str
    required: true
  folder:
    description: The folder removed (for C(msg)).
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Say what was removed
  ansible.builtin.debug:
    msg: "{{ (pods.resources | inferops.vllm.model_store_prune_report(targets, 'fetch-qwen-prune', 'qwen@v1')).msg }}"
"""

RETURN = r"""
_value:
  description: said, msg and removed.
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._store_answers import prune_report


class FilterModule:
    def filters(self):
        return {"model_store_prune_report": prune_report}
