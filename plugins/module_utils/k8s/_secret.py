# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A Secret kept to the given data without leaving a copy anywhere else.

Why not kubernetes.core.k8s: its client-side apply stores the whole object,
data included, in the last-applied-configuration annotation; its failure
message is the API server's body, which ansible-core (2.19 and later) prints
in its error line even under no_log, and an admission policy or webhook may
echo the object's data there; and its diff shows the values. Here the Secret
is created or replaced (no annotation), a copy left by an earlier
client-side apply is removed, the diff names keys only, and every value (and
its base64 form) is masked in whatever the module returns."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets as _random
import string

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, NotFoundError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import missing_namespace, request_json
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._ownership import (
    COLLECTION_LABELS, created_by_collection, refusal)

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_CONFLICT_RETRIES = 5
_ALPHABET = string.ascii_letters + string.digits


def generate_value(length: int) -> str:
    return "".join(_random.choice(_ALPHABET) for _position in range(length))


def encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def decode(value: str) -> str:
    return base64.b64decode(value).decode(errors="replace")


def fingerprint(value: str, salt: str) -> str:
    """HMAC-SHA256 of a value under a random salt: it changes when the value
    changes, and tells nothing about the value to whoever lacks the salt (no
    dictionary or brute-force test of guesses, as an unsalted hash allows)."""
    return hmac.new(salt.encode(), value.encode(), hashlib.sha256).hexdigest()


def masked_forms(value: str) -> set[str]:
    """The forms in which a value could reach an output: as given, base64
    (a Secret's data), and base64 of base64 (data echoed inside data)."""
    if not value:
        return set()
    b64 = encode(value)
    return {value, b64, encode(b64)}


# Kubernetes' own rules (apimachinery validation): object names are DNS-1123
# subdomains, namespaces DNS-1123 labels, Secret keys [-._a-zA-Z0-9]+.
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def validate(name: str, namespace: str, data: dict, generate: list[str], length: int) -> None:
    if not name:
        raise ParameterError("name: the Secret's name is required")
    if not namespace:
        raise ParameterError("namespace: the Secret's namespace is required")
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        raise ParameterError(f"name: {name!r} is not a valid Secret name; use lower-case letters, digits, '-' and "
                             "'.', starting and ending with a letter or digit")
    if len(namespace) > 63 or not DNS1123_LABEL.match(namespace):
        raise ParameterError(f"namespace: {namespace!r} is not a valid namespace name; use at most 63 lower-case "
                             "letters, digits and '-', starting and ending with a letter or digit")
    for key in list(data) + list(generate):
        if len(key) > 253 or not SECRET_KEY.match(key):
            raise ParameterError(f"data/generate: key {key!r} is not a valid Secret key; use letters, digits, '-', "
                                 "'_' and '.'")
    for key, value in data.items():
        if not isinstance(value, str):
            raise ParameterError(f"data: the value of {key!r} must be a string, got {type(value).__name__}; "
                                 "quote it in YAML")
    both = sorted(set(data) & set(generate))
    if both:
        raise ParameterError(f"data and generate: {', '.join(both)} given in both; a generated key takes no value")
    if generate and length < 16:
        raise ParameterError(f"generate_length: {length} is too short for a credential; use at least 16")


def plan(existing: dict | None, data: dict, generate: list[str], length: int, labels: dict, secret_type: str,
         name: str, namespace: str) -> tuple[dict | None, dict, list[str]]:
    """(the object to write or None, the key-level diff, the keys generated)."""
    labels = {**labels, **COLLECTION_LABELS}  # how the collection marks what it created
    current = dict((existing or {}).get("data") or {})
    desired = {k: encode(v) for k, v in data.items()}
    generated = []
    for key in generate:
        if key in current:
            desired[key] = current[key]  # generated once, then kept
        else:
            desired[key] = encode(generate_value(length))
            generated.append(key)
    if existing is None:
        obj = {"apiVersion": "v1", "kind": "Secret", "type": secret_type,
               "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)}, "data": desired}
        return obj, {"before": {}, "after": {"keys": sorted(desired), "labels": dict(labels)}}, generated
    if existing.get("type", "Opaque") != secret_type:
        raise ParameterError(f"type: Secret {namespace}/{name} exists with type {existing.get('type')!r}, which "
                             f"cannot change to {secret_type!r}; delete the Secret or choose another name")
    meta = existing.get("metadata") or {}
    old_labels = meta.get("labels") or {}
    new_labels = {**old_labels, **labels}
    annotations = dict(meta.get("annotations") or {})
    had_copy = annotations.pop(LAST_APPLIED, None) is not None
    changed_keys = sorted(k for k in set(current) | set(desired) if current.get(k) != desired.get(k))
    if not changed_keys and new_labels == old_labels and not had_copy:
        return None, {}, []
    obj = dict(existing)
    obj["metadata"] = {**meta, "labels": new_labels, "annotations": annotations}
    obj["data"] = desired
    obj.pop("stringData", None)
    diff = {
        "before": {"keys": sorted(current), "labels": old_labels,
                   **({"annotations": [LAST_APPLIED]} if had_copy else {})},
        "after": {"keys": sorted(desired), "labels": new_labels,
                  "changed_keys": changed_keys},
    }
    return obj, diff, generated


FOREIGN = ("refuse", "read")


def use_foreign(existing: dict, data: dict, generate: list[str], state: str, param: str) -> dict:
    """A Secret the collection did not create, named on purpose (``foreign:
    read``): used as it is, never written, labelled or deleted. What it must
    hold is checked: the keys to generate must be there, and a value given
    must be the one it holds (the collection will not change it)."""
    meta = existing.get("metadata") or {}
    where = f"Secret {meta.get('namespace')}/{meta.get('name')}"
    held = existing.get("data") or {}
    if state == "absent":
        return {"changed": False, "created_by_collection": False,
                "msg": f"{where} was not created by the collection: left as it is"}
    missing = sorted(k for k in list(generate) + list(data) if k not in held)
    if missing:
        raise ParameterError(f"{param}: {where} was not created by the collection and has no key "
                             f"{', '.join(missing)} (it has {', '.join(sorted(held)) or 'none'}); the collection does "
                             "not write into it: add the key to it yourself, or name a Secret the collection may make")
    differ = sorted(k for k, v in data.items() if held.get(k) != encode(v))
    if differ:
        raise ParameterError(f"{param}: {where} was not created by the collection and its {', '.join(differ)} "
                             "differs from the value given; the collection does not change it: put the new value "
                             "into the Secret yourself (the next run rolls the pods onto it), or give no value")
    return {"changed": False, "created_by_collection": False, "secret_keys": sorted(held), "generated": [],
            "_data": held}


def ensure(api, name: str, namespace: str, data: dict, generate: list[str], length: int, labels: dict,
           secret_type: str, state: str, check_mode: bool, timeout: float | None, mask=lambda values: None,
           foreign: str = "refuse", param: str = "name") -> dict:
    """Make the Secret hold exactly ``data`` plus the ``generate`` keys.
    ``mask`` is handed every value as soon as it is known (given, read or
    generated), before any request that could fail with it in the answer.
    A Secret of that name the collection did not create is refused (or,
    with ``foreign="read"``, used as it is). The result's ``_data`` (base64
    values, for the caller's own use) must not be returned to a user."""
    validate(name, namespace, data, generate, length)
    mask(list(data.values()))
    path = f"/api/v1/namespaces/{namespace}/secrets"
    dry = [("dryRun", "All")] if check_mode else []
    for _attempt in range(MAX_CONFLICT_RETRIES):
        existing = _read(api, path, name, namespace, timeout)
        mask([decode(v) for v in ((existing or {}).get("data") or {}).values()])
        if existing is not None and not created_by_collection(existing):
            if foreign == "read":
                return use_foreign(existing, data, generate, state, param)
            raise ParameterError(f"{param}: refused: {refusal(existing, 'Secret')}. The collection changes, adopts "
                                 "or deletes only what it created: choose another name, or remove that Secret "
                                 "yourself if it is not needed")
        if state == "absent":
            if existing is None:
                return {"changed": False}
            request_json(api, "DELETE", f"{path}/{name}", query=dry, timeout=timeout,
                         action=f"deleting Secret {namespace}/{name}")
            return {"changed": True, "diff": {"before": {"keys": sorted(existing.get("data") or {})}, "after": {}}}
        obj, diff, generated = plan(existing, data, generate, length, labels, secret_type, name, namespace)
        if obj is None:
            return {"changed": False, "created_by_collection": True, "secret_keys": sorted(existing.get("data") or {}),
                    "generated": [], "_data": existing.get("data") or {}}
        mask([decode(obj["data"][k]) for k in generated])
        try:
            if existing is None:
                request_json(api, "POST", path, query=dry, body=obj, timeout=timeout,
                             action=f"creating Secret {namespace}/{name}")
            else:
                # A replace conditional on the version read: no annotation is
                # written, and a change made meanwhile is not overwritten.
                request_json(api, "PUT", f"{path}/{name}", query=dry, body=obj, timeout=timeout,
                             action=f"replacing Secret {namespace}/{name}")
        except ClusterError as exc:
            if exc.details.get("status") == 409:
                continue
            missing = missing_namespace(api, namespace, timeout or 30.0) \
                if exc.details.get("status") == 404 and existing is None else None
            if missing and check_mode:
                # The API server takes no dry run in a namespace an earlier
                # task only pretended to create: report what would be made.
                return {"changed": True, "created_by_collection": True, "secret_keys": sorted(obj["data"]),
                        "generated": generated, "diff": diff, "_data": obj["data"],
                        "msg": f"check mode: namespace {namespace!r} does not exist yet; the Secret would be created "
                               "in it (not validated by the API server)"}
            if missing:
                raise missing from exc
            if exc.details.get("status") == 422 and (existing or {}).get("immutable"):
                raise ClusterError(f"Secret {namespace}/{name} is immutable and its data differs from what is asked; "
                                   "delete it (or choose another name) and run again", status=422) from exc
            raise
        return {"changed": True, "created_by_collection": True, "secret_keys": sorted(obj["data"]),
                "generated": generated, "diff": diff, "_data": obj["data"]}
    raise ClusterError(f"Secret {namespace}/{name} kept changing under us: gave up after {MAX_CONFLICT_RETRIES} "
                       "conflicting writes")


def _read(api, path: str, name: str, namespace: str, timeout: float | None) -> dict | None:
    try:
        return request_json(api, "GET", f"{path}/{name}", timeout=timeout, action=f"reading Secret {namespace}/{name}")
    except ClusterError as exc:
        if exc.details.get("status") == 404:
            return None
        raise


def read_value(api, name: str, namespace: str, key: str, timeout: float | None,
               param: str = "server_api_key_secret") -> str:
    """One value of a Secret (for a module that needs a key, so that it never
    passes through Ansible's variables)."""
    obj = _read(api, f"/api/v1/namespaces/{namespace}/secrets", name, namespace, timeout)
    if obj is None:
        raise missing_namespace(api, namespace, timeout or 30.0) or NotFoundError(
            f"{param}: Secret {name!r} does not exist in namespace {namespace!r}")
    data = obj.get("data") or {}
    if key not in data:
        raise ParameterError(f"{param}_key: Secret {namespace}/{name} has no key {key!r}; it has "
                             f"{', '.join(sorted(data)) or 'none'}")
    return decode(data[key])


SALT_KEY = "salt"
SALT_LENGTH = 64


def ensure_fingerprinted(api, name: str, namespace: str, data: dict, generate: list[str], length: int, labels: dict,
                         secret_type: str, check_mode: bool, timeout: float | None, mask, foreign: str,
                         fingerprint_key: str, salt_secret: str) -> dict:
    """The Secret as ``ensure`` keeps it, plus ``fingerprint``: the HMAC of
    its ``fingerprint_key`` value under a random salt kept in ``salt_secret``
    (a Secret of the collection's own, generated once). A pod-template
    annotation holding it rolls the pods when the value changes, without the
    value, or a hash that a guess could be tested against, being readable by
    whoever can read pods."""
    if salt_secret == name:
        raise ParameterError(f"salt_secret: {salt_secret!r} is the Secret itself; name a Secret of its own")
    # The salt first: a salt Secret someone else made is refused before the key is touched.
    salt = ensure(api, salt_secret, namespace, {}, [SALT_KEY], SALT_LENGTH, labels, "Opaque", "present", check_mode,
                  timeout, mask=mask, foreign="refuse", param="salt_secret")
    result = ensure(api, name, namespace, data, generate, length, labels, secret_type, "present", check_mode,
                    timeout, mask=mask, foreign=foreign)
    values, salt_values = result.pop("_data", {}), salt.pop("_data", {})
    if fingerprint_key not in values:
        raise ParameterError(f"fingerprint_key: Secret {namespace}/{name} has no key {fingerprint_key!r}; it has "
                             f"{', '.join(sorted(values)) or 'none'}")
    result["fingerprint"] = fingerprint(decode(values[fingerprint_key]), decode(salt_values[SALT_KEY]))
    if salt["changed"]:
        result["changed"] = True
        result["salt_created"] = True
        if "diff" in salt:
            result.setdefault("diff", {"before": {}, "after": {}})
            result["diff"]["before"]["salt_secret"] = salt["diff"]["before"]
            result["diff"]["after"]["salt_secret"] = salt["diff"]["after"]
    return result
