# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What vLLM serves a model for: generation (chat and completions) or
pooling (embeddings, classification). vLLM decides it at start from the
model; the OpenAI routes it registers follow: a pooling model gets no
/v1/chat/completions at all (404), a generative one no /v1/embeddings.

vLLM 0.20.0's rule (vllm/config/model.py, ModelConfig._get_default_runner_type
and _SUFFIX_TO_DEFAULTS), with --runner auto:
1. a sentence-transformers model (modules.json naming a Pooling module) is
   pooling, whatever its architecture;
2. else the first architecture that vLLM's registry knows, or whose name
   ends in one of the suffixes below (in this order), decides;
3. else generate.
Routes: vllm/entrypoints/openai/api_server.py build_app registers the chat,
completions and responses routers only if "generate" is a supported task,
and the pooling routers only for pooling tasks. Pure logic: no I/O."""

from __future__ import annotations

import json

GENERATE, POOLING = "generate", "pooling"
# (suffix, runner), first match wins; "Model" last, as vLLM lets the other *Model suffixes win.
SUFFIX_TO_RUNNER = (
    ("ForCausalLM", GENERATE),
    ("ForConditionalGeneration", GENERATE),
    ("ChatModel", GENERATE),
    ("LMHeadModel", GENERATE),
    ("ForTextEncoding", POOLING),
    ("EmbeddingModel", POOLING),
    ("ForSequenceClassification", POOLING),
    ("ForTokenClassification", POOLING),
    ("ForAudioClassification", POOLING),
    ("ForImageClassification", POOLING),
    ("ForVideoClassification", POOLING),
    ("ClassificationModel", POOLING),
    ("ForRewardModeling", POOLING),
    ("RewardModel", POOLING),
    ("Model", POOLING),
)
SENTENCE_TRANSFORMERS_POOLING = "sentence_transformers.models.Pooling"
RUNNER_CHOICES = ("auto", GENERATE, POOLING)


def has_pooling_modules(modules_json: str | None) -> bool:
    """modules.json of a sentence-transformers model names a Pooling module."""
    if not modules_json:
        return False
    try:
        modules = json.loads(modules_json)
    except ValueError:
        return False
    return isinstance(modules, list) and any(
        isinstance(m, dict) and m.get("type") == SENTENCE_TRANSFORMERS_POOLING for m in modules)


def runner_type(config: dict, pooling_modules: bool = False, runner: str = "auto") -> str:
    """generate or pooling, as vLLM would choose for this config.json."""
    if runner in (GENERATE, POOLING):
        return runner
    if pooling_modules:
        return POOLING
    for arch in config.get("architectures") or []:
        for suffix, kind in SUFFIX_TO_RUNNER:
            if arch.endswith(suffix):
                return kind
    return GENERATE


def runner_from_args(args: list[str] | None) -> str:
    """The --runner value given on vLLM's command line (auto if none)."""
    args = list(args or [])
    for i, arg in enumerate(args):
        if arg.startswith("--runner="):
            return arg.split("=", 1)[1]
        if arg == "--runner" and i + 1 < len(args):
            return args[i + 1]
    return "auto"
