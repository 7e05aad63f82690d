# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which objects the collection created, and who manages the others.

The collection marks what it creates with the label
app.kubernetes.io/managed-by=inferops.vllm (the Kubernetes recommended label
for "the tool being used to manage the operation of an application"). It
changes, adopts or deletes only objects that carry it: any other object of a
name it would write is refused, naming the object and who manages it (its
managed-by label, a Helm release, its field managers, an owner), before
anything is applied. This is the one place that rule is written; the roles
reach it through the k8s_ownership and k8s_secret modules."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import request_json

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "inferops.vllm"
COLLECTION_LABELS = {MANAGED_BY_LABEL: MANAGED_BY}


def created_by_collection(obj: dict | None) -> bool:
    return ((obj or {}).get("metadata") or {}).get("labels", {}).get(MANAGED_BY_LABEL) == MANAGED_BY


def owner_of(obj: dict) -> str:
    """Who manages an object, as far as the object itself says: its
    managed-by label, a Helm release, the field managers that wrote it
    (metadata.managedFields), a controlling owner."""
    meta = obj.get("metadata") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    said = []
    if labels.get(MANAGED_BY_LABEL):
        said.append(f"label {MANAGED_BY_LABEL}={labels[MANAGED_BY_LABEL]}")
    if annotations.get("meta.helm.sh/release-name"):
        said.append(f"Helm release {annotations.get('meta.helm.sh/release-namespace', '?')}/"
                    f"{annotations['meta.helm.sh/release-name']}")
    for ref in meta.get("ownerReferences") or []:
        said.append(f"owner {ref.get('kind')}/{ref.get('name')}")
    managers = []
    for entry in meta.get("managedFields") or []:
        name = entry.get("manager") or "?"
        if name not in managers:
            managers.append(name)
    if managers:
        said.append("written by " + ", ".join(managers))
    return "; ".join(said) or "no managed-by label, no field managers recorded"


def refusal(obj: dict, kind: str | None = None) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return (f"{kind or obj.get('kind')} {where}{meta.get('name')} exists and was not created by {MANAGED_BY} (it lacks "
            f"the label {MANAGED_BY_LABEL}={MANAGED_BY}; {owner_of(obj)})")


def check(objects: list[tuple[dict, dict | None]]) -> list[str]:
    """(wanted definition, live object or None) pairs -> one refusal per live
    object the collection did not create."""
    return [refusal(live, wanted.get("kind")) for wanted, live in objects
            if live is not None and not created_by_collection(live)]


class Reader:
    """Reads the live object of each definition; the kind's plural comes
    from the API server's discovery (one request a group version)."""

    def __init__(self, api, timeout: float | None = 30.0):
        self.api, self.timeout, self._plurals = api, timeout, {}

    def _plural(self, api_version: str, kind: str) -> tuple[str, bool] | None:
        if api_version not in self._plurals:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            try:
                listing = request_json(self.api, "GET", base, timeout=self.timeout,
                                       action=f"reading which kinds {api_version} serves")
            except ClusterError as exc:
                if exc.details.get("status") != 404:
                    raise
                listing = {}
            self._plurals[api_version] = {r["kind"]: (r["name"], r.get("namespaced", False))
                                          for r in listing.get("resources", []) if "/" not in r["name"]}
        return self._plurals[api_version].get(kind)

    def path(self, api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str | None:
        """The API path of a kind's collection in a namespace (or of one
        object, with ``name``); None when the cluster does not serve it."""
        found = self._plural(api_version, kind)
        if found is None:
            return None
        plural, namespaced = found
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        if namespaced:
            if not namespace:
                raise ParameterError(f"definitions: {kind} {name or ''} needs metadata.namespace")
            base += f"/namespaces/{namespace}"
        return f"{base}/{plural}" + (f"/{name}" if name else "")

    def live(self, definition: dict) -> tuple[dict | None, bool]:
        """(the live object or None, whether the cluster serves the kind)."""
        api_version, kind = definition.get("apiVersion"), definition.get("kind")
        meta = definition.get("metadata") or {}
        name, namespace = meta.get("name"), meta.get("namespace")
        if not api_version or not kind or not name:
            raise ParameterError(f"definitions: each needs apiVersion, kind and metadata.name, got "
                                 f"{api_version!r}, {kind!r}, {name!r}")
        path = self.path(api_version, kind, namespace, name)
        if path is None:
            return None, False
        try:
            return request_json(self.api, "GET", path, timeout=self.timeout,
                                action=f"reading {kind} {name}"), True
        except ClusterError as exc:
            if exc.details.get("status") == 404:
                return None, True
            raise


def survey(api, definitions: list[dict], timeout: float | None = 30.0) -> dict:
    """Read each definition's live object and judge it: the objects (kind,
    name, namespace, exists, created by the collection, who manages it), the
    refusals, and the kinds the cluster does not serve."""
    reader = Reader(api, timeout)
    objects, pairs, unserved = [], [], []
    for definition in definitions:
        live, served = reader.live(definition)
        meta = definition.get("metadata") or {}
        if not served:
            unserved.append(f"{definition['apiVersion']}/{definition['kind']}")
        pairs.append((definition, live))
        objects.append({"kind": definition["kind"], "name": meta.get("name"), "namespace": meta.get("namespace"),
                        "exists": live is not None,
                        "created_by_collection": live is not None and created_by_collection(live),
                        **({"managed_by": owner_of(live)} if live is not None else {})})
    return {"objects": objects, "refused": check(pairs), "unserved": sorted(set(unserved))}


def prune(api, definitions: list[dict], labels: dict, check_mode: bool, timeout: float | None = 30.0) -> dict:
    """Delete each definition's live object that the collection created and
    that carries ``labels`` too (an instance's own); leave every other one,
    saying so. Check mode asks the API server for a dry run of the delete.
    The delete is conditional on the uid read, so an object made again under
    the same name meanwhile is not the one deleted."""
    reader = Reader(api, timeout)
    deleted, left, before = [], [], {}
    for definition in definitions:
        live, _served = reader.live(definition)
        if live is None:
            continue
        meta = live.get("metadata") or {}
        ref = f"{definition['kind']}/{meta.get('name')}"
        if not created_by_collection(live) or any((meta.get("labels") or {}).get(k) != v for k, v in labels.items()):
            left.append(f"{ref} ({owner_of(live)})")
            continue
        path = reader.path(definition["apiVersion"], definition["kind"], meta.get("namespace"), meta["name"])
        # dryRun in the body: with a body the API server reads the options
        # from it alone and ignores the query's (k8s.io/apiserver v0.37.2,
        # pkg/endpoints/handlers/delete.go, DeleteResource).
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": meta["uid"]},
                **({"dryRun": ["All"]} if check_mode else {})}
        try:
            request_json(api, "DELETE", path, body=body, timeout=timeout, action=f"deleting {ref}")
        except ClusterError as exc:
            if exc.details.get("status") != 404:  # gone meanwhile: nothing left to do
                raise
            continue
        deleted.append(ref)
        shown = {k: v for k, v in meta.items() if k not in ("managedFields", "annotations")}
        before[ref] = {"metadata": shown, **({"spec": live["spec"]} if "spec" in live else {})}
    return {"changed": bool(deleted), "deleted": deleted, "left": left,
            "diff": {"before": before, "after": {}}}
