# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: serving_problems
short_description: The vllm_serve role's names and numbers that cannot work, each with its fix
version_added: 0.4.0
description:
  - Given the role's variables (without the C(vllm_serve_) prefix), the list of problems, each naming its variable and
    what to give instead; empty when all is well. The rules are in C(plugins/module_utils/serving/_inputs.py).
  - The same file gives C(serving_rank_names) (the StatefulSets of a replica larger than a node, given its name and
    node count), C(serving_rank_problems) (a name too long for them) and C(serving_scale_problems) (why a replica
    count cannot be applied now, given the service's StatefulSets and ScaledObjects, its name and namespace), and
    C(serving_model_subpath) (the model folder a running StatefulSet's vLLM reads, under its model volume).
options:
  _input:
    description: The variables, for example C({name, namespace, served_model_name, replicas, port, wait_timeout}).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Check the names and numbers
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: "{{ {'name': vllm_serve_name, 'namespace': vllm_serve_namespace} | inferops.vllm.serving_problems }}"
"""

RETURN = r"""
_value:
  description: The problems, each a sentence.
  type: list
  elements: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils.serving._inputs import (
    model_subpath, problems, rank_names, rank_problems, scale_problems)


class FilterModule:
    def filters(self):
        return {"serving_problems": problems, "serving_rank_names": rank_names,
                "serving_rank_problems": rank_problems, "serving_scale_problems": scale_problems,
                "serving_model_subpath": model_subpath}
