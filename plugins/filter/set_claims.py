# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: set_claims
short_description: The claims a deployment's StatefulSets made from their claim template, every rank of a group
version_added: 0.1.0
positional: name, selector, rank_label, template
description:
  - Given claims as C(kubernetes.core.k8s_info) returns them, those made by the StatefulSet C(name) and, for a group,
    its rank sets C(name-rank<r>), from their claim template C(template) - told by their labels (the set's selector,
    which the StatefulSet controller puts on each claim, with the rank label) and the name the controller gives
    (C(<template>-<set>-<ordinal>)); owner references, when there are any, must point at that set or its pod.
  - A claim without the labels is never selected, whatever its name. The rules are
    C(plugins/module_utils/k8s/_set_claims.py).
options:
  _input:
    description: The claims (API objects).
    type: list
    elements: dict
    required: true
  name:
    description: The deployment's name (its rank-0 StatefulSet).
    type: str
    required: true
  selector:
    description: The labels every set's selector has (without the rank label).
    type: dict
    required: true
  rank_label:
    description: The label that carries a group's rank on its sets' selectors.
    type: str
    required: true
  template:
    description: The name of the StatefulSet's claim template.
    type: str
    default: models
"""

EXAMPLES = r"""
- name: The per-replica claims of every rank
  ansible.builtin.set_fact:
    claims: >-
      {{ found.resources | inferops.vllm.set_claims('vllm', {'app.kubernetes.io/name': 'vllm',
         'app.kubernetes.io/instance': 'vllm'}, 'inferops.io/node-rank') }}
"""

RETURN = r"""
_value:
  description: The claims that are the deployment's, ordered by name.
  type: list
  elements: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._set_claims import set_claims


class FilterModule:
    def filters(self):
        return {"set_claims": set_claims}
