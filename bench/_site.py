"""site.yml on a benchmark's sandbox, timed per stage.

A stage is what site.yml imports (Preflight, GPU nodes, HAMi, Model, Serve,
Verify); its time is the sum of its tasks' durations from the
ansible.posix.json callback, the same numbers a profiling callback prints."""

from __future__ import annotations

from _common import ROOT, Sandbox, iso_time, playbook

STAGES = ("Preflight", "GPU nodes", "HAMi", "Model", "Serve", "Verify")


def run_site(box: Sandbox, root=None, env: dict | None = None) -> dict:
    """One site.yml run: wall time, time per stage, tasks run, changed count.
    ``root``: another checkout's site.yml and inventory (a baseline), found
    through ``env``'s ANSIBLE_COLLECTIONS_PATH."""
    root = root or ROOT
    seconds, result = playbook(root / "site.yml", box, inventory=root / "inventories" / "sandbox", env=env)
    stages = dict.fromkeys(STAGES, 0.0)
    tasks = 0
    for play in result.data["plays"]:
        stage = play["play"]["name"].split(" | ")[0]
        for task in play["tasks"]:
            duration = task["task"]["duration"]
            stages[stage] += iso_time(duration["end"]) - iso_time(duration["start"])
            # Skipped tasks cost next to nothing; count those that ran.
            tasks += any(not h.get("skipped") for h in task["hosts"].values())
    return {"wall_s": seconds, "stages_s": stages, "tasks_run": tasks, "changed": result.changed(),
            "task_s": sum(stages.values())}
