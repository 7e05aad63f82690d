# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every module documents, once. A module that says more
(what its check mode does) overrides ``details`` in its own docs. Use with
ansible.builtin.action_common_attributes, which gives the descriptions."""

from __future__ import annotations


class ModuleDocFragment:
    # Every module: runs on the controller or a POSIX host.
    DOCUMENTATION = r"""
options: {}
attributes:
  platform:
    support: full
    platforms: posix
"""

    # Modules that only read or compute.
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: It only reads or computes, so check mode runs it in full.
  diff_mode:
    support: none
    details: It changes nothing.
"""

    # Modules that write Kubernetes objects.
    CLUSTER_WRITES = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: Writes are sent as server-side dry runs, so the API server validates them and stores nothing.
  diff_mode:
    support: full
"""

    # Members of the action group that module_defaults set once per play.
    ACTION_GROUP_K8S = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/inferops.vllm.k8s) in C(module_defaults) to set the connection options once.
    support: full
    membership:
      - inferops.vllm.k8s
"""
