"""The cases proved on the GPU machine (hack/device-vllm): for each, the
inputs given to serving_plan and what the plan renders and predicts -
the container's args and env, the weights per GPU, KV cache tokens and
concurrency - computed with the collection's own code, here, before the
run. Writes tests/data/real-vllm/plan-cases.json (the device run starts
`vllm serve` with exactly these args; the unit tests re-run the plan on the
same inputs and compare with what vLLM logged).

    .venv/bin/python hack/device-vllm-plan.py [--check]

Needs the collection importable as ansible_collections.inferops.vllm
(`make setup` links it under .cache/collections). --check only compares."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".cache/collections"))

from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import plan  # noqa: E402

CONFIGS = ROOT / "tests/unit/plugins/module_utils/serving/model_configs"
OUT = ROOT / "tests/data/real-vllm/plan-cases.json"
MODELS = {"dense": "qwen2.5-7b-instruct", "moe": "qwen3-30b-a3b"}
# A port each, so that a dense and a MoE case can run side by side on a
# machine of two GPUs (one GPU each); the plan renders it (--port).
PORTS = {"dense": 8000, "moe": 8001}
GPU_MIB = {"h100": 81559, "h200": 143771}  # nvidia-smi's memory.total of the device's cards
MAX_MODEL_LEN = 8192


def inputs(kind: str, eager: bool, tp: int, gpu_mib: int) -> dict:
    model = MODELS[kind]
    extra = ["--load-format", "dummy"] + (["--enforce-eager"] if eager else [])
    return {
        "model_config_file": f"{model}.json",
        "model_path": f"/models/{model}",
        "vllm_version": "0.20.0",
        "gpu_memory_mib": gpu_mib,
        "gpus_per_node": tp,
        "tensor_parallel_size": tp,
        "max_model_len": MAX_MODEL_LEN,
        "max_num_seqs": 256,  # what vllm_serve passes (vllm_serve_max_num_seqs), as these runs were made
        "port": PORTS[kind],
        "extra_args": extra,
        "api_key_secret": "vllm-api-key",
        "network_policy": True,
        # The runs on record were made before the plan rendered vLLM's drain
        # (--shutdown-timeout): they ran without one, so the cases ask for none.
        "drain_timeout_s": 0,
    }


# A pooling (embedding) model: sentence-transformers' all-MiniLM-L6-v2 (the
# files `make setup` unpacks, weights left out: --load-format dummy).
EMBED_DIR = ".cache/test-models/all-minilm-l6-v2"


def embed_inputs(gpu_mib: int) -> dict:
    return {"model_config_file": f"{EMBED_DIR}/config.json", "model_path": "/models/all-minilm-l6-v2",
            "served_model_name": "minilm", "vllm_version": "0.20.0", "gpu_memory_mib": gpu_mib, "gpus_per_node": 1,
            "tensor_parallel_size": 1, "max_model_len": 256, "max_num_seqs": 256, "port": 8002, "extra_args": ["--load-format", "dummy"],
            "api_key_secret": "vllm-api-key", "network_policy": True, "drain_timeout_s": 0}


# The example inventory's serving (Qwen3-235B-A22B, TP 8 on 8 H100), as vllm_serve passes it to serving_plan
# (roles/vllm_serve/tasks/main.yml), on what the device lends: a node of 4 H200 (the weights, 438 GiB, do not
# fit 4 H100), so TP 4, at gpu_memory_utilization 0.85 and 0.9, vLLM 0.20.0 (the release the machine runs).
# "kv2" is the same shape with 2 KV heads: fewer KV heads than GPUs, as the example's 4 heads are on 8 GPUs.
EXAMPLE = ROOT / "inventories/example"
EXAMPLE_CONFIGS = {"235b": "inventories/example/files/qwen3-235b-a22b-instruct-2507.config.json",
                   "235b-kv2": "tests/data/real-vllm/configs/qwen3-235b-a22b-kv2.config.json"}


def example_inputs(shape: str, util: float, tp: int, gpu: str, gpu_mib: int) -> dict:
    import yaml  # pylint: disable=import-outside-toplevel

    v = yaml.safe_load((EXAMPLE / "group_vars/all.yml").read_text())
    defaults = yaml.safe_load((ROOT / "roles/vllm_serve/defaults/main.yml").read_text())
    folder = "qwen3-235b" if shape == "235b" else "qwen3-235b-kv2"
    return {
        "model_config_file": EXAMPLE_CONFIGS[shape],
        # vllm_serve_model_mount / vllm_serve_model_subpath (model_store_subpath with no revision)
        "model_path": f"{defaults['vllm_serve_model_mount']}/{folder}",
        "served_model_name": v["vllm_serve_served_model_name"],
        "vllm_version": "0.20.0",
        "extra_args": list(v["vllm_serve_extra_args"]) + ["--load-format", "dummy"],  # no weights here: random ones
        "env": dict(v["vllm_serve_env"]),
        "gpu_memory_mib": gpu_mib,
        "gpus_per_node": tp,
        "gpu_types": [gpu.upper()],
        "network_policy": v["vllm_serve_network_policy_enabled"],
        "tensor_parallel_size": tp,
        "max_model_len": v["vllm_serve_max_model_len"],
        "gpu_memory_utilization": util,
        "max_num_seqs": v["vllm_serve_max_num_seqs"],
        "port": defaults["vllm_serve_port"],
        "drain_timeout_s": 0,  # recorded without a drain, as inputs() says
        "api_key_secret": f"{v['vllm_serve_name']}-api-key",
    }


def example_cases() -> dict:
    out = {}
    for util in (0.85, 0.9):
        out[f"example-235b-tp4-u{round(util * 100)}-h200"] = example_inputs("235b", util, 4, "h200", GPU_MIB["h200"])
    out["example-235b-kv2-tp4-u90-h200"] = example_inputs("235b-kv2", 0.9, 4, "h200", GPU_MIB["h200"])
    # Not the example's command line: with --enforce-eager, to tell the CUDA graphs' share of the overhead.
    eager = example_inputs("235b", 0.9, 4, "h200", GPU_MIB["h200"])
    eager["extra_args"] = eager["extra_args"] + ["--enforce-eager"]
    out["example-235b-eager-tp4-u90-h200"] = eager
    # The dense shape at TP 4, eager: the overhead of 4 GPUs' communication with a small model.
    out["dense-eager-tp4-h200"] = inputs("dense", True, 4, GPU_MIB["h200"])
    return out


def run_plan(inp: dict) -> dict:
    p = {k: v for k, v in inp.items() if k != "model_config_file"}
    source = inp["model_config_file"]
    path = ROOT / source if "/" in source else CONFIGS / source
    p["model_config"] = json.loads(path.read_text())
    return plan(p)


def cases() -> dict:
    out = {}
    for gpu, mib in GPU_MIB.items():
        for kind in MODELS:
            for eager in (True, False):
                name = f"{kind}-{'eager' if eager else 'graphs'}-tp1-{gpu}"
                out[name] = inputs(kind, eager, 1, mib)
        for eager in (True, False):
            out[f"dense-{'eager' if eager else 'graphs'}-tp2-{gpu}"] = inputs("dense", eager, 2, mib)
        out[f"embed-tp1-{gpu}"] = embed_inputs(mib)
    out.update(example_cases())
    result = {}
    for name, inp in out.items():
        r = run_plan(inp)
        if r["problems"]:
            raise SystemExit(f"{name}: the plan has problems: {r['problems']}")
        result[name] = {
            "inputs": inp,
            "served_model_name": r["served_model_name"],
            "runner": r["runner"],
            "args": r["args"],
            "env": r["env"],
            "predicted": {
                "weights_per_gpu_gib": r["memory"]["weights_per_gpu_gib"],
                "overhead_per_gpu_gib": r["memory"]["overhead_per_gpu_gib"],
                "kv_cache_per_gpu_gib": r["memory"]["kv_cache_per_gpu_gib"],
                "kv_cache_tokens": r["memory"]["kv_cache_tokens"],
                "max_concurrency_at_max_len": r["max_concurrency_at_max_len"],
                "gpu_memory_utilization": r["memory"]["gpu_memory_utilization"],
                "kv_bytes_per_token_per_gpu": r["memory"]["kv_bytes_per_token_per_gpu"],
                "shm_size_mib": r["shm_size_mib"],
                "startup_budget_s": r["startup_budget_s"],
            },
        }
    return result


def main() -> None:
    data = cases()
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    if "--check" in sys.argv:
        same = OUT.is_file() and OUT.read_text() == text
        print("plan-cases.json is current" if same else "plan-cases.json differs from the plan")
        raise SystemExit(0 if same else 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    for name, c in data.items():
        print(f"{name}: {c['predicted']}")


if __name__ == "__main__":
    main()
