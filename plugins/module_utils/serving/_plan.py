# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""From a model's config.json and the GPUs, work out before anything is
deployed: weights per GPU and the smallest tensor-parallel size that fits,
the KV cache and the longest context that fits, HAMi resources, /dev/shm,
a startup probe budget; and check the vLLM command line against the vLLM
version's own flags. Pure logic: no API calls.

The memory model is vLLM's: at start it takes gpu_memory_utilization of
each GPU's memory, loads its share of the weights, profiles activations,
and gives what is left to the KV cache. Activation, CUDA-graph and
non-torch memory are estimated here (overhead_mib; by default 2.5 GiB per
GPU with CUDA graphs, 2 GiB with --enforce-eager, plus 0.375 GiB at TP > 1
and a MoE's fused-experts workspace, from vLLM 0.20.0's own accounting on
H100 and H200 in docs/real-vllm.md), and each GPU's weights include what
vLLM keeps whole on every GPU (replicated KV heads, a MoE's router, the
rotary cache), so the numbers are a plan to check, not a promise."""

from __future__ import annotations

import difflib
import json
import math
import os
import shlex

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _hami as hami
from ansible_collections.inferops.vllm.plugins.module_utils.gpu import _labels as L
from ansible_collections.inferops.vllm.plugins.module_utils.gpu._preflight import min_driver_branch
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _vllm_releases as releases
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _model_task as model_task
from ansible_collections.inferops.vllm.plugins.module_utils.serving import _lora as lora_
from ansible_collections.inferops.vllm.plugins.module_utils.serving._vllm_flags_data import VERSIONS, flags_for

# The vLLM release the collection plans for when none is named (the newest
# it knows): the module's default, and through it the role's (whose image
# tag follows the plan).
DEFAULT_VLLM_VERSION = releases.LATEST
MIB = 1024 * 1024
GIB = 1024 * MIB
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}
# Bytes per parameter of quantized weights (packing and scales included, roughly).
# Only vLLM's own method names: "int8" is none (vLLM 0.20.0 and 0.34.0 stop with "Unknown quantization
# method: int8": model_executor/layers/quantization/__init__.py QuantizationMethods, config/model.py
# _verify_quantization). An int8 checkpoint names its method (e.g. compressed-tensors) in its config.json.
QUANT_BYTES = {None: None, "fp8": 1.0, "awq": 0.56, "gptq": 0.56}
KV_DTYPE_BYTES = {"auto": None, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}

# What the plan itself sets on the command line: given in extra_args they
# are read as the wanted values, then rendered once, from one place.
PLAN_FLAGS = {
    "--model": "model_path", "--served-model-name": "served_model_name", "--port": "port", "--host": "host",
    "--tensor-parallel-size": "tensor_parallel_size", "-tp": "tensor_parallel_size",
    "--pipeline-parallel-size": "pipeline_parallel_size", "-pp": "pipeline_parallel_size",
    "--max-model-len": "max_model_len", "--gpu-memory-utilization": "gpu_memory_utilization",
    "--max-num-seqs": "max_num_seqs", "--dtype": "dtype", "--quantization": "quantization", "-q": "quantization",
    "--kv-cache-dtype": "kv_cache_dtype", "--shutdown-timeout": "drain_timeout_s",
}
# vLLM's multi-node mode (the mp backend, from 0.11.1): the plan renders these
# for each pod of a group, so extra_args may not carry them. The defaults and
# the rank layout are vLLM's (vllm/config/parallel.py, vllm/engine/arg_utils.py,
# vllm/entrypoints/cli/serve.py at v0.33.0).
GROUP_FLAGS = ("--nnodes", "-n", "--node-rank", "-r", "--master-addr", "--master-port", "--headless")
GROUP_MASTER_PORT = 29501  # vLLM's default --master-port
# Set by the pod (vllm_serve renders it from the pod's index and the group's
# headless Service); the kubelet puts its value into the args where $(NAME) stands.
GROUP_LEADER_ADDR_ENV = "INFEROPS_LEADER_ADDR"
# HAMi-core's isolation is known to work in workload images with glibc in this
# range: up to 2.29 by users' reports; 2.39 (Ubuntu 24.04) measured, with the
# HAMi-core that HAMi 2.7.1 and 2.9.0 vendor and a stand-in for 2.10.0's
# (docs/real-vllm.md). Failures were reported on 2.34-2.39 with older
# HAMi-core (HAMi issues #897, #1190, #2101).
HAMI_GLIBC_RANGE = ((2, 17), (2, 40))
HAMI_GLIBC_KNOWN = "2.17-2.39"


def _num(value, name: str, kind=float):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}: {value!r} is not a number") from None


# Numbers that must be more than 0 when given (None: the plan chooses), with
# what to do instead; and ranges.
POSITIVE = {
    "max_model_len": "leave it out and the plan proposes the longest that fits",
    "tensor_parallel_size": "leave it out and the plan picks the smallest that fits",
    "pipeline_parallel_size": "leave it out for 1",
    "gpus_per_node": "give the GPUs of one node, e.g. 8",
    "max_num_seqs": "leave it out for vLLM's default",
    "gpu_memory_request_mib": "give HAMi's memory per GPU in MiB, or leave it out for whole GPUs",
    "param_count": "leave it out and the plan counts the parameters from config.json",
    "load_bandwidth_mib_s": "give the model volume's read speed in MiB/s, e.g. 1000",
}
RANGES = {"port": (1, 65535), "gpu_cores_percent": (1, 100), "overhead_mib": (0, None), "warmup_s": (0, None),
          "drain_timeout_s": (0, None), "prestop_drain_s": (0, None), "termination_grace_period_s": (0, None)}


def check_numbers(p: dict, wanted: dict) -> None:
    """Refuse a number that cannot be meant (0 GPUs, a negative length)
    before anything is computed from it; a value from extra_args counts as
    given."""
    for name, fix in POSITIVE.items():
        value = p.get(name) if p.get(name) is not None else wanted.get(name)
        if value is None:
            continue
        if _num(value, name) <= 0:
            raise ParameterError(f"{name}: {value} must be more than 0; {fix}")
    for name, (low, high) in RANGES.items():
        value = p.get(name) if p.get(name) is not None else wanted.get(name)
        if value is None:
            continue
        number = _num(value, name)
        if high is None and number < low:
            raise ParameterError(f"{name}: {value} must be {low} or more")
        if high is not None and not low <= number <= high:
            raise ParameterError(f"{name}: {value} is outside {low}-{high}")


def load_model_config(model_config: dict | None, model_path: str | None) -> tuple[dict, int | None]:
    """The config dict, and the exact weight bytes when a safetensors index
    says them (model.safetensors.index.json metadata.total_size)."""
    total = None
    if model_path:
        path = os.path.join(model_path, "config.json")
        try:
            with open(path, encoding="utf-8") as f:
                model_config = json.load(f)
        except OSError as exc:
            raise ParameterError(f"model_dir: cannot read {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ParameterError(f"model_dir: {path} is not valid JSON: {exc}") from None
        index = os.path.join(model_path, "model.safetensors.index.json")
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                total = (json.load(f).get("metadata") or {}).get("total_size")
    if not isinstance(model_config, dict) or not model_config:
        raise ParameterError("model_config or model_dir: give the model's config.json (as a dict) or its directory")
    # Multimodal configs keep the language model under text_config.
    text = model_config.get("text_config") or model_config.get("llm_config")
    if isinstance(text, dict) and "num_hidden_layers" not in model_config:
        merged = {**model_config, **text}
        return merged, total
    return model_config, total


def model_shape(cfg: dict) -> dict:
    required = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise ParameterError(f"model_config: config.json lacks {', '.join(missing)}; is this a decoder LLM's config?")
    heads = int(cfg["num_attention_heads"])
    hidden = int(cfg["hidden_size"])
    experts = cfg.get("num_experts") or cfg.get("n_routed_experts") or cfg.get("num_local_experts") or 0
    return {
        "architecture": (cfg.get("architectures") or ["unknown"])[0],
        "layers": int(cfg["num_hidden_layers"]),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": int(cfg.get("num_key_value_heads") or heads),
        "head_dim": int(cfg.get("head_dim") or hidden // heads),
        "vocab": int(cfg["vocab_size"]),
        "intermediate": int(cfg.get("intermediate_size") or 0),
        "moe_intermediate": int(cfg.get("moe_intermediate_size") or 0),
        "experts": int(experts),
        "experts_per_token": int(cfg.get("num_experts_per_tok") or 0),
        "shared_expert_intermediate": int(cfg.get("shared_expert_intermediate_size") or 0),
        "shared_experts": int(cfg.get("n_shared_experts") or 0),
        "first_dense_layers": int(cfg.get("first_k_dense_replace") or 0),
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
        "max_position_embeddings": int(cfg.get("max_position_embeddings") or 0),
        "dtype": str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16"),
    }


def parameter_count(s: dict) -> int:
    """Parameters of a decoder with grouped-query attention and a gated
    (SwiGLU) MLP or MoE, biases and norms left out (well under 0.1%)."""
    h = s["hidden"]
    attn = h * s["heads"] * s["head_dim"] + 2 * h * s["kv_heads"] * s["head_dim"] + s["heads"] * s["head_dim"] * h
    dense_mlp = 3 * h * s["intermediate"]
    if s["experts"]:
        shared = 3 * h * (s["shared_expert_intermediate"] or s["shared_experts"] * s["moe_intermediate"])
        moe_mlp = s["experts"] * 3 * h * s["moe_intermediate"] + h * s["experts"] + shared
        dense_layers = min(s["first_dense_layers"], s["layers"])
        mlp_total = dense_layers * dense_mlp + (s["layers"] - dense_layers) * moe_mlp
    else:
        mlp_total = s["layers"] * dense_mlp
    embeddings = s["vocab"] * h * (1 if s["tied_embeddings"] else 2)
    return s["layers"] * attn + mlp_total + embeddings


def kv_bytes_per_token(s: dict, tp: int, kv_dtype_bytes: int, pp: int = 1) -> tuple[int, int]:
    """(whole model, per GPU). With more GPUs than KV heads, vLLM keeps one
    KV head per GPU (replicated), so the per-GPU share stops shrinking. With
    pipeline parallelism each GPU holds the KV cache of its stage's layers
    only (the largest stage's, when the layers do not split evenly)."""
    whole = 2 * s["layers"] * s["kv_heads"] * s["head_dim"] * kv_dtype_bytes
    heads_per_gpu = max(1, s["kv_heads"] // tp)
    return whole, 2 * math.ceil(s["layers"] / pp) * heads_per_gpu * s["head_dim"] * kv_dtype_bytes


def replicated_bytes_per_gpu(s: dict, tp: int, pp: int, elem: int) -> float:
    """Bytes each GPU holds beyond its 1/(TP x PP) share of the weights (vLLM
    0.20.0's Qwen3-235B-A22B shape on 4 H200 loaded 109.61 GiB a GPU, 0.14 GiB
    above the share, with 4 KV heads and with 2; docs/real-vllm.md): with more
    GPUs than KV heads, the K and V projection of the head each GPU keeps
    (vllm/model_executor/layers/linear.py QKVParallelLinear replicates it); a
    MoE's router, whole on every GPU (ReplicatedLinear, models/qwen3_moe.py);
    and the rotary cos/sin cache, max_position_embeddings x head_dim in the
    model's dtype (layers/rotary_embedding/base.py), all at v0.20.0."""
    layers = s["layers"] / pp
    extra = 0.0
    if tp > s["kv_heads"]:
        extra += layers * 2 * s["hidden"] * s["head_dim"] * (1 - s["kv_heads"] / tp) * elem
    if s["experts"]:
        moe_layers = (s["layers"] - min(s["first_dense_layers"], s["layers"])) / pp
        extra += moe_layers * s["hidden"] * s["experts"] * (1 - 1 / tp) * elem
    return extra + s["max_position_embeddings"] * s["head_dim"] * elem


# What vLLM's loader reported beyond the parameters counted from config.json
# for a dense model ("Model loading took", torch's allocated bytes after the
# load, gpu_model_runner.py load_model): 14.25 GiB for the Qwen2.5-7B shape
# against 14.19 counted (0.4%), at TP 1 in all 26 runs; 7.12 against 7.10 at
# TP 2. The MoE shapes loaded what was counted. Counted from a safetensors
# index the weights are exact and get none.
DENSE_LOAD_ALLOWANCE = 0.005


def weights_per_gpu_bytes(weights: dict, tp: int, pp: int) -> float:
    """One GPU's weights: its share of the checkpoint and what it holds whole."""
    share = weights["weight_bytes"] / (tp * pp)
    if not weights["shape"]["experts"] and not weights["from_index"]:
        share *= 1 + DENSE_LOAD_ALLOWANCE
    return share + replicated_bytes_per_gpu(weights["shape"], tp, pp, DTYPE_BYTES[weights["dtype"]])


def parse_args(extra_args) -> list[tuple[str, str | None]]:
    """Tokens of a command line (a list, or one shell-like string, line
    continuations allowed) as (flag, value) pairs; positionals as (None, value)."""
    if isinstance(extra_args, str):
        extra_args = shlex.split(extra_args.replace("\\\n", " "))
    tokens = [str(t) for t in extra_args or []]
    # Accept the command as written: `vllm serve ...` or the older
    # `python3 -m vllm.entrypoints.openai.api_server ...`.
    if tokens[:2] == ["vllm", "serve"]:
        tokens = tokens[2:]
    elif len(tokens) >= 3 and tokens[1] == "-m" and tokens[2].startswith("vllm.entrypoints"):
        tokens = tokens[3:]
    pairs, i = [], 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("-"):
            if "=" in tok:
                flag, value = tok.split("=", 1)
                pairs.append((flag, value))
            elif i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                pairs.append((tok, tokens[i + 1]))
                i += 1
            else:
                pairs.append((tok, None))
        else:
            pairs.append((None, tok))
        i += 1
    return pairs


def resolve_version(version: str) -> tuple[str, str | None]:
    """The catalogued release to check against, and a note when it is not
    the one asked for (another patch of the same minor)."""
    wanted = releases.version_tuple(version)
    exact = ".".join(map(str, wanted))
    if exact in VERSIONS:
        return exact, None
    same_minor = sorted((v for v in VERSIONS if releases.version_tuple(v)[:2] == wanted[:2]),
                        key=releases.version_tuple)
    if same_minor:
        return same_minor[-1], f"vLLM {version}: flags checked against {same_minor[-1]}, the release of that minor we carry"
    raise ParameterError(f"vllm_version: {version} is not supported; supported: {VERSIONS[0]} to {releases.LATEST} "
                         f"({', '.join(sorted({'.'.join(v.split('.')[:2]) for v in VERSIONS}, key=releases.version_tuple))})")


def glibc_in_hami_range(version: str) -> bool:
    major, minor = (int(x) for x in str(version).split(".")[:2])
    low, high = HAMI_GLIBC_RANGE
    return low <= (major, minor) < high


class Findings:
    """Problems (things that would fail or break) and warnings (things that
    work but are likely not meant), collected, not raised, so one run reports
    all of them."""

    def __init__(self):
        self.problems: list[str] = []
        self.warnings: list[str] = []


def read_command_line(p: dict, version: str, found: Findings) -> tuple[dict, list[tuple[str, str | None]]]:
    """The command line the user brought: what the plan owns is read as the
    wanted values (rendered once, later); every other flag is checked
    against the version's own and kept."""
    table = flags_for(version)
    known = set(table["flags"]) | set(table["short_flags"]) | {f"--no-{f[2:]}" for f in table["boolean"]}
    wanted: dict = {}
    kept: list[tuple[str, str | None]] = []
    for flag, value in parse_args(p.get("extra_args")):
        if flag is None:
            if "model_path" not in wanted and value not in ("serve",):
                wanted["model_path"] = value
            continue
        if flag == "--api-key":
            found.problems.append("--api-key puts the key on the command line (visible in `ps` and the pod spec); "
                                  "leave it out: the key goes in a Secret and reaches vLLM as VLLM_API_KEY")
            continue
        if flag in ("--trust-remote-code",) and not p.get("allow_trust_remote_code"):
            found.problems.append("--trust-remote-code runs Python code shipped with the model; leave it out, or set "
                                  "allow_trust_remote_code: true if this model needs it and its code is trusted")
            continue
        if flag in lora_.LORA_FLAGS:
            found.problems.append(f"{flag} is rendered by the plan from vllm_serve_lora_adapters (with the adapter "
                                  "slots' memory counted); leave it out of extra_args and list the adapters there")
            continue
        if flag in GROUP_FLAGS:
            found.problems.append(f"{flag} is rendered by the plan when a replica spans nodes (one pod a node, each "
                                  "with its rank); leave it out of extra_args")
            continue
        if flag in PLAN_FLAGS:
            param = PLAN_FLAGS[flag]
            given = p.get(param)
            if given is not None and value is not None and str(given) != str(value):
                found.problems.append(
                    f"{flag} {value} in extra_args and {param}: {given} disagree; give it once, as {param} (the "
                    "plan renders the flag from it)")
            wanted[param] = value
            continue
        if flag in releases.DEVICE_FLAGS and flag in known:
            found.problems.append(f"{flag} picks GPUs by id, around the device plugin's assignment (as a "
                                  "CUDA_VISIBLE_DEVICES set by hand would); leave it out: the pod gets its GPUs "
                                  "from the device plugin")
            continue
        if flag not in known:
            hint = releases.removal(flag, version)
            if not hint:
                close = difflib.get_close_matches(flag, sorted(known), n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else "see `vllm serve --help`"
            found.problems.append(f"{flag} is not a flag of vLLM {version} (vLLM refuses to start): {hint}")
            continue
        note = releases.no_effect(flag, version)
        if note:
            found.warnings.append(f"{flag} {note}")
            continue
        if flag in table["deprecated"]:
            found.warnings.append(f"{flag} is deprecated in vLLM {version}")
        kept.append((flag, value))
    kept_flags = {pair[0] for pair in kept}
    if "--enable-auto-tool-choice" in kept_flags and "--tool-call-parser" not in kept_flags:
        found.problems.append("--enable-auto-tool-choice needs --tool-call-parser (e.g. hermes for Qwen); vLLM "
                              "refuses to start without it")
    return wanted, kept


def model_weights(p: dict, setting) -> dict:
    """The model's shape, dtype and quantization, its parameter count and the
    bytes of its weights; the bytes of one KV cache element."""
    cfg, index_bytes = load_model_config(p.get("model_config"), p.get("model_dir"))
    shape = model_shape(cfg)
    dtype = str(setting("dtype", "auto"))
    if dtype == "auto":
        dtype = shape["dtype"]
    if dtype not in DTYPE_BYTES:
        raise ParameterError(f"dtype: {dtype!r} is not one of auto, {', '.join(DTYPE_BYTES)}")
    quant = setting("quantization")
    if quant in ("int8", "none"):
        raise ParameterError(f"quantization: {quant!r} is not a vLLM quantization method (vLLM stops with \"Unknown "
                             f"quantization method: {quant}\"). "
                             + ("Leave quantization out for an unquantized model" if quant == "none" else
                                "An int8 checkpoint names its method in config.json (quantization_config, e.g. "
                                "compressed-tensors), which vLLM reads itself: leave quantization out"))
    if quant not in QUANT_BYTES:
        raise ParameterError(f"quantization: {quant!r} is not one of {', '.join(k for k in QUANT_BYTES if k)}")
    params_count = int(p.get("param_count") or parameter_count(shape))
    if quant:
        # Quantization covers the linear layers; vLLM keeps the embeddings and the LM head in the model's
        # dtype (VocabParallelEmbedding / ParallelLMHead are not quantized by fp8, AWQ or GPTQ).
        embedding = shape["vocab"] * shape["hidden"] * (1 if shape["tied_embeddings"] else 2)
        weight_bytes = int((params_count - embedding) * QUANT_BYTES[quant] + embedding * DTYPE_BYTES[dtype])
    else:
        weight_bytes = int(index_bytes) if index_bytes else int(params_count * DTYPE_BYTES[dtype])
    kv_dtype = str(setting("kv_cache_dtype", "auto"))
    if kv_dtype not in KV_DTYPE_BYTES:
        raise ParameterError(f"kv_cache_dtype: {kv_dtype!r} is not one of {', '.join(KV_DTYPE_BYTES)}")
    return {"config": cfg, "shape": shape, "dtype": dtype, "quant": quant, "params": params_count,
            "weight_bytes": weight_bytes,
            "from_index": bool(index_bytes and not quant), "kv_dtype": kv_dtype,
            "kv_elem": KV_DTYPE_BYTES[kv_dtype] or DTYPE_BYTES[dtype]}


def gpu_memory(p: dict, setting, version: str, found: Findings) -> dict:
    """One GPU's memory, the HAMi slice of it asked for (memory per GPU, not
    per pod: the write-up's 8 x 79872 is caught here), and the share vLLM
    may take."""
    gpu_mib = _num(p.get("gpu_memory_mib"), "gpu_memory_mib", int) if p.get("gpu_memory_mib") else None
    if not gpu_mib:
        raise ParameterError("gpu_memory_mib: the memory of one GPU in MiB is required (e.g. 81559 for an "
                             "H100 80GB, as nvidia-smi reports it)")
    gpus_available = _num(p.get("gpus_per_node") or 8, "gpus_per_node", int)
    slice_mib = p.get("gpu_memory_request_mib")
    if slice_mib is not None:
        slice_mib = _num(slice_mib, "gpu_memory_request_mib", int)
        if slice_mib > gpu_mib:
            guess = ""
            for n in range(2, 17):
                if slice_mib % n == 0 and slice_mib // n <= gpu_mib:
                    guess = f" ({slice_mib} = {n} x {slice_mib // n}: use {slice_mib // n})"
                    break
            found.problems.append(f"gpu_memory_request_mib: {slice_mib} MiB is more than one GPU has ({gpu_mib} MiB). "
                                  f"HAMi's nvidia.com/gpumem is memory per GPU, not the pod's total{guess}; no card "
                                  "can satisfy it, so the pod would never be scheduled")
            slice_mib = None
        elif slice_mib == gpu_mib:
            slice_mib = None  # the whole card: no gpumem needed
    extensible = extensible_kv_cache(p, version)
    given_util = setting("gpu_memory_utilization")
    # vLLM's own default when none is given (0.9 until 0.19, 0.92 from 0.20; from 0.34 with its extensible KV
    # cache 1.0, left to vLLM: it sizes the cache from what it measures after warm-up). Inside a HAMi slice
    # the plan keeps 0.92 on the command line for 0.34 too: HAMi-core does not count all of what vLLM
    # allocates (kernel images, CUDA graphs' internals), so a slice filled to 1.0 would spill that onto the
    # card beyond its slice, into a neighbour's; 0.92 kept every measured slice run under its limit.
    util = float(given_util if given_util is not None else releases.gpu_memory_utilization_default(
        version, extensible and slice_mib is None))
    render_util = given_util is not None or not (extensible and slice_mib is None)
    if not 0.1 <= util <= 1.0:
        raise ParameterError(f"gpu_memory_utilization: {util} is outside 0.1-1.0")
    # What vLLM sees: inside a HAMi slice CUDA and NVML report the slice (HAMi-core's hooks); on a whole
    # card CUDA reports less than nvidia-smi's total (CUDA_RESERVED_MIB), NVML the total.
    seen_mib = slice_mib or gpu_mib - CUDA_RESERVED_MIB
    tokens, default_seqs = batched_tokens(p, setting, slice_mib or gpu_mib, version)
    seqs = int(setting("max_num_seqs", min(default_seqs, tokens)))
    if tokens < 1:
        found.problems.append(f"--max-num-batched-tokens {tokens}: give a positive number of tokens")
    elif seqs > tokens:
        found.problems.append(f"max_num_seqs {seqs} is more than max_num_batched_tokens {tokens}: vLLM refuses it "
                              "(\"max_num_batched_tokens ... must be greater than or equal to max_num_seqs\", "
                              "config/scheduler.py). Lower max_num_seqs or raise --max-num-batched-tokens")
    budget_mib = math.ceil(seen_mib * util * MIB) / MIB
    if budget_mib > seen_mib - CUDA_CONTEXT_MIB and not extensible:
        found.problems.append(
            f"gpu_memory_utilization: {util} of the {seen_mib} MiB vLLM sees is {budget_mib:.0f} MiB, more than "
            f"is free once the CUDA context ({CUDA_CONTEXT_MIB} MiB) is made"
            f"{', which HAMi-core counts against the slice' if slice_mib else ''}: vLLM refuses to start "
            f"(\"Free memory on device ... is less than desired GPU memory utilization\"). Use at most "
            f"{math.floor((1 - CUDA_CONTEXT_MIB / seen_mib) * 100) / 100}"
            f"{', or a larger gpu_memory_request_mib' if slice_mib else ''}")
    elif slice_mib and seen_mib - budget_mib < CUDA_CONTEXT_MIB + UNCOUNTED_IN_SLICE_MIB:
        found.warnings.append(
            f"gpu_memory_utilization {util} leaves {seen_mib - budget_mib:.0f} MiB of the {slice_mib} MiB slice "
            f"outside vLLM's budget: what HAMi-core does not count (kernel images, CUDA graphs' internals; up to "
            f"{UNCOUNTED_IN_SLICE_MIB} MiB beyond the budget with the context, seen on an H200) would then sit on the "
            f"card outside the slice, in a neighbour's memory. Use at most "
            f"{math.floor((1 - (CUDA_CONTEXT_MIB + UNCOUNTED_IN_SLICE_MIB) / seen_mib) * 100) / 100}")
    return {"gpu_mib": gpu_mib, "gpus_available": gpus_available, "slice_mib": slice_mib,
            "usable_mib": slice_mib or gpu_mib, "seen_mib": seen_mib, "budget_mib": budget_mib, "util": util,
            "overhead_base_mib": int(p.get("overhead_mib") or 0),
            "overhead_given": bool(p.get("overhead_mib")), "eager": is_eager(p), "batched_tokens": tokens,
            "max_num_seqs": seqs, "extensible": extensible,
            "render_util": render_util, "block_size": block_size(p, version)}


# Flags with which vLLM 0.34 keeps its KV cache sized from the profiling estimate
# (config/vllm.py VllmConfig._resolve_extensible_kv_cache at v0.34.0).
EXTENSIBLE_OFF_FLAGS = ("--disable-extensible-kv-cache", "--no-enable-extensible-kv-cache", "--kv-cache-memory-bytes",
                        "--kv-cache-memory", "--num-gpu-blocks-override")
# What vLLM 0.34's extensible KV cache keeps back for transient activations
# after warm-up: max(1 GiB, 0.75 x the transient peak)
# (v1/worker/extensible_kv_cache.py measure_kv_cache_bytes, lines 592-673).
EXTENSIBLE_MARGIN_MIB = 1024
EXTENSIBLE_MARGIN_OF_PEAK = 0.75


def block_size(p: dict, version: str) -> int:
    """--block-size when given, else the release's default (16, 64 from 0.34)."""
    for flag, value in parse_args(p.get("extra_args")):
        if flag == "--block-size" and value and value.isdigit():
            return int(value)
    return releases.kv_block_size_default(version)


def extensible_kv_cache(p: dict, version: str) -> bool:
    """Whether vLLM sizes the KV cache from memory measured after warm-up (0.34 on CUDA, unless turned off)."""
    if not releases.extensible_kv_cache_default(version):
        return False
    return not any(flag in EXTENSIBLE_OFF_FLAGS or flag == "--enable-extensible-kv-cache" and value == "false"
                   for flag, value in parse_args(p.get("extra_args")))


# What vLLM 0.20.0 holds on each GPU besides the weights and the KV cache,
# when overhead_mib is not given: its own accounting
# (v1/worker/gpu_worker.py determine_available_memory: the KV cache gets
# ceil(total x gpu_memory_utilization) less the weights, the torch peak of
# its profiling run, the non-torch memory that run added and the CUDA
# graphs' estimated memory), each term derived from vLLM's source below and
# checked against 49 runs on H100 and H200, whole cards and HAMi slices
# (docs/real-vllm.md, tests/data/real-vllm/).
#
# The memory CUDA reports is less than nvidia-smi's memory.total (what
# gpu_memory_mib is given as): 143771 MiB on the H200 against 139.80 GiB
# through cudaMemGetInfo, 615 MiB less (measured), about 470 MiB on the
# H100 80GB. Inside a HAMi slice CUDA reports the slice itself (HAMi-core's
# cuMemGetInfo and cuDeviceTotalMem hooks, measured at all three commits).
CUDA_RESERVED_MIB = 620
# The CUDA context (0.51 GiB on the H200, vLLM's "worker init memory
# snapshot"): taken before vLLM measures, so outside its budget; HAMi-core
# charges it to the slice, so vLLM finds that much less free at start.
CUDA_CONTEXT_MIB = 520
# Beyond vLLM's budget, a server in a HAMi slice used up to 1327 MiB more of
# the card (nvidia-smi's per-process memory, from outside the slice; the
# context included): the slice must leave that much outside the budget.
UNCOUNTED_IN_SLICE_MIB = 900
# cuBLAS's workspace, allocated by the first matmul of the profiling run.
CUBLAS_WORKSPACE_MIB = 40
# The compiled (CUDA graphs) forward pass peaked up to 0.03 GiB above the eager one.
COMPILED_EXTRA_MIB = 32
# Non-torch memory the profiling run adds (kernel modules, NCCL at TP 1 none):
# 0.22-0.24 GiB on a whole card; 0.06 GiB in a HAMi slice, where HAMi-core
# counts only the allocations it hooks (all 36 slice runs).
NON_TORCH_MIB = {"card": 256, "slice": 64}
# The top-k/top-p Triton kernel's scratch: one row of the vocabulary per SM
# (132 on H100 and H200), in float32 (v1/sample/ops/topk_topp_sampler.py).
SAMPLER_SCRATCH_ROWS = 132
# CUDA graphs (vLLM's default; none with --enforce-eager): vLLM captures the
# two largest graphs of each kind and extrapolates ("Estimated CUDA graph
# memory", gpu_model_runner.py profile_cudagraph_memory). Fitted to the runs:
# a base by the largest piecewise and full capture sizes (the same inside a
# slice and on a card, for the dense and the MoE shape), and on a whole card
# a part per captured graph per layer that HAMi-core does not see in a slice.
GRAPH_BASE_MIB = 52
GRAPH_MIB_PER_PIECEWISE_TOKEN = 0.134
GRAPH_MIB_PER_FULL_TOKEN = 0.48
GRAPH_MIB_PER_GRAPH_LAYER = 0.072
# Beyond that at TP > 1: the buffers of NCCL and the custom all-reduce
# (0.54 GiB of non-torch memory for Qwen3-235B-A22B at TP 4 on H200, in
# vLLM's debug accounting; docs/real-vllm.md).
TP_COMM_MIB = 384
# And with CUDA graphs at TP > 1, the all-reduce's buffers for the captured
# graphs: the estimate for Qwen3-235B-A22B at TP 4 was 0.64 GiB, 0.15 above
# the one-GPU terms (the only multi-GPU graphs run fitted here).
TP_GRAPH_MIB = 160


def capture_sizes(max_num_seqs: int, batched_tokens: int) -> tuple[list[int], list[int]]:
    """vLLM 0.20.0's CUDA graph sizes (config/vllm.py, the default
    FULL_AND_PIECEWISE mode): piecewise graphs for 1, 2, 4, then every 8 up
    to 248, then every 16, up to min(2 x max_num_seqs, 512, batched
    tokens); full graphs for those up to max_num_seqs."""
    top = min(2 * max_num_seqs, 512, batched_tokens)
    sizes = [n for n in (1, 2, 4) if n <= top] + list(range(8, min(top, 248) + 1, 8)) + list(range(256, top + 1, 16))
    return sizes, [n for n in sizes if n <= max_num_seqs]


def batched_tokens(p: dict, setting, mem_seen_by_nvml_mib: int, version: str) -> tuple[int, int]:
    """(the tokens of vLLM's largest step, its default max_num_seqs):
    --max-num-batched-tokens when given, else vLLM's own default for the
    GPU's memory as NVML reports it - a HAMi slice's, inside one
    (engine/arg_utils.py get_batch_defaults: 8192 tokens and 1024 sequences
    from 70 GiB, not on an A100; 2048 and 256 below; 16384 from 160 GiB from
    0.28.0), doubled by --performance-mode throughput, and with chunked
    prefill turned off at least max_model_len (arg_utils.py
    _set_default_max_num_seqs_and_batched_tokens_args at v0.20.0). Seen: a
    68 GiB slice of an H200 profiled 2048 tokens."""
    product = ",".join(p.get("gpu_types") or [])
    tokens, seqs = releases.batch_defaults(version, mem_seen_by_nvml_mib, product)
    given, chunked = None, True
    for flag, value in parse_args(p.get("extra_args")):
        if flag == "--max-num-batched-tokens" and value is not None:
            given = int(value) if value.lstrip("-").isdigit() else None
        elif flag == "--performance-mode" and value == "throughput":
            tokens, seqs = tokens * 2, seqs * 2
        elif flag in ("--no-enable-chunked-prefill", "--disable-chunked-prefill"):
            chunked = False
        elif flag == "--enable-chunked-prefill":
            chunked = value not in ("false", "False", "0")
    if given is not None:
        return given, seqs
    if not chunked:
        max_len = setting("max_model_len")
        tokens = max(tokens, int(max_len) if max_len else 0)
    return tokens, seqs


def activation_peak_bytes(weights: dict, tp: int, tokens: int, seqs: int, graphs: bool) -> float:
    """The torch peak of vLLM 0.20.0's profiling run on one GPU
    (gpu_model_runner.py profile_run): cuBLAS's workspace; a MoE's two
    fused-experts workspaces, which stay allocated (fused_moe.py
    TritonExperts.workspace_shapes, modular_kernel.py); and the larger of
    the forward pass over `tokens` (the dense MLP's gate_up, its product
    and the residual, or attention's q/k/v) and the dummy sampler over
    min(seqs, tokens) rows (_dummy_sampler_run: bf16 and float32 logits,
    probabilities and the top-k/top-p scratch, 14 bytes per row and vocab
    entry). With torch.compile (CUDA graphs) the peak was never below one
    more copy of the embedding table (a GPU's share of vocab x hidden):
    1.04 GiB for the Qwen2.5-7B shape at 2048 tokens, where eager took 0.30."""
    s = weights["shape"]
    d = DTYPE_BYTES[weights["dtype"]]
    h, vocab = s["hidden"], s["vocab"]
    q = s["heads"] // tp * s["head_dim"]
    kv = max(1, s["kv_heads"] // tp) * s["head_dim"]
    qk_norm = s["architecture"].startswith("Qwen3")
    rows = min(seqs, tokens)
    workspace = 0
    if s["experts"]:
        im = s["moe_intermediate"] // tp
        k = s["experts_per_token"]
        workspace = d * (max(tokens * k * max(im, h), tokens * h) + tokens * k * max(2 * im, h))
        block = d * tokens * (s["experts"] + 3 * h)
    else:
        block = d * tokens * (3 * s["intermediate"] // tp + 4 * h)
    attention = d * tokens * ((q + 2 * kv) + ((q + kv) if qk_norm else 0) + q + 3 * h)
    scratch = min(1 << (min(SAMPLER_SCRATCH_ROWS, rows) - 1).bit_length(), SAMPLER_SCRATCH_ROWS)
    sampler = 14 * rows * vocab + 4 * scratch * vocab + d * tokens * h + 2 * d * rows * h
    peak = CUBLAS_WORKSPACE_MIB * MIB + workspace + max(block, attention, sampler)
    if graphs:
        peak = max(peak + COMPILED_EXTRA_MIB * MIB, CUBLAS_WORKSPACE_MIB * MIB + vocab * h * d / tp)
    return peak


def cuda_graph_bytes(weights: dict, tp: int, pp: int, tokens: int, seqs: int, in_slice: bool) -> float:
    """vLLM's estimate of its CUDA graphs' memory (see GRAPH_BASE_MIB)."""
    pieces, full = capture_sizes(seqs, tokens)
    if not pieces:
        return 0.0
    mib = GRAPH_BASE_MIB + GRAPH_MIB_PER_PIECEWISE_TOKEN * pieces[-1] + GRAPH_MIB_PER_FULL_TOKEN * max(full or [0])
    if not in_slice:
        layers = weights["shape"]["layers"] / pp
        mib += GRAPH_MIB_PER_GRAPH_LAYER * layers * (len(pieces) - 1 + max(len(full) - 1, 0))
    if tp * pp > 1:
        mib += TP_GRAPH_MIB
    return mib * MIB


def overhead_parts(weights: dict, mem: dict, tp: int, pp: int, seqs: int) -> dict:
    """What vLLM takes on each GPU besides weights and KV cache, by part, in
    bytes; overhead_mib, when given, is the whole of it."""
    if mem["overhead_given"]:
        return {"given": mem["overhead_base_mib"] * MIB}
    in_slice = mem["slice_mib"] is not None
    parts = {
        "activations": activation_peak_bytes(weights, tp, mem["batched_tokens"], seqs, not mem["eager"]),
        "non_torch": NON_TORCH_MIB["slice" if in_slice else "card"] * MIB + (TP_COMM_MIB * MIB if tp * pp > 1 else 0),
        "cuda_graphs": (0.0 if mem["eager"]
                        else cuda_graph_bytes(weights, tp, pp, mem["batched_tokens"], seqs, in_slice)),
    }
    lora = mem.get("lora")
    if lora:
        # The adapter slots, made with the weights at load (serving/_lora.py).
        parts["lora"] = lora_.lora_bytes_per_gpu(weights["shape"], lora["max_loras"], lora["max_lora_rank"], tp,
                                                 DTYPE_BYTES[weights["dtype"]])
    return parts


def is_eager(p: dict) -> bool:
    """--enforce-eager in the command line (the last of it and its --no- form)."""
    eager = False
    for flag, _value in parse_args(p.get("extra_args")):
        if flag in ("--enforce-eager", "--no-enforce-eager"):
            eager = flag == "--enforce-eager"
    return eager


def parallelism(setting, weights: dict, mem: dict, found: Findings) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel): the given ones checked, or the
    smallest tensor-parallel size that divides the heads and leaves room
    for a KV cache."""
    shape = weights["shape"]
    pp = int(setting("pipeline_parallel_size", 1))
    if shape["layers"] % pp:
        found.problems.append(f"pipeline_parallel_size {pp} does not divide the model's {shape['layers']} layers "
                              "evenly")

    def valid_tp(tp: int) -> bool:
        return shape["heads"] % tp == 0 and (shape["kv_heads"] % tp == 0 or tp % shape["kv_heads"] == 0)

    wanted_tp = setting("tensor_parallel_size")
    if wanted_tp is not None:
        tp = int(wanted_tp)
        if not valid_tp(tp):
            found.problems.append(f"tensor_parallel_size {tp} does not divide the {shape['heads']} attention heads "
                                  f"({shape['kv_heads']} KV heads): choose one of "
                                  f"{[t for t in range(1, mem['gpus_available'] + 1) if valid_tp(t)]}")
    else:
        sizes = [t for t in (1, 2, 4, 8, 16, 32) if t * pp <= mem["gpus_available"] and valid_tp(t)]
        fitting = [t for t in sizes if kv_room(weights, mem, t, pp) > 0]
        tp = fitting[0] if fitting else max(sizes)
        if not fitting and setting("pipeline_parallel_size") is None:
            tp, pp = across_nodes(shape, weights, mem, valid_tp) or (tp, pp)
    per_node = mem["gpus_available"]
    if tp > per_node:
        found.problems.append(f"tensor_parallel_size {tp} is more than the {per_node} GPUs of a node: tensor "
                              "parallelism stays within a node; split across nodes with pipeline_parallel_size")
    elif tp * pp > per_node and (tp * pp) % per_node:
        found.problems.append(f"tensor_parallel_size {tp} x pipeline_parallel_size {pp} = {tp * pp} GPUs does not "
                              f"fill whole nodes of {per_node} GPUs")
    return tp, pp


def across_nodes(shape: dict, weights: dict, mem: dict, valid_tp) -> tuple[int, int] | None:
    """When no tensor-parallel size within one node leaves room for a KV
    cache: the largest TP a node holds (its GPUs share the fast links) on each
    of the fewest nodes whose pipeline stages, one a node, do leave room -
    vLLM's own layout for a model larger than a node (TP inside, PP across;
    docs/serving/parallelism_scaling.md at v0.33.0). None when no count of
    nodes up to 16 does, or the layers do not split evenly."""
    node_tp = max((t for t in range(1, mem["gpus_available"] + 1) if valid_tp(t)), default=None)
    if node_tp is None:
        return None
    for nodes in range(2, 17):
        if shape["layers"] % nodes == 0 and kv_room(weights, mem, node_tp, nodes) > 0:
            return node_tp, nodes
    return None


def kv_room(weights: dict, mem: dict, tp: int, pp: int, parts: dict | None = None) -> float:
    """Bytes per GPU left for the KV cache: vLLM's share of what it sees of
    the GPU, less the GPU's share of the weights and the overhead (its parts,
    when the caller has them already)."""
    weights_gpu = weights_per_gpu_bytes(weights, tp, pp)
    if parts is None:
        parts = overhead_parts(weights, mem, tp, pp, mem["max_num_seqs"])
    room = mem["budget_mib"] * MIB - weights_gpu - sum(parts.values())
    if mem["extensible"]:
        # vLLM 0.34: min(budget - used, free after warm-up - margin) - the transient peak
        # (extensible_kv_cache.py measure_kv_cache_bytes); modelled from the source, not run here. With
        # overhead_mib given, all of it counts as the peak.
        peak = parts.get("activations", parts.get("given", 0.0))
        margin = max(EXTENSIBLE_MARGIN_MIB * MIB, EXTENSIBLE_MARGIN_OF_PEAK * peak)
        settled = sum(v for k, v in parts.items() if k in ("non_torch", "cuda_graphs", "lora"))
        free_after = (mem["seen_mib"] - CUDA_CONTEXT_MIB) * MIB - weights_gpu - settled
        room = min(room, free_after - margin - peak)
    return room


def kv_cache(p: dict, setting, weights: dict, mem: dict, tp: int, pp: int, found: Findings) -> dict:
    """Tokens the KV cache holds, the context length that fits, and how many
    full-length requests run at once."""
    shape = weights["shape"]
    mem["overhead_parts"] = overhead_parts(weights, mem, tp, pp, mem["max_num_seqs"])
    kv_bytes = kv_room(weights, mem, tp, pp, mem["overhead_parts"])
    mem["overhead_mib"] = sum(mem["overhead_parts"].values()) / MIB  # what the plan reports, for this TP
    kv_whole, kv_per_gpu_token = kv_bytes_per_token(shape, tp, weights["kv_elem"], pp)
    if kv_bytes <= 0:
        found.problems.append(
            f"the weights do not fit: {weights_per_gpu_bytes(weights, tp, pp) / GIB:.1f} GiB per GPU plus about "
            f"{mem['overhead_mib'] / 1024:.1f} GiB overhead is more than {mem['util']} of "
            f"the {mem['seen_mib'] / 1024:.1f} GiB vLLM sees; use more GPUs (a larger tensor_parallel_size), a quantized model, or "
            "a larger gpu_memory_utilization")
    block = mem["block_size"]
    kv_tokens = max(0, int(kv_bytes // (kv_per_gpu_token * block)) * block) if kv_bytes > 0 else 0
    max_pos = shape["max_position_embeddings"] or kv_tokens
    proposed = min(max_pos, kv_tokens)
    max_len = int(setting("max_model_len") or proposed)
    max_seqs = mem["max_num_seqs"]
    if max_len > max_pos and not p.get("allow_long_max_model_len"):
        found.problems.append(f"max_model_len {max_len} is above the model's max_position_embeddings {max_pos}: vLLM "
                              "refuses it (set VLLM_ALLOW_LONG_MAX_MODEL_LEN only for a model with rope scaling)")
    if kv_tokens and max_len > kv_tokens:
        found.problems.append(f"max_model_len {max_len} does not fit the KV cache: about {kv_tokens} tokens fit per "
                              f"replica ({kv_bytes / GIB:.1f} GiB per GPU at {kv_per_gpu_token} bytes per token); vLLM "
                              f"would refuse to start. The largest that fits is about {proposed}")
    concurrency = round(kv_tokens / max_len, 2) if max_len and kv_tokens else 0.0
    if kv_tokens and max_len <= kv_tokens and concurrency < max_seqs:
        found.warnings.append(f"max_num_seqs {max_seqs} x max_model_len {max_len} needs {max_seqs * max_len} KV tokens "
                              f"but {kv_tokens} fit: at full length only about {concurrency} requests run at once, the "
                              "rest wait (fine for mostly short prompts; lower max_model_len for more full-length "
                              "concurrency)")
    return {"bytes": kv_bytes, "whole": kv_whole, "per_gpu_token": kv_per_gpu_token, "tokens": kv_tokens,
            "proposed": proposed, "max_len": max_len, "max_seqs": max_seqs, "concurrency": concurrency}


def check_env(env_in: dict, version: str, found: Findings) -> None:
    """Environment variables that fight the cluster or leak the key."""
    if "CUDA_VISIBLE_DEVICES" in env_in:
        found.problems.append("env CUDA_VISIBLE_DEVICES: the device plugin chooses the GPUs and sets it; a value set "
                              "by hand fights that assignment. Remove it")
    if str(env_in.get("NCCL_SHM_DISABLE", "")) in ("1", "true", "True"):
        found.problems.append("env NCCL_SHM_DISABLE=1 turns off NCCL's shared-memory transport while the pod mounts "
                              "a /dev/shm volume for it; remove it")
    if "VLLM_API_KEY" in env_in:
        found.problems.append("env VLLM_API_KEY: a literal key in the pod spec is readable by anyone who can read the "
                              "pod; it comes from the Secret (api_key_secret)")
    value = env_in.get("VLLM_USE_MODELSCOPE")
    if value is not None and str(value).strip().lower() not in ("", "0", "false") \
            and not releases.modelscope_enabled_by(version, value):
        accepted = " or ".join(repr(v) for v in releases.since(releases.MODELSCOPE_TRUE_VALUES, version))
        found.warnings.append(f"env VLLM_USE_MODELSCOPE={value!r} does not enable ModelScope in vLLM {version}: it "
                              f"reads only {accepted}")


def hami_request(p: dict, gpus: int, tp: int, version: str, mem: dict, found: Findings) -> dict:
    """HAMi's resources and annotations for one replica; whether the image's
    glibc lets HAMi-core isolate a fractional GPU; and whether the HAMi
    release runs vLLM with tensor parallelism."""
    fractional = bool(mem["slice_mib"] is not None or p.get("gpu_cores_percent"))
    problems, warnings = hami.vllm_tensor_parallel_findings(p.get("hami_version"), releases.version_tuple(version), tp)
    found.problems += problems
    found.warnings += warnings
    if fractional:
        glibc = p.get("image_glibc")
        if glibc and not glibc_in_hami_range(glibc):
            found.warnings.append(f"a fractional GPU is asked for, and the image's glibc {glibc} is outside "
                                  f"{HAMI_GLIBC_KNOWN}, where HAMi-core's memory isolation is known to work (HAMi "
                                  "issues #897, #1190, #2101): vLLM may see and use the whole card")
        elif not glibc:
            found.warnings.append("a fractional GPU is asked for: HAMi-core's isolation depends on the image's glibc "
                                  f"(known to work for {HAMI_GLIBC_KNOWN}); give image_glibc to have it checked")
    if p.get("gpu_cores_percent") and int(p["gpu_cores_percent"]) < 100:
        found.warnings.append(
            f"gpu_cores_percent {int(p['gpu_cores_percent'])}: HAMi-core meters kernel launches but passes CUDA graph "
            "launches through unmetered (src/cuda/graph.c), and vLLM decodes through CUDA graphs unless "
            "--enforce-eager; under HAMi's default core policy it meters only while another container competes. "
            "Measured on an H200 without contention: vLLM 0.20.0 at gpucores 25, 50 and 100 decoded at the same "
            "rate (docs/real-vllm.md). Do not count on it to bound this replica's throughput; HAMi's scheduler "
            "still counts it when packing GPUs")
    resources, annotations = hami_resources(gpus, mem["slice_mib"], p.get("gpu_cores_percent"), p.get("gpu_types"))
    return {"fractional": fractional, "resources": resources, "annotations": annotations}


def hami_resources(gpus: int, slice_mib: int | None, cores: int | None, gpu_types: list | None) -> tuple[dict, dict]:
    """One pod's HAMi limits and annotations: GPUs, memory per GPU (none for
    whole GPUs), cores, and the GPU types it may use. The one place they are
    rendered (the serving plan, and the fleet plan before it)."""
    resources = {L.RESOURCE_GPU: str(gpus)}
    if slice_mib:
        resources[L.RESOURCE_GPUMEM] = str(slice_mib)
    if cores:
        resources[L.RESOURCE_GPUCORES] = str(int(cores))
    annotations = {}
    if gpu_types:
        annotations[L.HAMI_USE_GPUTYPE] = ",".join(gpu_types)
    return resources, annotations


def startup(p: dict, gpus: int, weights_per_gpu: float, version: str, nodes: int = 1) -> dict:
    """/dev/shm for NCCL (the pod's `gpus`), a startup probe whose budget
    covers loading the weights at the storage's speed plus warm-up, and
    vLLM's own engine-start timeout raised to that budget where it is
    shorter. From shared storage every node of a group reads the whole
    checkpoint at once: vLLM's loader reads every tensor and keeps its
    stage's (vllm/model_executor/model_loader/weight_utils.py,
    vllm/model_executor/models/utils.py at v0.33.0). From storage of each
    node's own, the budget stays one GPU's share at the storage's speed (the
    GPUs read in parallel), as for one node: not re-measured for groups."""
    shm_mib = min(64 * 1024, max(2 * 1024, 2 * 1024 * gpus)) if gpus > 1 else 1024
    bandwidth = float(p.get("load_bandwidth_mib_s") or 1000)
    load_s = weights_per_gpu / MIB / bandwidth * (gpus * nodes * nodes if p.get("shared_storage", True) else 1)
    budget_s = int(math.ceil((load_s + float(p.get("warmup_s") or 180)) * 1.5))
    period = 10
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period,
             "failureThreshold": max(6, math.ceil(budget_s / period)), "timeoutSeconds": 5}
    env = {}
    vllm_timeout = releases.engine_ready_timeout_default(version)
    if vllm_timeout and budget_s > vllm_timeout:
        env["VLLM_ENGINE_READY_TIMEOUT_S"] = str(budget_s)
    return {"shm_mib": shm_mib, "budget_s": budget_s, "probe": probe, "env": env}


# The first release whose `vllm serve` takes --shutdown-timeout (vllm/engine/
# arg_utils.py at v0.18.0; absent at v0.17.1), and its drain when left out here.
SHUTDOWN_TIMEOUT_SINCE = "0.18.0"
DEFAULT_DRAIN_S = 60
# After the drain vLLM stops its engine processes (SIGTERM, then a kill at
# the deadline: vllm/v1/utils.py shutdown) and the API server exits.
ENGINE_EXIT_S = 10


def shutdown(p: dict, setting, version: str, found: Findings) -> dict:
    """How a pod stops without dropping a request. The kubelet runs the
    preStop hook first (the pod keeps serving while its endpoint leaves the
    Service), then sends SIGTERM. From 0.18.0 vLLM then lets running
    requests, streams included, finish for up to --shutdown-timeout seconds
    and aborts what is left (default 0: abort at once; vllm/engine/
    arg_utils.py and vllm/v1/engine/core.py _handle_shutdown, v0.18.0 to
    v0.33.0); before 0.18.0 every running request is aborted. The grace
    period must cover preStop, the drain and the engine's exit, or the kubelet
    kills the drain: a shorter one is refused."""
    prestop = int(_num(p.get("prestop_drain_s", 15), "prestop_drain_s"))
    has_flag = "--shutdown-timeout" in flags_for(version)["flags"]
    given = setting("drain_timeout_s")
    args: list = []
    if not has_flag:
        if given is not None and _num(given, "drain_timeout_s") > 0:
            found.problems.append(f"drain_timeout_s {given}: vLLM {version} has no --shutdown-timeout (from "
                                  f"{SHUTDOWN_TIMEOUT_SINCE}) and aborts every running request on SIGTERM; choose "
                                  f"vLLM {SHUTDOWN_TIMEOUT_SINCE} or newer, or leave it out")
        else:
            found.warnings.append(f"vLLM {version} aborts every running request on SIGTERM (--shutdown-timeout, which "
                                  f"lets them finish, arrived in {SHUTDOWN_TIMEOUT_SINCE}): a rollout or scale-down "
                                  "cuts the requests in flight on the pods it stops")
        drain = 0
    else:
        drain = int(_num(DEFAULT_DRAIN_S if given is None else given, "drain_timeout_s"))
        if drain > 0:
            args = ["--shutdown-timeout", str(drain)]
        else:
            found.warnings.append("drain_timeout_s 0: vLLM aborts every running request on SIGTERM, so a rollout "
                                  "or scale-down cuts the requests in flight on the pods it stops")
    need = prestop + drain + ENGINE_EXIT_S
    grace = p.get("termination_grace_period_s")
    if grace is None:
        grace = need
    elif int(_num(grace, "termination_grace_period_s")) < need:
        found.problems.append(
            f"termination_grace_period_s {grace} is shorter than the preStop drain ({prestop} s) + vLLM's drain of "
            f"running requests (--shutdown-timeout {drain} s) + {ENGINE_EXIT_S} s for its engine to exit: the "
            f"kubelet would kill requests still running; give {need} or more, or leave it out to have it computed")
    return {"args": args, "prestop_s": prestop, "drain_s": drain, "grace_s": int(grace)}


def container(p: dict, setting, wanted: dict, kept: list, weights: dict, mem: dict, kv: dict, tp: int,
              pp: int, fractional: bool, startup_env: dict, stop_args: list) -> dict:
    """The container's args and env (the image's entrypoint is `vllm serve`):
    the plan's flags once, then the user's, the key from its Secret."""
    model_path = str(p.get("model_path") or wanted.get("model_path") or "/models/model")
    served = setting("served_model_name")
    if served is not None and not str(served).strip():
        raise ParameterError("served_model_name: empty; give the name clients will ask for (it is the model's id "
                             "in /v1/models), or leave the option out to use the model folder's name")
    served = str(served or os.path.basename(model_path.rstrip("/")))
    port = int(setting("port", 8000))
    args = [model_path, "--served-model-name", served, "--host", "0.0.0.0", "--port", str(port),
            "--tensor-parallel-size", str(tp), "--max-model-len", str(kv["max_len"]),
            "--max-num-seqs", str(kv["max_seqs"])]
    if mem["render_util"]:
        args[-2:-2] = ["--gpu-memory-utilization", f"{mem['util']:g}"]
    if pp > 1:
        args += ["--pipeline-parallel-size", str(pp)]
    if weights["dtype"] != weights["shape"]["dtype"]:
        args += ["--dtype", weights["dtype"]]
    if weights["quant"]:
        args += ["--quantization", weights["quant"]]
    if weights["kv_dtype"] != "auto":
        args += ["--kv-cache-dtype", weights["kv_dtype"]]
    if p.get("allow_trust_remote_code"):
        args.append("--trust-remote-code")
    args += stop_args
    args += (mem.get("lora") or {}).get("args", [])
    for flag, value in kept:
        args += [flag] if value is None else [flag, value]
    if tp > 1 and fractional and "--disable-custom-all-reduce" not in args:
        # Custom all-reduce shares memory between GPUs by CUDA IPC, which fails
        # in HAMi's virtualised contexts: HAMi's own example
        # (examples/nvidia/vllm_cross_vgpu.yaml at v2.10.0) turns it off.
        args.append("--disable-custom-all-reduce")
    env_in = {**startup_env, **dict(p.get("env") or {})}
    env = [{"name": k, "value": str(v)} for k, v in sorted(env_in.items())
           if k not in ("CUDA_VISIBLE_DEVICES", "VLLM_API_KEY")]
    env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": p.get("api_key_secret") or "vllm-api-key", "key": p.get("api_key_secret_key") or "api-key"}}})
    if not any(e["name"] == "HF_HUB_OFFLINE" for e in env):
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})  # the model is local: never reach a hub at start
    return {"served": served, "port": port, "args": args, "env": env}


def group(args: list, env: list, nodes: int, tp: int, pp: int, port: int, boot: dict, version: str,
          found: Findings) -> dict | None:
    """A replica larger than a node: a group of pods, one a node with all of
    its GPUs, in vLLM's own multi-node mode (no Ray). Every rank runs the same
    command line plus --nnodes, --node-rank and the leader's address; ranks
    1 and up run --headless (no API server: vLLM's serve.py runs them as
    workers only). Ranks are laid out TP innermost, so each node holds whole
    tensor-parallel groups and one pipeline stage. The workers' probes ask
    the leader's /health: a worker is ready when its group serves, and is
    restarted when its group's leader stops answering (a rank cannot rejoin a
    running group, so the whole group starts again)."""
    if nodes <= 1:
        return None
    if "--nnodes" not in flags_for(version)["flags"]:
        found.problems.append(f"one replica needs {nodes} nodes, and vLLM {version} has no multi-node mode without "
                              "Ray (--nnodes, from 0.11.1): choose vLLM 0.11.1 or newer")
    if (tp * pp) % nodes:
        found.problems.append(f"{tp * pp} GPUs (TP {tp} x PP {pp}) do not split evenly over {nodes} nodes")
    if "--distributed-executor-backend" in args:
        backend = args[args.index("--distributed-executor-backend") + 1]
        if backend not in ("mp",):
            found.problems.append(f"--distributed-executor-backend {backend}: a group of pods runs vLLM's own "
                                  "multi-node mode, which takes the mp backend (vllm/config/parallel.py at v0.33.0: "
                                  "nnodes > 1 only with mp, uni or external_launcher); leave it out")
    ranks = []
    for rank in range(nodes):
        rank_args = list(args) + ["--nnodes", str(nodes), "--node-rank", str(rank),
                                  "--master-addr", f"$({GROUP_LEADER_ADDR_ENV})", "--master-port",
                                  str(GROUP_MASTER_PORT)]
        ranks.append(rank_args + (["--headless"] if rank else []))
    # vLLM binds and advertises VLLM_HOST_IP (vllm/utils/network_utils.py get_ip): the pod's own address.
    group_env = [e for e in env if e["name"] != "VLLM_HOST_IP"]
    group_env.append({"name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    # Exits non-zero unless the leader answers 200 (the image has python3, not curl).
    leader_health = (f"import http.client, os; c = http.client.HTTPConnection(os.environ['{GROUP_LEADER_ADDR_ENV}'], "
                     f"{port}, timeout=4); c.request('GET', '/health'); assert c.getresponse().status == 200")
    check = {"exec": {"command": ["python3", "-c", leader_health]}}
    startup_probe = {**check, "periodSeconds": boot["probe"]["periodSeconds"],
                     "failureThreshold": boot["probe"]["failureThreshold"], "timeoutSeconds": 5}
    return {"nodes": nodes, "master_port": GROUP_MASTER_PORT, "leader_addr_env": GROUP_LEADER_ADDR_ENV,
            "ranks": ranks, "env": group_env,
            "worker_startup_probe": startup_probe,
            "worker_readiness_probe": {**check, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
            "worker_liveness_probe": {**check, "periodSeconds": 30, "failureThreshold": 3, "timeoutSeconds": 5}}


def serving_runner(p: dict, config: dict, found: Findings) -> str:
    """generate or pooling: what vLLM will serve the model for (_model_task),
    from config.json (as model_weights read it), a sentence-transformers
    modules.json beside it, and --runner in extra_args."""
    modules = None
    if p.get("model_dir"):
        path = os.path.join(p["model_dir"], "modules.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                modules = f.read()
    asked = "auto"
    for flag, value in parse_args(p.get("extra_args")):
        if flag == "--runner" and value:
            asked = value
    if asked not in model_task.RUNNER_CHOICES:
        asked = "auto"  # vLLM's own parser refuses other values; the flag checks report it
    runner = model_task.runner_type(config, model_task.has_pooling_modules(modules), asked)
    if runner == model_task.POOLING:
        found.warnings.append(
            f"vLLM serves this model ({', '.join(config.get('architectures') or ['no architecture'])}) for pooling "
            "(embeddings), so it answers /v1/embeddings and has no /v1/chat/completions: check it with "
            "endpoint_check api: embeddings (vllm_serve does so)")
    return runner


def plan(p: dict) -> dict:
    """The whole plan, step by step; see Findings for how problems are
    reported."""
    found = Findings()
    version, note = resolve_version(p.get("vllm_version") or DEFAULT_VLLM_VERSION)
    if note:
        found.warnings.append(note)
    wanted, kept = read_command_line(p, version, found)
    check_numbers(p, wanted)

    def setting(name: str, default=None):
        value = p.get(name)
        return value if value is not None else wanted.get(name, default)

    weights = model_weights(p, setting)
    mem = gpu_memory(p, setting, version, found)
    model_path = str(p.get("model_path") or wanted.get("model_path") or "/models/model")
    mem["lora"] = lora_.lora_plan(p.get("lora_adapters") or [], p.get("lora_max_loras"), p.get("lora_max_rank"),
                                  str(p.get("lora_root") or model_path.rstrip("/") + "-lora"),
                                  str(setting("served_model_name") or ""), weights["shape"], found.problems,
                                  found.warnings)
    tp, pp = parallelism(setting, weights, mem, found)
    gpus = tp * pp
    # A replica larger than a node is a group of pods, one a node with all of
    # its GPUs (vLLM's multi-node mp backend: --nnodes, --node-rank).
    nodes = max(1, math.ceil(gpus / mem["gpus_available"]))
    pod_gpus = gpus // nodes if gpus % nodes == 0 else gpus
    weights_per_gpu = weights["weight_bytes"] / gpus
    kv = kv_cache(p, setting, weights, mem, tp, pp, found)
    check_env(dict(p.get("env") or {}), version, found)
    hami_plan = hami_request(p, pod_gpus, tp, version, mem, found)
    boot = startup(p, pod_gpus, weights_per_gpu, version, nodes)
    stop = shutdown(p, setting, version, found)
    run = container(p, setting, wanted, kept, weights, mem, kv, tp, pp, hami_plan["fractional"], boot["env"],
                    stop["args"])
    pods = group(run["args"], run["env"], nodes, tp, pp, run["port"], boot, version, found)
    if not p.get("network_policy"):
        found.warnings.append(
            f"vLLM {version} answers {', '.join(releases.OPEN_INFERENCE_PATHS)} (completions), /metrics and /tokenize "
            f"without the API key; only {', '.join(releases.key_guarded_prefixes(version))} need it. Let only your "
            "clients reach the pods (vllm_serve_network_policy_enabled)")
    runner = serving_runner(p, weights["config"], found)
    cuda_major = releases.image_cuda_major(version, p.get("image_tag") or "")

    shape = weights["shape"]
    result = {
        "vllm_version": version,
        "model": {"architecture": shape["architecture"], "parameters": weights["params"],
                  "parameters_b": round(weights["params"] / 1e9, 2), "dtype": weights["dtype"],
                  "quantization": weights["quant"], "weight_bytes": weights["weight_bytes"],
                  "weight_gib": round(weights["weight_bytes"] / GIB, 2),
                  "weights_from": "safetensors index" if weights["from_index"] else "config estimate",
                  "layers": shape["layers"], "attention_heads": shape["heads"], "kv_heads": shape["kv_heads"],
                  "head_dim": shape["head_dim"], "experts": shape["experts"],
                  "max_position_embeddings": shape["max_position_embeddings"]},
        "gpus": {"per_replica": gpus, "tensor_parallel_size": tp, "pipeline_parallel_size": pp,
                 "nodes": nodes, "per_pod": pod_gpus,
                 "memory_mib": mem["gpu_mib"], "usable_mib": mem["usable_mib"], "fractional": hami_plan["fractional"]},
        "memory": {"weights_per_gpu_gib": round(weights_per_gpu_bytes(weights, tp, pp) / GIB, 2),
                   "overhead_per_gpu_gib": round(mem["overhead_mib"] / 1024, 2),
                   "kv_cache_per_gpu_gib": round(max(kv["bytes"], 0) / GIB, 2),
                   "kv_bytes_per_token": kv["whole"], "kv_bytes_per_token_per_gpu": kv["per_gpu_token"],
                   "kv_cache_tokens": kv["tokens"], "gpu_memory_utilization": mem["util"],
                   "overhead_parts_gib": {k: round(v / GIB, 3) for k, v in mem["overhead_parts"].items()},
                   "max_num_batched_tokens": mem["batched_tokens"], "kv_block_size": mem["block_size"],
                   "vllm_sees": {
                       "total_mib": mem["seen_mib"],
                       "free_at_start_mib": mem["seen_mib"] - CUDA_CONTEXT_MIB,
                       "budget_mib": round(mem["budget_mib"]),
                       "utilization_of": ("the HAMi slice (nvidia.com/gpumem): HAMi-core reports it as the "
                                          "GPU's total to CUDA and NVML" if mem["slice_mib"] else
                                          "the memory CUDA reports, less than nvidia-smi's total")}},
        "max_model_len": kv["max_len"],
        "proposed_max_model_len": kv["proposed"],
        "max_num_seqs": kv["max_seqs"],
        "max_concurrency_at_max_len": kv["concurrency"],
        "served_model_name": run["served"],
        "lora": ({k: v for k, v in mem["lora"].items() if k != "args"}
                 | {"memory_per_gpu_gib": round(mem["overhead_parts"].get("lora", 0.0) / GIB, 3)}
                 if mem["lora"] else {}),
        "runner": runner,
        "port": run["port"],
        "args": pods["ranks"][0] if pods else run["args"],
        "env": pods["env"] if pods else run["env"],
        "group": pods,
        "resources": {"limits": hami_plan["resources"]},
        "annotations": hami_plan["annotations"],
        "image": {"cuda_major": cuda_major, "min_driver_branch": min_driver_branch(cuda_major)},
        "api_key_paths": list(releases.key_guarded_prefixes(version)),
        "shm_size_mib": boot["shm_mib"],
        "startup_probe": boot["probe"],
        "startup_budget_s": boot["budget_s"],
        "shutdown": {"prestop_s": stop["prestop_s"], "drain_timeout_s": stop["drain_s"],
                     "termination_grace_period_s": stop["grace_s"]},
        "problems": found.problems,
        "warnings": found.warnings,
    }
    result["summary"] = summary(result)
    return result


def summary(r: dict) -> str:
    m, g, mem = r["model"], r["gpus"], r["memory"]
    lines = [
        f"{m['architecture']}: {m['parameters_b']}B parameters, {m['weight_gib']} GiB of {m['quantization'] or m['dtype']} "
        f"weights ({m['weights_from']})",
        f"{g['per_replica']} GPU(s) per replica (TP {g['tensor_parallel_size']}, PP {g['pipeline_parallel_size']}), "
        f"{g['usable_mib']} MiB each{' (a HAMi slice)' if g['fractional'] else ''}",
        f"per GPU: {mem['weights_per_gpu_gib']} GiB weights + ~{mem['overhead_per_gpu_gib']} GiB overhead + "
        f"{mem['kv_cache_per_gpu_gib']} GiB KV cache at gpu_memory_utilization {mem['gpu_memory_utilization']}",
        f"KV cache: {mem['kv_cache_tokens']} tokens ({mem['kv_bytes_per_token_per_gpu']} bytes/token/GPU); "
        f"max_model_len {r['max_model_len']} (largest that fits: {r['proposed_max_model_len']}), "
        f"{r['max_concurrency_at_max_len']} requests at full length",
        f"/dev/shm {r['shm_size_mib']} MiB; startup budget {r['startup_budget_s']} s",
        f"stopping a pod: preStop {r['shutdown']['prestop_s']} s, then running requests may finish for "
        f"{r['shutdown']['drain_timeout_s']} s; grace period {r['shutdown']['termination_grace_period_s']} s",
    ]
    if r["group"]:
        lines.append(f"one replica is a group of {g['nodes']} pods, one a node with its {g['per_pod']} GPUs: TP "
                     f"{g['tensor_parallel_size']} within each, PP {g['pipeline_parallel_size']} across them (vLLM's "
                     "multi-node mode; rank 0 serves the API)")
    lines += [f"PROBLEM: {x}" for x in r["problems"]] + [f"warning: {x}" for x in r["warnings"]]
    return "\n".join(lines)
