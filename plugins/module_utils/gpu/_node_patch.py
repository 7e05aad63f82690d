# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure logic of the gpu_node module: which labels, annotations and taints of
a node differ from what is wanted, as a minimal patch plus a before/after
diff. No API calls here."""

from __future__ import annotations

import re

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError

# Kubernetes' rules for qualified names and label values.
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
_KEY_RE = re.compile(rf"^({_PREFIX}/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate_key(key: str, param: str) -> None:
    prefix, name = key.rpartition("/")[::2]
    if not _KEY_RE.match(key) or len(name) > 63 or len(prefix) > 253:
        raise ParameterError(
            f"{param}: {key!r} is not a valid Kubernetes key; use [prefix/]name with name of at most 63 "
            "characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )


def validate_label_value(key: str, value: str, param: str) -> None:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise ParameterError(
            f"{param}: value {value!r} of {key!r} is not a valid label value; use at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit (quote 'on'/'true' in YAML so they stay strings)"
        )


def normalize_taints(taints: list[dict] | None, param: str = "taints") -> list[dict]:
    result = []
    for i, t in enumerate(taints or []):
        key = t.get("key")
        if not key:
            raise ParameterError(f"{param}[{i}]: key is required")
        validate_key(key, f"{param}[{i}].key")
        effect = t.get("effect") or "NoSchedule"
        if effect not in TAINT_EFFECTS:
            raise ParameterError(f"{param}[{i}].effect: {effect!r} is not one of {', '.join(TAINT_EFFECTS)}")
        value = t.get("value")
        if value is not None:
            value = str(value)
            validate_label_value(key, value, f"{param}[{i}].value")
        result.append({"key": key, "value": value, "effect": effect})
    return result


def validate_request(labels: dict, annotations: dict, taints: list[dict], state: str) -> tuple[dict, dict, list[dict]]:
    """Check and normalize the wanted labels/annotations/taints. With
    state=absent only keys matter (values, when given, must match)."""
    clean_labels = {}
    for key, value in (labels or {}).items():
        validate_key(key, "labels")
        if value is None:
            clean_labels[key] = None
            continue
        if isinstance(value, bool):
            raise ParameterError(
                f"labels: value of {key!r} is the boolean {value}; quote it in YAML ({key}: \"{'true' if value else 'false'}\") "
                "so it stays a string (YAML reads unquoted on/yes/true as booleans)"
            )
        value = str(value)
        validate_label_value(key, value, "labels")
        clean_labels[key] = value
    clean_annotations = {}
    for key, value in (annotations or {}).items():
        validate_key(key, "annotations")
        clean_annotations[key] = None if value is None else str(value)
    return clean_labels, clean_annotations, normalize_taints(taints)


def _taint_id(t: dict) -> tuple[str, str]:
    return (t["key"], t.get("effect") or "NoSchedule")


def plan_node(node: dict, labels: dict, annotations: dict, taints: list[dict], state: str) -> tuple[dict, dict]:
    """Return (patch, diff) for one node given as a dict (metadata, spec).
    The patch is a JSON merge patch, empty when nothing differs; the diff
    holds the before/after of only what the patch touches."""
    meta = node.get("metadata") or {}
    cur_labels = dict(meta.get("labels") or {})
    cur_annotations = dict(meta.get("annotations") or {})
    cur_taints = list((node.get("spec") or {}).get("taints") or [])

    label_patch, label_before, label_after = _plan_map(cur_labels, labels, state)
    anno_patch, anno_before, anno_after = _plan_map(cur_annotations, annotations, state)

    new_taints = [dict(t) for t in cur_taints]
    if state == "present":
        for want in taints:
            existing = next((t for t in new_taints if _taint_id(t) == _taint_id(want)), None)
            entry = {k: v for k, v in want.items() if v is not None}
            if existing is None:
                new_taints.append(entry)
            elif existing.get("value") != want.get("value"):
                existing.clear()
                existing.update(entry)
    else:
        drop = {_taint_id(t) for t in taints}
        new_taints = [t for t in new_taints if _taint_id(t) not in drop]

    patch: dict = {}
    before: dict = {}
    after: dict = {}
    if label_patch or anno_patch:
        patch["metadata"] = {}
    if label_patch:
        patch["metadata"]["labels"] = label_patch
        before["labels"], after["labels"] = label_before, label_after
    if anno_patch:
        patch["metadata"]["annotations"] = anno_patch
        before["annotations"], after["annotations"] = anno_before, anno_after
    if _strip(new_taints) != _strip(cur_taints):
        # A merge patch replaces the whole list: send it all.
        patch["spec"] = {"taints": new_taints or None}
        before["taints"], after["taints"] = _strip(cur_taints), _strip(new_taints)
    return patch, {"before": before, "after": after} if patch else {}


def _strip(taints: list[dict]) -> list[dict]:
    return [{k: v for k, v in t.items() if k in ("key", "value", "effect") and v is not None} for t in taints]


def _plan_map(current: dict, wanted: dict, state: str) -> tuple[dict, dict, dict]:
    patch, before, after = {}, {}, {}
    for key, value in wanted.items():
        have = current.get(key)
        if state == "present" and value is not None:
            if have != value:
                patch[key] = value
                before[key], after[key] = have, value
        else:  # absent, or present with value None: remove the key
            if key in current and (state == "present" or value is None or have == value):
                patch[key] = None
                before[key], after[key] = have, None
    return patch, before, after
