"""Small Kubernetes helpers for tests, over the collection's own client
(kubernetes.dynamic requests answered as plain JSON dicts; no generated
typed models, which client 37 validates strictly): read and write objects by
API path or by (apiVersion, kind, namespace, name), and wait by watching the
API (the collection's informer), never by sleeping."""

from __future__ import annotations

import threading

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect, request_json
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    # What the generated typed client sent for a dict body: lists of named
    # items (containers, env) merge by name instead of being replaced.
    "strategic": "application/strategic-merge-patch+json",
}


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a refused request (None when no answer came)."""
    return exc.details.get("status") if isinstance(exc, ClusterError) else None


class Kube:
    """The sandbox's API server, answered as plain dicts.

    An object or a collection is named either by its API path
    (``"/api/v1/nodes/n1"``) or by ``(apiVersion, kind, namespace, name)``:
    ``kube.get("apps/v1", "StatefulSet", ns, "vllm")``; leave out the name for
    the collection, and pass namespace None for a cluster-scoped kind (or, for
    a namespaced one, every namespace)."""

    def __init__(self, kubeconfig: str, request_timeout: float = 30.0):
        self.kubeconfig = kubeconfig
        self.api = connect({"kubeconfig": kubeconfig})
        self.timeout = request_timeout
        self._resources: dict[str, dict[str, dict]] = {}
        self._lock = threading.Lock()

    # -- naming ---------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> dict:
        """The discovery entry (name = plural, namespaced) of a kind."""
        with self._lock:
            kinds = self._resources.get(api_version)
        if kinds is None:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            listing = self.request("GET", base)
            kinds = {r["kind"]: r for r in listing.get("resources", []) if "/" not in r["name"]}
            with self._lock:
                self._resources[api_version] = kinds
        if kind not in kinds:
            raise KeyError(f"{api_version} serves no kind {kind!r} (it serves {', '.join(sorted(kinds))})")
        return kinds[kind]

    def path(self, api_version: str, kind: str, namespace: str | None = None, name: str | None = None) -> str:
        """The API path of one object, or of its collection when name is None."""
        res = self.resource(api_version, kind)
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if res["namespaced"] and namespace:
            base += f"/namespaces/{namespace}"
        elif not res["namespaced"] and namespace:
            raise ValueError(f"{kind} is cluster-scoped: no namespace ({namespace!r} given)")
        path = f"{base}/{res['name']}"
        return f"{path}/{name}" if name else path

    def _path(self, ref: tuple) -> str:
        if len(ref) == 1 and isinstance(ref[0], str) and ref[0].startswith("/"):
            return ref[0]
        if 2 <= len(ref) <= 4:
            return self.path(*ref)
        raise TypeError(f"name an object by its API path or by (apiVersion, kind, namespace, name), got {ref!r}")

    # -- requests -------------------------------------------------------------

    def request(self, method: str, path: str, query: list | None = None, body=None,
                content_type: str = "application/json") -> dict:
        """One request; raises ClusterError (status in .details) on refusal."""
        return request_json(self.api, method, path, query=list(query or []), body=body,
                            content_type=content_type, timeout=self.timeout)

    def get(self, *ref, query: list | None = None) -> dict:
        """One object (or a whole list answer, for a collection path)."""
        return self.request("GET", self._path(ref), query)

    def list(self, *ref, label_selector: str | None = None, field_selector: str | None = None,
             query: list | None = None) -> list[dict]:
        """The items of a collection."""
        query = list(query or [])
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        return self.request("GET", self._path(ref), query).get("items", [])

    def create(self, body: dict, namespace: str | None = None, path: str | None = None,
               dry_run: bool = False) -> dict:
        """Create body (its apiVersion and kind name the collection; namespace
        defaults to its metadata.namespace). dry_run: the server admits and
        validates it, and stores nothing."""
        if path is None:
            namespace = namespace or (body.get("metadata") or {}).get("namespace")
            path = self.path(body["apiVersion"], body["kind"], namespace)
        return self.request("POST", path, [("dryRun", "All")] if dry_run else [], body)

    def every_object(self):
        """(kind, namespace, name, object) of every object of every kind the
        API server lists, in every namespace: discovery, as `kubectl get
        --all-namespaces` of every `kubectl api-resources` kind would."""
        bases = ["/api/v1"] + [f"/apis/{g['preferredVersion']['groupVersion']}"
                               for g in self.request("GET", "/apis")["groups"]]
        for base in bases:
            for res in self.request("GET", base)["resources"]:
                if "/" in res["name"] or "list" not in res.get("verbs", []):
                    continue
                for obj in self.request("GET", f"{base}/{res['name']}").get("items", []):
                    meta = obj.get("metadata", {})
                    yield res["kind"], meta.get("namespace"), meta.get("name"), obj

    def patch(self, *ref, body: dict, strategic: bool = False) -> dict:
        """Patch one object: a JSON merge patch (RFC 7386), or a strategic
        merge patch (what the generated typed client sent for a dict)."""
        return self.request("PATCH", self._path(ref), body=body,
                            content_type=PATCH_TYPES["strategic" if strategic else "merge"])

    def delete(self, *ref, propagation: str | None = None, missing_ok: bool = False) -> dict:
        query = [("propagationPolicy", propagation)] if propagation else []
        try:
            return self.request("DELETE", self._path(ref), query)
        except ClusterError as exc:
            if missing_ok and status_of(exc) == 404:
                return {}
            raise

    # -- waiting --------------------------------------------------------------

    def wait_for(self, path, predicate, timeout: float, query: list | None = None) -> dict:
        """Watch the collection at path (an API path, or (apiVersion, kind,
        namespace)) until predicate(obj) holds for one of its objects; return
        that object. Raises TimeoutError when timeout passes first."""
        path = self._path(path if isinstance(path, tuple) else (path,))
        found: list[dict] = []

        def done(objects: list[dict]) -> bool:
            found[:] = [o for o in objects if predicate(o)]
            return bool(found)

        wait_until(self.api, path, done, timeout, list(query or []), request_timeout=self.timeout)
        return found[0]


# What changes on its own while a playbook runs: node heartbeats (Lease, the
# Node's status), events.
MOVING_KINDS = {"Lease", "Event", "Node"}


def cluster_state(kube) -> dict:
    """resourceVersion of every object of every kind, and each node's labels
    and taints (what the GPU node stage writes): compared before and after a
    run that must change nothing. Namespaces other tests left to background
    deletion change on their own, and so do the cluster-wide objects of what
    is in them (a claim's volume turns Released, a Service's cluster IP, an
    IPAddress, is freed): those are left out."""
    namespaces = kube.list("v1", "Namespace")
    existing = {n["metadata"]["name"] for n in namespaces}
    leaving = {n["metadata"]["name"] for n in namespaces if n["metadata"].get("deletionTimestamp")}
    found = {}
    for kind, namespace, name, obj in kube.every_object():
        meta = obj["metadata"]
        if namespace in leaving or (kind == "Namespace" and name in leaving):
            continue
        spec = obj.get("spec") or {}
        owner = (spec.get("claimRef") if kind == "PersistentVolume" else
                 spec.get("parentRef") if kind == "IPAddress" else None)
        if owner is not None and owner.get("namespace") not in existing - leaving:
            continue
        if kind == "Node":
            found[(kind, None, name)] = (meta.get("labels"), spec.get("taints"))
        elif kind not in MOVING_KINDS:
            found[(kind, namespace, name)] = meta.get("resourceVersion")
    return found


def changed_between(before: dict, after: dict) -> list:
    return sorted({k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}, key=str)
