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
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._secret import ensure, masked_forms, validate


def run(module):
    p = module.params
    # Bad input is refused before the cluster is reached.
    validate(p["name"], p["namespace"], p["data"], p["generate"], p["generate_length"])

    def mask(values):
        for value in values:
            module.no_log_values.update(masked_forms(value))

    result = ensure(connect(p), p["name"], p["namespace"], p["data"], p["generate"], p["generate_length"],
                    p["labels"], p["type"], p["state"], module.check_mode, p["request_timeout"], mask=mask)
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
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, run)


if __name__ == "__main__":
    main()
