"""k8s_transient on the result shapes kubernetes.core 6.6 gave under
ansible-core 2.21 while ``until`` was evaluated (dumped from real runs
against the sandbox and against a port where nothing listens)."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.filter.k8s_transient import FilterModule, k8s_transient

NO_ANSWER = {"changed": False, "failed": True, "warnings": [], "deprecations": [],
             "exception": "(traceback unavailable)", "attempts": 1}
REFUSED_422 = {"changed": False, "failed": True, "exception": "(traceback unavailable)", "reason": "Unprocessable Entity",
               "msg": 'Failed to create object: {"kind":"Status","message":"Secret \\"Bad_Name\\" is invalid"}'}
NOT_FOUND = {"changed": False, "failed": True, "exception": "(traceback unavailable)", "reason": "Not Found",
             "msg": 'Failed to create object: {"message":"namespaces \\"no-such-ns\\" not found"}'}


@pytest.mark.parametrize("result, transient", [
    (NO_ANSWER, True),
    ({**REFUSED_422, "reason": "Service Unavailable", "msg": "Failed to apply: 503"}, True),
    ({"failed": True, "status": 500, "reason": "Internal Server Error", "msg": "etcdserver: request timed out"}, True),
    ({"failed": True, "msg": "HTTPSConnectionPool(host='127.0.0.1', port=9): Max retries exceeded with url: /api"}, True),
    (REFUSED_422, False),
    (NOT_FOUND, False),
    ({"failed": True, "status": 403, "reason": "Forbidden", "msg": "secrets is forbidden"}, False),
    ({"changed": True, "failed": False}, False),
    ({"changed": False}, False),
    (None, False),
])
def test_transient(result, transient):
    assert k8s_transient(result) is transient


def test_registered_as_a_filter():
    assert FilterModule().filters()["k8s_transient"] is k8s_transient
