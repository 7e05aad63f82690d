#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: service_account_kubeconfig
short_description: Write a kubeconfig for a ServiceAccount, with a bound token that expires
version_added: 0.1.0
description:
  - Asks the API server for a token of the ServiceAccount (the TokenRequest API), and writes a kubeconfig that
    holds it, with the server and CA of the connection the module itself uses. No long-lived token Secret is made.
  - A file already at O(dest) is kept while its token names the same ServiceAccount and server, stays valid for at
    least O(renew_before_seconds) more, and is still good (the account uid its claims carry is the live
    ServiceAccount's, and the API server accepts it, asked with a TokenReview). So a rerun changes nothing until the
    token nears its end, and a revoked token - its ServiceAccount deleted, or deleted and made again under the same
    name (a new uid) - is replaced. Reading the ServiceAccount or creating a TokenReview may be forbidden to the
    caller, not both.
  - The file is written atomically and readable by its owner only. The token is never returned.
options:
  service_account:
    description: The ServiceAccount's name.
    type: str
    required: true
  namespace:
    description: The ServiceAccount's namespace.
    type: str
    required: true
  dest:
    description: Absolute path of the kubeconfig file to write (on the host the module runs on).
    type: path
    required: true
  expiration_seconds:
    description: How long the token is asked to be valid (the API server may shorten it; 600 is its minimum).
    type: int
    default: 86400
  renew_before_seconds:
    description: A file whose token expires within this many seconds is replaced.
    type: int
    default: 3600
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.CLUSTER_WRITES
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  diff_mode:
    details: The server, the account and the account's uid the file names, never the token.
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: A kubeconfig for the deployer account, for the serving stages
  inferops.vllm.service_account_kubeconfig:
    service_account: inferops-deployer
    namespace: inferops-system
    dest: /etc/inferops/deployer.kubeconfig
"""

RETURN = r"""
dest:
  description: The kubeconfig file.
  returned: always
  type: str
service_account:
  description: The account the token is for (C(system:serviceaccount:NAMESPACE:NAME)).
  returned: always
  type: str
server:
  description: The API server the file points to.
  returned: always
  type: str
expires:
  description: When the token in the file expires (seconds since the epoch).
  returned: when a file was kept or written
  type: int
replaced_because:
  description: Why a token that had not expired yet was replaced (the API server's answer to its review).
  returned: when such a token was replaced
  type: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._kubeconfig import ensure


def run(module):
    p = module.params

    def mask(token):
        module.no_log_values.add(token)

    result = ensure(connect(p), p["namespace"], p["service_account"], p["dest"], p["expiration_seconds"],
                    p["renew_before_seconds"], module.check_mode, p["request_timeout"], mask=mask)
    if not module._diff:
        result.pop("diff", None)
    return result


def main():
    spec = dict(
        service_account=dict(type="str", required=True),
        namespace=dict(type="str", required=True),
        dest=dict(type="path", required=True),
        expiration_seconds=dict(type="int", default=86400),
        renew_before_seconds=dict(type="int", default=3600),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, run)


if __name__ == "__main__":
    main()
