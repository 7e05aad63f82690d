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
    assert {k: existing[k] for k in ("server", "sub", "exp")} == {"server": "https://api:6443", "sub": SUB, "exp": 10_000}
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


UID = "6a1e7c1e-0000-4000-8000-000000000001"


class FakeApi:
    """The answers of the API server to the few requests the review makes
    (path -> answer, or a ClusterError to raise), and what was asked."""

    def __init__(self, answers: dict):
        self.answers, self.asked = answers, []

    def __call__(self, api, method, path, **kwargs):
        self.asked.append((method, path, kwargs.get("body")))
        answer = self.answers[path]
        if isinstance(answer, Exception):
            raise answer
        return answer


REVIEW = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCOUNT = "/api/v1/namespaces/inferops-system/serviceaccounts/inferops-deployer"
TOKEN = jwt({"sub": SUB, "exp": 10_000, "kubernetes.io": {"serviceaccount": {"name": "inferops-deployer", "uid": UID}}})


def review(monkeypatch, answers):
    fake = FakeApi(answers)
    monkeypatch.setattr(kc, "request_json", fake)
    return kc.review(None, TOKEN, SUB, "inferops-system", "inferops-deployer", 30), fake


OK = {"status": {"authenticated": True, "user": {"username": SUB}}}
LIVE = {"metadata": {"uid": UID}}
FORBIDDEN = kc.ClusterError("403 Forbidden", status=403)


def test_a_token_of_the_live_account_the_server_takes_is_kept(monkeypatch):
    why, fake = review(monkeypatch, {ACCOUNT: LIVE, REVIEW: OK})
    assert why is None
    # The token goes in the review's body, never in a path or query.
    assert fake.asked == [("GET", ACCOUNT, None),
                          ("POST", REVIEW, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                            "spec": {"token": TOKEN}})]


def test_an_account_made_again_is_seen_from_its_uid_before_any_review(monkeypatch):
    # The API server would still take the token for a while (its cache of accepted tokens).
    why, fake = review(monkeypatch, {ACCOUNT: {"metadata": {"uid": "new-uid"}}, REVIEW: OK})
    assert UID in why and "new-uid" in why and [a[0] for a in fake.asked] == ["GET"]
    gone, _fake = review(monkeypatch, {ACCOUNT: kc.ClusterError("404", status=404), REVIEW: OK})
    assert "no longer exists" in gone


def test_a_token_the_server_rejects_is_replaced_with_its_reason(monkeypatch):
    error = "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
    why, _fake = review(monkeypatch, {ACCOUNT: LIVE, REVIEW: {"status": {"authenticated": False, "error": error}}})
    assert "rejects" in why and "go-jose" in why


def test_a_token_taken_for_another_user_is_replaced(monkeypatch):
    taken_for = {"status": {"authenticated": True, "user": {"username": "someone"}}}
    why, _fake = review(monkeypatch, {ACCOUNT: LIVE, REVIEW: taken_for})
    assert "someone" in why


def test_either_check_may_be_forbidden_not_both(monkeypatch):
    assert review(monkeypatch, {ACCOUNT: LIVE, REVIEW: FORBIDDEN})[0] is None
    assert review(monkeypatch, {ACCOUNT: FORBIDDEN, REVIEW: OK})[0] is None
    with pytest.raises(kc.ClusterError, match="403"):
        review(monkeypatch, {ACCOUNT: FORBIDDEN, REVIEW: FORBIDDEN})


def test_other_failures_fail(monkeypatch):
    with pytest.raises(kc.ClusterError, match="500"):
        review(monkeypatch, {ACCOUNT: LIVE, REVIEW: kc.ClusterError("reviewing failed: 500", status=500)})


class Conf:
    host = "https://api:6443"
    ssl_ca_cert = None
    verify_ssl = False


class Api:
    configuration = Conf()


def test_ensure_replaces_a_rejected_token_and_keeps_an_accepted_one(monkeypatch, tmp_path):
    dest = tmp_path / "k"
    kc.write_private(str(dest), kc.render({"server": Conf.host}, SUB, TOKEN, "inferops-system"))
    masked = []
    accepted = FakeApi({ACCOUNT: LIVE, REVIEW: OK})
    monkeypatch.setattr(kc, "request_json", accepted)
    kept = kc.ensure(Api(), "inferops-system", "inferops-deployer", str(dest), 86400, 3600, False, 30,
                     mask=masked.append, clock=lambda: 5_000)
    assert kept["changed"] is False and TOKEN in masked

    fresh = jwt({"sub": SUB, "exp": 90_000, "kubernetes.io": {"serviceaccount": {"uid": "new-uid"}}})
    rejected = FakeApi({ACCOUNT: {"metadata": {"uid": "new-uid"}}, REVIEW: OK,
                        f"{ACCOUNT}/token": {"status": {"token": fresh}}})
    monkeypatch.setattr(kc, "request_json", rejected)
    dry = kc.ensure(Api(), "inferops-system", "inferops-deployer", str(dest), 86400, 3600, True, 30,
                    clock=lambda: 5_000)
    assert dry["changed"] is True and kc.read_existing(str(dest))["token"] == TOKEN  # check mode writes nothing
    replaced = kc.ensure(Api(), "inferops-system", "inferops-deployer", str(dest), 86400, 3600, False, 30,
                         mask=masked.append, clock=lambda: 5_000)
    assert replaced["changed"] is True and "now has uid new-uid" in replaced["replaced_because"]
    assert replaced["diff"] == {"before": {"server": Conf.host, "sub": SUB, "uid": UID},
                                "after": {"server": Conf.host, "sub": SUB, "uid": "new-uid"}}
    assert TOKEN not in json.dumps(replaced) and fresh not in json.dumps(replaced) and fresh in masked
    assert kc.read_existing(str(dest))["token"] == fresh
