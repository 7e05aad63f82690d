"""serving_plan against real model configs, checked against hand
computations written out here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import (
    kv_bytes_per_token, model_shape, parameter_count, parse_args, plan,
)

CONFIGS = Path(__file__).parent / "model_configs"
GIB = 1024 ** 3
H100_MIB = 81559


def cfg(name: str) -> dict:
    return json.loads((CONFIGS / f"{name}.json").read_text())


def test_parameter_counts_match_hand_computation_and_published_sizes():
    # Qwen3-235B-A22B: per layer attention 4096*64*128*2 + 2*4096*4*128 = 71,303,168;
    # experts 128*3*4096*1536 + router 4096*128 = 2,416,443,392; x94 layers;
    # embeddings and lm_head 2*151936*4096.
    assert parameter_count(model_shape(cfg("qwen3-235b-a22b-instruct-2507"))) == \
        94 * (71_303_168 + 2_416_443_392) + 2 * 151936 * 4096 == 235_092_836_352
    # Qwen2.5-7B: attention 3584*3584*2 + 2*3584*512 = 29,360,128; MLP 3*3584*18944 = 203,685,888.
    assert parameter_count(model_shape(cfg("qwen2.5-7b-instruct"))) == \
        28 * (29_360_128 + 203_685_888) + 2 * 152064 * 3584 == 7_615_283_200  # card: 7.61B (biases left out)
    # Llama-3.1-70B: attention 8192*8192*2 + 2*8192*1024 = 150,994,944; MLP 3*8192*28672 = 704,643,072.
    assert parameter_count(model_shape(cfg("llama-3.1-70b"))) == \
        80 * (150_994_944 + 704_643_072) + 2 * 128256 * 8192 == 70_552_387_584  # card: 70.6B
    # Qwen2.5-0.5B, tied embeddings: attention 896*896*2 + 2*896*128 = 1,835,008; MLP 3*896*4864.
    assert parameter_count(model_shape(cfg("qwen2.5-0.5b-instruct"))) == \
        24 * (1_835_008 + 13_074_432) + 151936 * 896 == 493_961_216  # card: 0.49B


def test_kv_cache_per_token():
    s = model_shape(cfg("qwen3-235b-a22b-instruct-2507"))
    # 2 (K and V) x 94 layers x 4 KV heads x 128 x 2 bytes
    assert kv_bytes_per_token(s, 1, 2) == (192_512, 192_512)
    # TP 8 > 4 KV heads: each GPU keeps one head, so 1/4 of the whole, not 1/8.
    assert kv_bytes_per_token(s, 8, 2) == (192_512, 48_128)
    s7 = model_shape(cfg("qwen2.5-7b-instruct"))
    assert kv_bytes_per_token(s7, 2, 2) == (2 * 28 * 4 * 128 * 2, 2 * 28 * 2 * 128 * 2)


def test_qwen3_235b_needs_tp8_on_h100():
    r = plan({"model_config": cfg("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": H100_MIB, "gpus_per_node": 8})
    assert r["problems"] == []
    assert r["gpus"]["tensor_parallel_size"] == 8  # TP 4 would need 109.5 GiB of weights per GPU
    weights = 235_092_836_352 * 2
    assert r["model"]["weight_bytes"] == weights
    # KV room per GPU: vLLM's share of what CUDA reports (81559 MiB less CUDA_RESERVED_MIB) - weights/8 - what
    # each GPU holds whole (docs/real-vllm.md): TP 8 > 4 KV heads, so the K and V projections of one head (1/2 of
    # a head more than its 1/8 share), the router (128 experts) and the rotary cache (262144 positions x 128) -
    # the overhead parts the plan reports - and with 0.34's extensible KV cache (the default release's) what it
    # keeps back after warm-up; at 48,128 bytes per token, in blocks of 64 tokens.
    whole = 94 * 2 * 4096 * 128 * (1 - 4 / 8) * 2 + 94 * 4096 * 128 * (1 - 1 / 8) * 2 + 262144 * 128 * 2
    assert r["memory"]["weights_per_gpu_gib"] == round((weights / 8 + whole) / GIB, 2)
    parts = {k: v * GIB for k, v in r["memory"]["overhead_parts_gib"].items()}
    assert set(parts) == {"activations", "non_torch", "cuda_graphs"}
    assert r["memory"]["gpu_memory_utilization"] == 1.0 and "--gpu-memory-utilization" not in r["args"]
    seen = (H100_MIB - 620) * 2**20
    assert r["memory"]["vllm_sees"]["total_mib"] == H100_MIB - 620
    margin = max(GIB, 0.75 * parts["activations"])
    room = seen - 520 * 2**20 - weights / 8 - whole - sum(parts.values()) - margin
    assert abs(r["memory"]["kv_cache_tokens"] - int(room // (48_128 * 64)) * 64) <= 64  # the overhead's rounding
    assert r["memory"]["kv_block_size"] == 64
    # About 333k tokens fit, more than the model's 262144 positions: the context is capped by the model.
    assert r["memory"]["kv_cache_tokens"] > 262144 and r["proposed_max_model_len"] == 262144
    assert r["resources"] == {"limits": {"nvidia.com/gpu": "8"}}  # whole GPUs: no gpumem
    assert r["shm_size_mib"] == 16 * 1024


def test_qwen25_7b_fits_one_gpu_and_refuses_tp8():
    r = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB})
    assert r["gpus"]["tensor_parallel_size"] == 1 and r["problems"] == []
    assert r["max_model_len"] == 32768  # capped by max_position_embeddings: the KV cache holds far more
    bad = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "tensor_parallel_size": 8})
    assert any("does not divide the 28 attention heads" in x for x in bad["problems"])


def test_llama_70b_smallest_tp_and_long_context_problem():
    r = plan({"model_config": cfg("llama-3.1-70b"), "gpu_memory_mib": H100_MIB, "vllm_version": "0.12.0"})
    # 141.1 GB of bf16 weights: TP 2 leaves 0.9 (vLLM 0.12's default) of what CUDA reports - 65.7 - 0.03
    # (rotary cache) - the overhead parts per GPU for KV, in blocks of 16 tokens; the weights counted from
    # config.json of a dense model get the 0.5% vLLM's loader was seen to take beyond them.
    assert r["gpus"]["tensor_parallel_size"] == 2 and r["memory"]["gpu_memory_utilization"] == 0.9
    per_gpu = 2 * 80 * 4 * 128 * 2  # 8 KV heads over 2 GPUs
    parts = sum(r["memory"]["overhead_parts_gib"].values()) * GIB
    room = math.ceil((H100_MIB - 620) * 2**20 * 0.9) - 70_552_387_584 * 2 / 2 * 1.005 - 131072 * 128 * 2 - parts
    assert abs(r["memory"]["kv_cache_tokens"] - int(room // per_gpu) // 16 * 16) <= 16
    long = plan({"model_config": cfg("llama-3.1-70b"), "gpu_memory_mib": H100_MIB, "tensor_parallel_size": 2,
                 "max_model_len": 131072})
    assert any("max_model_len 131072 does not fit the KV cache" in x for x in long["problems"])


def test_small_model_on_a_hami_slice():
    r = plan({"model_config": cfg("qwen2.5-0.5b-instruct"), "gpu_memory_mib": H100_MIB,
              "gpu_memory_request_mib": 10240, "gpu_types": ["H100"], "image_glibc": "2.41"})
    assert r["resources"]["limits"] == {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "10240"}
    assert r["annotations"] == {"nvidia.com/use-gputype": "H100"}
    assert r["gpus"]["usable_mib"] == 10240  # utilization applies to the slice HAMi-core reports
    assert any("glibc 2.41 is outside 2.17-2.39" in w for w in r["warnings"])
    # vLLM's image (Ubuntu 22.04, glibc 2.35): inside what was measured working (2.39, docs/real-vllm.md)
    ubuntu = plan({"model_config": cfg("qwen2.5-0.5b-instruct"), "gpu_memory_mib": H100_MIB,
                   "gpu_memory_request_mib": 10240, "image_glibc": "2.35"})
    assert not any("glibc" in w for w in ubuntu["warnings"])
    assert r["problems"] == []


WRITEUP_COMMAND = """python3 -m vllm.entrypoints.openai.api_server \\
  --model=/opt/app/models \\
  --served-model-name=Qwen3-235B-A22B-Instruct-2507 \\
  --port=9997 \\
  --host=0.0.0.0 \\
  --trust-remote-code \\
  --dtype=auto \\
  --enable-prefix-caching \\
  --enable-chunked-prefill \\
  --tensor-parallel-size=8 \\
  --gpu-memory-utilization=0.85 \\
  --api-key=${API_KEY} \\
  --max-model-len=131072 \\
  --tool-call-parser=hermes \\
  --enable-auto-tool-choice \\
  --swap-space=16 \\
  --disable-log-requests \\
  --max-num-seqs=128 \\
  --max-paddings=256"""


def test_the_writeups_command_comes_back_with_every_problem():
    r = plan({
        "model_config": cfg("qwen3-235b-a22b-instruct-2507"), "vllm_version": "0.12.0",
        "gpu_memory_mib": H100_MIB, "gpus_per_node": 8, "gpu_memory_request_mib": 638976,
        "extra_args": WRITEUP_COMMAND,
        "env": {"NCCL_SHM_DISABLE": "1", "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1",
                "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7", "NCCL_IB_DISABLE": "0"},
    })
    problems, warnings = "\n".join(r["problems"]), "\n".join(r["warnings"])
    assert "--max-paddings is not a flag of vLLM 0.12.0" in problems
    assert "--api-key puts the key on the command line" in problems
    assert "--trust-remote-code runs Python code" in problems
    assert "638976 = 8 x 79872: use 79872" in problems and "memory per GPU" in problems
    assert "CUDA_VISIBLE_DEVICES" in problems and "NCCL_SHM_DISABLE=1" in problems
    assert "--swap-space parses but has no effect" in warnings
    assert "--disable-log-requests is deprecated and does nothing" in warnings
    # 131072 fits one sequence in the KV cache, but not 128 of them at that length.
    assert "max_num_seqs 128 x max_model_len 131072" in warnings
    assert r["max_model_len"] == 131072 and r["gpus"]["tensor_parallel_size"] == 8
    assert r["memory"]["gpu_memory_utilization"] == 0.85
    # What it renders carries none of the mistakes, and the name and port it was given.
    args = r["args"]
    assert args[0] == "/opt/app/models" and "--api-key" not in args and "--trust-remote-code" not in args
    assert "--max-paddings" not in args and "--swap-space" not in args and "--disable-log-requests" not in args
    assert args[args.index("--served-model-name") + 1] == "Qwen3-235B-A22B-Instruct-2507"
    assert args[args.index("--port") + 1] == "9997"
    assert ["--tool-call-parser", "hermes"] == args[args.index("--tool-call-parser"):args.index("--tool-call-parser") + 2]
    names = {e["name"] for e in r["env"]}
    assert "CUDA_VISIBLE_DEVICES" not in names
    assert next(e for e in r["env"] if e["name"] == "VLLM_API_KEY")["valueFrom"]["secretKeyRef"]["name"]


def test_flags_are_checked_per_version():
    # --disable-log-requests is a plain flag in 0.10, deprecated from 0.11 on.
    old = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "vllm_version": "0.10.0",
                "extra_args": ["--disable-log-requests"]})
    assert not any("--disable-log-requests" in w for w in old["warnings"]) and "--disable-log-requests" in old["args"]
    bad = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB,
                "extra_args": ["--enable-prefix-cachin", "--no-enable-prefix-caching", "--enable-auto-tool-choice"]})
    assert any("--enable-prefix-cachin is not a flag" in p and "did you mean --enable-prefix-caching" in p
               for p in bad["problems"])
    assert any("needs --tool-call-parser" in p for p in bad["problems"])
    assert "--no-enable-prefix-caching" in bad["args"]


def test_parse_args_forms():
    assert parse_args("vllm serve /m --port 8000 --enforce-eager -tp=2") == [
        (None, "/m"), ("--port", "8000"), ("--enforce-eager", None), ("-tp", "2")]


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ParameterError, match="gpu_memory_mib"):
        plan({"model_config": cfg("qwen2.5-7b-instruct")})
    with pytest.raises(ParameterError, match="vllm_version: 0.9.0 is not supported"):
        plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": 1, "vllm_version": "0.9.0"})
    with pytest.raises(ParameterError, match="config.json lacks"):
        plan({"model_config": {"model_type": "x"}, "gpu_memory_mib": H100_MIB})


A100_40GB_MIB = 40960


def test_qwen3_235b_on_a100_40gb_is_tp8_on_each_of_2_nodes_pp2_across():
    # 470 GiB of bf16 weights: 8 GPUs of 40 GiB hold 320 GiB, so no TP within one node leaves KV room;
    # two nodes (PP 2, 94 layers split 47/47) hold 29.4 GiB of weights per GPU with room to spare.
    r = plan({"model_config": cfg("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": A100_40GB_MIB,
              "gpus_per_node": 8})
    assert (r["gpus"]["tensor_parallel_size"], r["gpus"]["pipeline_parallel_size"]) == (8, 2)
    assert r["gpus"]["nodes"] == 2 and r["gpus"]["per_pod"] == 8 and r["gpus"]["per_replica"] == 16
    # Its 1/16 share, and what each GPU of a stage (47 layers) holds whole: one KV head of 4 at TP 8, the
    # routers, the rotary cache.
    whole = 47 * 2 * 4096 * 128 * (1 - 4 / 8) * 2 + 47 * 4096 * 128 * (1 - 1 / 8) * 2 + 262144 * 128 * 2
    assert r["memory"]["weights_per_gpu_gib"] == round((235_092_836_352 * 2 / 16 + whole) / GIB, 2)
    assert r["memory"]["kv_cache_tokens"] > 0
    assert r["resources"] == {"limits": {"nvidia.com/gpu": "8"}}  # each pod: one node's GPUs
    assert r["problems"] == []
    assert "one replica is a group of 2 pods, one a node with its 8 GPUs: TP 8 within each, PP 2 across them" \
        in r["summary"]
    assert "--pipeline-parallel-size" in r["args"] and r["args"][r["args"].index("--pipeline-parallel-size") + 1] == "2"


def test_a_group_of_pods_gets_each_rank_its_command_line():
    # vLLM's multi-node mode (vllm/entrypoints/cli/serve.py, vllm/config/parallel.py at v0.33.0): the same
    # command line on every node, --nnodes and --node-rank, the leader's address and port; the workers headless.
    r = plan({"model_config": cfg("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": A100_40GB_MIB,
              "gpus_per_node": 8, "model_path": "/models/q", "served_model_name": "q"})
    g = r["group"]
    assert g["nodes"] == 2 and len(g["ranks"]) == 2
    leader, worker = g["ranks"]
    assert r["args"] == leader
    common = leader[:leader.index("--nnodes")]
    assert worker[:len(common)] == common and common[0] == "/models/q"
    assert leader[len(common):] == ["--nnodes", "2", "--node-rank", "0", "--master-addr", "$(INFEROPS_LEADER_ADDR)",
                                    "--master-port", "29501"]
    assert worker[len(common):] == ["--nnodes", "2", "--node-rank", "1", "--master-addr", "$(INFEROPS_LEADER_ADDR)",
                                    "--master-port", "29501", "--headless"]
    # Every rank binds to and advertises its pod's own address; the key still only from the Secret.
    env = {e["name"]: e for e in r["env"]}
    assert env["VLLM_HOST_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert "secretKeyRef" in env["VLLM_API_KEY"]["valueFrom"]
    # A worker is ready, and alive, while its leader answers /health; its startup gets the plan's whole budget.
    probe = g["worker_startup_probe"]
    assert probe["exec"]["command"][:2] == ["python3", "-c"] and "INFEROPS_LEADER_ADDR" in probe["exec"]["command"][2]
    assert "8000, timeout=4); c.request('GET', '/health'); assert c.getresponse().status == 200" \
        in probe["exec"]["command"][2]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= r["startup_budget_s"]
    # Both nodes read the whole checkpoint from the shared storage at once (vLLM's loader reads every tensor,
    # keeping its stage's): twice the model at the default 1000 MiB/s, plus 180 s warm-up, times 1.5.
    assert r["startup_budget_s"] == math.ceil((2 * 235_092_836_352 * 2 / 2**20 / 1000 + 180) * 1.5)
    one_node = plan({"model_config": cfg("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": 143771,
                     "gpus_per_node": 8})
    assert one_node["group"] is None and one_node["gpus"]["nodes"] == 1


def test_group_flags_are_the_plans_and_need_a_vllm_that_has_them():
    r = plan({"model_config": cfg("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": A100_40GB_MIB,
              "gpus_per_node": 8, "extra_args": ["--nnodes", "3", "--headless"]})
    assert "--nnodes is rendered by the plan when a replica spans nodes (one pod a node, each with its rank); leave " \
           "it out of extra_args" in r["problems"]
    assert any(p.startswith("--headless is rendered by the plan") for p in r["problems"])
    ray = plan({"model_config": cfg("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": A100_40GB_MIB,
                "gpus_per_node": 8, "extra_args": ["--distributed-executor-backend", "ray"]})
    assert any(p.startswith("--distributed-executor-backend ray: a group of pods runs vLLM's own multi-node mode")
               for p in ray["problems"])
    old = plan({"model_config": cfg("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": A100_40GB_MIB,
                "gpus_per_node": 8, "vllm_version": "0.10.2"})
    assert any("vLLM 0.10.2 has no multi-node mode without Ray (--nnodes" in p for p in old["problems"])


def test_tensor_parallel_never_spans_nodes():
    r = plan({"model_config": cfg("qwen3-235b-a22b-instruct-2507"), "gpu_memory_mib": A100_40GB_MIB,
              "gpus_per_node": 8, "tensor_parallel_size": 16})
    assert any(p.startswith("tensor_parallel_size 16 is more than the 8 GPUs of a node") for p in r["problems"])


SEVEN_B = {"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "gpus_per_node": 8}


def test_pods_stop_after_running_requests_drain_and_the_grace_period_covers_it():
    """vLLM 0.18.0 and on: --shutdown-timeout lets running requests finish
    after SIGTERM (vllm/engine/arg_utils.py; default 0 aborts them); the
    grace period covers preStop + the drain + the engine's exit."""
    r = plan({**SEVEN_B, "vllm_version": "0.33.0"})
    assert r["problems"] == []
    assert r["args"][r["args"].index("--shutdown-timeout") + 1] == "60"
    assert r["shutdown"] == {"prestop_s": 15, "drain_timeout_s": 60, "termination_grace_period_s": 15 + 60 + 10}
    assert "grace period 85 s" in r["summary"]
    # Given, in either place, it is rendered once with the grace period following it.
    for given in ({"drain_timeout_s": 300}, {"extra_args": ["--shutdown-timeout", "300"]}):
        r = plan({**SEVEN_B, "prestop_drain_s": 5, **given})
        args = r["args"]
        assert args.count("--shutdown-timeout") == 1 and args[args.index("--shutdown-timeout") + 1] == "300"
        assert r["shutdown"]["termination_grace_period_s"] == 5 + 300 + 10
    # Disagreeing values are a problem, as for the plan's other flags.
    r = plan({**SEVEN_B, "drain_timeout_s": 30, "extra_args": ["--shutdown-timeout", "300"]})
    assert any("--shutdown-timeout 300 in extra_args and drain_timeout_s: 30 disagree" in x for x in r["problems"])
    # Every rank of a group gets it.
    r = plan({**SEVEN_B, "gpu_memory_mib": 8192, "gpus_per_node": 2, "max_model_len": 4096})
    assert all(rank[rank.index("--shutdown-timeout") + 1] == "60" for rank in r["group"]["ranks"])


def test_a_grace_period_shorter_than_the_drain_is_refused_naming_the_sum():
    r = plan({**SEVEN_B, "termination_grace_period_s": 30})
    [problem] = [x for x in r["problems"] if x.startswith("termination_grace_period_s")]
    assert "give 85 or more" in problem and "--shutdown-timeout 60 s" in problem
    assert plan({**SEVEN_B, "termination_grace_period_s": 85})["problems"] == []
    assert plan({**SEVEN_B, "termination_grace_period_s": 120})["shutdown"]["termination_grace_period_s"] == 120
    with pytest.raises(ParameterError, match="drain_timeout_s: -1 must be 0 or more"):
        plan({**SEVEN_B, "drain_timeout_s": -1})


def test_a_release_without_the_drain_is_warned_and_refuses_one_asked_for():
    """0.17.1 has no --shutdown-timeout: every running request is aborted on
    SIGTERM (its launcher cancels the server task; EngineCore exits)."""
    r = plan({**SEVEN_B, "vllm_version": "0.17.1"})
    assert "--shutdown-timeout" not in r["args"] and r["problems"] == []
    assert any("aborts every running request on SIGTERM" in w and "0.18.0" in w for w in r["warnings"])
    assert r["shutdown"] == {"prestop_s": 15, "drain_timeout_s": 0, "termination_grace_period_s": 25}
    r = plan({**SEVEN_B, "vllm_version": "0.17.1", "drain_timeout_s": 30})
    assert any("vLLM 0.17.1 has no --shutdown-timeout" in x for x in r["problems"])
    # The first catalogued release with the flag.
    assert "--shutdown-timeout" in plan({**SEVEN_B, "vllm_version": "0.18.1"})["args"]


@pytest.mark.parametrize("method", ["int8", "none"])
def test_quantization_names_only_vllms_methods(method):
    """vLLM 0.20.0 and 0.34.0 stop with "Unknown quantization method" for these (config/model.py
    _verify_quantization): refused before anything is deployed, naming the parameter and the fix."""
    with pytest.raises(ParameterError, match=f"quantization: '{method}' is not a vLLM quantization method.*[Ll]eave"):
        plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "quantization": method})


def test_what_vllm_sees_on_a_card_and_in_a_slice():
    card = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": 143771, "vllm_version": "0.20.0"})
    sees = card["memory"]["vllm_sees"]
    assert sees["total_mib"] == 143771 - 620 and "CUDA reports" in sees["utilization_of"]
    # vLLM's own batch defaults for a 140 GiB card: 8192 tokens, 1024 sequences (rendered).
    assert card["memory"]["max_num_batched_tokens"] == 8192 and card["max_num_seqs"] == 1024
    assert card["args"][card["args"].index("--max-num-seqs") + 1] == "1024"
    sliced = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": 143771, "vllm_version": "0.20.0",
                   "gpu_memory_request_mib": 35840})
    sees = sliced["memory"]["vllm_sees"]
    assert sees["total_mib"] == 35840 and "HAMi slice" in sees["utilization_of"]
    assert sees["budget_mib"] == round(35840 * 0.92) and sees["free_at_start_mib"] == 35840 - 520
    # NVML reports the slice too: below 70 GiB vLLM defaults to 2048 tokens and 256 sequences.
    assert sliced["memory"]["max_num_batched_tokens"] == 2048 and sliced["max_num_seqs"] == 256
    a100 = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": 81920, "gpu_types": ["A100-SXM4-80GB"],
                 "vllm_version": "0.20.0"})
    assert a100["memory"]["max_num_batched_tokens"] == 2048 and a100["max_num_seqs"] == 256


def test_a_slice_too_small_for_the_utilization_and_the_context():
    """HAMi-core charges the CUDA context to the slice: vLLM refuses when util x slice is more than is free."""
    r = plan({"model_config": cfg("qwen2.5-0.5b-instruct"), "gpu_memory_mib": 143771, "vllm_version": "0.20.0",
              "gpu_memory_request_mib": 4096})
    assert any(p.startswith("gpu_memory_utilization: 0.92 of the 4096 MiB vLLM sees") and "Use at most 0.87" in p
               for p in r["problems"]), r["problems"]


def test_vllm_0_34_leaves_utilization_to_vllm_on_a_card_and_keeps_it_in_a_slice():
    card = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "vllm_version": "0.34.0"})
    assert "--gpu-memory-utilization" not in card["args"] and card["memory"]["gpu_memory_utilization"] == 1.0
    assert card["memory"]["kv_block_size"] == 64 and card["memory"]["kv_cache_tokens"] % 64 == 0
    sliced = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "vllm_version": "0.34.0",
                   "gpu_memory_request_mib": 40960})
    assert sliced["args"][sliced["args"].index("--gpu-memory-utilization") + 1] == "0.92"
    given = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "vllm_version": "0.34.0",
                  "gpu_memory_utilization": 0.9})
    assert given["args"][given["args"].index("--gpu-memory-utilization") + 1] == "0.9"
    # Off (the estimate sizes the cache, as through 0.33): 0.92 again, and no post-warm-up margin.
    off = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "vllm_version": "0.34.0",
                "extra_args": ["--disable-extensible-kv-cache"]})
    assert off["memory"]["gpu_memory_utilization"] == 0.92 and "--gpu-memory-utilization" in off["args"]


def test_batch_settings_vllm_follows():
    base = {"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": 143771, "vllm_version": "0.20.0"}
    more = plan({**base, "max_num_seqs": 4096, "extra_args": ["--max-num-batched-tokens", "2048"]})
    assert any(p.startswith("max_num_seqs 4096 is more than max_num_batched_tokens 2048") for p in more["problems"])
    # chunked prefill off: the largest step is at least max_model_len (arg_utils.py at v0.20.0)
    whole = plan({**base, "max_model_len": 32768, "extra_args": ["--no-enable-chunked-prefill"]})
    assert whole["memory"]["max_num_batched_tokens"] == 32768
    fast = plan({**base, "extra_args": ["--performance-mode", "throughput"]})
    assert fast["memory"]["max_num_batched_tokens"] == 16384 and fast["max_num_seqs"] == 2048
    blocks = plan({**base, "extra_args": ["--block-size", "32"]})
    assert blocks["memory"]["kv_block_size"] == 32 and blocks["memory"]["kv_cache_tokens"] % 32 == 0


def test_quantized_weights_keep_embeddings_in_the_model_dtype():
    s = model_shape(cfg("qwen2.5-7b-instruct"))
    r = plan({"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "quantization": "fp8"})
    embedding = s["vocab"] * s["hidden"] * 2  # embed_tokens and lm_head, not tied
    assert r["model"]["weight_bytes"] == int((r["model"]["parameters"] - embedding) * 1.0 + embedding * 2)


def test_a_slice_filled_too_close_to_its_limit_warns():
    r = plan({"model_config": cfg("qwen2.5-0.5b-instruct"), "gpu_memory_mib": 143771, "vllm_version": "0.20.0",
              "gpu_memory_request_mib": 24576, "gpu_memory_utilization": 0.96})
    assert r["problems"] == []
    assert any("would then sit on the card outside the slice" in w and "Use at most 0.94" in w for w in r["warnings"])
    ok = plan({"model_config": cfg("qwen2.5-0.5b-instruct"), "gpu_memory_mib": 143771, "vllm_version": "0.20.0",
               "gpu_memory_request_mib": 24576})
    assert not any("outside the slice" in w for w in ok["warnings"])


def test_overhead_given_on_0_34_keeps_the_post_warm_up_margin():
    base = {"model_config": cfg("qwen2.5-7b-instruct"), "gpu_memory_mib": H100_MIB, "vllm_version": "0.34.0",
            "overhead_mib": 2048}
    given = plan(base)
    off = plan({**base, "extra_args": ["--disable-extensible-kv-cache"], "gpu_memory_utilization": 1.0})
    # the extensible cache keeps max(1 GiB, 0.75 x 2 GiB) and the context back: fewer tokens than the estimate's
    assert given["memory"]["kv_cache_tokens"] < off["memory"]["kv_cache_tokens"]


def test_kv_per_token_of_a_pipeline_stage():
    """Each pipeline stage keeps the KV cache of its own layers only."""
    s7 = model_shape(cfg("qwen2.5-7b-instruct"))
    assert kv_bytes_per_token(s7, 1, 2, pp=4) == (2 * 28 * 4 * 128 * 2, 2 * 7 * 4 * 128 * 2)
