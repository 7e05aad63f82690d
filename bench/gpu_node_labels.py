"""Benchmark: label N simulated GPU nodes with gpu_node's logic, in parallel
(the module's default) against one patch after another (the baseline, what
a loop of `kubectl label node` does), in the same run on the same sandbox.

    .venv/bin/python bench/gpu_node_labels.py [--nodes 200] [--rounds 3]

Starts a sandbox of its own (in a temporary folder) with N GPU nodes and
stops it at the end. Prints the timings and the speed-up ratio; asserts
nothing about wall-clock time (these machines are noisy)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".cache" / "collections"))

from ansible_collections.inferops.vllm.plugins.module_utils.gpu._nodes import apply  # noqa: E402
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect, pool_size  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallelism", type=int, default=16)
    args = parser.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    env = {**os.environ, "SANDBOX_DIR": str(state_dir)}
    sandbox = [str(ROOT / "hack" / "sandbox")]
    subprocess.run(sandbox + ["up", "--gpu-nodes", str(args.nodes), "--cpu-nodes", "0"], env=env, check=True)
    try:
        state = json.loads((state_dir / "state.json").read_text())
        names = state["gpu_nodes"]
        results: dict[str, list[float]] = {"sequential": [], "parallel": []}
        # The collection's own connection (a kubernetes.dynamic client), as
        # the module makes it. apply() runs at most as many patches at once as
        # the client's connection pool holds (five per CPU by default).
        api = connect({"kubeconfig": state["kubeconfig"]})
        for rnd in range(args.rounds):
            for mode, workers in (("sequential", 1), ("parallel", args.parallelism)):
                params = {"names": names, "labels": {"bench.inferops.io/round": f"{mode}-{rnd}"}, "annotations": {},
                          "taints": [], "state": "present", "parallelism": workers, "request_timeout": 60}
                start = time.perf_counter()
                out = apply(api, params, check_mode=False)
                results[mode].append(time.perf_counter() - start)
                assert len(out["changed_nodes"]) == len(names), "every node must have been patched"
        seq, par = statistics.median(results["sequential"]), statistics.median(results["parallel"])
        print(json.dumps({
            "nodes": len(names), "rounds": args.rounds, "parallelism": args.parallelism,
            "parallelism_effective": min(args.parallelism, pool_size(api), len(names)),
            "sequential_s": [round(x, 3) for x in results["sequential"]],
            "parallel_s": [round(x, 3) for x in results["parallel"]],
            "median_sequential_s": round(seq, 3), "median_parallel_s": round(par, 3),
            "speedup": round(seq / par, 2),
        }, indent=2))
    finally:
        subprocess.run(sandbox + ["down"], env=env, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
