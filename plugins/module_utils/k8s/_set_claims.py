# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The claims a deployment's StatefulSets made from their volumeClaimTemplates,
every rank of a group included, told apart from claims someone else made.

The StatefulSet controller makes, for pod <set>-<ordinal>, claim
<template>-<set>-<ordinal>, labelled with the set's selector
(getPersistentVolumeClaims and getPersistentVolumeClaimName in kubernetes
v1.35.4 pkg/controller/statefulset/stateful_set_utils.go). vllm_serve names a
group's sets <name> (rank 0) and <name>-rank<r>, and each set's selector
carries the rank label (roles/vllm_serve/vars/main.yml). So a claim is the
deployment's when its labels are that selector and its name is what the
controller would have given it from those labels; its owner references, when
it has any (a retention policy of Delete), point at that set or its pod.
Nothing is taken from a name alone: a claim without the labels is never ours."""

from __future__ import annotations

import re

ORDINAL = r"(0|[1-9][0-9]*)"


def set_of(name: str, labels: dict, rank_label: str) -> str:
    """The StatefulSet that a claim with these labels belongs to."""
    rank = labels.get(rank_label)
    return name if rank in (None, "0") else f"{name}-rank{rank}"


def is_set_claim(claim: dict, name: str, selector: dict, rank_label: str, template: str = "models") -> bool:
    meta = claim.get("metadata") or {}
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    rank = labels.get(rank_label)
    if rank is not None and not re.fullmatch(ORDINAL, str(rank)):
        return False
    owner_set = set_of(name, labels, rank_label)
    match = re.fullmatch(re.escape(f"{template}-{owner_set}-") + ORDINAL, meta.get("name") or "")
    if not match:
        return False
    pod = f"{owner_set}-{match.group(1)}"
    for ref in meta.get("ownerReferences") or []:
        if not ((ref.get("kind") == "StatefulSet" and ref.get("name") == owner_set)
                or (ref.get("kind") == "Pod" and ref.get("name") == pod)):
            return False
    return True


def set_claims(claims: list, name: str, selector: dict, rank_label: str, template: str = "models") -> list:
    """Those of ``claims`` (API objects) that ``name``'s StatefulSets made, in order of name."""
    return sorted((c for c in claims or [] if is_set_claim(c, name, selector, rank_label, template)),
                  key=lambda c: c["metadata"]["name"])


def name_fits(claim_name: str, name: str, template: str = "models") -> bool:
    """Whether a claim name is one the sets of ``name`` could have made. For
    a claim that is gone only (a volume's claimRef keeps its name, not its
    labels): a live claim is judged by is_set_claim."""
    if not name:
        return False
    sets = re.escape(name) + r"(-rank[1-9][0-9]*)?"
    return bool(re.fullmatch(re.escape(template + "-") + sets + "-" + ORDINAL, claim_name or ""))


def model_volumes(volumes: list, namespace: str, live_claims: list, ours: list, name: str,
                  template: str = "models", shared: str = "") -> list:
    """The volumes holding the model's claims, to be named in the report:
    bound to one of ``ours`` (by uid), or left by one of ours that is gone
    (a Released volume of an earlier teardown: its claimRef's name fits, or
    is the shared claim ``shared``, and no live claim has its uid). A volume
    of a live claim that is not ours is never named."""
    ours_uids = {c["metadata"]["uid"] for c in ours or []}
    live_uids = {c["metadata"]["uid"] for c in live_claims or []}
    found = []
    for pv in volumes or []:
        ref = (pv.get("spec") or {}).get("claimRef") or {}
        if ref.get("namespace") != namespace:
            continue
        if ref.get("uid") in ours_uids or (ref.get("uid") not in live_uids and (
                (shared and ref.get("name") == shared) or name_fits(ref.get("name"), name, template))):
            found.append(pv)
    return sorted(found, key=lambda pv: (pv["spec"]["claimRef"]["name"], pv["metadata"]["name"]))
