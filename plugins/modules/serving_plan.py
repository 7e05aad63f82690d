#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: serving_plan
short_description: Check that a model fits the GPUs and that the vLLM command line is right, before deploying
version_added: 0.1.0
description:
  - From the model's C(config.json) (or its directory) and the GPUs, computes the weights per GPU and the smallest
    tensor-parallel size that fits (it must divide the attention heads), the KV cache bytes per token and how many
    tokens fit at O(gpu_memory_utilization), the largest O(max_model_len) that fits, HAMi resources
    (C(nvidia.com/gpu), and C(nvidia.com/gpumem) in MiB per GPU for a slice), the C(/dev/shm) size and a
    startupProbe budget.
  - Checks the vLLM command line in O(extra_args) against the flags of O(vllm_version) as vLLM's own released
    sources define them (every minor release from 0.10 to 0.34); refuses unknown and removed flags with the release
    that removed them or the nearest valid flag,
    warns on deprecated and no-effect ones, refuses C(--api-key) on the command line, C(--trust-remote-code) unless
    O(allow_trust_remote_code), C(CUDA_VISIBLE_DEVICES) and C(NCCL_SHM_DISABLE=1) in O(env), and a
    C(nvidia.com/gpumem) larger than one GPU.
  - Returns the container args, env and resources for the StatefulSet, and a readable summary. Fails, listing every
    problem at once, when anything would stop vLLM from starting or the pod from being scheduled.
  - What vLLM holds besides weights and KV cache (activation peak, non-torch memory, CUDA graphs) follows vLLM
    0.20.0's own accounting term by term, including inside a HAMi slice, where CUDA and NVML report the slice; it
    was within 3% of vLLM's KV tokens and never above on 57 runs on H100 and H200 (and never above on five more
    that found torch.compile's cache warm, where a pod starts cold; docs/real-vllm.md). vLLM 0.34's
    extensible KV cache is modelled from its source, not run. Treat the KV numbers as a plan to check.
options:
  model_config:
    description: The model's config.json as a dictionary. One of O(model_config) and O(model_dir) is required.
    type: dict
  model_dir:
    description:
      - Directory holding the model (on the host the task runs on). Its C(config.json) is read, and when a
        C(model.safetensors.index.json) is there, its total size gives the exact weight bytes.
    type: path
  model_path:
    description: Path of the model inside the container (the first argument of C(vllm serve)).
    type: str
  served_model_name:
    description: The name clients ask for. Default the last part of O(model_path).
    type: str
  vllm_version:
    description:
      - The vLLM version of the image; flags are checked against it, and its defaults and behaviours (the default
        C(gpu_memory_utilization), the paths the key guards, the accepted values of C(VLLM_USE_MODELSCOPE), the
        engine-start timeout) come from it. Every minor release from 0.10 to 0.34 is known; the default is the
        newest.
    type: str
    default: 0.34.0
  extra_args:
    description:
      - More C(vllm serve) flags, as a list or as one command line (the write-up's C(python3 -m
        vllm.entrypoints.openai.api_server ...) form is accepted). Flags the plan computes (tensor parallel size,
        max model len, memory utilization, served name, port, ...) given here are read as the wanted values.
    type: raw
  env:
    description: Environment variables meant for the vLLM container (checked, then rendered).
    type: dict
    default: {}
  gpu_memory_mib:
    description: Memory of one GPU in MiB (what nvidia-smi and NVML report, e.g. 81559 for an H100 80GB HBM3).
    type: int
    required: true
  gpus_per_node:
    description: GPUs a node has; tensor x pipeline parallel size must fit in one node.
    type: int
    default: 8
  gpu_memory_request_mib:
    description: For a HAMi slice, the memory per GPU to request (C(nvidia.com/gpumem)). Unset means whole GPUs.
    type: int
  gpu_cores_percent:
    description: For a HAMi slice, the compute share per GPU (C(nvidia.com/gpucores)).
    type: int
  gpu_types:
    description: GPU types HAMi may place the pod on (C(nvidia.com/use-gputype)), e.g. C([H100, A100]).
    type: list
    elements: str
  tensor_parallel_size:
    description: Tensor-parallel size. Default the smallest that fits.
    type: int
  pipeline_parallel_size:
    description: Pipeline-parallel size.
    type: int
  gpu_memory_utilization:
    description:
      - Share of the memory vLLM sees that it may take. Inside a HAMi slice that is the slice (HAMi-core reports it
        as the GPU's total); on a whole GPU, the memory CUDA reports (about 600 MiB less than nvidia-smi's).
      - Default vLLM's own for the release (0.9 up to 0.19, 0.92 from 0.20). From 0.34, with its extensible KV
        cache, vLLM's 1.0 on a whole GPU (not rendered, as vLLM sizes the cache after warm-up), and in a HAMi slice
        the plan's 0.92, which leaves room for the memory HAMi-core does not count.
    type: float
  max_model_len:
    description: Longest context. Default the largest that fits (capped by the model's max_position_embeddings).
    type: int
  max_num_seqs:
    description:
      - Most sequences in a batch; it sizes vLLM's sampler warm-up (14 bytes per sequence and vocabulary entry).
      - Default vLLM's own for the GPU it sees (1024 from 70 GiB except on an A100, else 256; a HAMi slice's size
        counts), rendered on the command line. The vllm_serve role passes 256.
    type: int
  dtype:
    description: Weight dtype; C(auto) takes the model's.
    type: str
  quantization:
    description: Weight quantization of the checkpoint.
    type: str
    choices: [fp8, awq, gptq]
  kv_cache_dtype:
    description: KV cache dtype.
    type: str
    choices: [auto, fp8, fp8_e4m3, fp8_e5m2]
  param_count:
    description: Parameters of the model, when known better than the estimate from config.json.
    type: int
  overhead_mib:
    description:
      - Memory per GPU that vLLM holds besides the weights and the KV cache (activations, non-torch memory, CUDA
        graphs). The CUDA context is taken before vLLM measures and is outside it.
      - When not given, the plan's model of vLLM 0.20.0's accounting (the activation peak of its profiling run over
        the largest step and O(max_num_seqs), non-torch memory, the CUDA graphs' estimate; plus buffers at tensor
        parallelism), returned as C(memory.overhead_parts_gib) (docs/real-vllm.md). When given, it is the whole
        overhead.
    type: int
  port:
    description: Port vLLM listens on. Default 8000.
    type: int
  api_key_secret:
    description: Name of the Secret holding the API key (rendered as the C(VLLM_API_KEY) env source).
    type: str
    default: vllm-api-key
  api_key_secret_key:
    description: Key of the API key in that Secret.
    type: str
    default: api-key
  allow_trust_remote_code:
    description: Allow C(--trust-remote-code) (the model's own Python code runs in the server).
    type: bool
    default: false
  allow_long_max_model_len:
    description: Allow a max_model_len above the model's max_position_embeddings (rope-scaled models).
    type: bool
    default: false
  image_tag:
    description:
      - The vLLM image tag, when it is not C(v<vllm_version>); a C(-cu129)-style suffix names the image's CUDA, which
        sets the oldest NVIDIA driver the GPU hosts need (RV(image)).
    type: str
  hami_version:
    description:
      - The HAMi release on the cluster. vLLM newer than 0.18 with tensor parallelism fails to launch on HAMi older
        than 2.8.1 (a problem) and hits an initialization error before 2.8.3 (a warning), per HAMi's changelog.
        Left out, it is not checked.
    type: str
  network_policy:
    description:
      - Whether a NetworkPolicy keeps everyone but the clients away from the pods. Without it the plan warns that
        vLLM answers some paths (C(/invocations), C(/metrics), C(/tokenize)) without the API key.
    type: bool
    default: false
  image_glibc:
    description: glibc version of the vLLM image, to check HAMi-core's isolation for fractional GPUs.
    type: str
  load_bandwidth_mib_s:
    description: Expected read speed of the model storage, for the startup budget.
    type: float
    default: 1000
  warmup_s:
    description: Expected seconds of compilation and CUDA-graph capture after loading, for the startup budget.
    type: float
    default: 180
  prestop_drain_s:
    description:
      - Seconds the pod's preStop hook keeps it serving while its endpoint leaves the Service, before SIGTERM.
    type: int
    default: 15
  drain_timeout_s:
    description:
      - Seconds vLLM lets running requests (streams included) finish after SIGTERM before it aborts the rest,
        rendered as C(--shutdown-timeout) (vLLM 0.18.0 and newer; older releases abort at once, a warning). Left
        out, 60 where the release has the flag. C(--shutdown-timeout) in O(extra_args) counts as this.
    type: int
  termination_grace_period_s:
    description:
      - The pod's termination grace period. Left out, it is computed as O(prestop_drain_s) + the drain + 10 s for
        vLLM's engine to exit (RV(shutdown)); a shorter one is a problem, since the kubelet would kill running
        requests.
    type: int
  lora_adapters:
    description:
      - LoRA adapters to serve beside the model, each C(name) (what clients ask for) and C(rank) (C(r) in its
        adapter_config.json). The plan renders C(--enable-lora), C(--max-loras), C(--max-lora-rank) and
        C(--lora-modules name=<lora_root>/name), and counts the adapter slots' GPU memory out of the KV cache.
    type: list
    elements: dict
    default: []
  lora_max_loras:
    description: Adapters on the GPU at once (vLLM's C(--max-loras)). Left out or 0, as many as O(lora_adapters).
    type: int
  lora_max_rank:
    description:
      - The largest adapter rank vLLM makes room for (C(--max-lora-rank)). Left out or 0, the smallest value vLLM
        accepts that holds every adapter's rank.
    type: int
  lora_root:
    description: The folder in the pod that holds one folder per adapter. Left out, O(model_path) followed by C(-lora).
    type: str
  fail_on_problems:
    description: Fail when there are problems. With V(false) they are only returned.
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - inferops.vllm.attributes
  - inferops.vllm.attributes.READ_ONLY
author:
  - inferops.vllm maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Plan Qwen3-235B-A22B on 8 H100s before deploying anything
  inferops.vllm.serving_plan:
    model_dir: /models/qwen3-235b
    model_path: /models/qwen3-235b
    served_model_name: qwen3-235b
    gpu_memory_mib: 81559
    max_model_len: 131072
    extra_args: [--enable-auto-tool-choice, --tool-call-parser, hermes]
  register: vllm_plan

- name: Show it
  ansible.builtin.debug:
    msg: "{{ vllm_plan.summary.splitlines() }}"
"""

RETURN = r"""
summary:
  description: The plan in a few lines, problems and warnings last.
  returned: always
  type: str
problems:
  description: What would stop vLLM or the pod (the task fails when there is any, unless O(fail_on_problems=false)).
  returned: always
  type: list
  elements: str
plan_warnings:
  description: What works but is likely not meant (also shown as warnings).
  returned: always
  type: list
  elements: str
lora:
  description:
    - With O(lora_adapters), the adapters' names, C(max_loras) and C(max_lora_rank) as rendered, and
      C(memory_per_gpu_gib), the GPU memory of the adapter slots (counted out of the KV cache); empty without.
  returned: success
  type: dict
runner:
  description:
    - What vLLM will serve the model for, by its own rule (vLLM 0.20.0 C(vllm/config/model.py)) - V(generate) (chat
      and completions routes) or V(pooling) (embeddings; no chat route) - from the architecture in C(config.json), a
      sentence-transformers C(modules.json) with a Pooling module, and C(--runner) in O(extra_args).
  returned: success
  type: str
  sample: generate
args:
  description: The container args (the image's entrypoint is C(vllm serve)); rank 0's when a replica spans nodes.
  returned: success
  type: list
  elements: str
env:
  description: The container env, with C(VLLM_API_KEY) from the Secret.
  returned: success
  type: list
  elements: dict
group:
  description:
    - Null when one replica fits one node. Otherwise the group of pods that makes one replica, one a node with all of
      its GPUs, in vLLM's own multi-node mode (no Ray) - C(nodes), C(master_port), C(ranks) (each rank's full args,
      rank 0 first; ranks 1 and up C(--headless)), C(env) (every rank's, with C(VLLM_HOST_IP) the pod's IP),
      C(leader_addr_env) (the env var the pod sets to rank 0's address; the args refer to it as C($(NAME)), which the
      kubelet expands), and the workers' startup, readiness and liveness probes, which ask the leader's C(/health).
  returned: success
  type: dict
resources:
  description: The container resources (HAMi resource names).
  returned: success
  type: dict
annotations:
  description: Pod annotations for HAMi's scheduler.
  returned: success
  type: dict
shm_size_mib:
  description: Size for the memory-backed /dev/shm volume.
  returned: success
  type: int
startup_probe:
  description: A startupProbe with a failure budget from the model size and load speed.
  returned: success
  type: dict
shutdown:
  description:
    - How a pod stops without dropping a request - the preStop seconds, the drain vLLM gets for running requests
      (C(--shutdown-timeout), 0 where the release aborts them) and the termination grace period that covers both.
  returned: success
  type: dict
  sample: {"prestop_s": 15, "drain_timeout_s": 60, "termination_grace_period_s": 85}
model:
  description: What was read or estimated of the model (parameters, weight bytes, layers, heads).
  returned: success
  type: dict
gpus:
  description: GPUs per replica, tensor and pipeline parallel sizes, usable memory per GPU.
  returned: success
  type: dict
memory:
  description: Per-GPU weights, overhead and KV cache, KV bytes per token, tokens that fit.
  returned: success
  type: dict
max_model_len:
  description: The context length the plan uses.
  returned: success
  type: int
proposed_max_model_len:
  description: The largest context length that fits.
  returned: success
  type: int
image:
  description: The image's CUDA major version and the oldest NVIDIA driver branch that runs it.
  returned: success
  type: dict
  sample: {"cuda_major": 13, "min_driver_branch": 580}
api_key_paths:
  description: The path prefixes this vLLM release guards with the API key; every other path answers without it.
  returned: success
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.vllm.plugins.module_utils import _runner
from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError
from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import DEFAULT_VLLM_VERSION, parse_args, plan


def run(module):
    # A key pasted into extra_args is refused below; mask its value in every
    # output too (the task's own echo of its arguments included).
    for flag, value in parse_args(module.params["extra_args"]):
        if flag == "--api-key" and value:
            module.no_log_values.add(value)
    result = plan(module.params)
    # Shown as Ansible warnings, and kept in the result under a name of its own
    # (a result's `warnings` key is Ansible's, and is going away in 2.23).
    for warning in result["warnings"]:
        module.warn(warning)
    result["plan_warnings"] = result.pop("warnings")
    if result["problems"] and module.params["fail_on_problems"]:
        raise InferopsError(f"the serving plan has {len(result['problems'])} problem(s):\n"
                            + "\n".join(f"- {x}" for x in result["problems"]),
                            **{k: v for k, v in result.items() if k != "summary"}, summary=result["summary"])
    return {"changed": False, **result}


def main():
    spec = dict(
        model_config=dict(type="dict"),
        model_dir=dict(type="path"),
        model_path=dict(type="str"),
        served_model_name=dict(type="str"),
        vllm_version=dict(type="str", default=DEFAULT_VLLM_VERSION),
        extra_args=dict(type="raw"),
        env=dict(type="dict", default={}),
        gpu_memory_mib=dict(type="int", required=True),
        gpus_per_node=dict(type="int", default=8),
        gpu_memory_request_mib=dict(type="int"),
        gpu_cores_percent=dict(type="int"),
        gpu_types=dict(type="list", elements="str"),
        tensor_parallel_size=dict(type="int"),
        pipeline_parallel_size=dict(type="int"),
        gpu_memory_utilization=dict(type="float"),
        max_model_len=dict(type="int"),
        max_num_seqs=dict(type="int"),
        dtype=dict(type="str"),
        quantization=dict(type="str", choices=["fp8", "awq", "gptq"]),
        kv_cache_dtype=dict(type="str", choices=["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]),
        param_count=dict(type="int"),
        overhead_mib=dict(type="int"),
        port=dict(type="int"),
        api_key_secret=dict(type="str", default="vllm-api-key", no_log=False),
        api_key_secret_key=dict(type="str", default="api-key", no_log=False),
        allow_trust_remote_code=dict(type="bool", default=False),
        allow_long_max_model_len=dict(type="bool", default=False),
        image_glibc=dict(type="str"),
        image_tag=dict(type="str"),
        hami_version=dict(type="str"),
        network_policy=dict(type="bool", default=False),
        load_bandwidth_mib_s=dict(type="float", default=1000),
        warmup_s=dict(type="float", default=180),
        prestop_drain_s=dict(type="int", default=15),
        drain_timeout_s=dict(type="int"),
        termination_grace_period_s=dict(type="int"),
        lora_adapters=dict(type="list", elements="dict", default=[]),
        lora_max_loras=dict(type="int"),
        lora_max_rank=dict(type="int"),
        lora_root=dict(type="str"),
        fail_on_problems=dict(type="bool", default=True),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True,
                           required_one_of=[("model_config", "model_dir")],
                           mutually_exclusive=[("model_config", "model_dir")])
    _runner.run(module, run)


if __name__ == "__main__":
    main()
