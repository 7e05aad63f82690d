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
  - The roles retry such tasks a bounded number of times with C(until), so that an API server restarting for half a
    minute does not fail a run, and a real error fails at once. The collection's own modules retry inside
    (C(plugins/module_utils/k8s/_client.py)); the patterns here are the same failures as their texts reach a task's
    message.
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

import re

# How the client library's transient failures read in a task's message:
# urllib3's (no answer) and the API server's (answer: later).
TRANSIENT = re.compile(
    r"Max retries exceeded|Connection refused|Connection reset|Connection aborted|RemoteDisconnected|"
    r"timed out|NewConnectionError|ProtocolError|\((?:429|500|502|503|504)\)|"
    r"\b(?:429|500|502|503|504) (?:Too Many Requests|Internal Server Error|Bad Gateway|Service Unavailable|"
    r"Gateway Timeout)|etcdserver: (?:request timed out|leader changed|no leader)|the server is currently unable",
    re.IGNORECASE)

# The API server's reason phrases that mean "later".
LATER_REASONS = ("Too Many Requests", "Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout")


def k8s_transient(result) -> bool:
    if not hasattr(result, "get") or not result.get("failed"):
        return False
    status = result.get("status") if isinstance(result.get("status"), int) else None
    if status in (429, 500, 502, 503, 504) or result.get("reason") in LATER_REASONS:
        return True
    text = " ".join(str(result.get(k) or "") for k in ("msg", "error", "reason", "stderr"))
    if TRANSIENT.search(text):
        return True
    # No answer came: when the API server answers, kubernetes.core's result
    # carries its reason (Unprocessable Entity, Not Found, ...). A module that
    # failed on an exception (no connection) has, while ``until`` is evaluated,
    # only the exception: ansible-core 2.19 and later add its message to the
    # result after the retries (seen with 2.21: no msg key at that point).
    return not result.get("reason") and status is None and not result.get("msg") and bool(result.get("exception"))


class FilterModule:
    def filters(self):
        return {"k8s_transient": k8s_transient}
