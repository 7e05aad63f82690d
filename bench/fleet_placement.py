"""Benchmark: the fleet placement (``_placement.place_fleet``) in-process.

A synthetic fleet (tests/support/fleet.py): 500 GPU nodes of 8 GPUs (H100s
and A100s, some tainted or cordoned, foreign pods with and without HAMi's
allocation annotation) and 50 models (whole-GPU TP 1/2/4/8 and slices,
1-20 replicas each). Two cases: the fleet as it is (it fits), and with one
model of 400 x 8 GPUs added (it does not: the plan then also searches the
suggestions, each a placement of the fleet again).

Baseline: what the collection did before, per model: ``_capacity.check``
(the gpu_capacity module's logic), once for each model of the fleet, on the
same objects. It answers less (each model alone, none of the others' new
replicas counted, no placement of one pod after another), so a ratio above 1
means the whole-fleet answer costs less than the per-model checks did. No
cluster is needed. The median of several runs, ours and the baseline
alternating."""

from __future__ import annotations

import time

from _common import Row, median
from tests.support.fleet import big_fleet, gpu_container, model_template


def _time(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def run(quick: bool) -> list[Row]:
    from ansible_collections.inferops.vllm.plugins.module_utils.gpu._capacity import check
    from ansible_collections.inferops.vllm.plugins.module_utils.gpu._placement import place_fleet

    size = {"nodes": 100, "models": 10} if quick else {"nodes": 500, "models": 50}
    rounds = 2 if quick else 5
    workloads, nodes, pods = big_fleet(**size)
    huge = {"name": "huge", "namespace": "ai", "replicas": 80 * size["nodes"] // 100,
            "template": model_template(gpu_container(8))}
    rows = []
    for case, fleet, fits in (("fits", workloads, True), ("one model too many", workloads + [huge], False)):
        result = place_fleet(fleet, nodes, pods)
        if result["fits"] is not fits or (not fits and not result["suggestions"]):
            raise RuntimeError(f"{case}: the plan says fits={result['fits']} with {len(result['suggestions'])} "
                               "suggestions; the benchmark's fleet is built to say otherwise")
        ours, base = [], []
        for _round in range(rounds):
            ours.append(_time(lambda fleet=fleet: place_fleet(fleet, nodes, pods)))
            base.append(_time(lambda fleet=fleet: [check(w["template"], nodes, pods, w["replicas"], 0, w["name"],
                                                         w["namespace"]) for w in fleet]))
        pods_placed = len(result["placements"])
        rows.append(Row("fleet_placement", f"{size['nodes']} nodes x {len(fleet)} models, {case}", "s",
                        median(ours), median(base), ours_label="place_fleet",
                        baseline_label="_capacity.check per model",
                        note=f"{pods_placed} pods placed, {len(result['unplaced'])} left out, "
                             f"{len(result['suggestions'])} suggestions",
                        samples={"place_fleet_s": ours, "check_per_model_s": base}))
    return rows
