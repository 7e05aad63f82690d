#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_node
short_description: Label, annotate and taint GPU nodes in one task, and report their GPU inventory
version_added: 0.1.0
description:
  - Selects nodes by name and/or label selector with a single LIST request, works out for each node only
    the labels, annotations and taints that differ from what is asked, and patches those nodes in parallel.
  - Reports, per node, the GPU resources it advertises, its GPU product labels, whether it is Ready, and
    whether HAMi's device plugin has registered its GPUs (the C(hami.io/node-nvidia-register) annotation).
  - Use it to put the O(labels) C(gpu=on) that HAMi's device plugin selects on the GPU nodes, or with no
    labels, annotations or taints just to read the inventory.
options:
  names:
    description:
      - Kubernetes node names. They may differ from inventory host names.
      - A name that does not exist fails the task before any node is changed, unless O(allow_missing=true).
    type: list
    elements: str
    default: []
  label_selector:
    description:
      - Select nodes by label, for example C(nvidia.com/gpu.present=true). Combined with O(names), the
        task acts on both sets.
    type: str
  labels:
    description:
      - Labels to set (O(state=present)) or remove (O(state=absent)). A value of V(null) removes the label
        in either state. Quote values such as C("on") and C("true") so that YAML keeps them strings.
    type: dict
    default: {}
  annotations:
    description:
      - Annotations to set or remove, as for O(labels).
    type: dict
    default: {}
  taints:
    description:
      - Taints to add or update (O(state=present)) or remove (O(state=absent), matched by key and effect).
    type: list
    elements: dict
    default: []
    suboptions:
      key:
        description: Taint key.
        type: str
        required: true
      value:
        description: Taint value.
        type: str
      effect:
        description: Taint effect.
        type: str
        choices: [NoSchedule, PreferNoSchedule, NoExecute]
        default: NoSchedule
  state:
    description:
      - V(present) makes the labels, annotations and taints exist with the given values; V(absent) removes them.
    type: str
    choices: [present, absent]
    default: present
  allow_missing:
    description:
      - Skip named nodes that do not exist (they are listed in RV(missing)) instead of failing.
    type: bool
    default: false
  parallelism:
    description:
      - How many node patches may be in flight at once, at most the Python client's connection pool (by default
        five per CPU of the controller).
    type: int
    default: 16
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.CLUSTER_WRITES
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  diff_mode:
    details: Before and after of every label, annotation and taint that changes, per node.
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Mark the GPU nodes for HAMi's device plugin
  inferops.vllm.gpu_node:
    names: [gpu-a-01, gpu-a-02]
    labels:
      gpu: "on"
      nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3
    taints:
      - key: nvidia.com/gpu
        value: present
        effect: NoSchedule

- name: Report the GPU inventory of every node that has GPUs
  inferops.vllm.gpu_node:
    label_selector: nvidia.com/gpu.present=true
  register: gpu_inventory

- name: Take a node out of HAMi
  inferops.vllm.gpu_node:
    names: [gpu-a-02]
    labels:
      gpu: "on"
    state: absent
"""

RETURN = r"""
changed_nodes:
  description: Names of the nodes that were (or in check mode would be) patched.
  returned: always
  type: list
  elements: str
missing:
  description: Named nodes that do not exist (only with O(allow_missing=true)).
  returned: always
  type: list
  elements: str
elapsed_s:
  description: Seconds the task spent talking to the API server.
  returned: always
  type: float
nodes:
  description: GPU inventory of each selected node, after the change.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
    ready:
      description: Whether the node's Ready condition is True.
      type: bool
    unschedulable:
      description: Whether the node is cordoned.
      type: bool
    labels:
      description: All the node's labels.
      type: dict
    taints:
      description: The node's taints.
      type: list
    gpu_capacity:
      description: Capacity of C(nvidia.com/gpu), C(nvidia.com/gpumem) and C(nvidia.com/gpucores), where present.
      type: dict
      sample: {"nvidia.com/gpu": "8"}
    gpu_allocatable:
      description: Allocatable amounts of the same resources.
      type: dict
    gpu_product:
      description: The C(nvidia.com/gpu.product) label.
      type: str
      sample: NVIDIA-H100-80GB-HBM3
    gpu_count_label:
      description: The C(nvidia.com/gpu.count) label.
      type: str
    gpu_memory_label_mib:
      description: The C(nvidia.com/gpu.memory) label (MiB per GPU).
      type: str
    hami:
      description: HAMi's registration of the node's GPUs.
      type: dict
      contains:
        registered:
          description: True when HAMi's device plugin has registered at least one GPU and all are healthy.
          type: bool
        devices:
          description: Each registered GPU (id, index, split_count, memory_mib, cores, type, numa, mode, health).
          type: list
        healthy_devices:
          description: How many registered GPUs are healthy.
          type: int
        handshake:
          description: The handshake annotation's value, if any.
          type: str
diff:
  description: Per node, the before and after of what changed.
  returned: changed
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._nodes import apply
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect


def main():
    spec = dict(
        names=dict(type="list", elements="str", default=[]),
        label_selector=dict(type="str"),
        labels=dict(type="dict", default={}),
        annotations=dict(type="dict", default={}),
        taints=dict(
            type="list",
            elements="dict",
            default=[],
            options=dict(
                key=dict(type="str", required=True, no_log=False),
                value=dict(type="str"),
                effect=dict(type="str", choices=["NoSchedule", "PreferNoSchedule", "NoExecute"], default="NoSchedule"),
            ),
        ),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        allow_missing=dict(type="bool", default=False),
        parallelism=dict(type="int", default=16),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(
        module,
        lambda m: apply(connect(m.params), m.params, m.check_mode),
    )


if __name__ == "__main__":
    main()
