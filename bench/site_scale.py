"""Benchmark: site.yml as the cluster grows: 4, 100 and 500 simulated GPU
nodes (--quick: 4 and 20), each on a fresh sandbox, the first run and the
no-op rerun.

The baseline of each size is the 4-node sandbox in the same run: the ratio
(4-node time / N-node time) says how much slower a run gets with N nodes.
What grows with nodes: labelling them, HAMi's device plugin DaemonSet (a pod
a node, waited for until every one is Ready) and its registration check.
The sandbox sizes its node leases for the node count (docs/sandbox.md), so
that a loaded machine does not mark healthy nodes NotReady."""

from __future__ import annotations

from _common import Row, sandbox
from _site import run_site


def run(quick: bool) -> list[Row]:
    sizes = (4, 20) if quick else (4, 100, 500)
    found = {}
    for size in sizes:
        with sandbox(f"site-{size}", gpu_nodes=size, cpu_nodes=1) as box:
            first = run_site(box)
            rerun = run_site(box)
        if rerun["changed"]:
            raise RuntimeError(f"at {size} nodes the rerun of site.yml changed {rerun['changed']} task(s)")
        found[size] = (first, rerun)
    base = found[sizes[0]]
    rows = []
    for size in sizes:
        for i, case in enumerate(("first run", "no-op rerun")):
            run_ = found[size][i]
            slowest = max(run_["stages_s"], key=run_["stages_s"].get)
            rows.append(Row("site_scale", f"{size} GPU nodes, {case}", "s", run_["wall_s"], base[i]["wall_s"],
                            ours_label=f"{size} nodes", baseline_label=f"{sizes[0]} nodes",
                            note=f"slowest stage {slowest} {run_['stages_s'][slowest]:.1f} s",
                            samples={"stages_s": run_["stages_s"], "tasks_run": run_["tasks_run"]}))
    return rows
