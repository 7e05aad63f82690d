# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_volumes
short_description: The volumes that hold (or held) the model's claims, for the teardown's report
version_added: 0.1.0
positional: namespace, live_claims, ours, name, template, shared
description:
  - Given PersistentVolumes as C(kubernetes.core.k8s_info) returns them, those bound to one of the claims the teardown
    took (by uid), or Released by one of the model's claims that is gone (an earlier teardown's) - its claimRef names
    the shared claim or a claim the StatefulSets of C(name) could have made - while no live claim has its uid.
  - A volume of a live claim that is not the model's is never named. The rules are
    C(plugins/module_utils/k8s/_set_claims.py).
options:
  _input:
    description: The volumes (API objects).
    type: list
    elements: dict
    required: true
  namespace:
    description: The claims' namespace.
    type: str
    required: true
  live_claims:
    description: Every claim in the namespace now.
    type: list
    elements: dict
    required: true
  ours:
    description: The model's claims the teardown took.
    type: list
    elements: dict
    required: true
  name:
    description: The deployment's name (its StatefulSets' claims), or empty for no per-replica claims.
    type: str
    required: true
  template:
    description: The name of the StatefulSet's claim template.
    type: str
    default: models
  shared:
    description: The shared claim's name, or empty.
    type: str
    default: ""
"""

EXAMPLES = r"""
- name: Name the volumes
  ansible.builtin.debug:
    msg: "{{ pvs.resources | inferops.vllm.model_volumes('ai-serving', claims.resources, ours, 'vllm') | map(attribute='metadata.name') }}"
"""

RETURN = r"""
_value:
  description: The volumes, ordered by claim name.
  type: list
  elements: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._set_claims import model_volumes


class FilterModule:
    def filters(self):
        return {"model_volumes": model_volumes}
