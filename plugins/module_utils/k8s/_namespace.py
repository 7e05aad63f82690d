# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every object in a namespace, of every kind the API server lists there
(discovery, as `kubectl api-resources --namespaced --verbs=list` and then
`kubectl get` of each would), each sorted into what it is: something a user
made, or what Kubernetes keeps in every namespace, a record, a dependent of
another object, or something already being deleted. The teardown deletes a
namespace only when nothing of the first sort is left in it."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import request_json

# What Kubernetes itself puts into every namespace: the service account
# controller's "default" ServiceAccount and the root CA publisher's ConfigMap.
DEFAULTS = {("v1", "ServiceAccount", "default"), ("v1", "ConfigMap", "kube-root-ca.crt")}
# Records of what happened, not things: Events (core and events.k8s.io).
RECORD_KINDS = {"Event"}
# The legacy Endpoints mirror a Service of the same name (the Service is
# listed itself); the endpoints controller deletes them with the Service.
MIRROR_KINDS = {("v1", "Endpoints")}

STANDALONE, DEFAULT, EVENT, DEPENDENT, DELETING = "standalone", "default", "event", "dependent", "deleting"
CATEGORIES = (STANDALONE, DEFAULT, EVENT, DEPENDENT, DELETING)

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")
PAGE = 500


def validate_namespace(name: str) -> None:
    if not name or len(name) > 63 or set(name) - NAME_CHARS or name[0] == "-" or name[-1] == "-":
        raise ParameterError(f"namespace: {name!r} is not a namespace name (lower-case letters, digits and '-', "
                             "63 at most, starting and ending with a letter or digit)")


def category(obj: dict, api_version: str, kind: str) -> str:
    """What one object is, for the question "may the namespace go?"."""
    meta = obj.get("metadata") or {}
    if kind in RECORD_KINDS:
        return EVENT
    if (api_version, kind, meta.get("name")) in DEFAULTS:
        return DEFAULT
    if meta.get("deletionTimestamp"):
        return DELETING
    # Kept by a controller, whose owner (in this namespace) is listed itself.
    if any(ref.get("controller") for ref in meta.get("ownerReferences") or []) or (api_version, kind) in MIRROR_KINDS:
        return DEPENDENT
    return STANDALONE


def listable_resources(get) -> tuple[list[tuple[str, str, str]], list[dict]]:
    """(apiVersion, plural, kind) of every namespaced kind that can be listed,
    in each group's preferred version; and the group versions whose discovery
    failed (an aggregated API that is down), which then cannot be looked in."""
    versions = ["v1"] + [g["preferredVersion"]["groupVersion"] for g in get("/apis").get("groups", [])
                         if g.get("preferredVersion")]
    found, unlisted, seen = [], [], set()
    for version in versions:
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        try:
            listing = get(base)
        except ClusterError as exc:
            unlisted.append({"api_version": version, "resource": None, "error": exc.msg})
            continue
        for res in listing.get("resources", []):
            if "/" in res["name"] or not res.get("namespaced") or "list" not in res.get("verbs", []):
                continue
            if (version, res["kind"]) in seen:
                continue
            seen.add((version, res["kind"]))
            found.append((version, res["name"], res["kind"]))
    return found, unlisted


def namespace_objects(get, namespace: str) -> dict:
    """What the namespace holds; ``get(path, query=None)`` answers a GET as a
    dict and raises ClusterError on refusal."""
    validate_namespace(namespace)
    try:
        ns = get(f"/api/v1/namespaces/{namespace}")
    except ClusterError as exc:
        if exc.details.get("status") == 404:
            return {"exists": False, "phase": None, "objects": [], "standalone": [], "unlisted": [], "empty": False}
        raise
    resources, unlisted = listable_resources(get)
    objects = []
    for version, plural, kind in resources:
        base = "/api/v1" if version == "v1" else f"/apis/{version}"
        path = f"{base}/namespaces/{namespace}/{plural}"
        token = None
        try:
            while True:
                query = [("limit", str(PAGE))] + ([("continue", token)] if token else [])
                page = get(path, query)
                for obj in page.get("items", []):
                    objects.append({"api_version": version, "kind": kind,
                                    "name": (obj.get("metadata") or {}).get("name"),
                                    "category": category(obj, version, kind)})
                token = (page.get("metadata") or {}).get("continue")
                if not token:
                    break
        except ClusterError as exc:
            # 403: this user may not list it; 404/503: the API went away. Either way unknown, so it counts.
            unlisted.append({"api_version": version, "resource": plural, "error": exc.msg})
    objects.sort(key=lambda o: (o["category"] != STANDALONE, o["api_version"], o["kind"], o["name"] or ""))
    standalone = [f"{o['kind']}/{o['name']}" for o in objects if o["category"] == STANDALONE]
    return {
        "exists": True,
        "phase": (ns.get("status") or {}).get("phase"),
        "objects": objects,
        "standalone": standalone,
        "unlisted": unlisted,
        "empty": not standalone and not unlisted,
    }


def read(api, namespace: str, timeout: float) -> dict:
    def get(path: str, query: list | None = None) -> dict:
        return request_json(api, "GET", path, query=query, timeout=timeout, action=f"GET {path}")

    return namespace_objects(get, namespace)
