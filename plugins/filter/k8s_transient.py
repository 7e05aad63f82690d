# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: k8s_transient
short_description: Whether a failed Kubernetes task failed for a reason that passes (the API server away)
version_added: 0.1.0
description:
  - Given the registered result of a C(kubernetes.core) task, true when it failed because no answer came from the API
    server (connection refused or reset, a timeout) or the answer said to try later (HTTP 429, 500, 502, 503, 504,
    etcd unavailable); false when it succeeded or failed for any other reason (a refusal, a bad object).
  - A failure that carries no answer of the server at all (no reason, no message, only an exception) counts as
    transient, because that is how a connection failure reaches C(until) with ansible-core 2.19 and later; a bad
    object refused by the client library before any request is then retried too, up to the task's C(retries).
  - The roles do not retry with C(until); they call kubernetes.core modules through the C(inferops.vllm.k8s_retry)
    action, which uses the same rule (C(plugins/module_utils/k8s/_retry.py)). This filter is that rule, for a
    playbook of your own that retries with C(until).
options:
  _input:
    description: The registered result of the task.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Apply, riding out an API server restart
  kubernetes.core.k8s:
    definition: "{{ object }}"
  register: applied
  retries: 9
  delay: 5
  until: applied is not failed or not (applied | inferops.vllm.k8s_transient)
"""

RETURN = r"""
_value:
  description: Whether the failure is one that passes.
  type: bool
"""

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._retry import result_transient


def k8s_transient(result) -> bool:
    return result_transient(result)


class FilterModule:
    def filters(self):
        return {"k8s_transient": k8s_transient}
