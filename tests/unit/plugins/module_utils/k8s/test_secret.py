"""The Secret plan: exactly the asked data, generated keys kept, no copy of
the data outside ``data``, and a diff of keys only."""

from __future__ import annotations

import base64

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._secret import (
    LAST_APPLIED, masked_forms, plan, validate,
)


def b64(v: str) -> str:
    return base64.b64encode(v.encode()).decode()


def existing(data: dict, **meta) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s", "namespace": "n", "resourceVersion": "7", **meta},
            "data": {k: b64(v) for k, v in data.items()}}


def test_new_secret_holds_the_data_and_a_generated_key():
    obj, diff, generated = plan(None, {"A": "1"}, ["api-key"], 48, {"app": "x"}, "Opaque", "s", "n")
    assert obj["data"]["A"] == b64("1") and len(base64.b64decode(obj["data"]["api-key"])) == 48
    assert generated == ["api-key"] and diff["after"]["keys"] == ["A", "api-key"]
    assert "annotations" not in obj["metadata"] and "stringData" not in obj


def test_generated_key_is_kept_and_nothing_changes():
    obj, diff, generated = plan(existing({"api-key": "k" * 48},
                                         labels={"app": "x", "app.kubernetes.io/managed-by": "inferops.vllm"}),
                                {}, ["api-key"], 48,
                                {"app": "x"}, "Opaque", "s", "n")
    assert obj is None and diff == {} and generated == []


def test_change_replaces_exactly_and_diff_names_keys_only():
    old = existing({"AWS_ACCESS_KEY_ID": "old", "HF_TOKEN": "gone"},
                   annotations={LAST_APPLIED: '{"stringData": {"HF_TOKEN": "gone"}}', "keep": "me"})
    obj, diff, _generated = plan(old, {"AWS_ACCESS_KEY_ID": "new"}, [], 48, {}, "Opaque", "s", "n")
    assert obj["data"] == {"AWS_ACCESS_KEY_ID": b64("new")}
    assert obj["metadata"]["annotations"] == {"keep": "me"}  # the copy is gone, the rest kept
    assert obj["metadata"]["resourceVersion"] == "7"  # the replace is conditional on it
    assert diff["after"]["changed_keys"] == ["AWS_ACCESS_KEY_ID", "HF_TOKEN"]
    assert "new" not in repr(diff) and "gone" not in repr(diff) and b64("new") not in repr(diff)


def test_only_the_old_copy_is_reason_enough_to_write():
    old = existing({"A": "1"}, annotations={LAST_APPLIED: "{}"})
    obj, diff, _generated = plan(old, {"A": "1"}, [], 48, {}, "Opaque", "s", "n")
    assert obj is not None and diff["before"]["annotations"] == [LAST_APPLIED]


def test_type_cannot_change():
    with pytest.raises(ParameterError, match="type: .* cannot change"):
        plan(existing({}), {}, [], 48, {}, "kubernetes.io/basic-auth", "s", "n")


@pytest.mark.parametrize("data, generate, length, match", [
    ({"A": 5}, [], 48, "data: the value of 'A' must be a string"),
    ({"A": "x"}, ["A"], 48, "data and generate: A given in both"),
    ({}, ["k"], 8, "generate_length: 8 is too short"),
])
def test_bad_input_is_refused(data, generate, length, match):
    with pytest.raises(ParameterError, match=match):
        validate("s", "n", data, generate, length)


def test_masked_forms_cover_base64_twice():
    assert masked_forms("v") == {"v", b64("v"), b64(b64("v"))}
    assert masked_forms("") == set()
