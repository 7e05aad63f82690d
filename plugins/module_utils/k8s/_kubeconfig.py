# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A kubeconfig file for a ServiceAccount: a bound token from the
TokenRequest API (authentication.k8s.io/v1, POST .../serviceaccounts/NAME/token),
which expires and is never stored in the cluster (no long-lived token
Secret), with the server and CA of the connection that asked for it.

A file already there is kept while its token is for the same account and
server, stays valid for at least ``renew_before`` seconds more, and is still
good, so a rerun changes nothing. A ServiceAccount deleted and made again
under the same name has a new uid, and a bound token carries the uid of the
account it was issued for (its private claim
``kubernetes.io.serviceaccount.uid``), which the authenticator compares with
the live account's (kubernetes v1.37.2, pkg/serviceaccount/claims.go,
``Validate``: "service account UID (%s) does not match claim (%s)"): name,
server and expiry alone would keep such a revoked token. So the uid is
compared, and the API server is asked (a TokenReview)."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import missing_namespace, request_json

CLUSTER = "inferops"


def subject(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def token_claims(token: str) -> dict:
    """The JWT's payload (not verified: the API server verifies it; this is
    only to know whom it names and until when)."""
    try:
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


def read_existing(dest: str) -> dict | None:
    import yaml

    try:
        with open(dest, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError):
        # A file we cannot read or parse is one to replace.
        return None
    if not isinstance(config, dict):
        return None
    try:
        server = config["clusters"][0]["cluster"]["server"]
        token = config["users"][0]["user"]["token"]
    except (KeyError, IndexError, TypeError):
        return None
    claims = token_claims(token)
    return {"server": server, "sub": claims.get("sub"), "exp": claims.get("exp"), "token": token,
            "uid": ((claims.get("kubernetes.io") or {}).get("serviceaccount") or {}).get("uid")}


def still_good(existing: dict | None, server: str, sub: str, renew_before: int, now: float) -> bool:
    return bool(existing and existing["server"] == server and existing["sub"] == sub
                and isinstance(existing["exp"], (int, float)) and existing["exp"] - now > renew_before)


def review(api, token: str, sub: str, namespace: str, service_account: str, timeout) -> str | None:
    """Why the API server no longer takes ``token`` for ``sub``, or None when
    it does. First the account uid the token carries against the live
    ServiceAccount's (a GET, answered at once: the API server keeps a token
    it accepted as accepted for 10 s, TokenSuccessCacheTTL, kubernetes
    v1.37.2 pkg/kubeapiserver/options/authentication.go), then a TokenReview
    (authentication.k8s.io/v1: the server's own authenticator, which also
    refuses a token whose signing key is gone). Either may be forbidden to
    the caller, not both."""
    checked = False
    try:
        why = _uid_mismatch(api, token, namespace, service_account, timeout)
        if why:
            return why
        checked = True
    except ClusterError as exc:
        if exc.details.get("status") != 403:
            raise
    try:
        answer = request_json(api, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", timeout=timeout,
                              action=f"reviewing the token of {sub}",
                              body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                    "spec": {"token": token}})
    except ClusterError as exc:
        if exc.details.get("status") == 403 and checked:
            return None
        raise
    status = answer.get("status") or {}
    if not status.get("authenticated"):
        return f"the API server rejects it ({status.get('error') or 'not authenticated'})"
    user = (status.get("user") or {}).get("username")
    if user != sub:
        return f"the API server takes it for {user}, not {sub}"
    return None


def _uid_mismatch(api, token: str, namespace: str, service_account: str, timeout) -> str | None:
    claimed = ((token_claims(token).get("kubernetes.io") or {}).get("serviceaccount") or {}).get("uid")
    try:
        live = request_json(api, "GET", f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}",
                            timeout=timeout, action=f"reading ServiceAccount {namespace}/{service_account}")
    except ClusterError as exc:
        if exc.details.get("status") == 404:
            return "its ServiceAccount no longer exists"
        raise
    uid = live["metadata"].get("uid")
    if claimed != uid:
        return f"it was issued for ServiceAccount uid {claimed}, and the account now has uid {uid} (made again)"
    return None


def connection_of(api) -> tuple[str, dict]:
    """The server URL and the cluster entry (CA or insecure) of the client."""
    conf = api.configuration
    cluster = {"server": conf.host}
    if getattr(conf, "ssl_ca_cert", None):
        with open(conf.ssl_ca_cert, "rb") as f:
            cluster["certificate-authority-data"] = base64.b64encode(f.read()).decode()
    elif not getattr(conf, "verify_ssl", True):
        cluster["insecure-skip-tls-verify"] = True
    return conf.host, cluster


def render(cluster: dict, user: str, token: str, namespace: str) -> str:
    import yaml

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": user,
        "clusters": [{"name": CLUSTER, "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": CLUSTER, "user": user, "namespace": namespace}}],
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_private(dest: str, text: str) -> None:
    """Atomically, readable by its owner only (it holds a credential)."""
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".kubeconfig-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure(api, namespace: str, service_account: str, dest: str, expiration_s: int, renew_before: int,
           check_mode: bool, timeout: float | None, mask=lambda value: None, clock=time.time) -> dict:
    if not os.path.isabs(dest):
        raise ParameterError(f"dest: {dest!r} must be an absolute path")
    if expiration_s < 600:
        raise ParameterError(f"expiration_seconds: {expiration_s} is below 600, the API server's minimum")
    if not 0 <= renew_before < expiration_s:
        raise ParameterError(f"renew_before_seconds: {renew_before} must be 0 or more and less than "
                             f"expiration_seconds ({expiration_s})")
    server, cluster = connection_of(api)
    sub = subject(namespace, service_account)
    existing = read_existing(dest)
    if existing:
        mask(existing["token"])
    result = {"dest": dest, "service_account": sub, "server": server}
    rejected = None
    if still_good(existing, server, sub, renew_before, clock()):
        rejected = review(api, existing["token"], sub, namespace, service_account, timeout)
        if rejected is None:
            return {**result, "changed": False, "expires": int(existing["exp"])}
        result["replaced_because"] = f"the token in {dest} is revoked: {rejected}"
    diff = {"before": {k: v for k, v in (existing or {}).items() if k in ("server", "sub", "uid")},
            "after": {"server": server, "sub": sub}}
    if check_mode:
        return {**result, "changed": True, "diff": diff}
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
    try:
        answer = request_json(api, "POST", path, timeout=timeout, action=f"requesting a token for {sub}",
                              body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                    "spec": {"expirationSeconds": expiration_s}})
    except ClusterError as exc:
        if exc.details.get("status") == 404:
            missing = missing_namespace(api, namespace, timeout or 30.0)
            raise missing or ParameterError(
                f"service_account: ServiceAccount {service_account!r} does not exist in namespace "
                f"{namespace!r}") from exc
        raise
    token = answer["status"]["token"]
    mask(token)
    diff["after"]["uid"] = ((token_claims(token).get("kubernetes.io") or {}).get("serviceaccount") or {}).get("uid")
    write_private(dest, render(cluster, sub, token, namespace))
    return {**result, "changed": True, "diff": diff, "expires": int(token_claims(token).get("exp") or 0)}


def path_problem(value, name: str = "inferops_kubeconfig") -> str | None:
    """What is wrong with a kubeconfig path a playbook is about to hand to
    every Kubernetes task (None: nothing). The client library reports a
    missing file only as "Invalid kube-config file. No configuration found."
    (kubernetes.config's KubeConfigMerger skips paths that do not exist),
    naming neither the variable nor the path. A dict (a kubeconfig given
    inline) is the client's to check."""
    fix = (f"Give the path of the cluster's kubeconfig: set {name} in the inventory (group_vars) or pass "
           f"-e {name}=PATH; the example inventory takes $KUBECONFIG, else ~/.kube/config.")
    if isinstance(value, dict):
        return None
    if not isinstance(value, str) or not value.strip():
        return f"{name} is {value!r}, not a path to a kubeconfig file. {fix}"
    # Several files may be given, separated as in KUBECONFIG.
    for path in (p for p in value.split(os.pathsep) if p):
        full = os.path.expanduser(path)
        if not os.path.exists(full):
            return f"{name}: {path} does not exist. {fix}"
        if not os.path.isfile(full):
            return f"{name}: {path} is not a file. {fix}"
        if not os.access(full, os.R_OK):
            return f"{name}: {path} cannot be read by this user ({os.getuid()}). {fix}"
    return None
