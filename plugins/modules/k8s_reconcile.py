#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_reconcile
short_description: Make a stage's Kubernetes objects so, all checked in one dry run before any is written
version_added: 0.4.0
description:
  - The collection's one reconcile engine (C(plugins/module_utils/k8s/_reconcile.py)), used by the model_store and
    vllm_serve roles and the scale and upgrade entry points.
  - Reads each object of O(definitions) as it runs. An object of that name that the collection did not create (it
    lacks C(app.kubernetes.io/managed-by=inferops.vllm)), and a kind the cluster does not serve (CRDs not installed),
    are refused, all together, before anything is written.
  - Computes each object's apply patch as C(kubectl apply) and C(kubernetes.core.k8s) with C(apply=true) do (a
    three-way merge with the C(kubectl.kubernetes.io/last-applied-configuration) record), and sends every create
    and patch as one server-side dry run. Every refusal of the API server is listed together, and nothing is
    written when there is one. The dry run's answer says whether the object changes; only those are applied.
  - With O(gate), a running StatefulSet whose pod template changes (or that an earlier run left mid-rollout) is
    applied with its partition at the replica count, so that no pod takes the new template until
    M(inferops.vllm.rolling_upgrade) rolls them one at a time.
  - With O(prune), the collection's own objects of the listed kinds that carry the labels and that O(definitions)
    no longer holds are deleted (Foreground, conditional on the uid read) and waited for until gone, before the
    others are applied.
options:
  definitions:
    description: The desired objects, applied in this order.
    type: list
    elements: dict
    required: true
  prune:
    description: What to delete that the stage no longer wants.
    type: dict
    suboptions:
      kinds:
        description: The kinds to look at, each C({api_version, kind}); a kind the cluster does not serve is skipped.
        type: list
        elements: dict
        required: true
      labels:
        description: The labels of the stage's objects (an instance's own); objects must carry them and the
          collection's managed-by label.
        type: dict
        required: true
  leave_fields:
    description:
      - Dotted paths of fields that another controller sets (C(spec.replicas) while KEDA scales). A definition that
        leaves one out does not remove it, and it is dropped from the last-applied record.
    type: list
    elements: str
    default: []
  gate:
    description: Hold the pods of StatefulSet O(gate.name) on their revision when its template changes.
    type: dict
    suboptions:
      name:
        description: The StatefulSet (one of O(definitions)).
        type: str
        required: true
      replicas:
        description: The replica count asked for (the partition is the larger of it and the running count).
        type: int
        required: true
      ranks:
        description: The other StatefulSets of a group of pods (a replica larger than a node), held with it at the
          same partition when any of their templates changes.
        type: list
        elements: str
        default: []
  hint:
    description: What the user can do about a refused object, appended to the message.
    type: str
    default: ""
  wait_timeout:
    description: Seconds to wait for each pruned object to be gone (a StatefulSet's pods stop first).
    type: int
    default: 600
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.CLUSTER_WRITES
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  diff_mode:
    details: For each object that changes, the fields that differ (before and after), without the bookkeeping
      every write rewrites; each pruned object before and nothing after.
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: The serving objects, with the StatefulSet gated and what was turned off pruned
  inferops.vllm.k8s_reconcile:
    definitions: "{{ objects }}"
    gate: {name: vllm, replicas: 2}
    prune:
      kinds:
        - {api_version: networking.k8s.io/v1, kind: Ingress}
        - {api_version: keda.sh/v1alpha1, kind: ScaledObject}
      labels: {app.kubernetes.io/name: vllm, app.kubernetes.io/instance: vllm}
"""

RETURN = r"""
objects:
  description: Each object, with C(action) (create, update or none), C(changed) and, when it changes, its C(diff).
  returned: always
  type: list
  elements: dict
  sample:
    - {ref: StatefulSet/vllm, action: update, changed: true,
       diff: {before: {spec: {replicas: 1}}, after: {spec: {replicas: 2}}}}
pruned:
  description: Kind/name of each object deleted (in check mode, that would be).
  returned: always
  type: list
  elements: str
results:
  description: Each object as the API server answered (the dry run's answer in check mode, or for an unchanged
    object, the live one), by Kind/name.
  returned: always
  type: dict
gate:
  description: With O(gate), whether the StatefulSet is held (C(gated)), at which C(partition), and why
    (C(template_changed), C(unfinished)).
  returned: when gate is given
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._reconcile import reconcile


def run(module):
    p = module.params
    prune = p["prune"] or {}
    result = reconcile(connect(p), p["definitions"], prune_kinds=prune.get("kinds"), prune_labels=prune.get("labels"),
                       leave_fields=p["leave_fields"], gate=p["gate"], check_mode=module.check_mode, hint=p["hint"],
                       timeout=p["request_timeout"], wait_timeout=p["wait_timeout"])
    if module._diff and result["changed"]:
        result["diff"] = [{"before_header": o["ref"], "after_header": o["ref"], **o["diff"]}
                          for o in result["objects"] if o.get("diff")] + \
                         [{"before_header": r, "after_header": f"{r} (pruned)", "before": r, "after": ""}
                          for r in result["pruned"]]
    return result


def main():
    spec = dict(
        definitions=dict(type="list", elements="dict", required=True),
        prune=dict(type="dict", options=dict(kinds=dict(type="list", elements="dict", required=True),
                                             labels=dict(type="dict", required=True))),
        leave_fields=dict(type="list", elements="str", default=[]),
        gate=dict(type="dict", options=dict(name=dict(type="str", required=True),
                                            replicas=dict(type="int", required=True),
                                            ranks=dict(type="list", elements="str", default=[]))),
        hint=dict(type="str", default=""),
        wait_timeout=dict(type="int", default=600),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, run)


if __name__ == "__main__":
    main()
