#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rolling_upgrade
short_description: Roll a vLLM StatefulSet's new revision one replica at a time, each gated by readiness and an endpoint check, with rollback
version_added: 0.1.0
description:
  - For a StatefulSet whose template was just changed while its C(spec.updateStrategy.rollingUpdate.partition) kept
    every pod on the old revision (the C(inferops.vllm.vllm_serve) role applies it so), lowers the partition one
    ordinal at a time, highest first. Each step waits, watching the API, until that pod of the new revision is Ready,
    then asks that very pod as a client would (through the Kubernetes API, as O(inferops.vllm.endpoint_check#module:pod)
    does) before the next pod is touched.
  - Each step watches its own pod only, so pods of a broken revision that are still there (the ones the rollout is
    about to replace) do not hold it back.
  - On the first pod that does not become Ready, or does not answer right, the rollout stops with that pod's
    diagnosis (C(inferops.vllm.workload_wait)'s). With O(rollback) (the default) the template goes back to the
    revision the other pods still run (its ControllerRevision), and so does the last-applied annotation of a
    client-side apply (else a later apply would bring the failed template back); the new revision's pods that are not
    Ready are deleted, the Ready ones replaced by the controller one at a time, and every pod is waited for and
    checked again. The module fails in both cases, saying what happened.
  - When every pod already runs the StatefulSet's update revision, or the StatefulSet has no replicas, there is nothing
    to roll; a partition left above 0 is set back to 0 (so that pods created later start on the update revision), and
    only that is reported as a change.
  - While it rolls, the KEDA ScaledObject the collection made for the StatefulSet (label
    C(app.kubernetes.io/managed-by=inferops.vllm), C(scaleTargetRef) this StatefulSet) is paused with KEDA's own
    annotation C(autoscaling.keda.sh/paused) (KEDA v2.21.0 then stops its scale loop and deletes its HPA, leaving the
    count as it is; C(autoscaling.keda.sh/paused-replicas) would also set a count, so it is not used), and resumed
    however the rollout ends - done, stopped, rolled back or the rollback failed. A ScaledObject paused by someone
    else, or not made by the collection, is left as it is, with a warning. A pause a rollout that was cut short left
    (annotation C(inferops.io/paused-for-rollout)) is lifted by the next run.
  - When the rollout stops without a successful rollback, the message lists every pod with its revision
    (C(controller-revision-hash)) and whether it is Ready.
options:
  name:
    description: Name of the StatefulSet.
    type: str
    required: true
  namespace:
    description: Namespace of the StatefulSet (and of O(server_api_key_secret)).
    type: str
    required: true
  ranks:
    description:
      - For a replica larger than a node (a group of pods, one StatefulSet a rank), the StatefulSets of the other
        ranks; O(name) is rank 0, whose pods serve the API. Pod i of every rank is one group. A group is replaced
        together (every rank's partition lowered to the same ordinal at once), every pod of it Ready on its new
        revision and the leader answering before the next group; the rollback puts every rank's template back.
    type: list
    elements: str
    default: []
  timeout:
    description: Seconds each pod may take to become Ready, and the rollback in all, before failing with a diagnosis.
    type: float
    default: 900
  fail_fast:
    description: Causes that end a step's wait before O(timeout), as in C(inferops.vllm.workload_wait).
    type: list
    elements: str
    choices: [ImagePullBackOff, PVCMissing, CrashLoopBackOff, CreateContainerConfigError, Unschedulable,
              BackoffLimitExceeded, DeadlineExceeded, ProgressDeadlineExceeded]
    default: [ImagePullBackOff, PVCMissing, CrashLoopBackOff, CreateContainerConfigError, Unschedulable]
  fail_fast_after:
    description: Seconds a fail-fast cause must persist before the step gives up.
    type: float
    default: 15
  log_lines:
    description: How many of a crashing container's last log lines the diagnosis includes.
    type: int
    default: 20
  rollback:
    description:
      - On the first bad pod, put the previous revision back and verify it. With V(false) the rollout only stops;
        the pods below the bad one keep the previous revision, held there by the partition.
    type: bool
    default: true
  check:
    description: Ask each new pod, as a client would, before the next one is touched. V(false) gates on readiness only.
    type: bool
    default: true
  model:
    description: The served model name each pod's C(/v1/models) must list. Required when O(check) is true.
    type: str
  api:
    description: What to ask each pod for, as O(inferops.vllm.endpoint_check#module:api).
    type: str
    choices: [auto, chat, embeddings]
    default: auto
  server_api_key_secret:
    description: Name of the Secret (in O(namespace)) that holds the servers' bearer key, read through the API.
    type: str
  server_api_key_secret_key:
    description: The key in O(server_api_key_secret) whose value is the bearer key.
    type: str
    default: api-key
  port:
    description: The pods' port, by number or container port name.
    type: str
    default: http
  startup_timeout:
    description: Seconds each check keeps retrying C(/health) (the pod is Ready already, so this is short).
    type: float
    default: 60
  http_timeout:
    description: Seconds to wait for each HTTP request to a pod.
    type: float
    default: 60
  pause_autoscaling:
    description:
      - Pause the collection's KEDA ScaledObject of the StatefulSet while rolling, and resume it after. Needs C(list)
        and C(patch) on C(scaledobjects.keda.sh) in O(namespace) (nothing where KEDA's CRD is not installed); an account
        that may not list them gets a warning that nothing was paused, not a failure.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  check_mode:
    support: full
    details: Reads the StatefulSet, its pods and ScaledObjects and reports which pods it would roll (RV(would_roll)) and
      which ScaledObjects it would pause (RV(would_pause_autoscaling)); changes nothing.
  diff_mode:
    support: full
    details: The revision every pod ran before and runs after.
author:
  - inferops.vllm maintainers (@inferops)
notes:
  - Kubernetes' StatefulSet controller updates only the pods whose ordinal is at or above the partition, highest
    first, and labels each pod with its revision (C(controller-revision-hash)); a ControllerRevision keeps each
    revision's template. This module relies on exactly that (kubernetes/pkg/controller/statefulset).
"""

EXAMPLES = r"""
- name: Roll the new revision one pod at a time, rolling back on the first bad one
  inferops.vllm.rolling_upgrade:
    name: vllm
    namespace: ai-serving
    model: qwen3-235b
    server_api_key_secret: vllm-api-key
    timeout: 1800
"""

RETURN = r"""
revision:
  description: The revision the pods ran (C(from)) and the one rolled out (C(to)).
  returned: always
  type: dict
  sample: {"from": "vllm-6d9f7c5b8", "to": "vllm-7f4c9d6b5"}
replicas:
  description: Each pod rolled, in order, with the seconds its step took and its endpoint check.
  returned: always
  type: list
  elements: dict
would_roll:
  description: In check mode, the pods that would be rolled, in order.
  returned: check mode, when there is something to roll
  type: list
  elements: str
rolled_back:
  description: Whether the previous revision was put back (and verified).
  returned: always
  type: bool
failed_pod:
  description: On failure, the pod that stopped the rollout, why, and the diagnosis.
  returned: failure
  type: dict
restored:
  description: After a rollback, each pod of the previous revision and its endpoint check.
  returned: when rolled back
  type: list
  elements: dict
message:
  description: What was done.
  returned: success
  type: str
elapsed_s:
  description: Seconds the whole rollout took.
  returned: always
  type: float
autoscaling_paused:
  description: The KEDA ScaledObjects paused while rolling.
  returned: always
  type: list
  elements: str
autoscaling_resumed:
  description: The KEDA ScaledObjects whose rollout pause was lifted (empty on failure when lifting it failed too).
  returned: when not in check mode
  type: list
  elements: str
would_pause_autoscaling:
  description: In check mode, the KEDA ScaledObjects that would be paused.
  returned: check mode, when there is something to roll
  type: list
  elements: str
pods:
  description: On a failure without a successful rollback, each pod (C(pod)), its C(revision) and whether it is C(ready).
  returned: failure
  type: list
  elements: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._diagnosis import PERMANENT_CAUSES


def roll(module):
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _tunnel
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
    from ansible_collections.inferops.vllm.plugins.module_utils.serving._openai_check import EndpointChecker, Transport
    from ansible_collections.inferops.vllm.plugins.module_utils.serving._rolling import GatedRollout, GroupRollout

    p = module.params
    if p["check"] and not p["model"]:
        raise ParameterError("model: give the served model name each pod must list, or set check: false")
    api = connect(p)
    key = None
    if p["check"] and p["server_api_key_secret"] and not module.check_mode:
        from ansible_collections.inferops.vllm.plugins.module_utils.k8s._secret import masked_forms, read_value

        key = read_value(api, p["server_api_key_secret"], p["namespace"], p["server_api_key_secret_key"],
                         p["request_timeout"])
        module.no_log_values.update(masked_forms(key))

    def check(pod: str) -> dict:
        port = _tunnel.resolve_pod_port(api, p["namespace"], pod, p["port"], p["request_timeout"])

        def ask(base_url):
            checker = EndpointChecker(Transport(base_url, True, None, p["http_timeout"]), p["model"], key,
                                      startup_timeout=p["startup_timeout"])
            answer = checker.check(api=p["api"])
            # What the gate looked at, short: the per-pod list would repeat it all.
            return {k: answer[k] for k in ("api", "models", "chat", "embeddings", "elapsed_s") if k in answer}

        return _tunnel.through_pod(api, p["namespace"], pod, port, ask)

    if p["ranks"]:
        rollout = GroupRollout(api, p["name"], p["namespace"], p["ranks"], p["timeout"], p["fail_fast"],
                               p["fail_fast_after"], check if p["check"] else None, p["rollback"], p["log_lines"],
                               p["request_timeout"], pause_autoscaling=p["pause_autoscaling"])
    else:
        rollout = GatedRollout(api, p["name"], p["namespace"], p["timeout"], p["fail_fast"], p["fail_fast_after"],
                               check if p["check"] else None, p["rollback"], p["log_lines"], p["request_timeout"],
                               pause_autoscaling=p["pause_autoscaling"])
    result = rollout.run(module.check_mode)
    if result["changed"] and module._diff:
        result["diff"] = {"before": {"revision": result["revision"]["from"]},
                          "after": {"revision": result["revision"]["to"]}}
    return result


def main():
    spec = dict(
        name=dict(type="str", required=True),
        namespace=dict(type="str", required=True),
        ranks=dict(type="list", elements="str", default=[]),
        timeout=dict(type="float", default=900),
        fail_fast=dict(type="list", elements="str", choices=list(PERMANENT_CAUSES),
                       default=["ImagePullBackOff", "PVCMissing", "CrashLoopBackOff", "CreateContainerConfigError",
                                "Unschedulable"]),
        fail_fast_after=dict(type="float", default=15),
        log_lines=dict(type="int", default=20),
        rollback=dict(type="bool", default=True),
        check=dict(type="bool", default=True),
        model=dict(type="str"),
        api=dict(type="str", default="auto", choices=["auto", "chat", "embeddings"]),
        server_api_key_secret=dict(type="str", no_log=False),
        server_api_key_secret_key=dict(type="str", default="api-key", no_log=False),
        port=dict(type="str", default="http"),
        startup_timeout=dict(type="float", default=60),
        http_timeout=dict(type="float", default=60),
        pause_autoscaling=dict(type="bool", default=True),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, roll)


if __name__ == "__main__":
    main()
