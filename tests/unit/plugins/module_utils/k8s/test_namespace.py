"""What a namespace holds: every listable namespaced kind found by discovery,
each object sorted into what it is, and a kind that cannot be listed making
the namespace not empty (what it holds is unknown). A fake API answers the
GETs; the module itself runs against the sandbox (tests/integration)."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._namespace import namespace_objects

DISCOVERY = {
    "/apis": {"groups": [
        {"name": "apps", "preferredVersion": {"groupVersion": "apps/v1"}},
        {"name": "events.k8s.io", "preferredVersion": {"groupVersion": "events.k8s.io/v1"}},
        {"name": "metrics.k8s.io", "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1"}},
    ]},
    "/api/v1": {"resources": [
        {"name": "configmaps", "kind": "ConfigMap", "namespaced": True, "verbs": ["get", "list"]},
        {"name": "serviceaccounts", "kind": "ServiceAccount", "namespaced": True, "verbs": ["list"]},
        {"name": "events", "kind": "Event", "namespaced": True, "verbs": ["list"]},
        {"name": "endpoints", "kind": "Endpoints", "namespaced": True, "verbs": ["list"]},
        {"name": "pods", "kind": "Pod", "namespaced": True, "verbs": ["list"]},
        {"name": "pods/log", "kind": "Pod", "namespaced": True, "verbs": ["get"]},
        {"name": "bindings", "kind": "Binding", "namespaced": True, "verbs": ["create"]},
        {"name": "nodes", "kind": "Node", "namespaced": False, "verbs": ["list"]},
    ]},
    "/apis/apps/v1": {"resources": [
        {"name": "replicasets", "kind": "ReplicaSet", "namespaced": True, "verbs": ["list"]},
        {"name": "deployments", "kind": "Deployment", "namespaced": True, "verbs": ["list"]},
    ]},
    "/apis/events.k8s.io/v1": {"resources": [
        {"name": "events", "kind": "Event", "namespaced": True, "verbs": ["list"]},
    ]},
}


def obj(name: str, **meta) -> dict:
    return {"metadata": {"name": name, **meta}}


class FakeApi:
    def __init__(self, items: dict[str, list[dict]], down: set[str] = frozenset(), page: int = 0,
                 metrics: bool = False):
        self.items, self.down, self.page, self.metrics, self.paths = items, down, page, metrics, []

    def __call__(self, path: str, query: list | None = None) -> dict:
        self.paths.append(path)
        if path == "/api/v1/namespaces/ns":
            return {"status": {"phase": "Active"}}
        if path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
            raise ClusterError("GET: 404 Not Found", status=404)
        if path in self.down:
            raise ClusterError(f"GET {path} failed: 503 Service Unavailable", status=503)
        if path == "/apis" and not self.metrics:
            return {"groups": [g for g in DISCOVERY["/apis"]["groups"] if g["name"] != "metrics.k8s.io"]}
        if path in DISCOVERY:
            return DISCOVERY[path]
        if path.startswith("/apis/metrics.k8s.io"):
            raise ClusterError("GET failed: 503 Service Unavailable: the server is currently unable", status=503)
        plural = path.rsplit("/", 1)[1]
        items = self.items.get(plural, [])
        if self.page:
            start = int(dict(query or []).get("continue") or 0)
            more = start + self.page < len(items)
            return {"items": items[start:start + self.page], "metadata": {"continue": str(start + self.page) if more else ""}}
        return {"items": items}


def test_what_kubernetes_keeps_events_and_dependents_do_not_count():
    api = FakeApi({
        "configmaps": [obj("kube-root-ca.crt")],
        "serviceaccounts": [obj("default")],
        "events": [obj("vllm.1")],
        "endpoints": [obj("vllm")],
        "replicasets": [obj("web-1", ownerReferences=[{"kind": "Deployment", "name": "web", "controller": True}])],
        "pods": [obj("vllm-0", deletionTimestamp="2026-01-01T00:00:00Z")],
    }, metrics=True)
    found = namespace_objects(api, "ns")
    assert found["standalone"] == [] and found["unlisted"][0]["api_version"] == "metrics.k8s.io/v1beta1"
    assert found["empty"] is False  # metrics.k8s.io could not be looked in
    by_name = {o["name"]: o["category"] for o in found["objects"]}
    assert by_name == {"kube-root-ca.crt": "default", "default": "default", "vllm.1": "event", "vllm": "dependent",
                       "web-1": "dependent", "vllm-0": "deleting"}
    # Only kinds that can be listed, in the namespace, never a subresource or a cluster-wide kind.
    assert not any(p.endswith(("/bindings", "/nodes", "/log")) for p in api.paths)


def test_a_users_object_counts_and_the_namespace_is_not_empty():
    api = FakeApi({"configmaps": [obj("team-notes"), obj("kube-root-ca.crt")],
                   "deployments": [obj("web")], "serviceaccounts": [obj("default"), obj("builder")]})
    found = namespace_objects(api, "ns")
    assert sorted(found["standalone"]) == ["ConfigMap/team-notes", "Deployment/web", "ServiceAccount/builder"]
    assert found["empty"] is False and found["unlisted"] == [] and found["phase"] == "Active"
    assert namespace_objects(FakeApi({"serviceaccounts": [obj("default")]}), "ns")["empty"] is True


def test_pages_are_followed():
    api = FakeApi({"configmaps": [obj(f"cm-{i}") for i in range(7)]}, page=3)
    found = namespace_objects(api, "ns")
    assert sorted(s for s in found["standalone"] if s.startswith("ConfigMap/")) == [f"ConfigMap/cm-{i}" for i in range(7)]


def test_a_kind_that_cannot_be_listed_is_reported_and_counts():
    api = FakeApi({}, down={"/api/v1/namespaces/ns/pods"})
    found = namespace_objects(api, "ns")
    assert {u["resource"] for u in found["unlisted"]} >= {"pods"} and found["empty"] is False


def test_a_namespace_that_does_not_exist_is_reported():
    found = namespace_objects(FakeApi({}), "gone")
    assert found == {"exists": False, "phase": None, "objects": [], "standalone": [], "unlisted": [], "empty": False}


@pytest.mark.parametrize("bad", ["", "Upper", "-dash", "a" * 64, "under_score"])
def test_a_name_that_is_no_namespace_is_refused(bad):
    with pytest.raises(ParameterError, match="is not a namespace name"):
        namespace_objects(FakeApi({}), bad)
