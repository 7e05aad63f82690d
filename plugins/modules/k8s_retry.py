# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# The work is done by the action plugin of this name (plugins/action/k8s_retry.py); this file is its documentation.

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_retry
short_description: Run a kubernetes.core module, riding out an API server that is away for a while
version_added: 0.4.0
description:
  - Runs the named C(kubernetes.core) module with the given options, and runs it again while it fails because no
    answer came from the API server (connection refused or reset, a timeout) or the answer said to try later (HTTP
    429 and 5xx, etcd unavailable), with backoff, for at most 45 seconds; any other failure is returned at once.
  - The rule and the budget are the collection's one retry policy (C(plugins/module_utils/k8s/_retry.py)), the same
    the collection's own modules apply to each request. The roles use this instead of C(until)/C(retries) blocks.
  - The module gets the C(module_defaults) it would get as a task of its own (for example
    C(group/kubernetes.core.k8s)), and the task's check mode, diff mode and C(no_log).
  - The module itself is run, not kubernetes.core's action plugin of the same name, so what that plugin resolves on
    the controller before the module runs (a relative C(src) or C(template) path, a relative C(kubeconfig), helm's
    C(values_files)) is passed as it is. The roles pass absolute paths and inline definitions; do the same.
options:
  module:
    description: The fully qualified name of a C(kubernetes.core) module (C(kubernetes.core.k8s_info), ...).
    type: str
    required: true
  args:
    description: That module's options.
    type: dict
    default: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.flow
  - inferops.vllm.attributes
attributes:
  action:
    support: full
  check_mode:
    support: full
    details: The module's own check mode.
  diff_mode:
    support: full
    details: The module's own diff.
  async:
    support: none
  bypass_host_loop:
    support: none
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Read the StatefulSet, riding out an API server restart
  inferops.vllm.k8s_retry:
    module: kubernetes.core.k8s_info
    args:
      api_version: apps/v1
      kind: StatefulSet
      name: vllm
      namespace: ai-serving
  register: found
"""

RETURN = r"""
attempts:
  description: How many times the module ran.
  returned: always
  type: int
  sample: 1
"""
