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


# The newest release the collection knows: the default everywhere.
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
    # device plugin's choice (it does not set CUDA_VISIBLE_DEVICES).
    "--device-ids": "0.24.0",
}

# The default share of GPU memory vLLM takes (config/cache.py): 0.9 until
# 0.19.x, 0.92 from 0.20.0.
GPU_MEMORY_UTILIZATION = [("0.10.0", 0.9), ("0.20.0", 0.92)]

# VLLM_USE_MODELSCOPE (envs.py): only "true" (any case) until 0.27.x; "1"
# or "true" (stripped, any case) from 0.28.0.
MODELSCOPE_TRUE_VALUES = [("0.10.0", ("true",)), ("0.28.0", ("1", "true"))]

# VLLM_ENGINE_READY_TIMEOUT_S (envs.py, from 0.14.0, default 600): how long
# the server waits for its engine processes before a TimeoutError. With
# several API servers (the default when data parallel > 1) that wait
# includes loading the weights.
ENGINE_READY_TIMEOUT = [("0.10.0", None), ("0.14.0", 600)]

# Path prefixes that need the API key (the authentication middleware:
# entrypoints/openai/api_server.py, later serve/middleware/authenticate.py).
# Everything else answers without it: /health, /metrics, /tokenize, and
# /invocations, which serves completions.
KEY_GUARDED_PREFIXES = [
    ("0.10.0", ("/v1",)),
    ("0.22.0", ("/v1", "/v2", "/inference")),
    ("0.27.0", ("/v1", "/v2", "/inference", "/cohere")),
]
OPEN_INFERENCE_PATHS = ("/invocations",)

# The official image's CUDA (docker/Dockerfile ARG CUDA_VERSION and the
# release pipeline): 12.9 until 0.19.x (0.19 also published a -cu130 tag);
# 13.0 from 0.20.0, with a -cu129 image beside it through 0.32.0; 0.33.0
# publishes no CUDA 12 image.
IMAGE_CUDA_MAJOR = [("0.10.0", 12), ("0.20.0", 13)]
CUDA12_TAG_SUFFIX = "-cu129"
CUDA12_TAG_RELEASES = ("0.20.0", "0.33.0")  # from, and first release without


def gpu_memory_utilization_default(version) -> float:
    return since(GPU_MEMORY_UTILIZATION, version)


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
