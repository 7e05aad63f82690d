#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_secret
short_description: Keep a Kubernetes Secret's data without leaving a copy of it in annotations, diffs or errors
version_added: 0.1.0
description:
  - Creates the Secret, or replaces its data (conditionally on the version read, so a change made meanwhile is
    never overwritten), so that no copy of the data lands in the C(kubectl.kubernetes.io/last-applied-configuration)
    annotation, as client-side apply (C(kubernetes.core.k8s) with O(kubernetes.core.k8s#module:apply=true)) would
    leave there. A copy left by an earlier client-side apply is removed.
  - Every value, given, read or generated, is masked in whatever the module returns, also in base64 and also when
    the API server (or an admission webhook) refuses the change and echoes the object in its answer.
  - The diff names keys, never values.
  - Keys in O(generate) get a random value once, when the Secret does not have them yet, and keep it afterwards
    (an API key that the deployment and its clients share).
  - The Secrets it creates carry the label C(app.kubernetes.io/managed-by=inferops.vllm). A Secret of that name
    without it was not created by the collection, and is refused (naming it and who manages it), or with
    O(foreign=read) used as it is (read, never written, labelled or deleted).
  - With O(fingerprint_key), RV(fingerprint) is the HMAC-SHA256 of that key's value under a random salt kept in
    O(salt_secret) (a Secret of the collection's own, generated once). It is a value for a pod-template annotation
    that changes when the key changes, and from which the key cannot be found, nor a guess tested, without the salt.
options:
  name:
    description: The Secret's name.
    type: str
    required: true
  namespace:
    description: The Secret's namespace. It must exist.
    type: str
    required: true
  data:
    description:
      - Key to plain value (not base64). With O(state=present) the Secret ends up holding exactly these keys plus
        those in O(generate).
    type: dict
    default: {}
  generate:
    description: Keys whose value is generated when the Secret lacks them, and kept when it has them.
    type: list
    elements: str
    default: []
  generate_length:
    description: Length of a generated value (letters and digits).
    type: int
    default: 48
  labels:
    description: Labels to set on the Secret (other labels are kept).
    type: dict
    default: {}
  type:
    description: The Secret's type. It cannot change once the Secret exists.
    type: str
    default: Opaque
  foreign:
    description:
      - What to do when a Secret of that name exists that the collection did not create (no label
        C(app.kubernetes.io/managed-by=inferops.vllm)).
      - C(refuse) fails naming it and who manages it; C(read) uses it as it is (it must hold the keys in O(data)
        and O(generate), with the values in O(data)), and O(state=absent) leaves it.
    type: str
    choices: [refuse, read]
    default: refuse
  fingerprint_key:
    description: The key whose value RV(fingerprint) is computed from. Needs O(salt_secret).
    type: str
  salt_secret:
    description: The Secret (in the same namespace, the collection's own) that keeps the random salt of RV(fingerprint).
    type: str
  state:
    description: Whether the Secret should exist.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.CLUSTER_WRITES
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  diff_mode:
    details: Keys and labels only, never values.
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: The S3 credentials the download Job reads as environment
  inferops.vllm.k8s_secret:
    name: model-fetch-credentials
    namespace: ai-serving
    data:
      AWS_ACCESS_KEY_ID: "{{ vault_s3_access_key }}"
      AWS_SECRET_ACCESS_KEY: "{{ vault_s3_secret_key }}"

- name: vLLM's API key, generated on the first run and kept afterwards
  inferops.vllm.k8s_secret:
    name: vllm-api-key
    namespace: ai-serving
    generate: [api-key]

- name: A key Secret the user keeps (used as it is), with a fingerprint that rolls the pods when it changes
  inferops.vllm.k8s_secret:
    name: team-vllm-key
    namespace: ai-serving
    generate: [api-key]
    foreign: read
    fingerprint_key: api-key
    salt_secret: vllm-api-key-salt
  register: key
"""

RETURN = r"""
secret_keys:
  description: The keys the Secret holds (never the values).
  returned: state is present
  type: list
  elements: str
generated:
  description: The keys whose value this run generated.
  returned: state is present
  type: list
  elements: str
created_by_collection:
  description: Whether the Secret is the collection's (false for one used as it is, O(foreign=read)).
  returned: when the Secret exists or is created
  type: bool
fingerprint:
  description: HMAC-SHA256 (hex) of the O(fingerprint_key) value under the salt in O(salt_secret).
  returned: O(fingerprint_key) is given
  type: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._secret import (FOREIGN, ensure, ensure_fingerprinted,
                                                                                masked_forms, validate)


def run(module):
    p = module.params
    # Bad input is refused before the cluster is reached.
    validate(p["name"], p["namespace"], p["data"], p["generate"], p["generate_length"])

    def mask(values):
        for value in values:
            module.no_log_values.update(masked_forms(value))

    if p["fingerprint_key"] and p["state"] == "absent":
        raise ParameterError("fingerprint_key: only with state=present (a deleted Secret has no fingerprint)")
    if p["fingerprint_key"]:
        result = ensure_fingerprinted(connect(p), p["name"], p["namespace"], p["data"], p["generate"],
                                      p["generate_length"], p["labels"], p["type"], module.check_mode,
                                      p["request_timeout"], mask, p["foreign"], p["fingerprint_key"], p["salt_secret"])
    else:
        result = ensure(connect(p), p["name"], p["namespace"], p["data"], p["generate"], p["generate_length"],
                        p["labels"], p["type"], p["state"], module.check_mode, p["request_timeout"], mask=mask,
                        foreign=p["foreign"])
    result.pop("_data", None)  # the values: never returned
    if not module._diff:
        result.pop("diff", None)
    return result


def main():
    spec = dict(
        name=dict(type="str", required=True),
        namespace=dict(type="str", required=True),
        data=dict(type="dict", default={}, no_log=True),
        generate=dict(type="list", elements="str", default=[], no_log=False),
        generate_length=dict(type="int", default=48, no_log=False),
        labels=dict(type="dict", default={}),
        type=dict(type="str", default="Opaque"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        foreign=dict(type="str", choices=list(FOREIGN), default="refuse"),
        fingerprint_key=dict(type="str", no_log=False),
        salt_secret=dict(type="str", no_log=False),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True,
                       required_together=[("fingerprint_key", "salt_secret")])
    _runner.run(module, run)


if __name__ == "__main__":
    main()
