# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The reconcile engine: a stage's desired objects made so on the cluster.

One pass, in this order, so that nothing is half-applied:

1. Read each desired object's live one (the kind's plural from discovery).
   A kind the cluster does not serve, and an object of that name that the
   collection did not create (``_ownership``), is a refusal.
2. Compute each object's apply patch as ``kubectl apply`` (client-side) does,
   a three-way merge of the last-applied annotation, the live object and the
   desired one: kubernetes.core's ``apply_patch``, the same as its ``k8s``
   module with ``apply: true``, so that objects applied by earlier releases
   keep their record.
3. One server-side dry run (``dryRun=All``) of every create and patch. Every
   refusal is listed together, and nothing is written when there is one.
   The dry run's answer against the live object says whether it changes,
   and its diff.
4. The StatefulSet partition gate (``gate``): when the dry run shows that a
   running StatefulSet's pod template changes (or a rollout an earlier run
   left unfinished), the partition is held at the replica count, so that no
   pod takes the new template until ``rolling_upgrade`` lowers it one pod at
   a time.
5. Prune: the collection's own objects of the listed kinds, with the
   stage's labels, that the stage no longer wants (a rank StatefulSet of a
   group that shrank, a ScaledObject when autoscaling is off, an Ingress or
   NetworkPolicy turned off) are deleted, each conditional on the uid read,
   and waited for until gone. Objects of those kinds that the collection did
   not create are never listed (the selector carries its managed-by label).
6. Apply what changed, in the order given.

Check mode stops after the dry run and the prune's dry run: the result says
what would change, with the same diff."""

from __future__ import annotations

import copy
import json

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import request_json
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._ownership import (
    COLLECTION_LABELS, MANAGED_BY, Reader, created_by_collection, refusal)
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._rollout import mid_rollout
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import selector_string

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# What every write rewrites, left out of the diffs shown.
BOOKKEEPING = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")
# The kinds whose CRDs a user installs for an option, and what to install.
CRD_HINTS = {
    "ServiceMonitor": "the Prometheus Operator's CRDs",
    "PrometheusRule": "the Prometheus Operator's CRDs",
    "ScaledObject": "KEDA",
}


def _apply_patch(actual: dict, desired: dict):
    from ansible_collections.kubernetes.core.plugins.module_utils.apply import apply_patch
    return apply_patch(actual, desired)


def _annotated(desired: dict) -> dict:
    from ansible_collections.kubernetes.core.plugins.module_utils.apply import annotate
    from ansible.module_utils.common.dict_transformations import dict_merge
    return dict_merge(desired, annotate(desired))


def ref(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')}/{meta.get('name')}"


def _get(obj: dict, path: str):
    for key in path.split("."):
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _without(obj: dict, path: str) -> dict:
    keys = path.split(".")
    obj = copy.deepcopy(obj)
    node = obj
    for key in keys[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return obj
    node.pop(keys[-1], None)
    return obj


def released(live: dict, desired: dict, leave_fields: list[str]) -> tuple[dict, list[str]]:
    """The live object as the merge should see it, and the fields dropped:
    a field another controller now sets (``spec.replicas`` under KEDA),
    which the desired definition leaves out, is dropped from the last-applied
    record, so that leaving it out does not delete it."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if LAST_APPLIED not in annotations:
        return live, []
    record = json.loads(annotations[LAST_APPLIED])
    dropped = [path for path in leave_fields if _get(desired, path) is None and _get(record, path) is not None]
    if not dropped:
        return live, []
    for path in dropped:
        record = _without(record, path)
    live = copy.deepcopy(live)
    live["metadata"]["annotations"][LAST_APPLIED] = json.dumps(record, separators=(",", ":"), sort_keys=True)
    return live, dropped


def concise(before: dict | None, after: dict | None) -> dict:
    """Only the fields that differ, without the bookkeeping every write
    changes (kubernetes.core's recursive_diff)."""
    from ansible_collections.kubernetes.core.plugins.module_utils.apply import recursive_diff

    def strip(obj):
        if not obj:
            return {}
        obj = copy.deepcopy(obj)
        meta = obj.get("metadata") or {}
        for key in BOOKKEEPING:
            meta.pop(key, None)
        (meta.get("annotations") or {}).pop(LAST_APPLIED, None)
        if meta.get("annotations") == {}:
            meta.pop("annotations")
        obj.pop("status", None)
        return obj

    found = recursive_diff(strip(before), strip(after))
    return {"before": found[0], "after": found[1]} if found else {}


class Engine:
    def __init__(self, api, check_mode: bool = False, timeout: float = 30.0, wait_timeout: float = 600.0):
        self.api, self.check_mode, self.timeout, self.wait_timeout = api, check_mode, timeout, wait_timeout
        self.reader = Reader(api, timeout)

    def path(self, api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
        path = self.reader.path(api_version, kind, namespace, name)
        if path is None:
            raise ParameterError(f"{api_version}/{kind}: the cluster does not serve this kind")
        return path

    # -- 1 and 2: read, judge, plan the patches ---------------------------------------------------------------
    def survey(self, definitions: list[dict], leave_fields: list[str]) -> tuple[list[dict], list[str]]:
        items, refused = [], []
        for definition in definitions:
            meta = definition.get("metadata") or {}
            if not definition.get("apiVersion") or not definition.get("kind") or not meta.get("name"):
                raise ParameterError(f"definitions: each needs apiVersion, kind and metadata.name, got {ref(definition)}")
            live, served = self.reader.live(definition)
            item = {"definition": definition, "live": live, "ref": ref(definition)}
            if not served:
                hint = CRD_HINTS.get(definition["kind"], "its CRDs")
                refused.append(f"{item['ref']}: the cluster does not serve {definition['apiVersion']}/"
                               f"{definition['kind']}: install {hint}, or turn that option off")
            elif live is not None and not created_by_collection(live):
                refused.append(refusal(live, definition["kind"]))
            items.append(item)
        return items, refused

    def plan_write(self, item: dict, leave_fields: list[str]) -> None:
        live, desired = item["live"], item["definition"]
        if live is None:
            item["write"] = ("POST", _annotated(desired))
            return
        seen, dropped = released(live, desired, leave_fields)
        _actual, patch = _apply_patch(seen, desired)
        item["write"] = None if patch is _actual else ("PATCH", patch)
        if dropped:
            # The record still holds a field another controller now sets:
            # rewritten (a change), so that no later apply deletes it.
            from ansible.module_utils.common.dict_transformations import dict_merge
            from ansible_collections.kubernetes.core.plugins.module_utils.apply import annotate
            item["write"] = ("PATCH", dict_merge(item["write"][1] if item["write"] else {}, annotate(desired)))
            item["released"] = dropped

    # -- 3: the dry run ---------------------------------------------------------------------------------------
    def send(self, item: dict, dry_run: bool) -> dict:
        definition = item["definition"]
        meta = definition["metadata"]
        method, body = item["write"]
        query = [("dryRun", "All")] if dry_run else []
        if method == "POST":
            path = self.path(definition["apiVersion"], definition["kind"], meta.get("namespace"))
            return request_json(self.api, "POST", path, query=query, body=body, timeout=self.timeout,
                                action=f"creating {item['ref']}")
        path = self.path(definition["apiVersion"], definition["kind"], meta.get("namespace"), meta["name"])
        return request_json(self.api, "PATCH", path, query=query, body=body, timeout=self.timeout,
                            content_type="application/merge-patch+json", action=f"applying {item['ref']}")

    def dry_run(self, items: list[dict]) -> list[str]:
        refused = []
        for item in items:
            item.update(changed=False, pending=False)
            if item["write"] is None:
                item["result"] = item["live"]
                continue
            try:
                item["result"] = self.send(item, dry_run=True)
            except ClusterError as exc:
                namespace = (item["definition"]["metadata"]).get("namespace")
                if exc.details.get("status") == 404 and item["live"] is None and self.check_mode:
                    # Check mode before the namespace exists: the API server takes no dry run in it.
                    item.update(changed=True, pending=True, result=None,
                                note=f"namespace {namespace} does not exist yet: not validated")
                    continue
                refused.append(f"{item['ref']}: {exc.msg}")
                continue
            item["diff"] = concise(item["live"], item["result"])
            if item.get("released"):
                item["diff"] = {"before": {**item["diff"].get("before", {}), "recorded": item["released"]},
                                "after": {**item["diff"].get("after", {}), "recorded": []}}
            item["changed"] = bool(item["diff"]) or item["live"] is None
        return refused

    # -- 4: the partition gate --------------------------------------------------------------------------------
    def gate(self, items: list[dict], name: str, replicas: int, leave_fields: list[str],
             ranks: list[str] | None = None) -> dict:
        """Hold a running StatefulSet's pods on their revision when its pod
        template changes; what rolling_upgrade then rolls. With ``ranks``
        (the other StatefulSets of a group of pods), all of them are held
        at the same partition when any of their templates changes."""
        names = [name] + list(ranks or [])
        members = []
        for member in names:
            item = next((i for i in items if i["definition"]["kind"] == "StatefulSet"
                         and i["definition"]["metadata"]["name"] == member), None)
            if item is None:
                raise ParameterError(f"gate: StatefulSet {member} is not among the definitions")
            members.append(item)
        gate = {"name": name, "gated": False, "partition": 0, "template_changed": False, "unfinished": False}
        if ranks:
            gate["ranks"] = list(ranks)
        lead = members[0]["live"]
        if lead is None:
            return gate
        template_changed = unfinished = False
        for item in members:
            live, result = item["live"], item.get("result")
            if live is None:
                continue
            template_changed |= result is None or (result.get("spec") or {}).get("template") != live["spec"]["template"]
            unfinished |= mid_rollout(live)
        live_partition = int(((lead["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {})
                             .get("partition") or 0)
        partition = max(int(lead["spec"].get("replicas") or 0), int(replicas)) if template_changed else \
            live_partition if unfinished else 0
        gate.update(gated=template_changed or unfinished, partition=partition, template_changed=template_changed,
                    unfinished=unfinished)
        if partition != 0:
            for item in members:
                desired = copy.deepcopy(item["definition"])
                desired["spec"].setdefault("updateStrategy", {"type": "RollingUpdate"}) \
                    .setdefault("rollingUpdate", {})["partition"] = partition
                item["definition"] = desired
                self.plan_write(item, leave_fields)
            refused = self.dry_run(members)
            if refused:
                raise ClusterError(f"the API server refused, in a dry run, {'; '.join(refused)}. Nothing was applied.")
        return gate

    # -- 5: prune ---------------------------------------------------------------------------------------------
    def prunable(self, items: list[dict], kinds: list[dict], labels: dict) -> list[dict]:
        wanted = {(i["definition"]["kind"], i["definition"]["metadata"].get("namespace"),
                   i["definition"]["metadata"]["name"]) for i in items}
        namespaces = sorted({i["definition"]["metadata"].get("namespace") for i in items} - {None})
        must = {**labels, **COLLECTION_LABELS}
        selector = selector_string({"matchLabels": must})
        found = []
        for kind in kinds:
            api_version, name = kind["api_version"], kind["kind"]
            if self.reader._plural(api_version, name) is None:
                continue  # not served here: there is none to prune
            for namespace in namespaces:
                listing = request_json(self.api, "GET", self.path(api_version, name, namespace),
                                       query=[("labelSelector", selector)], timeout=self.timeout,
                                       action=f"listing {name} in {namespace}")
                for obj in listing.get("items") or []:
                    meta = obj["metadata"]
                    if (name, meta.get("namespace"), meta["name"]) in wanted or meta.get("deletionTimestamp"):
                        continue
                    carried = meta.get("labels") or {}
                    if any(carried.get(k) != v for k, v in must.items()):  # the selector said so; checked again
                        continue
                    obj.setdefault("apiVersion", api_version)
                    obj.setdefault("kind", name)
                    found.append(obj)
        return found

    def delete(self, obj: dict) -> None:
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        # dryRun in the body: with a body the API server reads the options
        # from it alone and ignores the query's (k8s.io/apiserver v0.37.2,
        # pkg/endpoints/handlers/delete.go, DeleteResource). Foreground: a
        # StatefulSet goes once its pods are gone (each holds GPUs).
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": meta["uid"]},
                "propagationPolicy": "Foreground", **({"dryRun": ["All"]} if self.check_mode else {})}
        try:
            request_json(self.api, "DELETE", path, body=body, timeout=self.timeout, action=f"deleting {ref(obj)}")
        except ClusterError as exc:
            if exc.details.get("status") != 404:
                raise

    def wait_gone(self, obj: dict) -> None:
        meta = obj["metadata"]
        path = self.path(obj["apiVersion"], obj["kind"], meta.get("namespace"))
        try:
            wait_until(self.api, path, lambda objs: not any(o["metadata"].get("uid") == meta["uid"] for o in objs),
                       self.wait_timeout, query=[("fieldSelector", f"metadata.name={meta['name']}")],
                       request_timeout=self.timeout)
        except TimeoutError as exc:
            raise ClusterError(f"{ref(obj)} was deleted but is still there after {self.wait_timeout:.0f}s "
                               f"(its pods or a finalizer hold it): {exc}") from exc

    # -- 6: apply ---------------------------------------------------------------------------------------------
    def apply(self, items: list[dict]) -> None:
        for item in items:
            if item["changed"] and not item.get("pending"):
                item["result"] = self.send(item, dry_run=False)


def reconcile(api, definitions: list[dict], *, prune_kinds: list[dict] | None = None, prune_labels: dict | None = None,
              leave_fields: list[str] | None = None, gate: dict | None = None, check_mode: bool = False,
              hint: str = "", timeout: float = 30.0, wait_timeout: float = 600.0) -> dict:
    """Make ``definitions`` so (see the module docstring); the result per
    object, the prune, the gate, and ``changed``."""
    leave_fields = list(leave_fields or [])
    engine = Engine(api, check_mode, timeout, wait_timeout)
    items, refused = engine.survey(definitions, leave_fields)
    if refused:
        raise ParameterError(
            f"refused: {'; '.join(refused)}. {MANAGED_BY} changes, adopts or deletes only what it created, and "
            f"applies only kinds the cluster serves; nothing was applied. {hint}".strip())
    for item in items:
        engine.plan_write(item, leave_fields)
    refused = engine.dry_run(items)
    if refused:
        raise ParameterError(f"the API server refused, in a dry run, {'; '.join(refused)}. Nothing was applied.")
    gated = engine.gate(items, gate["name"], gate["replicas"], leave_fields, gate.get("ranks")) if gate else None
    if prune_kinds and not prune_labels:
        raise ParameterError("prune_labels: give the labels of this stage's objects (an instance's own); without "
                             "them every object the collection made of those kinds would be pruned")
    pruned = engine.prunable(items, prune_kinds, prune_labels) if prune_kinds else []
    for obj in pruned:
        engine.delete(obj)
    if not check_mode:
        for obj in pruned:
            engine.wait_gone(obj)
        engine.apply(items)
    objects = []
    for item in items:
        entry = {"ref": item["ref"], "changed": item["changed"],
                 "action": ("create" if item["live"] is None else "update") if item["changed"] else "none"}
        if item.get("note"):
            entry["note"] = item["note"]
        if item.get("diff"):
            entry["diff"] = item["diff"]
        objects.append(entry)
    result = {
        "changed": any(i["changed"] for i in items) or bool(pruned),
        "objects": objects,
        "pruned": [ref(o) for o in pruned],
        "results": {i["ref"]: i.get("result") for i in items},
    }
    if gated is not None:
        result["gate"] = gated
    return result


def last_applied(live: dict, override: dict | None = None) -> dict:
    """The definition last applied to ``live`` (its
    ``kubectl.kubernetes.io/last-applied-configuration``), with ``override``
    merged in: applying it changes only those fields, and a later apply of
    the same definition sees no change. Without a record, the object's kind,
    name, namespace and labels with ``override``."""
    from ansible.module_utils.common.dict_transformations import dict_merge

    meta = live.get("metadata") or {}
    record = (meta.get("annotations") or {}).get(LAST_APPLIED)
    base = json.loads(record) if record else {
        "apiVersion": live.get("apiVersion"), "kind": live.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels") if k in meta}}
    return dict_merge(base, override or {})
