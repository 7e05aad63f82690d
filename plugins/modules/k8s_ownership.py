#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_ownership
short_description: Refuse objects of the collection's names that it did not create; delete only those it did
version_added: 0.1.0
description:
  - Reads the live object of each definition and fails when one exists without the collection's label
    C(app.kubernetes.io/managed-by=inferops.vllm), naming each such object and who manages it (its managed-by label,
    a Helm release, its field managers from C(metadata.managedFields), an owner reference). The collection never
    changes, adopts or deletes an object it did not create.
  - Objects that do not exist yet, or that carry the label, pass. A kind the cluster does not serve (CRDs not
    installed) is reported in RV(unserved), not judged.
  - With O(state=absent) it deletes instead each object that the collection created and that carries O(labels),
    and leaves every other one (reported in RV(left)), as a role does when a feature is turned off.
options:
  definitions:
    description: The objects about to be applied (only C(apiVersion), C(kind) and C(metadata.name)/C(namespace) are read).
    type: list
    elements: dict
    required: true
  hint:
    description: What the user can do, appended to the failure message (for example which variable names the objects).
    type: str
    default: ""
  state:
    description:
      - C(present) checks that no object of these names exists that the collection did not create (changes nothing).
      - C(absent) deletes those the collection created (and that carry O(labels)), conditionally on the uid read.
    type: str
    choices: [present, absent]
    default: present
  labels:
    description: With O(state=absent), labels an object must also carry to be deleted (the instance's own).
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.CLUSTER_WRITES
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  diff_mode:
    details: With O(state=absent), each deleted object before (metadata and spec) and after (nothing).
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Refuse a Service of the same name that someone else made
  inferops.vllm.k8s_ownership:
    definitions:
      - {apiVersion: v1, kind: Service, metadata: {name: vllm, namespace: ai-serving}}
    hint: choose another vllm_serve_name

- name: The Ingress is turned off - delete the one this service's role made, and only that
  inferops.vllm.k8s_ownership:
    state: absent
    definitions:
      - {apiVersion: networking.k8s.io/v1, kind: Ingress, metadata: {name: vllm, namespace: ai-serving}}
    labels:
      app.kubernetes.io/instance: vllm
"""

RETURN = r"""
objects:
  description: Each definition's live object as judged.
  returned: always
  type: list
  elements: dict
  sample:
    - {kind: Service, name: vllm, namespace: ai-serving, exists: true, created_by_collection: false,
       managed_by: "written by kubectl-create"}
unserved:
  description: apiVersion/kind of definitions the cluster does not serve.
  returned: state is present
  type: list
  elements: str
deleted:
  description: Kind/name of each object deleted (or, in check mode, that would be).
  returned: state is absent
  type: list
  elements: str
left:
  description: Kind/name of each object of those names left alone (not the collection's, or another instance's).
  returned: state is absent
  type: list
  elements: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._ownership import MANAGED_BY, prune, survey


def run(module):
    p = module.params
    if p["state"] == "absent":
        result = prune(connect(p), p["definitions"], p["labels"], module.check_mode, p["request_timeout"])
        if not module._diff or not result["changed"]:
            result.pop("diff")
        return result
    found = survey(connect(p), p["definitions"], p["request_timeout"])
    refused = found.pop("refused")
    if refused:
        raise ParameterError(
            f"refused: {'; '.join(refused)}. {MANAGED_BY} changes, adopts or deletes only what it created; nothing "
            f"was applied. {p['hint'] or 'Choose another name, or remove that object yourself if it is not needed.'}",
            objects=found["objects"])
    return {"changed": False, **found}


def main():
    spec = dict(
        definitions=dict(type="list", elements="dict", required=True),
        hint=dict(type="str", default=""),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        labels=dict(type="dict", default={}),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, run)


if __name__ == "__main__":
    main()
