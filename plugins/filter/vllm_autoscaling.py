# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vllm_autoscaling
short_description: A KEDA ScaledObject for a vLLM StatefulSet, bounded by the replicas its GPUs can hold
version_added: 0.1.0
description:
  - Returns C(scaledobject) (a KEDA C(keda.sh/v1alpha1) ScaledObject, as the vllm_serve role applies it) and
    C(bound) (C(min), C(max), C(placeable), C(capped_by)).
  - It scales the StatefulSet on C(sum(vllm:num_requests_waiting)) of its pods, read from Prometheus (KEDA's
    prometheus trigger; an AverageValue target, so the replicas wanted are the waiting requests over
    C(waiting_per_replica)).
  - The most replicas is what the GPUs can hold - the replicas on a node now plus the room C(gpu_capacity) found for
    more - and at most C(max_replicas) when that is given (0 - no limit of the user's). A minimum the GPUs cannot hold,
    or below 1, is refused with the numbers (C(plugins/module_utils/serving/_autoscaling.py)).
options:
  _input:
    description:
      - C(name), C(namespace), C(labels), C(prometheus_url), C(waiting_per_replica), C(min_replicas),
        C(max_replicas), C(polling_interval), and C(capacity) (a C(gpu_capacity) result -
        C(current_replicas), C(pending), C(room)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Bound and render the ScaledObject
  ansible.builtin.set_fact:
    scaling: >-
      {{ {'name': 'vllm', 'namespace': 'ai-serving', 'labels': {}, 'prometheus_url': 'http://prometheus-operated.monitoring.svc:9090',
          'waiting_per_replica': 5, 'min_replicas': 1, 'max_replicas': 0, 'polling_interval': 15,
          'capacity': capacity} | inferops.vllm.vllm_autoscaling }}
"""

RETURN = r"""
_value:
  description: C(scaledobject) (the full object) and C(bound) (C(min), C(max), C(placeable), C(capped_by)).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving._autoscaling import replica_bound, scaled_object


def vllm_autoscaling(params: dict) -> dict:
    capacity = params.get("capacity") or {}
    try:
        bound = replica_bound(int(params["min_replicas"]), int(params["max_replicas"]),
                              int(capacity.get("current_replicas") or 0), len(capacity.get("pending") or []),
                              int(capacity.get("room") or 0))
        obj = scaled_object(params["name"], params["namespace"], dict(params.get("labels") or {}),
                            str(params.get("prometheus_url") or ""), float(params["waiting_per_replica"]),
                            bound["min"], bound["max"], int(params["polling_interval"]))
    except ParameterError as exc:
        raise AnsibleFilterError(str(exc)) from None
    return {"scaledobject": obj, "bound": bound}


class FilterModule:
    def filters(self):
        return {"vllm_autoscaling": vllm_autoscaling}
