"""The plan per vLLM release: flags removed or brought back, vLLM's own
defaults and behaviours per release (serving/_vllm_releases.py cites where
each was read), and HAMi's releases with tensor parallelism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.serving import _vllm_releases as releases
from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import DEFAULT_VLLM_VERSION, plan

CONFIGS = Path(__file__).parent / "model_configs"
H100_MIB = 81559


def qwen(name: str = "qwen2.5-7b-instruct") -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def planned(**options) -> dict:
    return plan({"model_config": qwen(), "gpu_memory_mib": H100_MIB, **options})


def test_default_is_the_newest_release():
    assert DEFAULT_VLLM_VERSION == releases.LATEST == "0.34.0"
    assert planned()["vllm_version"] == "0.34.0"


def test_0_33_with_new_flags_has_no_problem():
    r = planned(vllm_version="0.33.0", extra_args="--disable-prefix-caching --max-num-queued-reqs 64")
    assert r["problems"] == []
    assert r["args"][-3:] == ["--disable-prefix-caching", "--max-num-queued-reqs", "64"]


def test_0_34_takes_its_new_flags_and_warns_about_its_deprecations():
    r = planned(vllm_version="0.34.0",
                extra_args="--disable-extensible-kv-cache --max-num-inflight-kv-loads 4 --shuffle-safetensors-files")
    # The same warnings but the concurrency one: the KV cache sized from the estimate holds another count.
    assert r["problems"] == []
    assert [w for w in r["warnings"] if not w.startswith("max_num_seqs")] == \
        [w for w in planned(vllm_version="0.34.0")["warnings"] if not w.startswith("max_num_seqs")]
    assert r["args"][-4:] == ["--disable-extensible-kv-cache", "--max-num-inflight-kv-loads", "4",
                              "--shuffle-safetensors-files"]
    old = planned(vllm_version="0.33.0", extra_args=["--disable-extensible-kv-cache"])
    assert any(p.startswith("--disable-extensible-kv-cache is not a flag of vLLM 0.33.0") for p in old["problems"])
    dep = planned(vllm_version="0.34.0", extra_args=["--max-cudagraph-capture-size", "256"])
    assert dep["problems"] == [] and "--max-cudagraph-capture-size is deprecated in vLLM 0.34.0" in dep["warnings"]
    assert not any("deprecated" in w for w in planned(vllm_version="0.33.0",
                                                      extra_args=["--max-cudagraph-capture-size", "256"])["warnings"])


def test_swap_space_on_0_33_is_refused_naming_0_18():
    r = planned(vllm_version="0.33.0", extra_args=["--swap-space", "4"])
    assert any(p.startswith("--swap-space is not a flag of vLLM 0.33.0") and "removed in vLLM 0.18.0" in p
               for p in r["problems"]), r["problems"]


def test_disable_log_requests_refused_on_0_20_accepted_on_0_33():
    old = planned(vllm_version="0.20.0", extra_args=["--disable-log-requests"])
    assert any(p.startswith("--disable-log-requests is not a flag of vLLM 0.20.0") and "removed in vLLM 0.17.0" in p
               for p in old["problems"]), old["problems"]
    new = planned(vllm_version="0.33.0", extra_args=["--disable-log-requests"])
    assert new["problems"] == [] and "--disable-log-requests" in new["args"]


def test_another_patch_is_checked_against_the_minor_we_carry():
    r = planned(vllm_version="0.20.1")
    assert r["vllm_version"] == "0.20.2" and any("flags checked against 0.20.2" in w for w in r["warnings"])


def test_unknown_release_names_the_range():
    with pytest.raises(Exception, match=r"vllm_version: 0.9.2 is not supported; supported: 0.10.0 to 0.34.0"):
        planned(vllm_version="0.9.2")


@pytest.mark.parametrize("version, util", [("0.12.0", 0.9), ("0.19.1", 0.9), ("0.20.0", 0.92), ("0.33.0", 0.92)])
def test_gpu_memory_utilization_default_follows_vllm(version, util):
    assert planned(vllm_version=version)["memory"]["gpu_memory_utilization"] == util


def test_the_extensible_kv_cache_of_0_34_and_its_defaults():
    # Estimate-based sizing (every release before 0.34, 0.34 with the
    # extensible KV cache off) keeps 0.92; with it on, unset means 1.0.
    assert releases.gpu_memory_utilization_default("0.34.0") == 0.92
    assert releases.gpu_memory_utilization_default("0.34.0", extensible_kv_cache=True) == 1.0
    assert releases.gpu_memory_utilization_default("0.33.0", extensible_kv_cache=True) == 0.92
    assert releases.gpu_memory_utilization_default("0.19.1", extensible_kv_cache=True) == 0.9
    assert [releases.extensible_kv_cache_default(v) for v in ("0.20.0", "0.33.0", "0.34.0")] == [False, False, True]
    assert [releases.kv_block_size_default(v) for v in ("0.10.0", "0.33.0", "0.34.0")] == [16, 16, 64]


@pytest.mark.parametrize("version, gpu_mib, product, expected", [
    ("0.20.0", H100_MIB, "NVIDIA-H100-80GB-HBM3", (8192, 1024)),
    ("0.20.0", 143771, "NVIDIA-H200", (8192, 1024)),
    ("0.20.0", 183359, "NVIDIA-B200", (8192, 1024)),         # no 160 GiB row before 0.28
    ("0.27.1", 183359, "NVIDIA-B200", (8192, 1024)),
    ("0.28.0", 183359, "NVIDIA-B200", (16384, 1024)),
    ("0.34.0", 183359, "NVIDIA-B200", (16384, 1024)),
    ("0.34.0", 143771, "NVIDIA-H200", (8192, 1024)),         # 140 GiB: below the 160 GiB row
    ("0.34.0", 81920, "NVIDIA-A100-SXM4-80GB", (2048, 256)),  # A100s keep the small defaults
    ("0.20.0", 81920, "NVIDIA-A100-SXM4-80GB", (2048, 256)),
    ("0.34.0", 46068, "NVIDIA-L40S", (2048, 256)),
    ("0.32.0", 122570, "NVIDIA-GB10", (8192, 1024)),         # GB10 on the small tier from 0.33
    ("0.33.0", 122570, "NVIDIA-GB10", (2048, 256)),
])
def test_vllm_batch_defaults_per_release_and_gpu(version, gpu_mib, product, expected):
    assert releases.batch_defaults(version, gpu_mib, product) == expected


def test_device_ids_fight_the_device_plugin():
    r = planned(vllm_version="0.33.0", extra_args=["--device-ids", "0,1"])
    assert any(p.startswith("--device-ids picks GPUs by id") for p in r["problems"])
    assert "--device-ids" not in r["args"]
    # Before 0.24.0 it is simply not a flag.
    assert any(p.startswith("--device-ids is not a flag of vLLM 0.23.0")
               for p in planned(vllm_version="0.23.0", extra_args=["--device-ids", "0"])["problems"])


@pytest.mark.parametrize("version, value, warned", [
    ("0.27.1", "1", True), ("0.27.1", "true", False), ("0.27.1", "TRUE", False),
    ("0.28.0", "1", False), ("0.33.0", " True ", False), ("0.33.0", "yes", True), ("0.33.0", "false", False),
    ("0.34.0", "1", False), ("0.34.0", "yes", True),
])
def test_modelscope_values_per_release(version, value, warned):
    r = planned(vllm_version=version, env={"VLLM_USE_MODELSCOPE": value})
    assert any("does not enable ModelScope" in w for w in r["warnings"]) is warned


def test_engine_ready_timeout_raised_to_the_startup_budget():
    big = plan({"model_config": qwen("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": H100_MIB,
                "vllm_version": "0.33.0", "load_bandwidth_mib_s": 200})
    env = {e["name"]: e.get("value") for e in big["env"]}
    assert big["startup_budget_s"] > 600 and env["VLLM_ENGINE_READY_TIMEOUT_S"] == str(big["startup_budget_s"])
    # vLLM before 0.14 had no such variable; a small model's budget stays under vLLM's 600 s.
    old = plan({"model_config": qwen("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": H100_MIB,
                "vllm_version": "0.13.0", "load_bandwidth_mib_s": 200})
    assert "VLLM_ENGINE_READY_TIMEOUT_S" not in {e["name"] for e in old["env"]}
    assert "VLLM_ENGINE_READY_TIMEOUT_S" not in {e["name"] for e in planned()["env"]}


@pytest.mark.parametrize("version, prefixes", [
    ("0.20.2", ["/v1"]), ("0.22.1", ["/v1", "/v2", "/inference"]), ("0.33.0", ["/v1", "/v2", "/inference", "/cohere"]),
    ("0.34.0", ["/v1", "/v2", "/inference", "/cohere"]),
])
def test_key_guarded_paths_and_the_open_ones(version, prefixes):
    r = planned(vllm_version=version)
    assert r["api_key_paths"] == prefixes
    assert any("/invocations (completions), /metrics and /tokenize without the API key" in w for w in r["warnings"])
    assert not any("/invocations" in w for w in planned(vllm_version=version, network_policy=True)["warnings"])


@pytest.mark.parametrize("version, tag, cuda, driver", [
    ("0.12.0", "", 12, 525), ("0.19.1", "", 12, 525), ("0.20.0", "", 13, 580), ("0.33.0", "", 13, 580),
    ("0.34.0", "", 13, 580), ("0.34.0", "v0.34.0-efa", 13, 580),
    ("0.20.0", "v0.20.0-cu129", 12, 525), ("0.19.1", "v0.19.1-cu130", 13, 580),
])
def test_image_cuda_sets_the_oldest_driver(version, tag, cuda, driver):
    assert planned(vllm_version=version, image_tag=tag)["image"] == {"cuda_major": cuda, "min_driver_branch": driver}


def tp2_slice(**options) -> dict:
    return plan({"model_config": qwen("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": H100_MIB,
                 "tensor_parallel_size": 8, "gpu_memory_request_mib": 80000, **options})


def test_tensor_parallel_on_old_hami_is_refused_and_custom_all_reduce_off_on_slices():
    old = tp2_slice(hami_version="2.7.1")
    assert any(p.startswith("tensor_parallel_size 8 with vLLM above 0.18 fails to launch on HAMi 2.7.1")
               for p in old["problems"])
    ok = tp2_slice(hami_version="2.10.0")
    assert not any("HAMi 2" in p for p in ok["problems"]) and "--disable-custom-all-reduce" in ok["args"]
    whole = plan({"model_config": qwen("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": H100_MIB,
                  "hami_version": "2.10.0"})
    assert whole["gpus"]["tensor_parallel_size"] == 8 and "--disable-custom-all-reduce" not in whole["args"]
    # Before vLLM 0.18 HAMi 2.7.1 was fine with tensor parallelism.
    assert not any("fails to launch" in p for p in tp2_slice(hami_version="2.7.1", vllm_version="0.17.1")["problems"])
