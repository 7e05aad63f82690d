# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: vllm_autoscaling
short_description: A KEDA ScaledObject for a vLLM StatefulSet, bounded by the replicas its GPUs can hold
version_added: 0.1.0
description:
  - Returns C(scaledobject) (a KEDA C(keda.sh/v1alpha1) ScaledObject, as the vllm_serve role applies it),
    C(bound) (C(min), C(max), C(placeable), C(capped_by)) and C(signal).
  - It scales the StatefulSet on how full its replicas are, read from Prometheus by two KEDA prometheus triggers, each
    an AverageValue target (the HPA wants the larger of the two counts) - the requests in flight (running + waiting)
    over C(max_num_seqs), so a busy fleet with no queue keeps its count and a queue adds replicas; and the KV-cache use
    over 0.85 a replica, so replicas whose caches are full add replicas too. docs/observability.md shows the HPA's
    formula and a replay of it.
  - A Prometheus that answers nothing (targets lost) leaves the count as it is (C(ignoreNullValues) false), instead of
    reading 0.
  - The most replicas is what the GPUs can hold - the replicas on a node now plus the room C(gpu_capacity) found for
    more - and at most C(max_replicas) when that is given (0 - no limit of the user's). A minimum the GPUs cannot hold,
    or below 1, is refused with the numbers (C(plugins/module_utils/serving/_autoscaling.py)).
options:
  _input:
    description:
      - C(name), C(namespace), C(labels), C(prometheus_url), C(max_num_seqs) (the serving plan's - the requests one
        replica runs at once), C(min_replicas), C(max_replicas), C(polling_interval), and C(capacity) (a
        C(gpu_capacity) result - C(current_replicas), C(pending), C(room)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Bound and render the ScaledObject
  ansible.builtin.set_fact:
    scaling: >-
      {{ {'name': 'vllm', 'namespace': 'ai-serving', 'labels': {}, 'prometheus_url': 'http://prometheus-operated.monitoring.svc:9090',
          'max_num_seqs': plan.max_num_seqs, 'min_replicas': 1, 'max_replicas': 0, 'polling_interval': 15,
          'capacity': capacity} | inferops.vllm.vllm_autoscaling }}
"""

RETURN = r"""
_value:
  description: C(scaledobject) (the full object), C(bound) (C(min), C(max), C(placeable), C(capped_by)) and C(signal)
    (what it scales on, in a sentence).
  type: dict
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving._autoscaling import (
    describe, replica_bound, scaled_object)


def vllm_autoscaling(params: dict) -> dict:
    capacity = params.get("capacity") or {}
    try:
        bound = replica_bound(int(params["min_replicas"]), int(params["max_replicas"]),
                              int(capacity.get("current_replicas") or 0), len(capacity.get("pending") or []),
                              int(capacity.get("room") or 0))
        seqs = params.get("max_num_seqs")
        seqs = int(seqs) if isinstance(seqs, (int, float, str)) and str(seqs).strip().isdigit() else seqs
        obj = scaled_object(params["name"], params["namespace"], dict(params.get("labels") or {}),
                            str(params.get("prometheus_url") or ""), seqs,
                            bound["min"], bound["max"], int(params["polling_interval"]))
    except ParameterError as exc:
        raise AnsibleFilterError(str(exc)) from None
    return {"scaledobject": obj, "bound": bound, "signal": describe(seqs)}


class FilterModule:
    def filters(self):
        return {"vllm_autoscaling": vllm_autoscaling}
