"""A role run rides out the API server going away for 15 s in its middle:
the kubernetes.core tasks retry a failure that passes (inferops.vllm's
k8s_retry action, within its budget), the collection's modules
retry inside their client, and the run ends as it would have. A rerun then
changes nothing. The outage is the fault being injected, so it is timed."""

from __future__ import annotations

import re

import pytest
import yaml

from support.ansible import ROOT, recap_of as recap, run_playbook_streaming as run
from support.sandbox import Outage
from support.volumes import put_back_volumes

pytestmark = pytest.mark.integration
K8S = {group: {"kubeconfig": "{{ inferops_kubeconfig }}"}
       for group in ("group/inferops.vllm.k8s", "group/kubernetes.core.k8s")}
OUTAGE_AT = "TASK [inferops.vllm.vllm_serve : Show the plan]"


def play(sandbox, namespace: str) -> dict:
    return {
        "name": "vllm_serve through an API server outage", "hosts": "localhost", "gather_facts": False,
        "module_defaults": K8S,
        "vars": {
            "inferops_kubeconfig": sandbox.kubeconfig,
            "vllm_serve_namespace": namespace, "vllm_serve_name": "outage",
            "vllm_serve_served_model_name": "tiny-chat", "vllm_serve_model_claim": "models-outage",
            "vllm_serve_model_dir": str(ROOT / ".cache" / "test-models" / "tiny-chat"),
            "vllm_serve_image": "registry.invalid/vllm/vllm-openai", "vllm_serve_gpu_memory_mib": 81559,
            "vllm_serve_max_model_len": 512, "vllm_serve_gpu_memory_request_mib": 8192,
            "vllm_serve_image_glibc": "2.28", "vllm_serve_cpu_request": "1", "vllm_serve_memory_request": "4Gi",
            "vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"}, "vllm_serve_check": False,
            "vllm_serve_wait_timeout": 240,
        },
        "roles": [{"role": "inferops.vllm.vllm_serve"}],
    }


def test_role_run_rides_out_a_15_second_api_server_outage(sandbox, namespace, kube, tmp_path):
    kube.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "models-outage"},
                 "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": sandbox.state["storage_class"],
                          "resources": {"requests": {"storage": "1Gi"}}}}, namespace)
    playbook = tmp_path / "outage.yml"
    playbook.write_text(yaml.safe_dump([play(sandbox, namespace)]))
    with Outage("kube-apiserver", 15, OUTAGE_AT) as outage:
        rc, output = run(playbook, outage.on_line)
    assert outage.happened
    assert rc == 0, output[-4000:]
    # The outage was met: a kubernetes.core task retried (k8s_retry prints each retry).
    assert "RETRYING: [localhost]: inferops.vllm.vllm_serve : Read the model claim" in output, output[-4000:]
    assert kube.get("apps/v1", "StatefulSet", namespace, "outage")["status"].get("readyReplicas") == 1

    rc, again = run(playbook)
    assert rc == 0, again[-4000:]
    assert recap(again)["changed"] == 0, again[-4000:]


# The task before model_store's first kubernetes.core task (the namespace's apply, through k8s_retry) reads no API.
STORE_OUTAGE_AT = "TASK [inferops.vllm.model_store : Check that the StorageClass exists"


def store_play(sandbox, namespace: str) -> dict:
    creds = sandbox.s3_credentials()
    seed = sandbox.state["s3"]["seed_model"]
    return {
        "name": "model_store through an API server outage", "hosts": "localhost", "gather_facts": False,
        "module_defaults": K8S,
        "vars": {
            "inferops_kubeconfig": sandbox.kubeconfig,
            "model_store_namespace": namespace, "model_store_name": "outage",
            "model_store_storage_class": sandbox.state["storage_class"], "model_store_size": "1Gi",
            "model_store_source": "s3", "model_store_endpoint_url": sandbox.s3_endpoint,
            "model_store_s3_bucket": seed["bucket"], "model_store_s3_prefix": seed["prefix"],
            "model_store_s3_access_key": creds["access_key"], "model_store_s3_secret_key": creds["secret_key"],
            "model_store_fetch_image": sandbox.state["job_runner"]["images"][0], "model_store_wait_timeout": 300,
        },
        "roles": [{"role": "inferops.vllm.model_store"}],
    }


def test_model_store_rides_out_a_15_second_api_server_outage(sandbox, namespace, kube, tmp_path):
    playbook = tmp_path / "store-outage.yml"
    playbook.write_text(yaml.safe_dump([store_play(sandbox, namespace)]))
    try:
        with Outage("kube-apiserver", 15, STORE_OUTAGE_AT) as outage:
            rc, output = run(playbook, outage.on_line, extra_args=["-v"])
        assert outage.happened
        assert rc == 0, output[-4000:]
        # The namespace's apply met the outage: k8s_retry ran kubernetes.core.k8s again until it answered.
        applied = output[output.index("TASK [inferops.vllm.model_store : Namespace]"):]
        attempts = int(re.search(r'"attempts": (\d+)', applied[:applied.index("TASK [", 1)]).group(1))
        assert attempts > 1, applied[:3000]
        [job] = kube.list("batch/v1", "Job", namespace, label_selector="app.kubernetes.io/name=model-fetch")
        assert job["status"].get("succeeded") == 1

        rc, again = run(playbook)
        assert rc == 0, again[-4000:]
        assert recap(again)["changed"] == 0, again[-4000:]
    finally:
        put_back_volumes(kube, namespace)
