# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_store_guard
short_description: What each copy of the model folder running pods read holds, from its read pod's answer
version_added: 0.4.0
positional: pods, waited, params, job_prefix
description:
  - Given the copies of the folder (C(inferops.vllm.model_folder_readers)), the read pods as
    C(kubernetes.core.k8s_info) returns them, C(inferops.vllm.workload_wait)'s answer for each read Job (in the order of
    the copies, Jobs C(<job_prefix>-<index>)) and this run's source settings, one entry a copy - C(pods), C(node),
    C(marker) (what its completion marker says, or C(error)) and C(held) (what it holds when fetching this run's
    source into it would change its files, else empty; a read that did not finish or gave no answer counts).
  - The rules are C(plugins/module_utils/model/_store_answers.py) and C(plugins/module_utils/model/_held.py).
options:
  _input:
    description: The copies.
    type: list
    elements: dict
    required: true
  pods:
    description: The read pods.
    type: list
    elements: dict
    required: true
  waited:
    description: The wait's answer for each read Job.
    type: list
    elements: dict
    required: true
  params:
    description: C(source), C(model_id), C(revision), C(bucket), C(prefix), C(endpoint_url), C(local_path).
    type: dict
    required: true
  job_prefix:
    description: The read Jobs' names without their index.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: What each copy holds
  ansible.builtin.set_fact:
    held: "{{ copies | inferops.vllm.model_store_guard(pods.resources, waited.results, params, 'fetch-qwen-read') }}"
"""

RETURN = r"""
_value:
  description: One entry a copy (pods, node, marker, held).
  type: list
  elements: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._store_answers import guard_held


class FilterModule:
    def filters(self):
        return {"model_store_guard": guard_held}
