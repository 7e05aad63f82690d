#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet_plan
short_description: Place every replica of every model of a fleet on the cluster's GPUs by HAMi's rules, before anything changes
version_added: 0.6.0
description:
  - Given what one replica of each model asks for (the vllm_serve role's C(request) entry point gives it), places
    every replica of every model onto the cluster's GPU nodes by HAMi's own per-GPU rules and its node and GPU
    scheduling policies (binpack or spread), in the order the collection deploys them (the models in list order, each
    one's replicas in ordinal order), and shows where each lands as a table - node, GPU, the models and their slices.
  - What the cluster holds already counts - each model's own running pods where they are (one beyond the model's
    replica count is being removed, so its GPUs are free), and every other pod that holds GPUs.
  - When the fleet does not fit it fails before anything changes, naming the replicas that do not fit and, per model,
    the smallest change that makes the whole fleet fit (fewer replicas, a smaller slice, fewer cores, another GPU
    type), each checked by placing the fleet again with it.
  - The nodes come from one list, the pods that hold GPUs from one list (unfinished pods of every namespace). The
    rules are C(plugins/module_utils/gpu/_placement.py); the collection's docs/fleet.md and docs/gpu_capacity.md say
    which part HAMi decides and what is not modelled.
options:
  models:
    description:
      - One entry a model, as the vllm_serve role's C(request) entry point sets C(vllm_serve_fleet_request) - C(name),
        C(namespace), C(replicas), C(selector), C(node_selector), C(tolerations), and either C(plan) (the serving
        plan's C(resources), C(annotations), C(group), C(memory)) or the GPUs given (C(tensor_parallel_size),
        C(extra_args), C(gpus_per_node), C(gpu_memory_mib), C(gpu_memory_request_mib), C(gpu_cores_percent),
        C(gpu_types)), and C(strict) (false for the one model of an inventory without inferops_models - left out,
        and said, when its GPUs are not known yet; true by default - refused).
    type: list
    elements: dict
    required: true
  node_policy:
    description: HAMi's node scheduling policy (the chart's C(scheduler.defaultSchedulerPolicy.nodeSchedulerPolicy)).
    type: str
    choices: [binpack, spread]
    default: binpack
  gpu_policy:
    description: HAMi's GPU scheduling policy (the chart's C(scheduler.defaultSchedulerPolicy.gpuSchedulerPolicy)).
    type: str
    choices: [binpack, spread]
    default: spread
  hami_version:
    description: The HAMi release whose rules apply (its chart version, e.g. C(2.10.0)).
    type: str
    default: "2.10.0"
  fail_when_short:
    description: Fail, with the replicas that do not fit and the smallest changes, when the fleet does not fit.
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
    details: Only reads, so check mode runs the whole plan.
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Place the fleet (each member's request gathered from the vllm_serve role's request entry point)
  inferops.vllm.fleet_plan:
    models: "{{ groups['inferops_fleet'] | map('extract', hostvars, 'vllm_serve_fleet_request') | list }}"
    node_policy: binpack
    gpu_policy: spread
  register: fleet_placement
"""

RETURN = r"""
fits:
  description: Whether every replica of every model has a place.
  returned: always
  type: bool
placements:
  description: Each replica's pod - C(workload), C(replica), C(pod), C(node), C(existing) (running there now), C(gpus).
  returned: always
  type: list
  elements: dict
unplaced:
  description: The replicas with no place, each with the reason on the first eight nodes (by name) and how many more.
  returned: always
  type: list
  elements: dict
suggestions:
  description: When the fleet does not fit, per model the smallest change with which the whole fleet fits
    (C(workload), C(change), C(from), C(to), C(text)).
  returned: always
  type: list
  elements: dict
table:
  description: One row per GPU with a task - C(node), C(gpu), C(type), C(memory), C(cores), C(tasks).
  returned: always
  type: list
  elements: dict
table_text:
  description: The table as aligned text.
  returned: always
  type: str
nodes:
  description: Per node, its exclusions and per GPU what is used and by whom.
  returned: always
  type: list
  elements: dict
not_placed:
  description: Models whose GPUs are not known yet (one model of an inventory without inferops_models, whose serving
    plan chooses them once the model is downloaded), left out of the placement.
  returned: always
  type: list
  elements: str
msg:
  description: What was placed, or what does not fit and the smallest changes.
  returned: always
  type: str
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._capacity import InsufficientCapacity
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._cluster import nodes_and_pods
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._placement import place_fleet
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
from ansible_collections.inferops.vllm.plugins.module_utils.serving._fleet import workload

# Reasons kept for each pod that does not fit (the first nodes, in name order).
REASONS_KEPT = 8


def plan_fleet(module):
    p = module.params
    problems, workloads, unknown = [], [], []
    for position, request in enumerate(p["models"]):
        if not isinstance(request, dict) or not request.get("name") or not request.get("namespace"):
            problems.append(f"models[{position}]: give name, namespace and the replica's request "
                            "(the vllm_serve role's request entry point sets it)")
            continue
        try:
            workloads.append(workload(request))
        except ParameterError as exc:
            # One model of an inventory without inferops_models: its serving plan, after the download,
            # decides its GPUs, as before fleets; a fleet's model must say them.
            if request.get("strict", True):
                problems.append(str(exc))
            else:
                unknown.append(request["name"])
        except (ValueError, TypeError) as exc:
            problems.append(f"{request['name']}: {exc}")
    if problems:
        raise ParameterError("; ".join(problems))
    nodes, pods = nodes_and_pods(connect(p), p["request_timeout"])
    result = place_fleet(workloads, nodes, pods, node_policy=p["node_policy"], gpu_policy=p["gpu_policy"],
                         hami_version=p["hami_version"])
    msg = result.pop("msg")
    for replica in result["unplaced"]:
        # One reason a node for each pod left out grows as pods x nodes: keep the first few nodes' reasons.
        reasons = replica.get("reasons") or {}
        kept = dict(list(reasons.items())[:REASONS_KEPT])
        if len(reasons) > REASONS_KEPT:
            kept["..."] = f"{len(reasons) - REASONS_KEPT} more nodes"
        replica["reasons"] = kept
    if unknown:
        msg += (f"; not placed: {', '.join(unknown)} (its GPUs are the serving plan's choice, made once the model's "
                "config.json is downloaded; give vllm_serve_tensor_parallel_size to place it now)")
    result["not_placed"] = unknown
    if not result["fits"] and p["fail_when_short"]:
        raise InsufficientCapacity(msg, changed=False, **result)
    return {"changed": False, "msg": msg, **result}


def main():
    spec = dict(
        models=dict(type="list", elements="dict", required=True),
        node_policy=dict(type="str", choices=["binpack", "spread"], default="binpack"),
        gpu_policy=dict(type="str", choices=["binpack", "spread"], default="spread"),
        hami_version=dict(type="str", default="2.10.0"),
        fail_when_short=dict(type="bool", default=True),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, plan_fleet)


if __name__ == "__main__":
    main()
