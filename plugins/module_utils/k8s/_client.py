# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The API connection: kubernetes.core's client factory (its auth options,
K8S_AUTH_* variables, dict kubeconfigs, in-cluster config, proxies,
impersonation) gives a ``kubernetes.dynamic`` client, and every request goes
through that client's ``request()``, the surface that stays put across
releases of the Python client (35 and 37 both). Answers are plain JSON dicts:
cheaper than generated models for long lists, and what diffs and results need
anyway. Errors become ClusterError with what was being done."""

from __future__ import annotations

import json
import os
import time

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, MissingDependency, NotFoundError

try:
    import urllib3

    from kubernetes.dynamic.exceptions import DynamicApiError

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised where the library is missing
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = exc
    DynamicApiError = None  # type: ignore[misc,assignment]

# Transient trouble reaching the API server: a connection refused or reset
# while it restarts, a read that timed out, a 5xx while etcd is away. Retried
# with backoff (capped at RETRY_MAX_DELAY_S) until RETRY_BUDGET_S have passed,
# so that an outage of up to half a minute (an API server restarting, an
# etcd leader change) is ridden out, and one that lasts is reported.
RETRIES = None  # no count: the time budget bounds the retries
RETRY_BUDGET_S = 45.0
RETRY_MAX_DELAY_S = 4.0


def require_kubernetes() -> None:
    if not HAS_KUBERNETES:
        raise MissingDependency(
            "the 'kubernetes' Python library is required where this module runs "
            f"({KUBERNETES_IMPORT_ERROR}); install it with: pip install kubernetes"
        )


def connect(params: dict):
    """A ``kubernetes.dynamic`` client from the module's connection options
    (kubernetes.core's AUTH_ARG_SPEC names)."""
    require_kubernetes()
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client

    kubeconfig = params.get("kubeconfig")
    if isinstance(kubeconfig, str) and kubeconfig:
        # Several files may be given, separated as in KUBECONFIG.
        for path in (os.path.expanduser(p) for p in kubeconfig.split(os.pathsep) if p):
            if not os.path.isfile(path):
                raise ClusterError(f"kubeconfig: {path} is not a file; give the path of the cluster's kubeconfig "
                                   "(or set K8S_AUTH_KUBECONFIG)")
    elif kubeconfig is not None and not isinstance(kubeconfig, (str, dict)):
        raise ClusterError(f"kubeconfig: a path or a dict is needed, got {type(kubeconfig).__name__}")
    auth = {k: params[k] for k in AUTH_ARG_SPEC if params.get(k) is not None}
    deadline = time.monotonic() + RETRY_BUDGET_S
    delay = 0.5
    while True:
        try:
            return get_api_client(**auth).client
        except Exception as exc:  # noqa: BLE001 - the config loaders raise many kinds; all mean the same to a user
            # An API server that does not answer yet (restarting): try again within the budget.
            if getattr(exc, "pool", None) is None or time.monotonic() + delay > deadline:
                raise_connect_error(exc, kubeconfig)
            time.sleep(delay)
            delay = min(RETRY_MAX_DELAY_S, delay * 2)


def raise_connect_error(exc: Exception, kubeconfig) -> None:
    """The client could not be made: say which configuration, and whether
    it was unreadable or its server did not answer."""
    where = "the kubeconfig given as a dict" if isinstance(kubeconfig, dict) else \
        (f"kubeconfig {kubeconfig}" if kubeconfig else "the default kubeconfig or in-cluster config")
    pool = getattr(exc, "pool", None)  # urllib3's MaxRetryError: the server named there does not answer
    if pool is not None and getattr(pool, "host", None):
        reason = getattr(exc, "reason", None) or exc
        detail = str(reason).rsplit(": ", 1)[-1][:200]
        raise ClusterError(f"kubeconfig/context: cannot reach the API server {pool.scheme}://{pool.host}:"
                           f"{pool.port} that {where} names ({reason.__class__.__name__}: {detail}), within "
                           f"{RETRY_BUDGET_S:g}s. Is the cluster up, and is this its kubeconfig and context?") from exc
    first = (str(exc).splitlines() or [""])[0][:300]
    raise ClusterError(f"kubeconfig/context: cannot load the cluster configuration from {where}: "
                       f"{exc.__class__.__name__}: {first}. Check the file (kubectl --kubeconfig ... "
                       "cluster-info reads it the same way) and the context") from exc


def pool_size(api) -> int:
    """How many connections the client keeps: more requests at once than this
    open and drop connections."""
    return int(getattr(api.configuration, "connection_pool_maxsize", 0) or 4)


def describe_api_error(exc, action: str) -> ClusterError:
    """Turn an API error into a ClusterError whose message says what was
    being done and what the server said."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", "") or ""
    body = getattr(exc, "body", "") or ""
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    message = body
    try:
        message = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        pass
    hint = ""
    if status == 401:
        hint = " (the credentials were refused: check kubeconfig/api_key)"
    elif status == 403:
        hint = " (the user is not allowed to do this: check its RBAC)"
    return ClusterError(f"{action} failed: {status} {reason}: {message}{hint}".strip(), status=status)


def transient(exc: Exception) -> bool:
    """Whether no answer came (the server is restarting, the connection
    dropped, a read timed out), or the answer said 'later' (429, 5xx)."""
    if HAS_KUBERNETES and isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
        return True
    return getattr(exc, "status", None) in (429, 500, 502, 503, 504)


# Sending these twice has the effect of sending them once (a replace carries
# the resourceVersion it was planned from, so a repeat gets 409).
REPEATABLE = ("GET", "PUT", "PATCH", "DELETE")


def raw_request(api, method: str, path: str, query: list | None = None, body=None,
                content_type: str = "application/json", accept: str = "application/json",
                timeout=None, retries: int = RETRIES):
    """The urllib3 response of one request, unread (a watch streams it).
    Transient trouble is retried with backoff, a bounded number of times; a
    create only on 429, since one whose answer was lost may have been made.
    Raises the client's API error for any other non-2xx answer."""
    attempt, deadline = 0, time.monotonic() + RETRY_BUDGET_S
    while True:
        try:
            return api.request(method, path, body=body, query_params=list(query or []),
                               header_params={"Accept": accept}, content_type=content_type,
                               serialize=False, _request_timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - sorted by transient()
            again = transient(exc) and (method in REPEATABLE or getattr(exc, "status", None) == 429)
            delay = min(RETRY_MAX_DELAY_S, 0.5 * 2 ** attempt)
            spent = retries is not None and attempt >= retries
            if spent or not again or time.monotonic() + delay > deadline:
                raise
            # Backoff between tries of a server that does not answer: there is nothing to watch.
            time.sleep(delay)
            attempt += 1


def request_json(api, method: str, path: str, query: list | None = None, body=None,
                 content_type: str = "application/json", timeout=None, action: str | None = None,
                 retries: int = RETRIES):
    """One request, answered as plain JSON."""
    try:
        resp = raw_request(api, method, path, query, body, content_type, timeout=timeout, retries=retries)
        data = resp.data
    except Exception as exc:  # noqa: BLE001 - an answer is described; no answer at all says where, not a traceback
        if DynamicApiError and isinstance(exc, DynamicApiError):
            raise describe_api_error(exc, action or f"{method} {path}") from exc
        raise ClusterError(f"{action or f'{method} {path}'} failed: the API server did not answer "
                           f"({exc.__class__.__name__}: {(str(exc).splitlines() or [''])[0][:200]})",
                           status=None, reachable=False) from exc
    return json.loads(data) if data else {}


def request_text(api, path: str, query: list | None = None, timeout=None, action: str | None = None) -> str:
    """A plain-text answer (a container's log)."""
    try:
        return raw_request(api, "GET", path, query, accept="*/*", timeout=timeout).data.decode(errors="replace")
    except Exception as exc:
        if DynamicApiError and isinstance(exc, DynamicApiError):
            raise describe_api_error(exc, action or f"GET {path}") from exc
        raise


def merge_patch(api, path: str, patch: dict, dry_run: bool = False, timeout=None, action: str | None = None):
    """JSON merge patch (RFC 7386)."""
    query = [("dryRun", "All")] if dry_run else []
    return request_json(api, "PATCH", path, query=query, body=patch,
                        content_type="application/merge-patch+json", timeout=timeout, action=action)


def api_client_of(api):
    """The generated ApiClient under the dynamic client, for
    kubernetes.stream (port-forward)."""
    return api.client


def missing_namespace(api, namespace: str, timeout: float = 30.0) -> NotFoundError | None:
    """After a 404 in a namespace: the error to raise when the namespace
    itself is what is missing (a user's typo), else None."""
    try:
        request_json(api, "GET", f"/api/v1/namespaces/{namespace}", timeout=timeout,
                     action=f"reading namespace {namespace}")
    except ClusterError as exc:
        if exc.details.get("status") == 404:
            return NotFoundError(f"namespace: {namespace!r} does not exist; fix the name, or create it first "
                                 "(the roles create theirs)")
        raise
    return None
