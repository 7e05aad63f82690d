# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: kubeconfig_path
short_description: The kubeconfig path the playbooks connect with, refused early when there is no such file
version_added: 0.1.0
description:
  - Returns its input unchanged when it is a path (or several, separated as in C(KUBECONFIG)) to readable files, or
    a kubeconfig given as a dict. Otherwise fails, naming the variable, the path and how to give the right one.
  - The playbooks pass C(inferops_kubeconfig) through it to every Kubernetes-facing task, so that a missing file is
    refused at the first such task with that message, not with the client library's "Invalid kube-config file. No
    configuration found.", which names neither the variable nor the path.
options:
  _input:
    description: The kubeconfig path (or a kubeconfig as a dict).
    type: raw
    required: true
  name:
    description: The variable the value came from, for the message.
    type: str
    default: inferops_kubeconfig
"""

EXAMPLES = r"""
- name: A play whose Kubernetes tasks connect with the inventory's kubeconfig
  hosts: k8s_api
  module_defaults:
    group/kubernetes.core.k8s:
      kubeconfig: "{{ inferops_kubeconfig | inferops.vllm.kubeconfig_path if inferops_kubeconfig is defined else omit }}"
  tasks: []
"""

RETURN = r"""
_value:
  description: The input, unchanged.
  type: raw
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._kubeconfig import path_problem


def kubeconfig_path(value, name: str = "inferops_kubeconfig"):
    problem = path_problem(value, name)
    if problem:
        raise AnsibleFilterError(problem)
    return value


class FilterModule:
    def filters(self):
        return {"kubeconfig_path": kubeconfig_path}
