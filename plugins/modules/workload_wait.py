#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: workload_wait
short_description: Wait for a StatefulSet, Deployment, DaemonSet or Job to roll out (or a claim to bind), and say why when it does not
version_added: 0.1.0
description:
  - Watches the workload and its pods through the API (list, then watch from the list's resourceVersion;
    re-lists when the version has expired and reconnects when the connection drops). It never sleeps in a loop.
  - Rolled out means what C(kubectl rollout status) means (observed generation, updated, ready and available
    replicas, update revision); a Job must complete; a PersistentVolumeClaim must be Bound.
  - When the wait fails it returns a diagnosis naming each cause and the object it was seen on -
    C(ImagePullBackOff) (the image), C(CrashLoopBackOff) (container, restarts, last log lines of the crashed run),
    C(Unschedulable) (the scheduler's message), C(PVCPending)/C(FailedMount) (the claim), C(ProbeFailed) (the
    probe's event), C(BackoffLimitExceeded) (Job; with what its last failed container said - its termination message,
    or, when it left none, its log tail read while the pod was there, since the Job controller deletes a failed Job's
    running pods; give the container C(terminationMessagePolicy=FallbackToLogsOnError) for the message),
    C(NodeNotReady) and C(NotReady) (a pod not Ready with nothing of
    its own to say why), C(SchedulerBehind) (the scheduler calls a claim that exists "not found", as right after a
    kube-apiserver restart; never ends the wait early) and others. When no pod has a cause to report, C(Progressing) names the pods not placed, not
    Ready or terminating, or says that every pod is Ready and the controller's status has not caught up.
  - Causes listed in O(fail_fast) end the wait early, once they have persisted for O(fail_fast_after) seconds.
options:
  kind:
    description: Kind of the workload.
    type: str
    required: true
    choices: [StatefulSet, Deployment, DaemonSet, Job, PersistentVolumeClaim]
  name:
    description: Name of the workload.
    type: str
    required: true
  namespace:
    description: Namespace of the workload.
    type: str
    required: true
  timeout:
    description: Seconds to wait in all before failing with a diagnosis.
    type: float
    default: 600
  fail_fast:
    description:
      - Causes that end the wait before O(timeout). Give V([]) to always wait for the timeout.
      - C(Unschedulable) does not end the wait while a pod of the same workload is terminating, since the GPUs it
        holds are freed when it goes (a rolling update that replaces pods).
    type: list
    elements: str
    choices: [ImagePullBackOff, PVCMissing, CrashLoopBackOff, CreateContainerConfigError, Unschedulable,
              BackoffLimitExceeded, DeadlineExceeded, ProgressDeadlineExceeded]
    default: [ImagePullBackOff, PVCMissing, CrashLoopBackOff, CreateContainerConfigError, Unschedulable,
              BackoffLimitExceeded, DeadlineExceeded, ProgressDeadlineExceeded]
  fail_fast_after:
    description:
      - Seconds a fail-fast cause must persist before the wait gives up (a pod may be Unschedulable for a moment
        while a volume is provisioned).
    type: float
    default: 15
  log_lines:
    description: How many of a crashing container's last log lines the diagnosis includes.
    type: int
    default: 20
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.k8s_auth
  - kubernetes.core.k8s_auth_options
  - inferops.vllm.attributes.READ_ONLY
  - inferops.vllm.attributes.ACTION_GROUP_K8S
attributes:
  check_mode:
    details: Only reads. In check mode a workload that does not exist (because an earlier task only pretended to create it) is reported, not failed.
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Wait for the vLLM StatefulSet, at most 30 minutes (large models load slowly)
  inferops.vllm.workload_wait:
    kind: StatefulSet
    name: vllm-qwen3
    namespace: ai-serving
    timeout: 1800
  register: vllm_rollout

- name: Wait for the model download Job, never stopping early
  inferops.vllm.workload_wait:
    kind: Job
    name: model-fetch
    namespace: ai-serving
    fail_fast: []
"""

RETURN = r"""
rolled_out:
  description: Whether the workload rolled out.
  returned: always
  type: bool
message:
  description: What the rollout status rule said last.
  returned: success
  type: str
elapsed_s:
  description: Seconds waited.
  returned: always
  type: float
first_pod_ready_s:
  description: Seconds until the first pod was seen Ready (null if none was).
  returned: always
  type: float
all_ready_s:
  description: Seconds until the workload counted as rolled out.
  returned: success
  type: float
pods:
  description: Names of the workload's pods at the end.
  returned: success
  type: list
  elements: str
status:
  description: The workload's status at the end.
  returned: always
  type: dict
diagnosis:
  description: Each cause found, with the object it was seen on and what the cluster said.
  returned: failure
  type: list
  elements: dict
  sample:
    - cause: Unschedulable
      object: pod/ai-serving/vllm-0
      message: "0/5 nodes are available: 4 Insufficient nvidia.com/gpu, 1 node(s) didn't match ..."
watch:
  description: How often the watches had to re-list (expired version) or reconnect.
  returned: success
  type: dict
"""

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._diagnosis import PERMANENT_CAUSES
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._rollout import KINDS
from ansible_collections.inferops.vllm.plugins.module_utils._errors import NotFoundError
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._args import K8S_AUTH_ARG_SPEC, K8sModule
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import RolloutWaiter


def wait(module):
    p = module.params
    waiter = RolloutWaiter(
        connect(p), p["kind"], p["name"], p["namespace"], p["timeout"], p["fail_fast"], p["fail_fast_after"],
        p["log_lines"], p["request_timeout"],
    )
    try:
        result = waiter.wait()
    except NotFoundError as exc:
        if not module.check_mode:
            raise
        return {"changed": False, "rolled_out": False, "msg": f"{exc.msg} (check mode: not created yet)",
                "elapsed_s": 0.0, "first_pod_ready_s": None, "status": {}}
    return {"changed": False, **result}


def main():
    spec = dict(
        kind=dict(type="str", required=True, choices=list(KINDS)),
        name=dict(type="str", required=True),
        namespace=dict(type="str", required=True),
        timeout=dict(type="float", default=600),
        fail_fast=dict(type="list", elements="str", choices=list(PERMANENT_CAUSES), default=list(PERMANENT_CAUSES)),
        fail_fast_after=dict(type="float", default=15),
        log_lines=dict(type="int", default=20),
        **K8S_AUTH_ARG_SPEC,
    )
    module = K8sModule(argument_spec=spec, supports_check_mode=True)
    _runner.run(module, wait)


if __name__ == "__main__":
    main()
