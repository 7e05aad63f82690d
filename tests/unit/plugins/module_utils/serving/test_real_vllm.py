"""serving_plan against what real vLLM 0.20.0 did on the GPU machine
(hack/device-vllm; docs/real-vllm.md). The logs under tests/data/real-vllm/
are vLLM's own output: each starts with the command line it was started
with, and carries vLLM's accounting ("Model loading took X GiB",
"GPU KV cache size: N tokens"). The plan is re-run here on each case's
inputs and must render that command line and land within 3% of vLLM's
weights and KV tokens, without promising more KV cache than vLLM gave."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import plan

ROOT = Path(__file__).resolve().parents[5]
DATA = ROOT / "tests" / "data" / "real-vllm"
CONFIGS = Path(__file__).resolve().parent / "model_configs"
CASES = json.loads((DATA / "plan-cases.json").read_text())
LOGS = sorted((DATA / "logs").glob("*.log"))
# The generative cases, whose memory vLLM reports as the plan models it (KV cache).
GENERATE_LOGS = [p for p in LOGS if CASES[p.stem].get("runner", "generate") == "generate"]
GIB = 1024**3


def vllm_log(path: Path) -> dict:
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# device-vllm: "), path
    command = shlex.split(first.split(": ", 2)[2])
    serve = command.index("serve")

    def one(pattern: str) -> float:
        values = {v.replace(",", "") for v in re.findall(pattern, text)}
        assert len(values) == 1, f"{path.name}: {pattern} -> {values}"
        return float(values.pop())

    if "GPU KV cache size" not in text:  # a pooling model: no KV cache lines
        return {"args": command[serve + 1:], "started": "Application startup complete" in text, "text": text}
    return {
        "text": text,
        "args": command[serve + 1:],
        "weights_gib": one(r"Model loading took ([\d.]+) GiB"),
        "kv_tokens": one(r"GPU KV cache size: ([\d,]+) tokens"),
        "max_concurrency": one(r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x"),
        "started": "Application startup complete" in text,
    }


def plan_for(case: str) -> dict:
    inputs = dict(CASES[case]["inputs"])
    source = inputs.pop("model_config_file")  # a published config here, or a path in the checkout
    inputs["model_config"] = json.loads((ROOT / source if "/" in source else CONFIGS / source).read_text())
    return plan(inputs)


def test_every_recorded_run_is_a_plan_case():
    # dense and MoE, eager and CUDA graphs, TP 1 on an H100 and TP 2 on two H200s; on four H200s the example
    # inventory's Qwen3-235B-A22B at TP 4 (gpu_memory_utilization 0.85 and 0.9, and eager), the same shape
    # with 2 KV heads, and the dense shape at TP 4
    names = {p.stem for p in LOGS}
    assert names == {"dense-eager-tp1-h100", "dense-graphs-tp1-h100", "moe-eager-tp1-h100", "moe-graphs-tp1-h100",
                     "dense-eager-tp2-h200", "dense-graphs-tp2-h200", "embed-tp1-h100", "moe-eager-tp1-h200",
                     "dense-eager-tp4-h200", "example-235b-tp4-u85-h200", "example-235b-tp4-u90-h200",
                     "example-235b-eager-tp4-u90-h200", "example-235b-kv2-tp4-u90-h200"}
    assert names <= set(CASES)


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_vllm_accepted_the_rendered_command_line(log):
    seen = vllm_log(log)
    assert seen["started"], "vLLM did not reach 'Application startup complete'"
    assert plan_for(log.stem)["args"] == seen["args"]


@pytest.mark.parametrize("log", GENERATE_LOGS, ids=lambda p: p.stem)
def test_plan_within_3_percent_of_vllm_and_never_above(log):
    seen = vllm_log(log)
    predicted = plan_for(log.stem)
    memory = predicted["memory"]
    weights = memory["weights_per_gpu_gib"]
    assert weights == pytest.approx(seen["weights_gib"], rel=0.05)
    kv_tokens = memory["kv_cache_tokens"]
    assert kv_tokens == pytest.approx(seen["kv_tokens"], rel=0.03)
    # A plan to check, never a promise of more than vLLM gives.
    assert kv_tokens <= seen["kv_tokens"]
    assert predicted["max_concurrency_at_max_len"] == pytest.approx(seen["max_concurrency"], rel=0.03)


def test_plan_cases_file_is_current():
    """plan-cases.json (what the device run started vLLM with) is what the
    plan renders today for the recorded runs: hack/device-vllm-plan.py."""
    for log in LOGS:
        recorded = CASES[log.stem]
        now = plan_for(log.stem)
        assert now["args"] == recorded["args"]
        assert now["env"] == recorded["env"]


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.stem)
def test_plan_says_what_vllm_serves_the_model_for(log):
    """vLLM logs the runner it resolved when it is not the common one
    (generate): the plan's ``runner`` agrees, for the embedding model too."""
    text = vllm_log(log)["text"]
    resolved = re.search(r"Resolved `--runner auto` to `--runner (\w+)`", text)
    assert plan_for(log.stem)["runner"] == (resolved.group(1) if resolved else "generate")


RUNS = json.loads((DATA / "runs.json").read_text())
EXAMPLE_RUNS = sorted(name for name in RUNS if name.startswith("example-235b-"))


def test_fewer_kv_heads_than_gpus_each_gpu_keeps_one_replicated():
    """The rule the example's plan relies on (4 KV heads on 8 GPUs), run on the GPUs lent (2 KV heads on 4):
    each GPU keeps one whole KV head, so a token costs a GPU 1/KV-heads of the model's KV bytes, not 1/TP.
    vLLM's own numbers say so: its KV memory over its KV tokens, the same with 2 heads as with 4."""
    for case, heads in (("example-235b-kv2-tp4-u90-h200", 2), ("example-235b-tp4-u90-h200", 4)):
        text = (DATA / "logs" / f"{case}.log").read_text()
        kv_gib = float(re.search(r"Available KV cache memory: ([\d.]+) GiB", text).group(1))
        tokens = vllm_log(DATA / "logs" / f"{case}.log")["kv_tokens"]
        per_token = kv_gib * GIB / tokens
        planned = plan_for(case)
        assert planned["model"]["kv_heads"] == heads and planned["gpus"]["tensor_parallel_size"] == 4
        whole = planned["memory"]["kv_bytes_per_token"]
        assert whole == 2 * 94 * heads * 128 * 2
        # one head a GPU: 2 x 94 layers x 1 x 128 x 2 bytes; within the rounding of vLLM's GiB figure
        assert planned["memory"]["kv_bytes_per_token_per_gpu"] == 48_128
        assert per_token == pytest.approx(48_128, rel=0.005)
        if heads < 4:
            assert per_token == pytest.approx(2 * whole / 4, rel=0.005)  # twice the 1/TP share
    same = [vllm_log(DATA / "logs" / f"{c}.log")
            for c in ("example-235b-kv2-tp4-u90-h200", "example-235b-tp4-u90-h200")]
    assert same[0]["kv_tokens"] == same[1]["kv_tokens"] and same[0]["weights_gib"] == same[1]["weights_gib"]


@pytest.mark.parametrize("case", EXAMPLE_RUNS)
def test_example_started_within_the_plans_budget_with_its_shm(case):
    """vLLM was ready inside the plan's startup budget (with --load-format dummy: no weights read from
    storage, so this holds the warm-up part only), with /dev/shm a tmpfs of the plan's size."""
    run = RUNS[case]
    planned = plan_for(case)
    assert run["rc"] == 0 and run["ready_s"] is not None
    assert run["ready_s"] < planned["startup_budget_s"]
    assert run["shm"]["sized_as_planned"] and run["shm"]["size_mib"] == planned["shm_size_mib"]
    assert run["chat"] is None or run["chat"]["usage"]["completion_tokens"] == 16
