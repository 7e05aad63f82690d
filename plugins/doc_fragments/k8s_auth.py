# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options for reaching the Kubernetes API, shared by the collection's
cluster-facing modules (names and env fallbacks as in kubernetes.core)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file, or the kubeconfig as a dictionary.
      - Without it and without O(host), C(~/.kube/config) is read, then the in-cluster service account.
      - Can be set with E(K8S_AUTH_KUBECONFIG).
    type: raw
  context:
    description:
      - The kubeconfig context to use. Can be set with E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - URL of the API server. Overrides the kubeconfig's. Can be set with E(K8S_AUTH_HOST).
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's certificate. Can be set with E(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
  ca_cert:
    description:
      - CA certificate file that signed the API server's certificate. Can be set with E(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
  client_cert:
    description:
      - Client certificate file. Can be set with E(K8S_AUTH_CERT_FILE).
    type: path
    aliases: [cert_file]
  client_key:
    description:
      - Client key file. Can be set with E(K8S_AUTH_KEY_FILE).
    type: path
    aliases: [key_file]
  request_timeout:
    description:
      - Seconds to wait for each single API request (not the whole task).
    type: float
    default: 30.0
requirements:
  - python >= 3.11
  - kubernetes >= 30 (the Python client)
"""

    API_KEY = r"""
options:
  api_key:
    description:
      - Bearer token for the API server. Can be set with E(K8S_AUTH_API_KEY).
    type: str
"""
