# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An API client from the shared connection options (k8s_args), with the
errors a user can act on."""

from __future__ import annotations

import os

from ansible_collections.inferops.vllm.plugins.module_utils.errors import ClusterError, MissingDependency

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised where the library is missing
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = exc
    ApiException = ConfigException = Exception  # type: ignore[misc,assignment]


def require_kubernetes() -> None:
    if not HAS_KUBERNETES:
        raise MissingDependency(
            "the 'kubernetes' Python library is required where this module runs "
            f"({KUBERNETES_IMPORT_ERROR}); install it with: pip install kubernetes"
        )


def api_client(params: dict, pool_size: int = 16):
    """Build an ApiClient. Explicit host/api_key/certs win over the kubeconfig;
    with neither, the default kubeconfig, then in-cluster config."""
    require_kubernetes()
    configuration = k8s_client.Configuration()
    kubeconfig = params.get("kubeconfig")
    try:
        if kubeconfig or not params.get("host"):
            if isinstance(kubeconfig, dict):
                k8s_config.load_kube_config_from_dict(kubeconfig, context=params.get("context"),
                                                      client_configuration=configuration)
            elif kubeconfig or os.path.exists(os.path.expanduser(k8s_config.KUBE_CONFIG_DEFAULT_LOCATION)):
                path = os.path.expanduser(kubeconfig) if kubeconfig else None
                if path and not os.path.exists(path):
                    raise ClusterError(f"kubeconfig: file {path} does not exist; set kubeconfig to the cluster's kubeconfig path")
                k8s_config.load_kube_config(config_file=path, context=params.get("context"),
                                            client_configuration=configuration)
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)
    except ConfigException as exc:
        raise ClusterError(f"kubeconfig/context: cannot load the cluster configuration: {exc}") from exc
    if params.get("host"):
        configuration.host = params["host"]
    if params.get("api_key"):
        configuration.api_key = {"authorization": params["api_key"]}
        configuration.api_key_prefix = {"authorization": "Bearer"}
    if params.get("validate_certs") is not None:
        configuration.verify_ssl = params["validate_certs"]
    for key, attr in (("ca_cert", "ssl_ca_cert"), ("client_cert", "cert_file"), ("client_key", "key_file")):
        if params.get(key):
            setattr(configuration, attr, params[key])
    configuration.connection_pool_maxsize = pool_size
    return k8s_client.ApiClient(configuration)


def describe_api_error(exc, action: str) -> ClusterError:
    """Turn an ApiException into a ClusterError whose message says what was
    being done and what the server said."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", "") or ""
    body = getattr(exc, "body", "") or ""
    message = body
    try:
        import json

        message = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        pass
    hint = ""
    if status == 401:
        hint = " (the credentials were refused: check kubeconfig/api_key)"
    elif status == 403:
        hint = " (the user is not allowed to do this: check its RBAC)"
    return ClusterError(f"{action} failed: {status} {reason}: {message}{hint}".strip(), status=status)


def request_json(api, method: str, path: str, query: list | None = None, body=None,
                 content_type: str = "application/json", timeout: float | None = None, action: str | None = None):
    """One API request answered as plain JSON (dicts, not client models:
    cheaper for long lists, and what diffs and results need anyway)."""
    try:
        return api.call_api(
            path, method,
            query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=True,
            _request_timeout=timeout,
        )
    except ApiException as exc:
        raise describe_api_error(exc, action or f"{method} {path}") from exc


def merge_patch(api, path: str, patch: dict, dry_run: bool = False, timeout: float | None = None, action: str | None = None):
    """JSON merge patch (RFC 7386). The generated client would send a dict as
    a JSON *patch*, so the content type is set here."""
    query = [("dryRun", "All")] if dry_run else []
    return request_json(api, "PATCH", path, query=query, body=patch,
                        content_type="application/merge-patch+json", timeout=timeout, action=action)
