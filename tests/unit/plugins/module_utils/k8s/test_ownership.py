"""The ownership rule: the collection changes, adopts or deletes only what
carries its label; anything else is refused naming who manages it, or (a
key Secret the user named) read as it is. And the key's fingerprint: an
HMAC under a salt, never the key or its plain hash."""

from __future__ import annotations

import base64
import hashlib

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._ownership import (
    check, created_by_collection, owner_of,
)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._secret import fingerprint, plan, use_foreign


def b64(v: str) -> str:
    return base64.b64encode(v.encode()).decode()


def obj(kind="Service", labels=None, **meta) -> dict:
    return {"apiVersion": "v1", "kind": kind,
            "metadata": {"name": "vllm", "namespace": "ai", "labels": labels or {}, **meta}}


OURS = {"app.kubernetes.io/managed-by": "inferops.vllm"}


def test_only_the_collections_label_makes_an_object_its_own():
    assert created_by_collection(obj(labels=OURS))
    assert not created_by_collection(obj(labels={"app.kubernetes.io/managed-by": "Helm"}))
    assert not created_by_collection(obj())
    assert not created_by_collection(None)


def test_a_refusal_names_the_object_and_who_manages_it():
    live = obj(labels={"app.kubernetes.io/managed-by": "Helm"},
               annotations={"meta.helm.sh/release-name": "gateway", "meta.helm.sh/release-namespace": "ai"},
               managedFields=[{"manager": "helm", "operation": "Update"},
                              {"manager": "kubectl-edit", "operation": "Update"},
                              {"manager": "helm", "operation": "Update"}])
    wanted = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vllm", "namespace": "ai"}}
    [message] = check([(wanted, live), (wanted, None), (wanted, obj(labels=OURS))])
    assert message.startswith("Service ai/vllm exists and was not created by inferops.vllm")
    assert "managed-by=Helm" in message and "Helm release ai/gateway" in message
    assert "written by helm, kubectl-edit" in message


def test_an_object_with_nothing_to_say_is_still_named():
    assert owner_of(obj()) == "no managed-by label, no field managers recorded"


def test_a_users_key_secret_is_read_as_it_is():
    live = {"metadata": {"name": "team-key", "namespace": "ai"}, "data": {"api-key": b64("k1"), "other": b64("x")}}
    used = use_foreign(live, {}, ["api-key"], "present", "name")
    assert used["changed"] is False and used["created_by_collection"] is False
    assert used["secret_keys"] == ["api-key", "other"]
    # The same value given: nothing to do either.
    assert use_foreign(live, {"api-key": "k1"}, [], "present", "name")["changed"] is False
    # Teardown leaves it.
    assert use_foreign(live, {}, [], "absent", "name")["changed"] is False


@pytest.mark.parametrize("data, generate, match", [
    ({}, ["token"], "has no key token .it has api-key, other.; the collection does not write into it"),
    ({"api-key": "k2"}, [], "its api-key differs from the value given; the collection does not change it"),
])
def test_a_users_key_secret_is_never_written(data, generate, match):
    live = {"metadata": {"name": "team-key", "namespace": "ai"}, "data": {"api-key": b64("k1"), "other": b64("x")}}
    with pytest.raises(ParameterError, match=match):
        use_foreign(live, data, generate, "present", "name")


def test_the_collections_secret_carries_its_label():
    new, _diff, _generated = plan(None, {"A": "1"}, [], 48, {"app": "x"}, "Opaque", "s", "n")
    assert new["metadata"]["labels"] == {"app": "x", **OURS}


def test_the_fingerprint_changes_with_the_key_and_tells_nothing_without_the_salt():
    salt = "s" * 64
    first, again, other = fingerprint("key-1", salt), fingerprint("key-1", salt), fingerprint("key-2", salt)
    assert first == again and first != other
    assert "key-1" not in first
    # Not a plain hash of the key (which a guess could be tested against), and another salt gives another value.
    assert first not in (hashlib.sha256(b"key-1").hexdigest(), hashlib.sha512(b"key-1").hexdigest())
    assert fingerprint("key-1", "t" * 64) != first


class FakeApi:
    """The API server's answers by path (discovery and objects); records deletes."""

    def __init__(self, objects: dict):
        self.objects, self.deletes = objects, []

    def request(self, method, path, body=None, query_params=None, **_kwargs):
        import json as _json
        from types import SimpleNamespace

        if method == "DELETE":
            self.deletes.append((path, body, list(query_params or [])))
            return SimpleNamespace(data=b"{}")
        if path == "/apis/networking.k8s.io/v1":
            data = {"resources": [{"name": "ingresses", "kind": "Ingress", "namespaced": True},
                                  {"name": "networkpolicies", "kind": "NetworkPolicy", "namespaced": True}]}
            return SimpleNamespace(data=_json.dumps(data).encode())
        if path in self.objects:
            return SimpleNamespace(data=_json.dumps(self.objects[path]).encode())
        raise AssertionError(f"unexpected {method} {path}")


def test_prune_deletes_only_this_instances_own_and_check_mode_is_a_dry_run_in_the_body():
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._ownership import prune

    base = "/apis/networking.k8s.io/v1/namespaces/ai"
    ours = {"kind": "Ingress", "metadata": {"name": "vllm", "namespace": "ai", "uid": "u1",
                                            "labels": {**OURS, "app.kubernetes.io/instance": "vllm"}}, "spec": {}}
    theirs = {"kind": "NetworkPolicy", "metadata": {"name": "vllm", "namespace": "ai", "uid": "u2",
                                                    "managedFields": [{"manager": "kubectl-create"}]}}
    api = FakeApi({f"{base}/ingresses/vllm": ours, f"{base}/networkpolicies/vllm": theirs})
    wanted = [{"apiVersion": "networking.k8s.io/v1", "kind": kind, "metadata": {"name": "vllm", "namespace": "ai"}}
              for kind in ("Ingress", "NetworkPolicy")]
    result = prune(api, wanted, {"app.kubernetes.io/instance": "vllm"}, check_mode=True)
    assert result["deleted"] == ["Ingress/vllm"] and result["left"] == ["NetworkPolicy/vllm (written by kubectl-create)"]
    [(path, body, query)] = api.deletes
    # With a body the API server reads only the body's options: the dry run must be there.
    assert path == f"{base}/ingresses/vllm" and body["dryRun"] == ["All"] and body["preconditions"] == {"uid": "u1"}
    assert result["diff"] == {"before": {"Ingress/vllm": {"metadata": ours["metadata"], "spec": {}}}, "after": {}}

    # Another instance's object of that name is not this one's to delete.
    other = FakeApi({f"{base}/ingresses/vllm": ours})
    assert prune(other, wanted[:1], {"app.kubernetes.io/instance": "chat"}, check_mode=False)["deleted"] == []
    assert other.deletes == []
