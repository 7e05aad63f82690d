# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every module that talks to the Kubernetes
API. The names and K8S_AUTH_* environment fallbacks are kubernetes.core's, so
`module_defaults` written for kubernetes.core work here too."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule, env_fallback

K8S_AUTH_ARG_SPEC = {
    "kubeconfig": {"type": "raw", "fallback": (env_fallback, ["K8S_AUTH_KUBECONFIG"])},
    "context": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_CONTEXT"])},
    "host": {"type": "str", "fallback": (env_fallback, ["K8S_AUTH_HOST"])},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"], "fallback": (env_fallback, ["K8S_AUTH_VERIFY_SSL"])},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"], "fallback": (env_fallback, ["K8S_AUTH_SSL_CA_CERT"])},
    "client_cert": {"type": "path", "aliases": ["cert_file"], "fallback": (env_fallback, ["K8S_AUTH_CERT_FILE"])},
    "client_key": {"type": "path", "aliases": ["key_file"], "no_log": False,
                   "fallback": (env_fallback, ["K8S_AUTH_KEY_FILE"])},
    "request_timeout": {"type": "float", "default": 30.0},
}

# The API bearer token, apart: endpoint_check's own api_key is the served
# model's key, so that module takes the connection options without this one.
K8S_API_KEY_ARG_SPEC = {
    "api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, ["K8S_AUTH_API_KEY"])},
}


# Keys under a kubeconfig user that name files, commands or identities:
# everything else there (tokens, keys, passwords, auth-provider and exec
# settings) is a credential.
_KUBECONFIG_USER_PUBLIC_KEYS = frozenset({
    "username", "as", "as-groups", "client-certificate", "client-key", "tokenFile", "command", "apiVersion",
    "interactiveMode", "installHint", "provideClusterInfo", "name",
})


def kubeconfig_secrets(kubeconfig) -> set[str]:
    """The credential strings of a kubeconfig given as a dict: every string
    under ``users[].user`` except file paths, commands and identities."""
    found: set[str] = set()

    def walk(value, key=None):
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in _KUBECONFIG_USER_PUBLIC_KEYS:
                    walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and value:
            found.add(value)

    if isinstance(kubeconfig, dict):
        for user in kubeconfig.get("users") or []:
            if isinstance(user, dict):
                walk(user.get("user") or {})
    return found


class K8sModule(AnsibleModule):
    """AnsibleModule for the modules that take a kubeconfig. A kubeconfig
    given as a dict keeps its credentials out of every output (the result's
    invocation, failures, the target's journal) while the rest stays
    readable; marking the whole option no_log, as kubernetes.core does,
    would mask every short string in it ("v1", a cluster's name) wherever
    it appears in the output."""

    def _load_params(self):
        # The earliest point the parameters exist: argument validation may
        # fail (and print the invocation) right after this.
        super()._load_params()
        self.no_log_values.update(kubeconfig_secrets(self.params.get("kubeconfig")))
