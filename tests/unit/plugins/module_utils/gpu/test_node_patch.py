from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._node_patch import plan_node, validate_request


def node(labels=None, annotations=None, taints=None):
    return {"metadata": {"name": "n1", "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"taints": taints} if taints is not None else {}}


def test_only_differing_labels_are_patched():
    patch, diff = plan_node(node({"gpu": "on", "zone": "a"}), {"gpu": "on", "nvidia.com/gpu.product": "H100"}, {}, [], "present")
    assert patch == {"metadata": {"labels": {"nvidia.com/gpu.product": "H100"}}}
    assert diff == {"before": {"labels": {"nvidia.com/gpu.product": None}},
                    "after": {"labels": {"nvidia.com/gpu.product": "H100"}}}


def test_nothing_differs_gives_empty_patch_and_diff():
    assert plan_node(node({"gpu": "on"}), {"gpu": "on"}, {}, [], "present") == ({}, {})


def test_absent_removes_only_present_keys_and_matching_values():
    patch = plan_node(node({"gpu": "on", "team": "a"}), {"gpu": "on", "team": "b", "missing": "x"}, {}, [], "absent")[0]
    # team has another value than the one asked to remove: left alone.
    assert patch == {"metadata": {"labels": {"gpu": None}}}


def test_null_value_removes_label_even_in_present_state():
    patch, diff = plan_node(node({"old": "1"}), {"old": None}, {}, [], "present")
    assert patch == {"metadata": {"labels": {"old": None}}}
    assert diff["after"]["labels"] == {"old": None}


def test_taint_added_updated_and_removed():
    existing = [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
                {"key": "nvidia.com/gpu", "value": "old", "effect": "NoSchedule"}]
    want = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "llm", "effect": "NoSchedule"}]
    patch, diff = plan_node(node(taints=existing), {}, {}, want, "present")
    assert patch["spec"]["taints"] == [
        {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
        {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"},
        {"key": "dedicated", "value": "llm", "effect": "NoSchedule"},
    ]
    assert diff["before"]["taints"] == existing
    patch = plan_node(node(taints=patch["spec"]["taints"]), {}, {}, [{"key": "dedicated", "value": None, "effect": "NoSchedule"}], "absent")[0]
    assert [t["key"] for t in patch["spec"]["taints"]] == ["node.kubernetes.io/not-ready", "nvidia.com/gpu"]


def test_removing_last_taint_sends_null_list():
    patch = plan_node(node(taints=[{"key": "a", "effect": "NoSchedule"}]), {}, {}, [{"key": "a", "value": None, "effect": "NoSchedule"}], "absent")[0]
    assert patch == {"spec": {"taints": None}}


@pytest.mark.parametrize("labels,fragment", [
    ({"gpu": True}, "quote it in YAML"),
    ({"bad key!": "x"}, "not a valid Kubernetes key"),
    ({"gpu": "a" * 64}, "not a valid label value"),
    ({"gpu": "-on"}, "not a valid label value"),
])
def test_bad_labels_name_the_parameter_and_the_fix(labels, fragment):
    with pytest.raises(ParameterError) as exc:
        validate_request(labels, {}, [], "present")
    assert exc.value.msg.startswith("labels:") and fragment in exc.value.msg


def test_bad_taint_effect_is_refused():
    with pytest.raises(ParameterError, match=r"taints\[0\].effect"):
        validate_request({}, {}, [{"key": "a", "effect": "Sometimes"}], "present")
