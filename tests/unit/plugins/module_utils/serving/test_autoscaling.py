"""The ScaledObject and its bound: never more replicas than the GPUs hold,
KEDA v2.21.0's prometheus trigger as its scaler reads it, and input refused
with the parameter named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _autoscaling as auto

RECORDED = json.loads((Path(__file__).resolve().parents[4] / "data" / "real-vllm" / "http" / "metrics.json").read_text())


def test_the_most_replicas_is_what_the_gpus_hold():
    # 2 running, room for 3 more: 5, whatever the user's larger maximum.
    assert auto.replica_bound(1, 0, 2, 0, 3) == {"min": 1, "max": 5, "placeable": 5, "capped_by": "the GPUs"}
    assert auto.replica_bound(1, 8, 2, 0, 3)["max"] == 5
    # A smaller maximum of the user's is kept.
    assert auto.replica_bound(1, 4, 2, 0, 3) == {"min": 1, "max": 4, "placeable": 5, "capped_by": "max_replicas"}
    # A replica still Pending holds no GPU yet: it is not counted as placed (its need is in the room's count).
    assert auto.replica_bound(1, 0, 3, 1, 0)["max"] == 2
    # Nothing running yet: the room alone.
    assert auto.replica_bound(2, 0, 0, 0, 6)["max"] == 6


def test_bad_bounds_are_refused_naming_the_parameter():
    with pytest.raises(ParameterError, match="vllm_serve_autoscaling_min_replicas: 0; give 1 or more"):
        auto.replica_bound(0, 0, 1, 0, 4)
    with pytest.raises(ParameterError, match="vllm_serve_autoscaling_max_replicas 2 is below "
                                             "vllm_serve_autoscaling_min_replicas 3"):
        auto.replica_bound(3, 2, 1, 0, 4)
    with pytest.raises(ParameterError, match=r"vllm_serve_autoscaling_min_replicas 4 cannot be placed: the GPUs hold 3 "
                                             r"replica\(s\) of this pod \(1 running, room for 2 more\)"):
        auto.replica_bound(4, 0, 1, 0, 2)
    with pytest.raises(ParameterError, match="vllm_serve_autoscaling_prometheus_url: ''"):
        auto.scaled_object("vllm", "ai", {}, "", 5, 1, 4, 15)
    with pytest.raises(ParameterError, match="vllm_serve_autoscaling_waiting_per_replica: 0.0"):
        auto.scaled_object("vllm", "ai", {}, "http://prom:9090", 0.0, 1, 4, 15)


def test_the_scaled_object_as_keda_reads_it():
    obj = auto.scaled_object("vllm", "ai", {"app": "x"}, "http://prometheus-operated.monitoring.svc:9090", 5, 1, 4,
                             15)
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledObject"
    spec = obj["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "vllm"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    # One number (KEDA's prometheus scaler refuses a result of more than one element), the StatefulSet's own series.
    assert trigger["metadata"]["query"] == 'sum(vllm:num_requests_waiting{namespace="ai", job="vllm"})'
    assert trigger["metadata"]["threshold"] == "5" and isinstance(trigger["metadata"]["threshold"], str)
    assert auto.scaled_object("v", "ai", {}, "http://p:9090", 2.5, 1, 2, 15)["spec"]["triggers"][0][
        "metadata"]["threshold"] == "2.5"


def test_the_query_reads_a_series_a_real_vllm_exports():
    # The /metrics recorded from a real vLLM on the GPU machine: a gauge.
    assert RECORDED["vllm_metric_types"][auto.WAITING_SERIES] == "gauge"
