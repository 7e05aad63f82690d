"""The write-up's deployment (Qwen3-235B-A22B on 8 x H100), expressed as the
example inventory's variables, deployed on the sandbox: the applied objects
are read back and carry none of the write-up's mistakes."""

from __future__ import annotations

import base64

import pytest
import yaml

from support.ansible import ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_example_vllm_serve_has_none_of_the_writeup_mistakes(sandbox, namespace, core_v1, apps_v1, tmp_path):
    example = yaml.safe_load((ROOT / "inventories" / "example" / "group_vars" / "all.yml").read_text())
    # The model claim, as the model_store role makes it (of the sandbox's class).
    core_v1.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": "models-qwen3-235b"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": sandbox.state["storage_class"],
                 "resources": {"requests": {"storage": "600Gi"}}}})
    playbook = tmp_path / "deploy.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "deploy the example's vllm_serve", "hosts": "localhost", "gather_facts": False,
        "vars": {k: v for k, v in example.items() if k.startswith("vllm_serve_")} | {
            "inferops_kubeconfig": sandbox.kubeconfig,
            "vllm_serve_namespace": namespace,
            # The sandbox's GPU nodes are not labelled in this test's namespace run; select them by GPU label.
            "vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"},
            "vllm_serve_model_config": yaml.safe_load(
                (ROOT / "inventories/example/files/qwen3-235b-a22b-instruct-2507.config.json").read_text()),
            # kwok runs no vLLM: the endpoint check is proved elsewhere (test_site).
            "vllm_serve_check": False,
        },
        "roles": [{"role": "inferops.vllm.vllm_serve"}],
    }]))
    result = run_playbook(playbook, inventory="localhost,", extra_args=["-c", "local", "-e",
                          "ansible_python_interpreter=" + __import__("sys").executable])
    assert result.rc == 0, result.stderr + str(result.stats)

    sts = apps_v1.read_namespaced_stateful_set("vllm-qwen3-235b", namespace)
    pod_spec = sts.spec.template.spec
    container = pod_spec.containers[0]
    args = container.args
    assert args[0] == "/models/qwen3-235b"
    for flag in ("--api-key", "--trust-remote-code", "--max-paddings", "--swap-space", "--disable-log-requests"):
        assert not any(a.startswith(flag) for a in args), flag
    assert args[args.index("--served-model-name") + 1] == "qwen3-235b"
    assert args[args.index("--tensor-parallel-size") + 1] == "8"
    assert args[args.index("--max-model-len") + 1] == "131072"
    env = {e.name: e for e in container.env}
    assert "CUDA_VISIBLE_DEVICES" not in env and "NCCL_SHM_DISABLE" not in env
    key_ref = env["VLLM_API_KEY"].value_from.secret_key_ref
    secret = core_v1.read_namespaced_secret(key_ref.name, namespace)
    assert len(base64.b64decode(secret.data[key_ref.key])) >= 32  # generated, kept in the Secret only
    limits = container.resources.limits
    assert limits["nvidia.com/gpu"] == "8" and "nvidia.com/gpumem" not in limits  # whole GPUs, no bogus total
    assert pod_spec.node_name is None and pod_spec.node_selector  # scheduled by selector, never nodeName
    shm = next(v for v in pod_spec.volumes if v.name == "shm")
    assert shm.empty_dir.medium == "Memory" and shm.empty_dir.size_limit == "16Gi"
    assert container.startup_probe.failure_threshold * container.startup_probe.period_seconds >= 600
    # One claim, declared once (by model_store), referenced here.
    claims = [v.persistent_volume_claim.claim_name for v in pod_spec.volumes if v.persistent_volume_claim]
    assert claims == ["models-qwen3-235b"] and not sts.spec.volume_claim_templates
    assert sts.spec.template.metadata.annotations == {"nvidia.com/use-gputype": "H100"}
