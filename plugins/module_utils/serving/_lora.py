# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""LoRA adapters in the serving plan: the flags vLLM needs and the GPU
memory its adapter slots take out of the KV cache (no I/O).

vLLM (read at 0.20.0 and 0.34.0; vllm/lora/model_manager.py
_create_lora_modules, vllm/lora/layers/base_linear.py and
column_parallel_linear.py create_lora_weights) gives every linear layer of
the model that LoRA supports a stacked buffer for ``max_loras`` adapters of
rank ``max_lora_rank``, whatever the adapters themselves target:
lora_a (max_loras, 1, R, in) and lora_b (max_loras, 1, out, R) per slice, in
the model's dtype, with the column-parallel outputs and row-parallel inputs
split by tensor parallelism. They are made when the model is loaded
(GPUModelRunner.load_model, inside the memory profiler), so they count with
the weights and come out of the KV cache. Measured on an H200 with vLLM
0.20.0 (tests/data/real-vllm/lora/runs-0.20.0-h200.json): Qwen2.5-0.5B's
model loading grew by 0.01, 0.06 and 0.54 GiB for 1x8, 4x16 and 8x64
slots x rank; the buffers' bytes are 0.008, 0.066 and 0.524 GiB, and with
the allocator's slack (ALLOCATOR_SLACK) 0.008, 0.068 and 0.540 GiB."""

from __future__ import annotations

import re

# LoRA's flags: rendered here from lora_adapters, so that the adapter slots
# are in the plan's memory; extra_args may not carry them (_plan.py refuses).
LORA_FLAGS = ("--enable-lora", "--max-loras", "--max-lora-rank", "--lora-modules", "--max-cpu-loras")
# vLLM's MaxLoRARanks (vllm/config/lora.py, 0.20.0 and 0.34.0): the CLI refuses any other.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Architectures whose vLLM model class declares a non-empty embedding_modules, itself or
# by inheritance (embed_tokens and lm_head get LoRA buffers too): every *ForCausalLM class
# of vllm/model_executor/models/ in the vLLM 0.20.0 wheel, read with Python's ast (llama.py's
# LlamaForCausalLM and qwen3.py's Qwen3ForCausalLM among them; Qwen2 and Mistral have none).
EMBEDDING_LORA_ARCHITECTURES = (
    "ApertusForCausalLM", "BambaForCausalLM", "CohereForCausalLM", "DeciLMForCausalLM", "Ernie4_5ForCausalLM",
    "Exaone4ForCausalLM", "ExaoneForCausalLM", "ExaoneMoeForCausalLM", "FalconH1ForCausalLM", "GlmForCausalLM",
    "GraniteForCausalLM", "GraniteMoeForCausalLM", "GraniteMoeHybridForCausalLM", "GraniteMoeSharedForCausalLM",
    "HyperCLOVAXForCausalLM", "Jais2ForCausalLM", "JambaForCausalLM", "Lfm2ForCausalLM", "Lfm2MoeForCausalLM",
    "Llama4ForCausalLM", "LlamaForCausalLM", "MiniCPM3ForCausalLM", "MiniCPMForCausalLM", "MixtralForCausalLM",
    "NemotronForCausalLM", "NemotronHForCausalLM", "Param2MoEForCausalLM", "Phi3ForCausalLM", "PhiMoEForCausalLM",
    "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "SolarForCausalLM", "TeleChat2ForCausalLM", "TeleFLMForCausalLM",
)
# What vLLM's number holds beyond the buffers themselves: PyTorch's caching
# allocator hands out whole blocks, so the memory reserved for many stacked
# buffers is a little more than their bytes. Measured (runs-0.20.0-h200.json):
# 8 slots x rank 64 on Qwen2.5-0.5B took 0.54 GiB at load and 0.55 GiB of KV
# cache for 0.524 GiB of buffers, about 3% more.
ALLOCATOR_SLACK = 1.03
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def lora_bytes_per_gpu(shape: dict, slots: int, rank: int, tp: int, elem: int) -> int:
    """Bytes of LoRA buffers on each GPU for ``slots`` adapters of rank
    ``rank``: qkv_proj, o_proj, gate_up_proj and down_proj of every layer
    (and embed_tokens and lm_head where the model declares them), with the
    allocator's slack."""
    hidden, inter, layers = shape["hidden"], shape["intermediate"], shape["layers"]
    heads, kv_heads, head_dim = shape["heads"], shape["kv_heads"], shape["head_dim"]
    q_local = heads * head_dim // tp
    kv_local = max(1, kv_heads // tp) * head_dim  # KV heads are replicated when fewer than the GPUs
    per_layer = (3 * rank * hidden + rank * (q_local + 2 * kv_local)   # qkv_proj: 3 slices
                 + rank * q_local + hidden * rank                      # o_proj (row-parallel: input split)
                 + 2 * rank * hidden + 2 * rank * (inter // tp)        # gate_up_proj: 2 slices
                 + rank * (inter // tp) + hidden * rank)               # down_proj (row-parallel)
    total = layers * per_layer
    if shape.get("architecture") in EMBEDDING_LORA_ARCHITECTURES and shape.get("vocab"):
        total += 2 * (shape["vocab"] * rank + hidden * rank)  # embed_tokens and lm_head, the whole vocabulary
    return int(slots * total * elem * ALLOCATOR_SLACK)


def smallest_rank(needed: int) -> int | None:
    return next((r for r in LORA_RANKS if r >= needed), None)


def lora_plan(adapters: list, max_loras, max_rank, adapters_root: str, served: str, shape: dict,
              problems: list, warnings: list) -> dict:
    """The adapters checked, and vLLM's flags and slots for them: {} without
    adapters. Every problem names the variable to change."""
    if not adapters:
        if max_loras or max_rank:
            warnings.append("vllm_serve_lora_max_loras / vllm_serve_lora_max_rank are set but there is no adapter "
                            "(vllm_serve_lora_adapters): LoRA stays off")
        return {}
    names, ranks = [], []
    for i, adapter in enumerate(adapters):
        name = str((adapter or {}).get("name") or "")
        if not NAME.match(name):
            problems.append(f"vllm_serve_lora_adapters[{i}].name: {name!r} is not a name clients can ask for "
                            "(letters, digits, '.', '_', '-')")
        elif name in names or name == served:
            problems.append(f"vllm_serve_lora_adapters[{i}].name: {name!r} is "
                            + ("listed twice" if name in names else "the model's own served name")
                            + "; every adapter needs a name of its own")
        names.append(name)
        try:
            rank = int(adapter.get("rank"))
        except (TypeError, ValueError):
            rank = 0
        if rank < 1:
            problems.append(f"vllm_serve_lora_adapters[{i}].rank: give the adapter's rank (r in its "
                            "adapter_config.json), a whole number of 1 or more")
        ranks.append(max(rank, 1))
    slots = int(max_loras or 0) or len(adapters)
    if slots < 1:
        problems.append("vllm_serve_lora_max_loras: 1 or more (adapters on the GPU at once)")
        slots = 1
    rank = int(max_rank or 0) or smallest_rank(max(ranks)) or max(ranks)
    if rank not in LORA_RANKS:
        problems.append(f"vllm_serve_lora_max_rank: {rank} is not one vLLM accepts ({', '.join(map(str, LORA_RANKS))})")
    elif max(ranks) > rank:
        big = [n for n, r in zip(names, ranks) if r > rank]
        problems.append(f"vllm_serve_lora_max_rank {rank} is below the rank of {', '.join(big)}: vLLM refuses such an "
                        f"adapter (\"LoRA rank ... is greater than max_lora_rank\"); give {smallest_rank(max(ranks))}")
    if shape.get("experts"):
        warnings.append("LoRA on a mixture-of-experts model: the experts' LoRA buffers are not in this plan's memory "
                        "(not measured); leave room with vllm_serve_gpu_memory_utilization")
    args = ["--enable-lora", "--max-loras", str(slots), "--max-lora-rank", str(rank), "--lora-modules"]
    args += [f"{n}={adapters_root.rstrip('/')}/{n}" for n in names]
    return {"adapters": names, "max_loras": slots, "max_lora_rank": rank, "args": args}
