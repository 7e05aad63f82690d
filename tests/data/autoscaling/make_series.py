"""Writes fleet-series.json: what Prometheus holds for four vLLM replicas in
five situations, sampled every 15 s (KEDA's default polling, the HPA's
default sync period). Constructed, not recorded from a live fleet: each
sample obeys vLLM's scheduler (running <= max_num_seqs; requests wait only
when max_num_seqs or the KV cache is used up; kv_cache_usage_perc is a
fraction, 1 = full; vllm/v1/metrics/loggers.py at v0.33.0) with a
deterministic jitter. Run it to write the file again:
python tests/data/autoscaling/make_series.py"""

from __future__ import annotations

import json
import random
from pathlib import Path

PODS = [f"vllm-{i}" for i in range(4)]
MAX_NUM_SEQS = 256
INTERVAL_S = 15


def sample(rng, running, waiting, kv):
    series = []
    for pod in PODS:
        labels = {"namespace": "ai-serving", "job": "vllm", "pod": pod, "model_name": "qwen3", "engine": "0"}
        r, w, k = running(rng), waiting(rng), kv(rng)
        series += [{"labels": {"__name__": "vllm:num_requests_running", **labels}, "value": r},
                   {"labels": {"__name__": "vllm:num_requests_waiting", **labels}, "value": w},
                   {"labels": {"__name__": "vllm:kv_cache_usage_perc", **labels}, "value": round(k, 4)}]
    return series


def growing(step: int):
    """About 6 more requests queued on each replica every 15 s."""
    return lambda r: step * 6 + r.randint(0, 3)


def main():
    rng = random.Random(23)
    phases = []
    # Every slot busy, nothing queued: each replica runs max_num_seqs (a
    # request finishing now and then leaves a slot free for a moment).
    phases.append({"name": "saturated, no queue", "samples": [
        sample(rng, lambda r: MAX_NUM_SEQS - r.choice([0, 0, 0, 1, 2]), lambda r: 0, lambda r: r.uniform(0.55, 0.65))
        for n in range(28)]})
    # Long requests: the KV cache is full long before max_num_seqs.
    phases.append({"name": "saturated by the KV cache, no queue", "samples": [
        sample(rng, lambda r: r.randint(36, 44), lambda r: 0, lambda r: r.uniform(0.95, 0.99)) for n in range(28)]})
    # More arrives than the fleet runs: the queue grows.
    phases.append({"name": "queue building", "samples": [
        sample(rng, lambda r: MAX_NUM_SEQS, growing(i), lambda r: r.uniform(0.70, 0.80)) for i in range(12)]})
    # Prometheus lost the pods' targets (a restart, a relabel) while they were busy.
    phases.append({"name": "targets lost while busy", "samples": [[] for n in range(28)]})
    phases.append({"name": "idle", "samples": [
        sample(rng, lambda r: 0, lambda r: 0, lambda r: 0.0) for n in range(28)]})
    out = {"interval_s": INTERVAL_S, "replicas": len(PODS), "max_num_seqs": MAX_NUM_SEQS, "phases": phases}
    (Path(__file__).with_name("fleet-series.json")).write_text(json.dumps(out, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
