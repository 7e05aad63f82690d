# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A KEDA ScaledObject that scales a vLLM StatefulSet on how full its
replicas are, bounded by the replicas the cluster's GPUs can hold. Plain
dicts and arithmetic; no API calls here. docs/observability.md says why.

The signal: two prometheus triggers, each an ``AverageValue`` target, so
the HPA KEDA makes wants ``ceil(sum / threshold)`` replicas for each and
takes the larger (kube-controller-manager v1.35.4 and v1.37.2,
pkg/controller/podautoscaler/replica_calculator.go
GetExternalPerPodMetricReplicas; horizontal.go computeReplicasForMetrics):

- requests in flight (running + waiting) against what one replica runs at
  once, the plan's ``--max-num-seqs``: a busy fleet with no queue holds its
  count (in flight = replicas x max_num_seqs), a queue adds replicas;
- KV-cache usage (a fraction, 1 = full) against ``KV_CACHE_TARGET``: a
  replica whose cache is full runs fewer requests than max_num_seqs, and
  that alone would read as idle.

The waiting requests alone (what this used to scale on) read 0 for a fleet
that is saturated with an empty queue, which the HPA turns into its minimum.

KEDA v2.21.0 (github.com/kedacore/keda/v2): the prometheus trigger reads
``serverAddress``, ``query``, ``threshold`` and ``ignoreNullValues`` from its
metadata; a query must return one element (hence ``sum()``); an empty answer
is 0 unless ``ignoreNullValues`` is false, then an error
(pkg/scalers/prometheus_scaler.go). ``metricType`` (ScaleTriggers,
apis/keda/v1alpha1/scaletriggers_types.go) is AverageValue when left out
(pkg/scalers/scaler.go GetMetricTargetType). The CRD
(config/crd/bases/keda.sh_scaledobjects.yaml) has minReplicaCount >= 0,
maxReplicaCount >= 1 and min <= max."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving._monitoring import selector

# vLLM's gauges (vllm/v1/metrics/loggers.py at v0.33.0): requests the
# scheduler runs, requests queued in it, and the KV cache in use ("1 means
# 100 percent usage").
RUNNING_SERIES = "vllm:num_requests_running"
WAITING_SERIES = "vllm:num_requests_waiting"
KV_CACHE_SERIES = "vllm:kv_cache_usage_perc"
# The KV-cache use one replica is kept at. Below 1 on purpose: a full cache
# is where vLLM queues and preempts, and the HPA's tolerance (0.1) hides any
# ratio under 1.1, so a fleet whose caches are full must read above that.
KV_CACHE_TARGET = 0.85


def in_flight_query(name: str, namespace: str) -> str:
    """The requests running and waiting in the whole StatefulSet, one number
    (one selector for both gauges: no vector matching to lose a pod)."""
    return (f'sum({{__name__=~"{RUNNING_SERIES}|{WAITING_SERIES}", {selector(namespace, name)}}})')


def kv_cache_query(name: str, namespace: str) -> str:
    """The KV-cache use of every replica added up (0 to the replica count)."""
    return f"sum({KV_CACHE_SERIES}{{{selector(namespace, name)}}})"


def replica_bound(min_replicas: int, max_replicas: int, current: int, pending: int, room: int) -> dict:
    """The most replicas that can be placed: those on a node now
    (``current`` less the ``pending`` ones) plus the ``room`` the GPUs have
    for more (gpu_capacity's numbers), at most ``max_replicas`` when given
    (0: no limit of the user's). Refused below ``min_replicas``."""
    if min_replicas < 1:
        raise ParameterError(f"vllm_serve_autoscaling_min_replicas: {min_replicas}; give 1 or more: the load is "
                             "read from the replicas themselves, so with none there is nothing to scale up from")
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


def _trigger(server_address: str, query: str, threshold: float) -> dict:
    return {"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": server_address, "query": query,
        # KEDA reads metadata as strings.
        "threshold": f"{threshold:g}",
        # A Prometheus that lost the pods answers nothing: an error holds the
        # count (the HPA does not scale on a metric it cannot read), where
        # KEDA's default would read 0 and scale a busy fleet down.
        "ignoreNullValues": "false"}}


def scaled_object(name: str, namespace: str, labels: dict, server_address: str, max_num_seqs: int,
                  min_replicas: int, max_replicas: int, polling_interval: int,
                  kv_cache_target: float = KV_CACHE_TARGET) -> dict:
    if not server_address or "://" not in server_address:
        raise ParameterError(f"vllm_serve_autoscaling_prometheus_url: {server_address!r}; give the Prometheus that "
                             "scrapes the pods, e.g. http://prometheus-operated.monitoring.svc:9090")
    if not isinstance(max_num_seqs, int) or isinstance(max_num_seqs, bool) or max_num_seqs < 1:
        raise ParameterError(f"max_num_seqs: {max_num_seqs!r}; give the requests one replica runs at once (the "
                             "serving plan's max_num_seqs, vllm_serve_plan.max_num_seqs), 1 or more")
    if not 0 < kv_cache_target <= 1:
        raise ParameterError(f"kv_cache_target: {kv_cache_target}; give the KV-cache use (a fraction, above 0 and at "
                             "most 1) one replica is kept at")
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name},
            "minReplicaCount": int(min_replicas), "maxReplicaCount": int(max_replicas),
            # No cooldownPeriod: KEDA applies it only to scaling to zero (the minimum here is 1 or more).
            "pollingInterval": int(polling_interval),
            "triggers": [_trigger(server_address, in_flight_query(name, namespace), max_num_seqs),
                         _trigger(server_address, kv_cache_query(name, namespace), kv_cache_target)]}}


def describe(max_num_seqs: int, kv_cache_target: float = KV_CACHE_TARGET) -> str:
    """The signal, in a sentence for the role's report."""
    return (f"one replica for every {max_num_seqs} requests in flight (running + waiting; the plan's max_num_seqs), "
            f"and one for every {kv_cache_target:g} of KV cache in use, whichever wants more")


# KEDA v2.21.0's pause (apis/keda/v1alpha1/scaledobject_types.go,
# controllers/keda/scaledobject_controller.go reconcileScaledObject and
# handlePause): "autoscaling.keda.sh/paused" (true, or any value that is not
# a boolean) stops the scale loop and deletes the HPA, leaving the count as
# it is; "autoscaling.keda.sh/paused-replicas: N" does the same after setting
# the count to N. A gated rollout wants the count left alone: the first.
# Removing it makes KEDA create the HPA again.
PAUSED_ANNOTATION = "autoscaling.keda.sh/paused"
PAUSED_REPLICAS_ANNOTATION = "autoscaling.keda.sh/paused-replicas"
# Ours, next to KEDA's: this pause is a rollout's (so that only it is lifted,
# also by a later run when this one was cut short).
PAUSED_BY_ROLLOUT_ANNOTATION = "inferops.io/paused-for-rollout"


def _truthy(value: str) -> bool:
    # KEDA's getBoolAnnotation: strconv.ParseBool, and a value that does not parse counts as true.
    return str(value) not in ("0", "f", "F", "false", "FALSE", "False")


def paused_by_keda(obj: dict) -> bool:
    """Whether KEDA treats this ScaledObject as paused (NeedToBePausedByAnnotation)."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return PAUSED_REPLICAS_ANNOTATION in annotations or (
        PAUSED_ANNOTATION in annotations and _truthy(annotations[PAUSED_ANNOTATION]))


def scales(obj: dict, kind: str, name: str) -> bool:
    """Whether a ScaledObject's scaleTargetRef is this workload (KEDA's default kind is Deployment)."""
    ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    return ref.get("name") == name and (ref.get("kind") or "Deployment") == kind \
        and (ref.get("apiVersion") or "apps/v1") == "apps/v1"
