# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A KEDA ScaledObject that scales a vLLM StatefulSet on the requests
waiting in its engines, bounded by the replicas the cluster's GPUs can
hold. Plain dicts and arithmetic; no API calls here.

KEDA v2.21.0 (github.com/kedacore/keda/v2): the prometheus trigger reads
``serverAddress``, ``query`` and ``threshold`` from its metadata
(pkg/scalers/prometheus_scaler.go); a query must return one element (more
than one is an error there: hence ``sum()``); with no metricType the HPA
target is an AverageValue (pkg/scalers/scaler.go GetMetricTargetType), so
the replicas wanted are the waiting requests over ``threshold``. The CRD
(config/crd/bases/keda.sh_scaledobjects.yaml) has minReplicaCount >= 0,
maxReplicaCount >= 1 and min <= max."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving._monitoring import selector

# vLLM's gauge of requests queued in its scheduler (vllm/v1/metrics/loggers.py at v0.33.0).
WAITING_SERIES = "vllm:num_requests_waiting"


def waiting_query(name: str, namespace: str) -> str:
    """The waiting requests of the whole StatefulSet, one number."""
    return f"sum({WAITING_SERIES}{{{selector(namespace, name)}}})"


def replica_bound(min_replicas: int, max_replicas: int, current: int, pending: int, room: int) -> dict:
    """The most replicas that can be placed: those on a node now
    (``current`` less the ``pending`` ones) plus the ``room`` the GPUs have
    for more (gpu_capacity's numbers), at most ``max_replicas`` when given
    (0: no limit of the user's). Refused below ``min_replicas``."""
    if min_replicas < 1:
        raise ParameterError(f"vllm_serve_autoscaling_min_replicas: {min_replicas}; give 1 or more: the waiting "
                             "requests are read from the replicas themselves, so with none there is nothing to "
                             "scale up from")
    if max_replicas < 0:
        raise ParameterError(f"vllm_serve_autoscaling_max_replicas: {max_replicas} is below 0; give the most "
                             "replicas wanted, or 0 for as many as the GPUs hold")
    if max_replicas and max_replicas < min_replicas:
        raise ParameterError(f"vllm_serve_autoscaling_max_replicas {max_replicas} is below "
                             f"vllm_serve_autoscaling_min_replicas {min_replicas}")
    placeable = max(current - pending, 0) + room
    bound = min(placeable, max_replicas) if max_replicas else placeable
    if bound < min_replicas:
        raise ParameterError(
            f"vllm_serve_autoscaling_min_replicas {min_replicas} cannot be placed: the GPUs hold {placeable} "
            f"replica(s) of this pod ({max(current - pending, 0)} running, room for {room} more); lower it, or free "
            "or add GPUs")
    return {"min": min_replicas, "max": bound, "placeable": placeable,
            "capped_by": "max_replicas" if max_replicas and max_replicas <= placeable else "the GPUs"}


def scaled_object(name: str, namespace: str, labels: dict, server_address: str, waiting_per_replica: float,
                  min_replicas: int, max_replicas: int, polling_interval: int) -> dict:
    if not server_address or "://" not in server_address:
        raise ParameterError(f"vllm_serve_autoscaling_prometheus_url: {server_address!r}; give the Prometheus that "
                             "scrapes the pods, e.g. http://prometheus-operated.monitoring.svc:9090")
    if waiting_per_replica <= 0:
        raise ParameterError(f"vllm_serve_autoscaling_waiting_per_replica: {waiting_per_replica}; give the waiting "
                             "requests one replica may have before another is added (more than 0)")
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name},
            "minReplicaCount": int(min_replicas), "maxReplicaCount": int(max_replicas),
            # No cooldownPeriod: KEDA applies it only to scaling to zero (the minimum here is 1 or more).
            "pollingInterval": int(polling_interval),
            "triggers": [{"type": "prometheus", "metadata": {
                "serverAddress": server_address, "query": waiting_query(name, namespace),
                # KEDA reads metadata as strings.
                "threshold": f"{waiting_per_replica:g}"}}]}}
