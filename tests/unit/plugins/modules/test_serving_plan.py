"""The serving_plan module: its options reach the plan, its warnings are
Ansible warnings, a problem fails the task with every problem listed."""

from __future__ import annotations

import json
from pathlib import Path

from support.modules import call, call_in_own_process

CONFIGS = Path(__file__).parents[2] / "plugins" / "module_utils" / "serving" / "model_configs"


def qwen_7b() -> dict:
    return json.loads((CONFIGS / "qwen2.5-7b-instruct.json").read_text())


def test_plan_with_a_warning():
    result = call_in_own_process("serving_plan", {"model_config": qwen_7b(), "gpu_memory_mib": 81559,
                                                  "served_model_name": "q", "gpu_memory_request_mib": 40000})
    assert result.get("failed") is not True, result.get("msg")
    assert result["changed"] is False and result["served_model_name"] == "q"
    assert result["resources"]["limits"]["nvidia.com/gpumem"] == "40000"
    # The glibc warning of a fractional GPU: shown as an Ansible warning, kept under plan_warnings.
    assert any("glibc" in w for w in result["plan_warnings"])
    assert any("glibc" in w["event"]["msg"] for w in result["warnings"])  # ansible-core 2.21's warning records


def test_problems_fail_the_task_with_all_of_them(capsys):
    result = call("serving_plan", {"model_config": qwen_7b(), "gpu_memory_mib": 81559,
                                   "extra_args": "--max-paddings 256 --api-key sk-secret-in-args",
                                   "env": {"CUDA_VISIBLE_DEVICES": "0"}}, capsys)
    assert result["failed"] is True
    assert result["msg"].startswith("the serving plan has 3 problem(s):")
    assert "sk-secret-in-args" not in json.dumps(result)


def test_problems_reported_without_failing_when_asked(capsys):
    result = call("serving_plan", {"model_config": qwen_7b(), "gpu_memory_mib": 81559, "fail_on_problems": False,
                                   "env": {"NCCL_SHM_DISABLE": "1"}}, capsys)
    assert result.get("failed") is not True and len(result["problems"]) == 1


def test_model_config_and_dir_are_exclusive(capsys):
    result = call("serving_plan", {"model_config": qwen_7b(), "model_dir": "/nonexistent", "gpu_memory_mib": 1},
                  capsys)
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
