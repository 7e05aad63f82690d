# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# Apache License 2.0 (see LICENSE)
"""Connection options shared by every module that talks to the Kubernetes
API. The names and K8S_AUTH_* environment fallbacks are kubernetes.core's, so
`module_defaults` written for kubernetes.core work here too."""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback

K8S_AUTH_ARG_SPEC = {
    "kubeconfig": {"type": "raw", "fallback": (env_fallback, ["K8S_AUTH_KUBECONFIG"])},
    "context": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_CONTEXT"])},
    "host": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_HOST"])},
    "api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["K8S_AUTH_API_KEY"])},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"], "fallback": (env_fallback, ["K8S_AUTH_VERIFY_SSL"])},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"], "fallback": (env_fallback, ["K8S_AUTH_SSL_CA_CERT"])},
    "client_cert": {"type": "path", "aliases": ["cert_file"], "fallback": (env_fallback, ["K8S_AUTH_CERT_FILE"])},
    "client_key": {"type": "path", "aliases": ["key_file"], "no_log": False,
                   "fallback": (env_fallback, ["K8S_AUTH_KEY_FILE"])},
    "request_timeout": {"type": "float", "default": 30.0},
}
