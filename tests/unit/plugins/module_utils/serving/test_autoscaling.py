"""The ScaledObject and its bound: never more replicas than the GPUs hold,
KEDA v2.21.0's prometheus triggers as its scaler reads them, and input
refused with the parameter named. What the HPA does with them:
test_autoscaling_replay.py."""

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
        auto.scaled_object("vllm", "ai", {}, "", 256, 1, 4, 15)
    for bad in (0, None, "many", 2.5):
        with pytest.raises(ParameterError, match=r"max_num_seqs: .*the serving plan's max_num_seqs"):
            auto.scaled_object("vllm", "ai", {}, "http://prom:9090", bad, 1, 4, 15)
    with pytest.raises(ParameterError, match="kv_cache_target: 1.5"):
        auto.scaled_object("vllm", "ai", {}, "http://prom:9090", 256, 1, 4, 15, kv_cache_target=1.5)


def test_the_scaled_object_as_keda_reads_it():
    obj = auto.scaled_object("vllm", "ai", {"app": "x"}, "http://prometheus-operated.monitoring.svc:9090", 256, 1,
                             4, 15)
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledObject"
    spec = obj["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "vllm"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    in_flight, kv = spec["triggers"]
    assert {t["type"] for t in spec["triggers"]} == {"prometheus"}
    assert {t["metricType"] for t in spec["triggers"]} == {"AverageValue"}
    # One number each (KEDA's prometheus scaler refuses a result of more than one element), the StatefulSet's own
    # series; an empty answer is an error, not 0.
    assert in_flight["metadata"] == {
        "serverAddress": "http://prometheus-operated.monitoring.svc:9090", "ignoreNullValues": "false",
        "query": 'sum({__name__=~"vllm:num_requests_running|vllm:num_requests_waiting", namespace="ai", job="vllm"})',
        "threshold": "256"}
    assert kv["metadata"]["query"] == 'sum(vllm:kv_cache_usage_perc{namespace="ai", job="vllm"})'
    assert kv["metadata"]["threshold"] == "0.85" and kv["metadata"]["ignoreNullValues"] == "false"
    assert all(isinstance(v, str) for t in spec["triggers"] for v in t["metadata"].values())


def test_the_queries_read_series_a_real_vllm_exports():
    # The /metrics recorded from a real vLLM on the GPU machine: gauges.
    for series in (auto.RUNNING_SERIES, auto.WAITING_SERIES, auto.KV_CACHE_SERIES):
        assert RECORDED["vllm_metric_types"][series] == "gauge"


@pytest.mark.parametrize("annotations, paused", [
    ({}, False),
    ({"autoscaling.keda.sh/paused": "true"}, True),
    ({"autoscaling.keda.sh/paused": "false"}, False),
    ({"autoscaling.keda.sh/paused": "0"}, False),
    # KEDA v2.21.0 getBoolAnnotation: a value strconv.ParseBool refuses counts as true.
    ({"autoscaling.keda.sh/paused": "yes"}, True),
    # paused-replicas pauses whatever its value.
    ({"autoscaling.keda.sh/paused-replicas": "2"}, True),
    ({"autoscaling.keda.sh/paused": "false", "autoscaling.keda.sh/paused-replicas": "0"}, True),
])
def test_paused_as_keda_reads_its_annotations(annotations, paused):
    assert auto.paused_by_keda({"metadata": {"annotations": annotations}}) is paused


def test_which_workload_a_scaled_object_scales():
    obj = {"spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "vllm"}}}
    assert auto.scales(obj, "StatefulSet", "vllm")
    assert not auto.scales(obj, "StatefulSet", "other")
    # KEDA's default kind is Deployment.
    assert not auto.scales({"spec": {"scaleTargetRef": {"name": "vllm"}}}, "StatefulSet", "vllm")
