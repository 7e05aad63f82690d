# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What changed between vLLM releases that a deployment must get right, one
table, each fact with the release it changed in and where it was read
(vLLM's released wheels and sdists; file names are inside the release).
The flags each release accepts are in _vllm_flags_data (generated)."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving._vllm_flags_data import VERSIONS


def version_tuple(version) -> tuple[int, int, int]:
    parts = str(version).strip().lstrip("v").split(".")
    try:
        numbers = [int(p) for p in parts[:3]]
    except ValueError:
        raise ParameterError(f"vllm_version: {version!r} is not a version such as {LATEST}") from None
    if len(numbers) < 2:
        raise ParameterError(f"vllm_version: {version!r} is not a version such as {LATEST}")
    return tuple((numbers + [0])[:3])  # type: ignore[return-value]


def _newest(versions) -> str:
    return max(versions, key=version_tuple)


# The newest release the collection knows (the catalog's newest, 0.34.0 now):
# the default everywhere.
LATEST = _newest(VERSIONS)


def since(table: list[tuple[str, object]], version) -> object:
    """The value of a (first release, value) table for a release."""
    wanted = version_tuple(version)
    value = None
    for first, entry in sorted(table, key=lambda row: version_tuple(row[0])):
        if wanted >= version_tuple(first):
            value = entry
    return value


# Flags gone from a release on: (first release without it, what to do instead).
# From the catalog (the last release that still has each) and the releases'
# engine/arg_utils.py.
REMOVED_FLAGS = {
    "--max-paddings": ("0.2.0", "drop it: the engine pads batches itself"),
    "--task": ("0.13.0", "drop it: the model's architecture sets the task (see --runner and --convert)"),
    "--cuda-graph-sizes": ("0.13.0", "drop it, or give the sizes in --compilation-config"),
    "--disable-mm-preprocessor-cache": ("0.13.0", "drop it"),
    "--enable-multimodal-encoder-data-parallel": ("0.13.0", "drop it"),
    "--logits-processor-pattern": ("0.17.0", "drop it"),
    "--disable-log-requests": ("0.17.0", "drop it: request logging is off by default (0.33 accepts it again as "
                                         "the inverse of --enable-log-requests)"),
    "--swap-space": ("0.18.0", "drop it: the V1 engine does not swap KV blocks to CPU (it had no effect since 0.12)"),
    "--disable-frontend-multiprocessing": ("0.19.0", "drop it"),
    "--max-num-partial-prefills": ("0.27.0", "drop it"),
    "--max-long-partial-prefills": ("0.27.0", "drop it"),
    "--calculate-kv-scales": ("0.28.0", "drop it"),
    "--override-attention-dtype": ("0.28.0", "drop it"),
}
# Flags that parse but do nothing in a range of releases (first, first
# without the note): the plan leaves them out, with a warning.
NO_EFFECT_FLAGS = {
    "--swap-space": ("0.12.0", "0.18.0", "parses but has no effect on GPU serving (the V1 engine does not swap KV "
                                         "blocks to CPU), and is gone from 0.18.0; drop it"),
    # Deprecated from 0.10.2 (engine/arg_utils.py: deprecated=True), gone in 0.17.0.
    "--disable-log-requests": ("0.10.2", "0.17.0", "is deprecated and does nothing: request logging is off by "
                                                   "default (--enable-log-requests turns it on); drop it"),
}


def no_effect(flag: str, version) -> str | None:
    entry = NO_EFFECT_FLAGS.get(flag)
    if entry and version_tuple(entry[0]) <= version_tuple(version) < version_tuple(entry[1]):
        return entry[2]
    return None


# Flags that fight the device plugin's assignment of GPUs, from their first release.
DEVICE_FLAGS = {
    # engine/arg_utils.py of 0.24.0: picks physical GPUs by id, bypassing the
    # device plugin's choice (it does not set CUDA_VISIBLE_DEVICES); the same
    # in 0.34.0 (EngineArgs.device_ids, _resolve_device_ids).
    "--device-ids": "0.24.0",
}

# The default share of GPU memory vLLM takes when the KV cache is sized from
# the profiling estimate (config/cache.py): 0.9 until 0.19.x, 0.92 from
# 0.20.0. That is every release up to 0.33.x, and 0.34.0 with the extensible
# KV cache off (CacheConfig.DEFAULT_GPU_MEMORY_UTILIZATION = 0.92 at v0.34.0).
GPU_MEMORY_UTILIZATION = [("0.10.0", 0.9), ("0.20.0", 0.92)]

# The extensible KV cache, new in 0.34.0 (--enable-extensible-kv-cache /
# --disable-extensible-kv-cache): address space for the KV cache is reserved
# through the driver's virtual memory calls (cuMemAddressReserve, cuMemCreate,
# cuMemMap: utils/vmm_driver.py, utils/extensible_tensor.py) and physical
# pages are committed after warm-up and CUDA graph capture, sized from the
# memory then measured free (v1/worker/extensible_kv_cache.py
# measure_kv_cache_blocks). Left unset it is on for CUDA and ROCm
# (config/cache.py CacheConfig.enable_extensible_kv_cache, default None;
# config/vllm.py VllmConfig._resolve_extensible_kv_cache), except with
# --kv-cache-memory-bytes, --num-gpu-blocks-override, elastic EP or a KV
# connector that cannot use driver-mapped memory, and it falls back to the
# estimate where the driver lacks virtual memory management
# (v1/worker/gpu_worker.py extensible_kv_cache_unsupported_reason).
EXTENSIBLE_KV_CACHE = [("0.10.0", False), ("0.34.0", True)]
# With it, gpu_memory_utilization left unset means 1.0 (config/cache.py
# CacheConfig.resolved_gpu_memory_utilization at v0.34.0); a value between
# 0.7 and 1.0 that keeps 1 GiB or more out of the KV cache draws a warning
# (extensible_kv_cache.py measure_kv_cache_blocks).
EXTENSIBLE_GPU_MEMORY_UTILIZATION = 1.0

# The KV cache block, in tokens, when --block-size is not given
# (config/cache.py CacheConfig.DEFAULT_BLOCK_SIZE; platforms/cuda.py before
# 0.18): 16 until 0.33.x, 64 from 0.34.0. An attention backend may prefer
# another size (platforms/interface.py _preferred_block_size_for_backends).
KV_BLOCK_SIZE = [("0.10.0", 16), ("0.34.0", 64)]

# vLLM's own --max-num-batched-tokens and --max-num-seqs for `vllm serve`
# (UsageContext.OPENAI_API_SERVER) when they are not given, by the GPU's total
# memory (engine/arg_utils.py EngineArgs.get_batch_defaults): rows of
# (at least this many GiB, max_num_batched_tokens, max_num_seqs), the first
# that holds wins. The 70 GiB row leaves out A100s (the device name holds
# "a100") in every release and, from 0.33.0, GB10 (compute capability 12.1).
# The same in 0.10.0 through 0.27.1; the 160 GiB row (B200, B300) from 0.28.0;
# unchanged in 0.34.0. --performance-mode throughput doubles both.
BATCH_DEFAULTS = [
    ("0.10.0", ((70, 8192, 1024), (0, 2048, 256))),
    ("0.28.0", ((160, 16384, 1024), (70, 8192, 1024), (0, 2048, 256))),
]
GB10_SMALL_TIER = "0.33.0"

# VLLM_USE_MODELSCOPE (envs.py): only "true" (any case) until 0.27.x; "1"
# or "true" (stripped, any case) from 0.28.0 (the same in 0.34.0).
MODELSCOPE_TRUE_VALUES = [("0.10.0", ("true",)), ("0.28.0", ("1", "true"))]

# VLLM_ENGINE_READY_TIMEOUT_S (envs.py, from 0.14.0, default 600; still 600
# in 0.34.0, read in v1/engine/core_client.py and passed on to the Rust
# frontend by v1/utils.py): how long the server waits for its engine
# processes before a TimeoutError. With several API servers (the default when
# data parallel > 1) that wait includes loading the weights.
ENGINE_READY_TIMEOUT = [("0.10.0", None), ("0.14.0", 600)]

# Path prefixes that need the API key (the authentication middleware:
# entrypoints/openai/api_server.py, later serve/middleware/authenticate.py;
# GUARDED_PREFIX there is unchanged in 0.34.0). Everything else answers
# without it: /health, /metrics, /tokenize, and /invocations, which serves
# completions (entrypoints/serve/sagemaker/api_router.py in 0.34.0).
KEY_GUARDED_PREFIXES = [
    ("0.10.0", ("/v1",)),
    ("0.22.0", ("/v1", "/v2", "/inference")),
    ("0.27.0", ("/v1", "/v2", "/inference", "/cohere")),
]
OPEN_INFERENCE_PATHS = ("/invocations",)

# The official image's CUDA (docker/Dockerfile ARG CUDA_VERSION and the
# release pipeline): 12.9 until 0.19.x (0.19 also published a -cu130 tag);
# 13.0 from 0.20.0, with a -cu129 image beside it through 0.32.0; 0.33.0
# publishes no CUDA 12 image. 0.34.0 (sdist: .buildkite/release-pipeline.yaml
# builds with CUDA_VERSION=13.0.2, docker/Dockerfile defaults to 13.0.3;
# .buildkite/scripts/publish-release-images.sh) publishes the CUDA 13.0 image
# and an -efa variant of it; its CUDA 13.4 (-cu134) build is nightly-only.
IMAGE_CUDA_MAJOR = [("0.10.0", 12), ("0.20.0", 13)]
CUDA12_TAG_SUFFIX = "-cu129"
CUDA12_TAG_RELEASES = ("0.20.0", "0.33.0")  # from, and first release without


def gpu_memory_utilization_default(version, extensible_kv_cache: bool = False) -> float:
    """vLLM's gpu_memory_utilization when none is given: the estimate-based
    default, or with extensible_kv_cache (a release that has it, with it on)
    1.0."""
    if extensible_kv_cache and since(EXTENSIBLE_KV_CACHE, version):
        return EXTENSIBLE_GPU_MEMORY_UTILIZATION
    return since(GPU_MEMORY_UTILIZATION, version)


def extensible_kv_cache_default(version) -> bool:
    """Whether the release sizes the KV cache from memory measured after
    warm-up by default on a CUDA GPU (see EXTENSIBLE_KV_CACHE for when it
    turns itself off)."""
    return since(EXTENSIBLE_KV_CACHE, version)


def kv_block_size_default(version) -> int:
    return since(KV_BLOCK_SIZE, version)


def batch_defaults(version, gpu_mib: int, product: str = "") -> tuple[int, int]:
    """vLLM's (max_num_batched_tokens, max_num_seqs) for `vllm serve` on a GPU
    of gpu_mib MiB; product is the GPU's name (e.g. the node's
    nvidia.com/gpu.product), for the A100 and GB10 exceptions. vLLM tells
    GB10 by compute capability 12.1; here its name stands for it."""
    name = str(product or "").lower()
    small = "a100" in name or ("gb10" in name and version_tuple(version) >= version_tuple(GB10_SMALL_TIER))
    for min_gib, tokens, seqs in since(BATCH_DEFAULTS, version):
        if gpu_mib >= min_gib * 1024 and not (min_gib == 70 and small):
            return tokens, seqs
    raise AssertionError("BATCH_DEFAULTS ends with a 0 GiB row")


def modelscope_enabled_by(version, value) -> bool:
    return str(value).strip().lower() in since(MODELSCOPE_TRUE_VALUES, version)


def engine_ready_timeout_default(version):
    return since(ENGINE_READY_TIMEOUT, version)


def key_guarded_prefixes(version) -> tuple[str, ...]:
    return since(KEY_GUARDED_PREFIXES, version)


def image_cuda_major(version, tag: str = "") -> int:
    """The CUDA major version of the official image for a release (and a tag
    that may carry a -cuXYZ suffix)."""
    for suffix, major in (("-cu12", 12), ("-cu13", 13)):
        if suffix in (tag or ""):
            return major
    return since(IMAGE_CUDA_MAJOR, version)


def removal(flag: str, version) -> str | None:
    """What to do about a flag the release no longer has, if it ever had it."""
    if flag in REMOVED_FLAGS and version_tuple(version) >= version_tuple(REMOVED_FLAGS[flag][0]):
        first, advice = REMOVED_FLAGS[flag]
        return f"removed in vLLM {first}: {advice}"
    return None
