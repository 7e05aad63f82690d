"""The pure parts of service_account_kubeconfig: what a token names and
until when, when a file is kept, and what the file holds."""

from __future__ import annotations

import base64
import json

import pytest
import yaml

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _kubeconfig as kc

SUB = "system:serviceaccount:inferops-system:inferops-deployer"


def jwt(claims: dict) -> str:
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def test_claims_of_a_token():
    assert kc.token_claims(jwt({"sub": SUB, "exp": 2000})) == {"sub": SUB, "exp": 2000}
    assert kc.token_claims("not a token") == {}


def test_file_roundtrip_and_when_it_is_kept(tmp_path):
    dest = tmp_path / "k"
    kc.write_private(str(dest), kc.render({"server": "https://api:6443"}, SUB, jwt({"sub": SUB, "exp": 10_000}),
                                          "inferops-system"))
    assert dest.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(dest.read_text())
    assert config["current-context"] == SUB and config["contexts"][0]["context"]["namespace"] == "inferops-system"
    existing = kc.read_existing(str(dest))
    assert existing == {"server": "https://api:6443", "sub": SUB, "exp": 10_000}
    assert kc.still_good(existing, "https://api:6443", SUB, renew_before=3600, now=5_000)
    assert not kc.still_good(existing, "https://api:6443", SUB, renew_before=3600, now=7_000)  # in its last hour
    assert not kc.still_good(existing, "https://other:6443", SUB, renew_before=3600, now=5_000)
    assert not kc.still_good(existing, "https://api:6443", SUB.replace("deployer", "x"), 3600, 5_000)
    assert kc.read_existing(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("args, param", [
    (("relative/path", 86400, 3600), "dest"),
    (("/abs", 300, 60), "expiration_seconds"),
    (("/abs", 86400, 86400), "renew_before_seconds"),
    (("/abs", 86400, -1), "renew_before_seconds"),
])
def test_bad_parameters_before_any_request(args, param):
    dest, expiration, renew = args
    with pytest.raises(ParameterError, match=f"^{param}:"):
        kc.ensure(None, "ns", "sa", dest, expiration, renew, check_mode=False, timeout=None)
