# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by every module that talks to the Kubernetes
API: kubernetes.core's own, so `module_defaults` written for kubernetes.core
work here too."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC

# kubernetes.core's connection options (documented by its k8s_auth_options
# fragment; K8S_AUTH_* variables are read by its client factory), except that
# a kubeconfig is not no_log as a whole: that would mask every short string of
# a dict kubeconfig ("v1", a cluster's name) wherever it appears in the
# output. K8sModule masks its credentials instead.
K8S_AUTH_ARG_SPEC = {
    **AUTH_ARG_SPEC,
    "kubeconfig": {**AUTH_ARG_SPEC["kubeconfig"], "no_log": False},
    "request_timeout": {"type": "float", "default": 30.0},
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
