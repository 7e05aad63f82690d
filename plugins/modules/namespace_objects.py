#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: namespace_objects
short_description: List every object in a namespace, of every kind, and say which of them a user made
version_added: 0.1.0
description:
  - Finds every namespaced kind the API server can list (discovery, in each group's preferred version, as
    C(kubectl api-resources --namespaced --verbs=list) does), lists each in the namespace, and sorts each object into
    a category, so that a teardown can tell whether anything but what Kubernetes keeps there is left.
  - C(standalone) is something a user or a tool made (it counts); C(default) is what Kubernetes puts into every
    namespace (the C(default) ServiceAccount, the C(kube-root-ca.crt) ConfigMap); C(event) is an Event;
    C(dependent) is kept by a controller (a controller owner reference) or mirrors a Service (v1 Endpoints);
    C(deleting) is already being deleted.
  - A kind that could not be listed (an aggregated API that is down, or no right to list it) is reported in
    RV(unlisted), and then the namespace does not count as empty, since what it holds is unknown.
  - One task instead of one C(kubernetes.core.k8s_info) per kind.
options:
  namespace:
    description: The namespace to look into. One that does not exist is reported (RV(exists) false), not failed.
    type: str
    required: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.READ_ONLY
  - inferops.vllm.attributes.ACTION_GROUP_K8S
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: What is left in the serving namespace
  inferops.vllm.namespace_objects:
    namespace: ai-serving
  register: left

- name: Delete the namespace only when nothing a user made is in it
  when: left.empty
  kubernetes.core.k8s:
    state: absent
    kind: Namespace
    name: ai-serving
    wait: true
"""

RETURN = r"""
exists:
  description: Whether the namespace exists.
  returned: always
  type: bool
phase:
  description: The namespace's phase (C(Active), C(Terminating)); null when it does not exist.
  returned: always
  type: str
objects:
  description: Every object found, the C(standalone) ones first.
  returned: always
  type: list
  elements: dict
  contains:
    api_version:
      description: The preferred group version it was listed in.
      type: str
    kind:
      description: Its kind.
      type: str
    name:
      description: Its name.
      type: str
    category:
      description: C(standalone), C(default), C(event), C(dependent) or C(deleting) (see the description).
      type: str
  sample:
    - {api_version: v1, kind: ConfigMap, name: team-notes, category: standalone}
    - {api_version: v1, kind: ServiceAccount, name: default, category: default}
standalone:
  description: C(Kind/name) of each standalone object.
  returned: always
  type: list
  elements: str
  sample: [ConfigMap/team-notes]
unlisted:
  description: Kinds (or whole group versions) that could not be listed, with the API server's answer.
  returned: always
  type: list
  elements: dict
empty:
  description: The namespace exists, holds no standalone object, and every kind could be listed.
  returned: always
  type: bool
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._namespace import read, validate_namespace


def look(module):
    p = module.params
    validate_namespace(p["namespace"])
    return {"changed": False, **read(connect(p), p["namespace"], p["request_timeout"])}


def main():
    spec = dict(
        namespace=dict(type="str", required=True),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, look)


if __name__ == "__main__":
    main()
