from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _rolling as rolling


def test_template_of_revision_drops_the_replace_directive():
    # A StatefulSet ControllerRevision's data, as the controller writes it
    # (kubernetes pkg/controller/statefulset/stateful_set_utils.go, getPatch):
    # the template with "$patch": "replace".
    revision = {"metadata": {"name": "vllm-6d9f7c5b8"}, "revision": 1, "data": {"spec": {"template": {
        "$patch": "replace", "metadata": {"labels": {"app": "vllm"}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.20.0"}]}}}}}
    assert rolling.template_of_revision(revision) == {
        "metadata": {"labels": {"app": "vllm"}},
        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.20.0"}]}}
    # The revision itself is left as it was.
    assert revision["data"]["spec"]["template"]["$patch"] == "replace"


def test_a_revision_without_a_template_is_an_error():
    with pytest.raises(ClusterError, match="holds no pod template"):
        rolling.template_of_revision({"metadata": {"name": "r"}, "data": {}})


def test_highest_ordinal_first_as_the_controller_updates():
    assert rolling.rollout_order(3) == [2, 1, 0]
    assert rolling.rollout_order(0) == []


def test_revision_of_a_pod():
    assert rolling.revision_of({"metadata": {"labels": {"controller-revision-hash": "vllm-1"}}}) == "vllm-1"
    assert rolling.revision_of({"metadata": {}}) == ""


@pytest.mark.parametrize("kwargs, message", [
    ({"name": ""}, "name: empty"),
    ({"namespace": ""}, "namespace: empty"),
    ({"timeout": 0}, "timeout: must be more than 0"),
])
def test_bad_parameters_name_themselves(kwargs, message):
    args = {"api": None, "name": "vllm", "namespace": "ai", "timeout": 10, "fail_fast": [], "fail_fast_after": 1,
            **kwargs}
    with pytest.raises(ParameterError, match=message):
        rolling.GatedRollout(**args)


def test_pods_state_lists_each_pod_by_ordinal_with_its_revision_and_readiness():
    def pod(name, revision, ready, deleting=False):
        return {"metadata": {"name": name, "labels": {"controller-revision-hash": revision} if revision else {},
                             **({"deletionTimestamp": "2026-12-03T21:00:00Z"} if deleting else {})},
                "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}
    pods = {n: pod(n, r, ready, d) for n, r, ready, d in (
        ("vllm-10", "vllm-b", True, False), ("vllm-2", "vllm-a", False, True), ("vllm-0", "", False, False))}
    state = rolling.pods_state(pods)
    assert [p["pod"] for p in state] == ["vllm-0", "vllm-2", "vllm-10"]
    assert rolling.describe_pods(state) == ("vllm-0 revision (none) not Ready, vllm-2 revision vllm-a not Ready "
                                            "(being deleted), vllm-10 revision vllm-b Ready")
    assert rolling.describe_pods([]) == "no pods"
