"""Benchmark: site.yml on the sandbox (`make sandbox`'s shape: 4 GPU nodes),
the first run and the no-op rerun, per stage.

The rerun is what an operator pays each time they run site.yml to make
sure the cluster is as the inventory says: it must report changed=0 and
still check everything (rollout, claim, download, registration, the
endpoint). The rows compare the rerun with the first run of the same
sandbox. The rerun is run three times and its median taken (the first
run, once); --quick reruns once."""

from __future__ import annotations

from _common import Row, median, sandbox
from _site import STAGES, run_site


def run(quick: bool) -> list[Row]:
    with sandbox("site-stages", gpu_nodes=4, cpu_nodes=1) as box:
        first = run_site(box)
        reruns = [run_site(box) for _rerun in range(1 if quick else 3)]
    for rerun in reruns:
        if rerun["changed"]:
            raise RuntimeError(f"a rerun of site.yml changed {rerun['changed']} task(s): it must change nothing")
    rows = [Row("site_stages", f"{stage}", "s", median([r["stages_s"][stage] for r in reruns]),
                first["stages_s"][stage], ours_label="no-op rerun", baseline_label="first run")
            for stage in STAGES]
    walls = [r["wall_s"] for r in reruns]
    rows.append(Row("site_stages", "site.yml, wall time", "s", median(walls), first["wall_s"],
                    ours_label=f"no-op rerun, median of {len(reruns)}", baseline_label="first run",
                    note=f"reruns {', '.join(f'{w:.1f}' for w in walls)} s; tasks run: {reruns[0]['tasks_run']} "
                         f"(first run {first['tasks_run']})",
                    samples={"first": first, "reruns": reruns}))
    return rows
