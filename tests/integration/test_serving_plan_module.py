"""inferops.vllm.serving_plan as a task: a plan from a real model directory,
and the write-up's deployment refused with every problem listed at once."""

from __future__ import annotations

import json
from pathlib import Path

from support.ansible import run_module
from support.hub_cache import TEST_MODEL

CONFIGS = Path(__file__).resolve().parents[1] / "unit" / "plugins" / "module_utils" / "serving" / "model_configs"


def test_plan_from_a_model_directory():
    result = run_module("inferops.vllm.serving_plan", {
        "model_dir": str(TEST_MODEL), "model_path": "/models/minilm", "gpu_memory_mib": 81559,
        "gpu_memory_request_mib": 8192, "max_model_len": 512, "image_glibc": "2.28"})
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is False
    assert result["model"]["architecture"] == "BertModel"
    assert result["args"][:3] == ["/models/minilm", "--served-model-name", "minilm"]
    assert result["resources"]["limits"] == {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8192"}
    assert "KV cache" in result["summary"]


def test_writeup_deployment_is_refused_with_all_problems():
    result = run_module("inferops.vllm.serving_plan", {
        "model_config": json.loads((CONFIGS / "qwen3-235b-a22b-instruct-2507.json").read_text()),
        "gpu_memory_mib": 81559, "gpu_memory_request_mib": 638976,
        "extra_args": ["--tensor-parallel-size=8", "--max-paddings=256", "--api-key=sk-abc", "--trust-remote-code"],
        "env": {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}})
    assert result["failed"] is True
    assert "5 problem(s)" in result["msg"] and len(result["problems"]) == 5
    for fragment in ("--max-paddings", "--api-key", "--trust-remote-code", "CUDA_VISIBLE_DEVICES",
                     "638976 = 8 x 79872"):
        assert fragment in result["msg"]
    # The pasted key is masked everywhere, the echoed arguments included.
    assert "sk-abc" not in json.dumps(result)
