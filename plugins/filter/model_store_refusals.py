# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: model_store_refusals
short_description: What the model_store role refuses before it reads or changes anything
version_added: 0.4.0
positional: entry_point
description:
  - Given the model_store role's settings (its variables without the C(model_store_) prefix), one sentence per
    setting that no run of the entry point could apply, naming the variable, the value and what would be right;
    empty when all are right.
  - The rules are C(plugins/module_utils/model/_store.py).
options:
  _input:
    description: The settings.
    type: dict
    required: true
  entry_point:
    description: The entry point whose rules apply.
    type: str
    choices: [main, teardown, remove_revision]
    default: main
"""

EXAMPLES = r"""
- name: Refuse bad settings before anything changes
  ansible.builtin.assert:
    that: model_store_settings | inferops.vllm.model_store_refusals | length == 0
    fail_msg: "{{ model_store_settings | inferops.vllm.model_store_refusals | join(' ') }}"
"""

RETURN = r"""
_value:
  description: The refusals, one sentence each.
  type: list
  elements: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils.model._store import (
    refusals, remove_revision_refusals, teardown_refusals)

RULES = {"main": refusals, "teardown": teardown_refusals, "remove_revision": remove_revision_refusals}


def model_store_refusals(settings: dict, entry_point: str = "main") -> list:
    return RULES[entry_point](settings)


class FilterModule:
    def filters(self):
        return {"model_store_refusals": model_store_refusals}
