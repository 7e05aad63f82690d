"""What vLLM serves a model for (vLLM 0.20.0's rule, _model_task), on real
models' files: the sandbox's tiny-chat and the published configs serve
chat; all-MiniLM-L6-v2 (a sentence-transformers BERT) serves embeddings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.serving import _model_task as task
from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import plan

ROOT = Path(__file__).resolve().parents[5]
CONFIGS = Path(__file__).resolve().parent / "model_configs"
MODELS = ROOT / ".cache" / "test-models"


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.json")), ids=lambda p: p.stem)
def test_published_generative_configs_serve_chat(config):
    assert task.runner_type(json.loads(config.read_text())) == task.GENERATE


def test_sentence_transformers_bert_serves_embeddings():
    model = MODELS / "all-minilm-l6-v2"
    config = json.loads((model / "config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    assert task.has_pooling_modules((model / "modules.json").read_text())
    assert task.runner_type(config, pooling_modules=True) == task.POOLING
    # BertModel alone is pooling too: "Model" is the last suffix vLLM tries.
    assert task.runner_type(config) == task.POOLING


def test_sandbox_model_serves_chat():
    model = MODELS / "tiny-chat"
    assert task.runner_type(json.loads((model / "config.json").read_text())) == task.GENERATE
    assert not (model / "modules.json").exists()


@pytest.mark.parametrize("arch, runner", [
    ("Qwen2ForCausalLM", "generate"), ("LlavaForConditionalGeneration", "generate"), ("GPT2LMHeadModel", "generate"),
    ("Qwen2ForRewardModeling", "pooling"), ("BertForSequenceClassification", "pooling"),
    ("XLMRobertaModel", "pooling"), ("GteNewModel", "pooling"), ("SomethingNew", "generate"),
])
def test_suffix_rule(arch, runner):
    assert task.runner_type({"architectures": [arch]}) == runner


def test_sentence_transformers_causal_lm_is_pooling():
    # "Some Sentence Transformers models use *ForCausalLM archs" (vLLM): modules.json wins.
    modules = json.dumps([{"idx": 0, "type": "sentence_transformers.models.Transformer"},
                          {"idx": 1, "type": "sentence_transformers.models.Pooling"}])
    assert task.runner_type({"architectures": ["Qwen2ForCausalLM"]}, task.has_pooling_modules(modules)) == "pooling"
    assert not task.has_pooling_modules("not json") and not task.has_pooling_modules(None)


def test_runner_flag_overrides():
    assert task.runner_type({"architectures": ["BertModel"]}, runner="generate") == "generate"
    assert task.runner_from_args(["/m", "--runner", "pooling"]) == "pooling"
    assert task.runner_from_args(["/m", "--runner=generate"]) == "generate"
    assert task.runner_from_args(["/m"]) == "auto"


def test_plan_reports_the_runner_and_warns_for_pooling():
    embed = plan({"model_dir": str(MODELS / "all-minilm-l6-v2"), "gpu_memory_mib": 81559, "max_model_len": 256})
    assert embed["runner"] == "pooling"
    assert any("/v1/embeddings" in w and "api: embeddings" in w for w in embed["warnings"])
    chat = plan({"model_dir": str(MODELS / "tiny-chat"), "gpu_memory_mib": 81559, "max_model_len": 512})
    assert chat["runner"] == "generate"
    assert not any("/v1/embeddings" in w for w in chat["warnings"])
