# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the collection's cluster-facing modules add to kubernetes.core's
connection options (fragment kubernetes.core.k8s_auth_options)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  request_timeout:
    description:
      - Seconds to wait for each single API request (not the whole task).
      - A request that gets no answer (the API server restarting, a dropped connection) or a 429 or 5xx answer
        is tried again a few times with backoff.
    type: float
    default: 30.0
notes:
  - The connection options are kubernetes.core's, read by its client factory, so C(module_defaults) for
    C(group/inferops.vllm.k8s) take the same values as for C(group/kubernetes.core.k8s). A kubeconfig given as a
    dict keeps its credentials out of every output; the rest of it stays readable.
requirements:
  - python >= 3.12
  - kubernetes >= 35 (the Python client)
  - the kubernetes.core collection (its client factory)
"""
