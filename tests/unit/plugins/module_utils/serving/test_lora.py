"""LoRA adapters in the serving plan: vLLM's flags, the adapter slots' GPU
memory against what real vLLM 0.20.0 took on an H200
(tests/data/real-vllm/lora/runs-0.20.0-h200.json) and hand computations of
vLLM's buffer shapes, and every problem named by its variable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.serving import _lora
from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import model_shape, plan

CONFIGS = Path(__file__).parent / "model_configs"
ROOT = Path(__file__).resolve().parents[5]
RUNS = json.loads((ROOT / "tests/data/real-vllm/lora/runs-0.20.0-h200.json").read_text())
GIB = 1024 ** 3
MIB = 1024 ** 2


def cfg(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


@pytest.mark.parametrize("run,slots,rank", [("l1-r8", 1, 8), ("l4-r16", 4, 16), ("l8-r64", 8, 64)])
def test_the_adapter_slots_take_what_real_vllm_took(run, slots, rank):
    # vLLM logs "Model loading took X GiB" (2 decimals), the adapter slots included: the growth over the run
    # without LoRA is theirs. The plan's number must be within the two logged values' rounding (0.01 GiB).
    measured = RUNS["runs"][run]["model_loading_gib"] - RUNS["runs"]["base"]["model_loading_gib"]
    planned = _lora.lora_bytes_per_gpu(model_shape(cfg("qwen2.5-0.5b-instruct")), slots, rank, 1, 2) / GIB
    assert abs(planned - measured) <= 0.0101, (planned, measured)
    # ... and it came out of the KV cache.
    kv_loss = RUNS["runs"]["base"]["available_kv_gib"] - RUNS["runs"][run]["available_kv_gib"]
    assert abs(planned - kv_loss) <= 0.0101, (planned, kv_loss)


def test_the_buffers_by_hand_for_qwen2_5_7b():
    s = model_shape(cfg("qwen2.5-7b-instruct"))
    # Per layer and unit of slots x rank: qkv 3*3584 + (3584 + 2*512); o 3584 + 3584; gate_up 2*3584 + 2*18944;
    # down 18944 + 3584: 90,112 parameters; 28 layers; 2 bytes.
    per = 3 * 3584 + (3584 + 2 * 512) + 3584 + 3584 + 2 * 3584 + 2 * 18944 + 18944 + 3584
    assert per == 90_112
    slack = _lora.ALLOCATOR_SLACK
    assert _lora.lora_bytes_per_gpu(s, 1, 16, 1, 2) == int(28 * per * 16 * 2 * slack)  # 77.0 MiB of buffers
    assert round(_lora.lora_bytes_per_gpu(s, 4, 64, 1, 2) / slack / MIB) == 1232
    # TP 2: column-parallel outputs and row-parallel inputs halve; lora_a of column layers and lora_b of row
    # layers stay whole (hidden).
    tp2 = 3 * 3584 + (1792 + 2 * 256) + 1792 + 3584 + 2 * 3584 + 2 * 9472 + 9472 + 3584
    assert _lora.lora_bytes_per_gpu(s, 4, 64, 2, 2) == int(28 * tp2 * 4 * 64 * 2 * slack)  # 787.5 MiB of buffers


def test_qwen3_also_gives_its_embeddings_and_lm_head_slots():
    # A dense Qwen3 (Qwen3ForCausalLM declares embedding_modules): the 7B's shape under Qwen3's class.
    s = dict(model_shape(cfg("qwen2.5-7b-instruct")), architecture="Qwen3ForCausalLM")
    with_vocab = _lora.lora_bytes_per_gpu(s, 2, 16, 1, 2) / _lora.ALLOCATOR_SLACK
    without = _lora.lora_bytes_per_gpu(dict(s, architecture="Qwen2ForCausalLM"), 2, 16, 1, 2) / _lora.ALLOCATOR_SLACK
    assert round(with_vocab - without) == 2 * 2 * (s["vocab"] + s["hidden"]) * 16 * 2


def base_plan(**extra) -> dict:
    return plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": 81559, "gpus_per_node": 1,
                 "served_model_name": "chat-7b", "model_path": "/models/qwen2-5-7b", "max_model_len": 8192,
                 "vllm_version": "0.20.0", "network_policy": True, **extra})


def test_the_plan_renders_vllms_flags_and_counts_the_slots_out_of_the_kv_cache():
    without = base_plan()
    result = base_plan(lora_adapters=[{"name": "sql-lora", "rank": 8}, {"name": "chat-lora", "rank": 16}])
    assert result["problems"] == []
    args = result["args"]
    at = args.index("--enable-lora")
    assert args[at:at + 8] == ["--enable-lora", "--max-loras", "2", "--max-lora-rank", "16", "--lora-modules",
                               "sql-lora=/models/qwen2-5-7b-lora/sql-lora", "chat-lora=/models/qwen2-5-7b-lora/chat-lora"]
    assert result["lora"] == {"adapters": ["sql-lora", "chat-lora"], "max_loras": 2, "max_lora_rank": 16,
                              "memory_per_gpu_gib": round(int(28 * 90_112 * 2 * 16 * 2 * _lora.ALLOCATOR_SLACK) / GIB, 3)}
    lost = without["memory"]["kv_cache_per_gpu_gib"] - result["memory"]["kv_cache_per_gpu_gib"]
    assert abs(lost - result["lora"]["memory_per_gpu_gib"]) <= 0.011
    assert without["lora"] == {} and "--enable-lora" not in without["args"]


def test_slots_and_rank_given():
    result = base_plan(lora_adapters=[{"name": "a", "rank": 8}], lora_max_loras=4, lora_max_rank=64,
                       lora_root="/adapters")
    assert result["problems"] == []
    assert result["lora"]["max_loras"] == 4 and result["lora"]["max_lora_rank"] == 64
    assert "a=/adapters/a" in result["args"]


def test_every_lora_problem_is_named_by_its_variable():
    result = base_plan(fail_on_problems=False, lora_adapters=[
        {"name": "chat-7b", "rank": 8}, {"name": "x y", "rank": 8}, {"name": "b", "rank": 128}, {"name": "b"}],
        lora_max_rank=64, extra_args=["--enable-lora"])
    text = " | ".join(result["problems"])
    for expected in ("vllm_serve_lora_adapters[0].name: 'chat-7b' is the model's own served name",
                     "vllm_serve_lora_adapters[1].name: 'x y'", "vllm_serve_lora_adapters[3].name: 'b' is listed twice",
                     "vllm_serve_lora_adapters[3].rank", "vllm_serve_lora_max_rank 64 is below the rank of b: vLLM",
                     "give 128", "--enable-lora is rendered by the plan from vllm_serve_lora_adapters"):
        assert expected in text, text
    odd = base_plan(lora_adapters=[{"name": "a", "rank": 8}], lora_max_rank=24)
    assert any("vllm_serve_lora_max_rank: 24 is not one vLLM accepts" in p for p in odd["problems"])


def test_ranks_round_up_to_what_vllm_accepts():
    assert _lora.smallest_rank(8) == 8 and _lora.smallest_rank(9) == 16 and _lora.smallest_rank(300) == 320
    assert _lora.smallest_rank(513) is None
