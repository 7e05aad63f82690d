"""Benchmark: site.yml on the sandbox (`make sandbox`'s shape: 4 GPU nodes),
the first run and the no-op rerun, per stage.

The rerun is what an operator pays each time they run site.yml to make
sure the cluster is as the inventory says: it must report changed=0 and
still check everything (rollout, claim, download, registration, the
endpoint). The rows compare the rerun with the first run of the same
sandbox; --quick runs the same (the sandbox's size is already the default)."""

from __future__ import annotations

from _common import Row, sandbox
from _site import STAGES, run_site


def run(quick: bool) -> list[Row]:
    with sandbox("site-stages", gpu_nodes=4, cpu_nodes=1) as box:
        first = run_site(box)
        rerun = run_site(box)
    if rerun["changed"]:
        raise RuntimeError(f"the rerun of site.yml changed {rerun['changed']} task(s): it must change nothing")
    rows = [Row("site_stages", f"{stage}", "s", rerun["stages_s"][stage], first["stages_s"][stage],
                ours_label="no-op rerun", baseline_label="first run") for stage in STAGES]
    rows.append(Row("site_stages", "site.yml, wall time", "s", rerun["wall_s"], first["wall_s"],
                    ours_label="no-op rerun", baseline_label="first run",
                    note=f"tasks run: {rerun['tasks_run']} (first run {first['tasks_run']})",
                    samples={"first": first, "rerun": rerun}))
    return rows
