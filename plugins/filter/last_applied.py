# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: last_applied
short_description: The definition last applied to an object, with some fields changed
version_added: 0.4.0
description:
  - Given a live object (as C(kubernetes.core.k8s_info) returns it), the definition recorded in its
    C(kubectl.kubernetes.io/last-applied-configuration) annotation, with the given fields merged in. Applying it (with
    M(inferops.vllm.k8s_reconcile)) changes only those fields, and a later apply of the same definition sees no
    change. Without a record, the object's kind, name, namespace and labels with the fields.
  - The rule is C(plugins/module_utils/k8s/_reconcile.py)'s C(last_applied).
options:
  _input:
    description: The live object.
    type: dict
    required: true
  override:
    description: The fields to change, as a partial object.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: A new replica count, the rest as last applied
  inferops.vllm.k8s_reconcile:
    definitions: ["{{ live_statefulset | inferops.vllm.last_applied({'spec': {'replicas': 3}}) }}"]
"""

RETURN = r"""
_value:
  description: The definition.
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._reconcile import last_applied


class FilterModule:
    def filters(self):
        return {"last_applied": last_applied}
