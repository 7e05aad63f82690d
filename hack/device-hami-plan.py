"""The HAMi-slice cases proved on the GPU machine (hack/device-vllm hami):
for each, the inputs given to serving_plan, what it renders (args, env, the
HAMi resources) and predicts, and the environment HAMi's device plugin puts
into such a pod (plugins/module_utils/gpu/_hami.py container_env), computed
here with the collection's own code before the run. Writes
tests/data/real-vllm/hami-cases.json, in the order the device runs them.

    .venv/bin/python hack/device-hami-plan.py [--check]

A case says where it runs (`slice_mib`: a HAMi slice of one H200, or none:
the whole card, alone), what it waits for (`stop`: vLLM's "GPU KV cache
size" line, or ready and answering), and what is expected (`expect`: serve,
or fail where the plan refuses)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".cache/collections"))

from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _hami as hami  # noqa: E402
from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import plan  # noqa: E402

OUT = ROOT / "tests/data/real-vllm/hami-cases.json"
CONFIGS = {
    "dense": ROOT / "tests/unit/plugins/module_utils/serving/model_configs/qwen2.5-7b-instruct.json",
    "moe": ROOT / "tests/unit/plugins/module_utils/serving/model_configs/qwen3-30b-a3b.json",
    "moe8": ROOT / "tests/data/real-vllm/configs/qwen3-30b-a3b-l8.config.json",
    "small": ROOT / "tests/unit/plugins/module_utils/serving/model_configs/qwen2.5-0.5b-instruct.json",
}
FOLDERS = {"dense": "qwen2.5-7b-instruct", "moe": "qwen3-30b-a3b", "moe8": "qwen3-30b-a3b-l8",
           "small": "qwen2.5-0.5b-instruct"}
H200_MIB = 143771  # nvidia-smi's memory.total of the device's card
# About a quarter, a half and nine tenths of it; two halves must fit the card
# together with each process's CUDA context (CUDA reports 139.8 GiB).
SLICES = {"q": 35840, "h": 69632, "n": 129024}
NEWEST, OLDEST = hami.DEFAULT_CHART_VERSION, hami.OLDEST_CHART_VERSION
# The HAMi-core each case loads: the commit its release vendors, built there from
# .device/hami/hami-core-<short>.tar.gz. v2.10.0's own commit (b216ba1) was in no
# snapshot reachable here: its nearest ancestor that was, upstream's main at 06e6980
# (2026-07-10), stands in for it, and the record says so.
BUILDS = {"2.7.1": "8be6d90", "2.9.0": "5091a2f", "2.10.0": "06e6980"}
# The calibration grid: (max_num_seqs, max_num_batched_tokens).
GRID = [(256, 8192), (64, 8192), (1024, 8192), (256, 2048), (256, 16384), (1024, 16384), (64, 2048)]


def inputs(kind: str, port: int, *, slice_mib=None, util=None, seqs=256, tokens=None, eager=False, cores=None,
           max_len=8192) -> dict:  # seqs None: the plan's default (vLLM's own for the GPU)
    extra = ["--load-format", "dummy"]
    if tokens:
        extra += ["--max-num-batched-tokens", str(tokens)]
    if eager:
        extra.append("--enforce-eager")
    p = {"model_config_file": str(CONFIGS[kind].relative_to(ROOT)), "model_path": f"/models/{FOLDERS[kind]}",
         "served_model_name": FOLDERS[kind], "vllm_version": "0.20.0", "gpu_memory_mib": H200_MIB,
         "gpus_per_node": 1, "tensor_parallel_size": 1, "max_model_len": max_len,
         "port": port, "extra_args": extra, "api_key_secret": "vllm-api-key", "network_policy": True,
         "drain_timeout_s": 0}
    if seqs:
        p["max_num_seqs"] = seqs
    if slice_mib:
        p["gpu_memory_request_mib"] = slice_mib
    if util:
        p["gpu_memory_utilization"] = util
    if cores:
        p["gpu_cores_percent"] = cores
    return p


def case_list() -> list[dict]:
    cases, port = [], [8100]

    def add(name, kind, *, stop="kv", expect="serve", group=None, load=False, build=NEWEST, debug=True,
            core_policy="default", rerun=None, holdout=False, **kw):
        port[0] += 1
        cases.append({"name": name, "kind": kind, "inputs": inputs(kind, port[0], **kw), "stop": stop,
                      "core_policy": core_policy, "rerun": rerun, "holdout": holdout,
                      "expect": expect, "group": group, "load": load, "hami_version": build,
                      "hami_core": BUILDS[build], "hami_core_vendored": hami.VENDORED_HAMI_CORE[build][:7],
                      "debug": debug})

    # The slices, at the role's defaults (CUDA graphs, max_num_seqs 256, vLLM's batched tokens):
    # first two servers side by side in two halves of the card, then the rest.
    add("dense-h-u92", "dense", stop="ready", group="two-servers", slice_mib=SLICES["h"])
    add("moe-h-u92", "moe", stop="ready", group="two-servers", slice_mib=SLICES["h"])
    add("dense-q-u92", "dense", stop="ready", slice_mib=SLICES["q"])
    add("dense-q-u80", "dense", slice_mib=SLICES["q"], util=0.8)
    add("moe-q-u92", "moe", expect="fail", slice_mib=SLICES["q"])  # the weights alone are larger
    add("moe-h-u80", "moe", expect="fail", slice_mib=SLICES["h"], util=0.8)  # no room left for a KV cache
    add("dense-h-u80", "dense", slice_mib=SLICES["h"], util=0.8)
    # The calibration grid in small slices: the dense shape whole, the MoE with 8 of its layers.
    for eager in (True, False):
        mode = "eager" if eager else "graphs"
        for i, (seqs, tokens) in enumerate(GRID):
            add(f"grid-dense-{mode}-s{seqs}-t{tokens}", "dense", slice_mib=24576, seqs=seqs, tokens=tokens,
                eager=eager)
            if i < 5:
                add(f"grid-moe8-{mode}-s{seqs}-t{tokens}", "moe8", slice_mib=20480, seqs=seqs, tokens=tokens,
                    eager=eager)
    # vLLM's own defaults on the whole card (max_num_seqs 1024, the model's context, its batched tokens).
    add("defaults-dense", "dense", seqs=1024, max_len=32768)
    add("defaults-moe", "moe", seqs=1024, max_len=40960)
    add("dense-n-u92", "dense", slice_mib=SLICES["n"])
    add("moe-n-u92", "moe", slice_mib=SLICES["n"])
    # gpucores: three servers in slices of the one card; one fixed decode load on each in turn.
    for cores in (25, 50, 100):
        add(f"cores-{cores}", "dense", stop="ready", group="cores", load=True, slice_mib=SLICES["q"], cores=cores,
            debug=False)
    # The oldest supported HAMi's HAMi-core: the same slice as the first case.
    for release in (OLDEST, "2.9.0"):
        add(f"dense-q-u92-hami{release.replace('.', '')}", "dense", slice_mib=SLICES["q"], build=release)
    for seqs, tokens in GRID[5:]:
        add(f"grid-moe8-graphs-s{seqs}-t{tokens}", "moe8", slice_mib=20480, seqs=seqs, tokens=tokens)
    # The second lease. The first runs shared one torch.compile cache, so a later run of the same compiled
    # shape found it warm; a pod starts with an empty one. These run again, each with a cache of its own.
    cold = "a compile cache of its own (the first run found it warm)"
    add("dense-q-u92-cold", "dense", stop="ready", slice_mib=SLICES["q"], rerun=cold)
    add("dense-q-u80-cold", "dense", slice_mib=SLICES["q"], util=0.8, rerun=cold)
    add("dense-h-u80-cold", "dense", slice_mib=SLICES["h"], util=0.8, rerun=cold)
    for release in (OLDEST, "2.9.0"):
        add(f"dense-q-u92-hami{release.replace('.', '')}-cold", "dense", slice_mib=SLICES["q"], build=release,
            rerun=cold)
    # Held out: predicted by the calibrated plan before they ran, never fitted to.
    add("holdout-small-defaults", "small", seqs=None, max_len=32768, holdout=True)
    add("holdout-small-q-u92", "small", slice_mib=SLICES["q"], holdout=True)
    add("holdout-dense-graphs-s512-t4096", "dense", slice_mib=24576, seqs=512, tokens=4096, holdout=True)
    add("holdout-moe8-graphs-s512-t4096", "moe8", slice_mib=20480, seqs=512, tokens=4096, holdout=True)
    add("holdout-moe8-eager-s128-t12288", "moe8", slice_mib=20480, seqs=128, tokens=12288, eager=True,
        holdout=True)
    # gpucores where HAMi-core's limiter acts: kernels launched one by one (eager; it does not throttle CUDA
    # graph launches) and the chart's gpuCorePolicy "force" (by default only contention turns it on).
    for cores in (25, 50, 100):
        add(f"cores-eager-force-{cores}", "dense", stop="ready", group="cores-eager", load=True,
            slice_mib=SLICES["q"], cores=cores, eager=True, debug=False, core_policy="force")
    return cases


def run_plan(case: dict) -> dict:
    p = {k: v for k, v in case["inputs"].items() if k != "model_config_file"}
    p["model_config"] = json.loads((ROOT / case["inputs"]["model_config_file"]).read_text())
    return plan(p)


def cases() -> list[dict]:
    out = []
    for case in case_list():
        r = run_plan(case)
        if bool(r["problems"]) != (case["expect"] == "fail"):
            raise SystemExit(f"{case['name']}: expected {case['expect']}, the plan says {r['problems']}")
        slice_mib = case["inputs"].get("gpu_memory_request_mib")
        env = hami.container_env(case["hami_version"], r["resources"]["limits"],
                                 core_policy=case["core_policy"]) if slice_mib or \
            case["inputs"].get("gpu_cores_percent") else {}
        out.append(dict(case, slice_mib=slice_mib, args=r["args"], env=r["env"], hami_env=env,
                        resources=r["resources"]["limits"], problems=r["problems"],
                        predicted={"weights_per_gpu_gib": r["memory"]["weights_per_gpu_gib"],
                                   "overhead_per_gpu_gib": r["memory"]["overhead_per_gpu_gib"],
                                   "kv_cache_tokens": r["memory"]["kv_cache_tokens"],
                                   "shm_size_mib": r["shm_size_mib"]}))
    return out


def main() -> None:
    text = json.dumps(cases(), indent=1) + "\n"
    if "--check" in sys.argv:
        same = OUT.is_file() and OUT.read_text() == text
        print("hami-cases.json is current" if same else "hami-cases.json differs from the plan")
        raise SystemExit(0 if same else 1)
    OUT.write_text(text)
    for c in json.loads(text):
        print(c["name"], c["slice_mib"], c["predicted"], c["problems"][:1])


if __name__ == "__main__":
    main()
