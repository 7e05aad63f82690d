# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""When a failed request to the API server is worth repeating, and for how
long: the one retry policy of the collection. The collection's modules retry
inside (``_client.raw_request`` raises through ``transient``); a
kubernetes.core module that a role calls is retried by the ``k8s_retry``
action plugin, which reads the module's result with ``result_transient``. Both
ride out an outage of up to RETRY_BUDGET_S (an API server restarting, an etcd
leader change) and report one that lasts; any other failure fails at once."""

from __future__ import annotations

import re

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import (
    RETRY_BUDGET_S, RETRY_MAX_DELAY_S, transient)

__all__ = ["RETRY_BUDGET_S", "backoff", "result_transient", "transient"]

# The answers that mean "later" (the same codes as ``_client.transient``).
LATER_STATUS = (429, 500, 502, 503, 504)
LATER_REASONS = ("Too Many Requests", "Internal Server Error", "Bad Gateway", "Service Unavailable", "Gateway Timeout")

# How the client library's transient failures read in a module's message:
# urllib3's (no answer) and the API server's (answer: later).
TRANSIENT_TEXT = re.compile(
    r"Max retries exceeded|Connection refused|Connection reset|Connection aborted|RemoteDisconnected|"
    r"timed out|NewConnectionError|ProtocolError|\((?:429|500|502|503|504)\)|"
    r"\b(?:429|500|502|503|504) (?:Too Many Requests|Internal Server Error|Bad Gateway|Service Unavailable|"
    r"Gateway Timeout)|etcdserver: (?:request timed out|leader changed|no leader)|the server is currently unable",
    re.IGNORECASE)


def backoff(attempt: int) -> float:
    """Seconds before try ``attempt + 1``: 0.5, 1, 2, then RETRY_MAX_DELAY_S."""
    return min(RETRY_MAX_DELAY_S, 0.5 * 2 ** attempt)


def result_transient(result) -> bool:
    """Whether a module's failed result says no answer came from the API
    server (connection refused or reset, a timeout) or the answer said to try
    later; false when it succeeded or failed for any other reason."""
    if not hasattr(result, "get") or not result.get("failed"):
        return False
    status = result.get("status") if isinstance(result.get("status"), int) else None
    if status in LATER_STATUS or result.get("reason") in LATER_REASONS:
        return True
    text = " ".join(str(result.get(k) or "") for k in ("msg", "error", "reason", "stderr", "module_stderr"))
    if TRANSIENT_TEXT.search(text):
        return True
    # No answer came: when the API server answers, kubernetes.core's result
    # carries its reason (Unprocessable Entity, Not Found, ...). A module that
    # failed on an exception (no connection) may carry only the exception
    # (seen with ansible-core 2.21: no msg key while ``until`` is evaluated).
    return not result.get("reason") and status is None and not result.get("msg") and bool(result.get("exception"))
