"""The k8s_secret module refuses bad input before it reaches any cluster."""

from __future__ import annotations

import json

import pytest

from support.modules import call


@pytest.mark.parametrize("args, match", [
    ({"data": {"K": 5}}, "data: the value of 'K' must be a string"),
    ({"data": {"K": "a-longer-value"}, "generate": ["K"]}, "data and generate: K given in both"),
    ({"generate": ["k"], "generate_length": 4}, "generate_length: 4 is too short"),
])
def test_bad_input_fails_before_connecting(capsys, args, match):
    # A kubeconfig that does not exist: reaching the connection would fail differently.
    result = call("k8s_secret", {"name": "s", "namespace": "n", "kubeconfig": "/nonexistent/kubeconfig", **args},
                  capsys)
    assert result["failed"] is True and match in result["msg"], result["msg"]


def test_missing_kubeconfig_is_named(capsys):
    result = call("k8s_secret", {"name": "s", "namespace": "n", "data": {"K": "value-not-shown"},
                                 "kubeconfig": "/nonexistent/kubeconfig"}, capsys)
    assert result["failed"] is True and result["msg"].startswith("kubeconfig: /nonexistent/kubeconfig is not a file")
    assert "value-not-shown" not in json.dumps(result)
