"""Benchmark: what the serving plan costs a run.

Two numbers, both from the same run:
- ``plan()`` in-process, the median of many calls, for Qwen3-235B-A22B on
  8 GPUs of 80 GiB (the largest config the unit tests carry: 94 layers,
  128 experts). No baseline: the point is that it is far below anything a
  user would notice.
- the ``inferops.vllm.serving_plan`` task in a playbook vs the cheapest
  module task there is (``ansible.builtin.ping``) in the same playbook,
  alternating: what planning adds to a task's own cost of starting a module.
No cluster is needed: the plan reads only the model's config."""

from __future__ import annotations

import json
import time

from _common import ROOT, Row, median, playbook, task_seconds, write_playbook

CONFIG = ROOT / "tests" / "unit" / "plugins" / "module_utils" / "serving" / "model_configs" \
    / "qwen3-235b-a22b-instruct-2507.json"
H100_MIB = 81559


def run(quick: bool) -> list[Row]:
    from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import plan

    config = json.loads(CONFIG.read_text())
    params = {"model_config": config, "gpu_memory_mib": H100_MIB, "gpus_per_node": 8}
    calls = 20 if quick else 500
    plan(params)  # the first call imports the flag catalog
    times = []
    for _call in range(calls):
        start = time.perf_counter()
        result = plan(params)
        times.append(time.perf_counter() - start)
    if result["problems"]:
        raise RuntimeError(f"the benchmark's plan has problems: {result['problems']}")

    rounds = 3 if quick else 10
    tasks = []
    for i in range(rounds):
        tasks.append(f"    - name: ping {i}\n      ansible.builtin.ping:\n")
        tasks.append(f"    - name: plan {i}\n      inferops.vllm.serving_plan:\n"
                     f"        model_config: \"{{{{ lookup('ansible.builtin.file', '{CONFIG}') | from_json }}}}\"\n"
                     f"        gpu_memory_mib: {H100_MIB}\n        gpus_per_node: 8\n")
    book = write_playbook("- hosts: localhost\n  gather_facts: false\n  tasks:\n" + "".join(tasks))
    result = playbook(book, None)[1]
    by_name = {t["task"]["name"]: task_seconds(t) for t in result.tasks()}
    plan_task = [by_name[f"plan {i}"] for i in range(rounds)]
    ping_task = [by_name[f"ping {i}"] for i in range(rounds)]
    return [
        Row("serving_plan", f"plan() in-process, Qwen3-235B-A22B on 8 GPUs ({calls} calls)", "s", median(times),
            ours_label="median", note=f"max {max(times) * 1000:.1f} ms", samples={"plan_s": times}),
        Row("serving_plan", f"a serving_plan task vs a ping task ({rounds} of each)", "s", median(plan_task),
            median(ping_task), ours_label="serving_plan", baseline_label="ansible.builtin.ping",
            note="ratio below 1: planning's cost over a module task's floor",
            samples={"serving_plan_s": plan_task, "ping_s": ping_task}),
    ]
