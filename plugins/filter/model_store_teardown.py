# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_store_teardown
short_description: What the model_store teardown deletes, keeps and refuses, from what it read
version_added: 0.4.0
positional: settings, check_mode
description:
  - Given the answers of one C(kubernetes.core.k8s_info) loop over the namespace's claims, the Jobs of the model,
    the namespace's pods and the cluster's volumes (each loop item's C(kind) says which), the model's C(claims)
    (and C(claim_names)), every C(live_claims), the download and wipe C(jobs), the C(users) (pods other than the
    download's that still mount a claim of the model, which the teardown refuses over), and the claims whose volume
    must be set to Retain first (C(retain); none when the files are to be deleted).
  - The model's claims are the shared claim the role made, or the per-replica claims of every rank's StatefulSet,
    told by their labels; a claim without them is never taken. The rules are
    C(plugins/module_utils/model/_store_claims.py).
options:
  _input:
    description: The loop's answers (C(results) of the registered loop).
    type: list
    elements: dict
    required: true
  settings:
    description: The model_store role's settings.
    type: dict
    required: true
  check_mode:
    description: Whether the run is in check mode (the vLLM pods are then still there, their teardown pretended).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: What the teardown takes
  ansible.builtin.set_fact:
    model_store_teardown: "{{ found.results | inferops.vllm.model_store_teardown(model_store_settings) }}"
"""

RETURN = r"""
_value:
  description: claims, claim_names, live_claims, jobs, users, retain.
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._store_claims import teardown_plan


class FilterModule:
    def filters(self):
        return {"model_store_teardown": teardown_plan}
