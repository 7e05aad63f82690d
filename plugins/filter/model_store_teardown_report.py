# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_store_teardown_report
short_description: Where the model's files are after the model_store teardown
version_added: 0.4.0
positional: plan, settings
description:
  - Given the cluster's volumes as C(kubernetes.core.k8s_info) returns them, one sentence per volume that held a claim
    of the model (bound to a claim the teardown took, or Released by one an earlier teardown took; never the volume
    of someone else's live claim) - its claim, phase, reclaim policy and where it is - and whether it keeps the model;
    with storage hostpath, the nodes' folder.
  - The rules are C(plugins/module_utils/model/_store_claims.py).
options:
  _input:
    description: The volumes.
    type: list
    elements: dict
    required: true
  plan:
    description: What C(inferops.vllm.model_store_teardown) gave (its C(claims) and C(live_claims)).
    type: dict
    required: true
  settings:
    description: The model_store role's settings.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Say where the model's files are
  ansible.builtin.debug:
    msg: "{{ volumes.resources | inferops.vllm.model_store_teardown_report(model_store_teardown, model_store_settings) }}"
"""

RETURN = r"""
_value:
  description: The report.
  type: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._store_claims import teardown_report


class FilterModule:
    def filters(self):
        return {"model_store_teardown_report": teardown_report}
