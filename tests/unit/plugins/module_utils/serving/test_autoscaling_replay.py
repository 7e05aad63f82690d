"""The replicas KEDA's HPA asks for, replayed on Prometheus series of a
fleet of four replicas (tests/data/autoscaling/fleet-series.json: saturated
with no queue, saturated by the KV cache, a queue building, the targets
lost, idle), through the ScaledObject the vllm_autoscaling filter renders.

The HPA below is kube-controller-manager's, written out from its source at
v1.35.4 and v1.37.2 (the same in both; pkg/controller/podautoscaler/):

- KEDA turns each trigger into an External metric; its value is the query's
  answer as a milli-quantity (KEDA v2.21.0 pkg/scalers/scaler.go
  GenerateMetricInMili, "%.3f"); an empty answer is 0, or an error with
  ignoreNullValues false (pkg/scalers/prometheus_scaler.go ExecutePromQuery);
- AverageValue target (replica_calculator.go GetExternalPerPodMetricReplicas):
  ratio = usage / (target x status.replicas); within the tolerance
  (|ratio - 1| <= 0.1, the --horizontal-pod-autoscaler-tolerance default,
  config/v1alpha1/defaults.go; Tolerances.isWithin) the count stays, else
  ceil(usage / target);
- several metrics: the largest proposal; a metric that errs is left out, and
  when every metric errs, or one errs and the rest would scale down, nothing
  changes (horizontal.go computeReplicasForMetrics);
- no behavior in the HPA (KEDA sets none unless advanced.horizontalPodAuto-
  scalerConfig.behavior is given, controllers/keda/hpa.go): the largest
  recommendation of the last 300 s (--horizontal-pod-autoscaler-downscale-
  stabilization default) wins (horizontal.go stabilizeRecommendation, with
  the initial recommendation = the current count), then the bounds and the
  scale-up limit max(2 x current, 4) (convertDesiredReplicasWithRules).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.filter.vllm_autoscaling import vllm_autoscaling

SERIES = json.loads((Path(__file__).resolve().parents[4] / "data" / "autoscaling" / "fleet-series.json").read_text())
TOLERANCE = 0.1
DOWNSCALE_WINDOW_S = 300
MIN, MAX = 1, 16


# -- Prometheus: the one query shape the ScaledObject uses -----------------------
def evaluate(query: str, series: list[dict]) -> float | None:
    """``sum(name{matchers})``, ``=`` and fully anchored ``=~`` matchers; None
    for an empty answer (no series matched)."""
    found = re.fullmatch(r"sum\(([a-zA-Z_:][a-zA-Z0-9_:]*)?\{(.*)\}\)", query)
    assert found, f"not a query this replay reads: {query}"
    matchers = [] if not found.group(1) else [("__name__", "=", found.group(1))]
    for part in re.findall(r'([a-zA-Z_]+)\s*(=~|=)\s*"([^"]*)"', found.group(2)):
        matchers.append(part)
    picked = [s["value"] for s in series if all(
        (s["labels"].get(k) == v) if op == "=" else re.fullmatch(v, s["labels"].get(k, "")) for k, op, v in matchers)]
    return float(sum(picked)) if picked else None


def milli(value: float) -> int:
    return round(float(f"{value:.3f}") * 1000)


# -- The HPA as kube-controller-manager computes it -------------------------------
class HPA:
    def __init__(self, scaled_object: dict, current: int):
        spec = scaled_object["spec"]
        self.min, self.max = spec["minReplicaCount"], spec["maxReplicaCount"]
        self.triggers = spec["triggers"]
        self.current = current
        self.recommendations: list[tuple[int, float]] = [(current, 0.0)]  # recordInitialRecommendation

    def proposal(self, trigger: dict, series: list[dict], status_replicas: int) -> int | None:
        assert trigger.get("metricType", "AverageValue") == "AverageValue"
        value = evaluate(trigger["metadata"]["query"], series)
        if value is None:
            if trigger["metadata"].get("ignoreNullValues", "true") == "false":
                return None  # the trigger errs: the HPA leaves this metric out
            value = 0.0
        usage, target = milli(value), milli(float(trigger["metadata"]["threshold"]))
        ratio = usage / (target * status_replicas)
        if 1 - TOLERANCE <= ratio <= 1 + TOLERANCE:
            return status_replicas
        return math.ceil(usage / target)

    def step(self, now: float, series: list[dict], status_replicas: int) -> int:
        proposals = [self.proposal(t, series, status_replicas) for t in self.triggers]
        valid = [p for p in proposals if p is not None]
        desired = 0
        for p in valid:
            if desired == 0 or p > desired:
                desired = p
        if not valid or (len(valid) < len(proposals) and desired < self.current):
            return self.current  # no rescale
        # stabilizeRecommendation: the largest of the window (the oldest sample is replaced, else appended).
        cutoff = now - DOWNSCALE_WINDOW_S
        stabilized, old = desired, None
        for i, (rec, at) in enumerate(self.recommendations):
            if at < cutoff:
                old = i
            elif rec > stabilized:
                stabilized = rec
        if old is None:
            self.recommendations.append((desired, now))
        else:
            self.recommendations[old] = (desired, now)
        # convertDesiredReplicasWithRules
        top = min(self.max, max(2 * self.current, 4))
        return self.min if stabilized < self.min else min(stabilized, top)


def replay(phase: dict, scaled_object: dict) -> list[int]:
    """The count the HPA sets after each sample, for a fleet recorded at four
    replicas (the HPA's count is what it decides; the recorded load stays)."""
    hpa = HPA(scaled_object, SERIES["replicas"])
    return [hpa.step((i + 1) * SERIES["interval_s"], series, SERIES["replicas"])
            for i, series in enumerate(phase["samples"])]


def rendered() -> dict:
    return vllm_autoscaling({
        "name": "vllm", "namespace": "ai-serving", "labels": {}, "prometheus_url": "http://prometheus:9090",
        "max_num_seqs": SERIES["max_num_seqs"], "min_replicas": MIN, "max_replicas": MAX, "polling_interval": 15,
        "capacity": {"current_replicas": 4, "pending": [], "room": 12}})["scaledobject"]


def phase(name: str) -> dict:
    return next(p for p in SERIES["phases"] if p["name"] == name)


@pytest.mark.parametrize("name", ["saturated, no queue", "saturated by the KV cache, no queue",
                                  "targets lost while busy"])
def test_a_busy_fleet_keeps_its_replicas(name):
    counts = replay(phase(name), rendered())
    # Seven minutes: past the 300 s in which the HPA would still hold a lower wish back.
    assert min(counts) >= SERIES["replicas"], f"{name}: the HPA sets {counts}"


def test_a_queue_adds_replicas():
    counts = replay(phase("queue building"), rendered())
    waiting = [sum(s["value"] for s in sample if s["labels"]["__name__"] == "vllm:num_requests_waiting")
               for sample in phase("queue building")["samples"]]
    # No more while the queue is within the HPA's tolerance (10 % of what the fleet runs); more once it is past.
    capacity = SERIES["replicas"] * SERIES["max_num_seqs"]
    for count, queued in zip(counts, waiting):
        if queued <= TOLERANCE * capacity:
            assert count == SERIES["replicas"], (counts, waiting)
        else:
            assert count == math.ceil((capacity + queued) / SERIES["max_num_seqs"]), (counts, waiting)
    assert counts[-1] > SERIES["replicas"]


def test_an_idle_fleet_goes_to_its_minimum_after_the_stabilization_window():
    counts = replay(phase("idle"), rendered())
    held = DOWNSCALE_WINDOW_S // SERIES["interval_s"]
    # The initial recommendation (4) holds for 300 s, then the minimum.
    assert counts[:held - 1] == [SERIES["replicas"]] * (held - 1), counts
    assert counts[held:] == [MIN] * (len(counts) - held), counts


def test_the_series_obey_vllms_scheduler():
    # A replica queues only when its slots or its KV cache are used up.
    for p in SERIES["phases"]:
        for sample in p["samples"]:
            by_pod: dict[str, dict] = {}
            for s in sample:
                by_pod.setdefault(s["labels"]["pod"], {})[s["labels"]["__name__"]] = s["value"]
            for gauges in by_pod.values():
                assert gauges["vllm:num_requests_running"] <= SERIES["max_num_seqs"]
                assert 0 <= gauges["vllm:kv_cache_usage_perc"] <= 1
                if gauges["vllm:num_requests_waiting"]:
                    assert gauges["vllm:num_requests_running"] == SERIES["max_num_seqs"] \
                        or gauges["vllm:kv_cache_usage_perc"] >= 0.9


# -- The same HPA on a real vLLM's gauges -------------------------------------------
# tests/data/autoscaling/vllm-0.20.0-h200-load.json: vLLM 0.20.0 on one H200
# (hack/device-vllm load: the dense-eager-tp1 case, --max-num-seqs 8), its
# /metrics read once a second while clients kept 0, 8 (every slot busy,
# nothing waiting), 24 (a queue) and again 0 requests in flight. Four
# replicas behind one Service see the same load, so each second's gauges
# stand for each of four pods. A phase's first 5 s (the switch from the one
# before) are left out; its steady seconds are read in turn, one HPA sync
# each 15 s, for seven minutes (past the 300 s window).
RECORDED = json.loads((Path(__file__).resolve().parents[4] / "data" / "autoscaling" /
                       "vllm-0.20.0-h200-load.json").read_text())
FLEET = 4
SYNC_S = 15


def as_fleet(samples: list[dict]) -> list[list[dict]]:
    """Each recorded second as the series of four pods that each saw it."""
    return [[{"labels": {"__name__": g, "namespace": "ai-serving", "job": "vllm", "pod": f"vllm-{i}"}, "value": s[g]}
             for i in range(FLEET) for g in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                                             "vllm:kv_cache_usage_perc")] for s in samples]


def recorded_fleet(name: str) -> list[list[dict]]:
    phase_samples = [s for s in RECORDED["samples"] if s["phase"] == name]
    start = phase_samples[0]["t"] + 5
    return as_fleet([s for s in phase_samples if s["t"] >= start])


def replay_on(steady: list[list[dict]], scaled_object: dict) -> list[int]:
    hpa = HPA(scaled_object, FLEET)
    return [hpa.step((i + 1) * SYNC_S, steady[i % len(steady)], FLEET) for i in range(7 * 60 // SYNC_S)]


def replay_recorded(name: str, scaled_object: dict) -> list[int]:
    return replay_on(recorded_fleet(name), scaled_object)


def recorded_rendered() -> dict:
    return vllm_autoscaling({
        "name": "vllm", "namespace": "ai-serving", "labels": {}, "prometheus_url": "http://prometheus:9090",
        "max_num_seqs": RECORDED["max_num_seqs"], "min_replicas": MIN, "max_replicas": MAX, "polling_interval": SYNC_S,
        "capacity": {"current_replicas": FLEET, "pending": [], "room": 12}})["scaledobject"]


# The trigger before this fix (the sum of waiting requests, 5 a replica), for the contrast.
WAITING_ONLY = {"spec": {"minReplicaCount": MIN, "maxReplicaCount": MAX, "triggers": [{
    "type": "prometheus", "metricType": "AverageValue",
    "metadata": {"query": 'sum(vllm:num_requests_waiting{namespace="ai-serving",job="vllm"})', "threshold": "5"}}]}}


def test_the_recording_is_what_its_phases_say():
    steady = {name: recorded_fleet(name)[0][:3] for name in ("saturated", "queue")}
    seqs = RECORDED["max_num_seqs"]
    assert [g["value"] for g in steady["saturated"][:2]] == [seqs, 0]  # every slot busy, none waiting
    assert steady["queue"][0]["value"] == seqs and steady["queue"][1]["value"] > 0
    assert RECORDED["vllm"] == "0.20.0" and not RECORDED["errors"]


def test_a_real_saturated_fleet_keeps_its_replicas_and_the_old_trigger_did_not():
    assert replay_recorded("saturated", recorded_rendered()) == [FLEET] * 28
    old = replay_recorded("saturated", WAITING_ONLY)
    assert old[-1] == MIN, old  # what the issue saw: busy replicas sent to the minimum


def test_a_real_queue_adds_replicas():
    counts = replay_recorded("queue", recorded_rendered())
    # 8 running + 16 waiting a replica over 8 a replica: 12 wanted, at most max(2 x 4, 4) = 8 in one step.
    assert counts == [2 * FLEET] * len(counts), counts


def test_a_real_idle_fleet_goes_to_its_minimum_after_the_window():
    phase_samples = [s for s in RECORDED["samples"] if s["phase"] == "drain"]
    assert phase_samples[-1]["vllm:num_requests_running"] == 0
    steady_idle = [s for s in phase_samples if not s["vllm:num_requests_running"] and not s["vllm:num_requests_waiting"]]
    assert steady_idle, "the recording ends busy"
    counts = replay_on(as_fleet(steady_idle), recorded_rendered())
    held = DOWNSCALE_WINDOW_S // SYNC_S
    assert counts[:held - 1] == [FLEET] * (held - 1) and counts[held:] == [MIN] * (28 - held), counts
