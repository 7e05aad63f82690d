# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_store_prune
short_description: The claims a previous model revision's folder is removed from, and the pods that may read it
version_added: 0.4.0
positional: claims, settings
description:
  - Given the namespace's pods and claims as C(kubernetes.core.k8s_info) returns them, the model's C(claims) (each
    C(name), with the C(node) and C(tolerations) of a running pod that has it attached, or an empty node) and the
    C(readers) of the previous folder (C(previous_subpath)) - vLLM pods whose model path it is, and any pod that is not
    the collection's mounting one of those claims. The folder is removed only when there are no readers.
  - The rules are C(plugins/module_utils/model/_store_claims.py).
options:
  _input:
    description: The pods.
    type: list
    elements: dict
    required: true
  claims:
    description: The claims.
    type: list
    elements: dict
    required: true
  settings:
    description: The model_store role's settings (C(storage), C(claim_name), C(hostpath), C(previous_subpath), C(guard_statefulset)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Where the previous folder is
  ansible.builtin.set_fact:
    model_store_prune: "{{ pods.resources | inferops.vllm.model_store_prune(claims.resources, model_store_settings) }}"
"""

RETURN = r"""
_value:
  description: claims and readers.
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._store_claims import prune_targets


class FilterModule:
    def filters(self):
        return {"model_store_prune": prune_targets}
