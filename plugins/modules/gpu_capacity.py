#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_capacity
short_description: Check that N more replicas of a GPU StatefulSet fit the cluster's GPUs, node by node
version_added: 0.1.0
description:
  - Before a scale-up changes anything, says whether the cluster has the GPUs for the new replica count, by HAMi's
    per-GPU rules, and refuses with the numbers when it does not.
  - The request of one replica comes from the pod template (C(nvidia.com/gpu), C(nvidia.com/gpumem) or
    C(nvidia.com/gpumem-percentage), C(nvidia.com/gpucores) in each container's limits; no memory given means the
    whole GPU). Each node's GPUs come from HAMi's C(hami.io/node-nvidia-register) annotation (the text form of HAMi
    2.7 and the JSON list from 2.8), or from C(status.allocatable) and the C(nvidia.com/gpu.memory) label on a node
    HAMi has not registered.
  - What is used already comes from the pods on each node that have not finished, this workload's included - the
    GPUs HAMi recorded in C(hami.io/vgpu-devices-allocated), or the pod's request placed first-fit where HAMi
    recorded nothing.
  - A replica fits on a node with as many distinct GPUs as it asks for, each with the memory and cores free and
    fewer tasks than the GPU's split count. Nodes count only when Ready, not cordoned, matching the template's
    nodeSelector and required node affinity, and with every NoSchedule/NoExecute taint tolerated.
  - It lists the nodes once and the pods once, and reads the StatefulSet with one GET. It says whether the replicas
    fit, and where HAMi's scheduler would put them one after another by its default node and GPU policies (binpack,
    spread) and the template's policy annotations (see the collection's docs/gpu_capacity.md, "Fleet placement",
    for the rules and what is not modelled).
options:
  name:
    description: Name of the StatefulSet to scale.
    type: str
    required: true
  namespace:
    description: Namespace of the StatefulSet.
    type: str
    required: true
  replicas:
    description:
      - The replica count wanted. The replicas to add are this less the StatefulSet's C(spec.replicas) (0 when it
        does not exist yet), plus those of its current pods not on a node yet; none to add always fits.
    type: int
    required: true
  pod_template:
    description:
      - The pod template (the StatefulSet's C(spec.template), with C(metadata) and C(spec)) to check instead of the
        one the StatefulSet has; for a StatefulSet not yet created, or a scale that also changes the template.
      - Without it the StatefulSet must exist.
    type: dict
  group_size:
    description:
      - The pods one replica is made of, each like the template - for a replica larger than a node (vllm_serve's
        group of pods, one StatefulSet a rank), the nodes of the group. The replicas to add count this many pods each.
      - A template with a required pod anti-affinity on C(kubernetes.io/hostname) against its own labels (as a group's
        pods have) gets at most one pod a node, and none on a node that holds one of them already.
    type: int
    default: 1
  fail_when_short:
    description:
      - Fail, with the numbers in the message, when the new replicas do not fit.
      - V(false) reports (RV(fits) false) without failing.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.READ_ONLY
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  check_mode:
    details: Only reads, so check mode runs the whole check.
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Refuse to scale vLLM to 6 replicas unless the GPUs are there
  inferops.vllm.gpu_capacity:
    name: vllm-qwen3
    namespace: ai-serving
    replicas: 6

- name: Report the room for a StatefulSet not created yet, without failing
  inferops.vllm.gpu_capacity:
    name: vllm-qwen3
    namespace: ai-serving
    replicas: 2
    pod_template:
      spec:
        nodeSelector:
          gpu: "on"
        containers:
          - name: vllm
            resources:
              limits:
                nvidia.com/gpu: 2
                nvidia.com/gpumem: 40960
    fail_when_short: false
  register: vllm_capacity
"""

RETURN = r"""
fits:
  description: Whether the replicas to add fit (true when there are none to add).
  returned: always
  type: bool
needed:
  description: Replicas to add, the current pods not on a node yet included.
  returned: always
  type: int
room:
  description: How many replicas of this request the eligible nodes could take now, in all.
  returned: always
  type: int
replicas:
  description: The replica count asked for.
  returned: always
  type: int
current_replicas:
  description: The StatefulSet's C(spec.replicas) (0 when it does not exist).
  returned: always
  type: int
additional:
  description: RV(replicas) less RV(current_replicas), at least 0.
  returned: always
  type: int
pending:
  description: The StatefulSet's current pods not on a node yet (counted in RV(needed) when scaling up).
  returned: always
  type: list
  elements: str
request:
  description: The request of one replica.
  returned: always
  type: dict
  contains:
    gpus:
      description: GPUs per replica, all containers together.
      type: int
    description:
      description: The request in words.
      type: str
      sample: 2 GPUs x 40960 MiB
    containers:
      description:
        - Per container that asks for GPUs - C(gpus), C(memory_mib) per GPU (null when given as a percentage or
          whole), C(memory_percentage) (100 for a whole GPU), C(cores) (percent of one GPU).
      type: list
      elements: dict
nodes:
  description: Per node, in name order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
    matches:
      description: Whether it matches the template's nodeSelector and required node affinity.
      type: bool
    excluded:
      description:
        - Why the replica cannot go there (C(nodeSelector), C(node affinity), C(NotReady), C(cordoned),
          C(taint KEY=VALUE:EFFECT), C(no GPUs)); empty when it can.
      type: list
      elements: str
    source:
      description: Where its GPUs were read - C(hami-register), C(allocatable), or null (none).
      type: str
    gpus:
      description: GPUs on the node.
      type: int
    unhealthy_gpus:
      description: GPUs HAMi registered as unhealthy.
      type: int
    free_gpus:
      description: Healthy GPUs with no task on them.
      type: int
    usable_gpus:
      description: GPUs with room for one more per-GPU share of this request.
      type: int
    free_memory_mib:
      description: Free memory of its healthy GPUs, in all.
      type: int
    pods:
      description: Pods counted as using its GPUs.
      type: int
    room:
      description: Replicas of this request it could take now.
      type: int
    new_replicas:
      description: Of RV(needed), how many HAMi's scheduler would put there (its node and GPU policies, HAMi 2.10.0's
        rules).
      type: int
  sample:
    - name: gpu-node-0
      matches: true
      excluded: []
      source: hami-register
      gpus: 8
      unhealthy_gpus: 0
      free_gpus: 3
      usable_gpus: 3
      free_memory_mib: 244677
      pods: 5
      room: 1
      new_replicas: 1
msg:
  description: The verdict with the numbers.
  returned: always
  type: str
  sample: >-
    scale ai-serving/vllm to 6 needs 3 more replicas of 2 GPUs x 40960 MiB; the 4 nodes matching gpu=on have room
    for 1: gpu-a (1: 3 of 8 GPUs free), gpu-b (0: 1 of 8 GPUs free), gpu-c excluded (cordoned), gpu-d (0: 0 of 8
    GPUs free)
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError, NotFoundError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._capacity import InsufficientCapacity, check
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._cluster import nodes_and_pods
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect, request_json


def read_statefulset(api, name: str, namespace: str, timeout) -> dict | None:
    try:
        return request_json(api, "GET", f"/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}", timeout=timeout,
                            action=f"reading StatefulSet {namespace}/{name}")
    except ClusterError as exc:
        if exc.details.get("status") == 404:
            return None
        raise


def capacity(module):
    p = module.params
    if p["replicas"] < 0:
        raise ParameterError(f"replicas: {p['replicas']} is below 0; give the replica count wanted (0 or more)")
    template = p.get("pod_template")
    if template is not None and not isinstance(template, dict):
        raise ParameterError("pod_template: a mapping (the StatefulSet's spec.template) is needed")
    api = connect(p)
    timeout = p["request_timeout"]
    statefulset = read_statefulset(api, p["name"], p["namespace"], timeout)
    if statefulset is None and template is None:
        raise NotFoundError(f"name: StatefulSet {p['namespace']}/{p['name']} not found; give pod_template to check a "
                            "StatefulSet that is not created yet")
    current = int(((statefulset or {}).get("spec") or {}).get("replicas", 1)) if statefulset else 0
    if template is None:
        template = ((statefulset.get("spec") or {}).get("template")) or {}
    nodes, pods = nodes_and_pods(api, timeout)
    if p["group_size"] < 1:
        raise ParameterError(f"group_size: {p['group_size']} is below 1; give the pods one replica is made of (1, or "
                             "the nodes of a replica larger than a node)")
    result = check(template, nodes, pods, p["replicas"], current, p["name"], p["namespace"], p["group_size"])
    msg = result.pop("msg")
    if not result["fits"] and p["fail_when_short"]:
        raise InsufficientCapacity(msg, changed=False, **result)
    return {"changed": False, "msg": msg, **result}


def main():
    spec = dict(
        name=dict(type="str", required=True),
        namespace=dict(type="str", required=True),
        replicas=dict(type="int", required=True),
        pod_template=dict(type="dict"),
        fail_when_short=dict(type="bool", default=True),
        group_size=dict(type="int", default=1),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, capacity)


if __name__ == "__main__":
    main()
