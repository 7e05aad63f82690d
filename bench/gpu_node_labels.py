"""Benchmark: label and taint N simulated GPU nodes with one
``inferops.vllm.gpu_node`` task vs what a user would otherwise write, a
``kubernetes.core.k8s`` task (``state: patched``) looping over the nodes,
then the no-op rerun of each.

Both select the same nodes by the same label, both write a label and a
taint whose values are new for every node (the runs alternate values, so
the second tool does not find the first one's work done), and each no-op
rerun asks for what is already there. The time is the playbook's wall time,
as the user waits for it: the baseline's includes the ``k8s_info`` task
that lists the nodes, ours selects them itself. Sizes: 200 and 1,000 GPU
nodes (--quick: 20)."""

from __future__ import annotations

import time

from _common import Row, playbook, sandbox, write_playbook

SELECTOR = "nvidia.com/gpu.present=true"
LABEL = "bench.inferops.io/round"
TAINT = "bench.inferops.io/gpu"


def _ours(value: str) -> str:
    return f"""- hosts: localhost
  gather_facts: false
  tasks:
    - name: label and taint
      inferops.vllm.gpu_node:
        label_selector: {SELECTOR}
        labels: {{{LABEL}: "{value}"}}
        taints: [{{key: {TAINT}, value: "{value}", effect: PreferNoSchedule}}]
      register: out
    - name: count
      ansible.builtin.set_fact:
        bench_changed: "{{{{ out.changed_nodes | length }}}}"
"""


def _baseline(value: str) -> str:
    return f"""- hosts: localhost
  gather_facts: false
  tasks:
    - name: list
      kubernetes.core.k8s_info:
        kind: Node
        label_selectors: ["{SELECTOR}"]
      register: nodes
    - name: label and taint
      kubernetes.core.k8s:
        state: patched
        kind: Node
        name: "{{{{ item }}}}"
        definition:
          metadata:
            labels: {{{LABEL}: "{value}"}}
          spec:
            taints: [{{key: {TAINT}, value: "{value}", effect: PreferNoSchedule}}]
      loop: "{{{{ nodes.resources | map(attribute='metadata.name') | list }}}}"
      register: out
    - name: count
      ansible.builtin.set_fact:
        bench_changed: "{{{{ out.results | selectattr('changed') | list | length }}}}"
"""


def _timed(box, text: str) -> tuple[float, int]:
    seconds, result = playbook(write_playbook(text), box)
    return seconds, int(result.task("count")["ansible_facts"]["bench_changed"])


def run(quick: bool) -> list[Row]:
    rows = []
    for size in ((20,) if quick else (200, 1000)):
        with sandbox(f"labels-{size}", gpu_nodes=size, cpu_nodes=0) as box:
            found = {}
            for tool, make in (("baseline", _baseline), ("ours", _ours)):
                value = f"{tool}-{time.time_ns()}"
                write = _timed(box, make(value))
                rerun = _timed(box, make(value))
                if write[1] != size or rerun[1] != 0:
                    raise RuntimeError(f"{tool} at {size} nodes changed {write[1]} then {rerun[1]} nodes; "
                                       f"expected {size} then 0")
                found[tool] = (write[0], rerun[0])
            for i, case in enumerate(("write new values", "no-op rerun")):
                rows.append(Row("gpu_node_labels", f"{size} nodes, {case}", "s", found["ours"][i],
                                found["baseline"][i], ours_label="gpu_node",
                                baseline_label="kubernetes.core.k8s loop", note="playbook wall time"))
    return rows
