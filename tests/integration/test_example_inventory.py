"""The example inventory, a fleet: the write-up's deployment (Qwen3-235B-A22B
on 8 x H100) with a 7B chat model and an embedding model in HAMi slices,
each model's variables as the fleet play gives them, deployed on the
sandbox: the applied objects are read back and carry none of the write-up's
mistakes."""

from __future__ import annotations

import base64
import json
import re
import sys

import pytest
import yaml

from ansible_collections.inferops.vllm.plugins.filter.fleet_members import fleet_members
from ansible_collections.inferops.vllm.plugins.module_utils.serving._fleet import INVENTORY_KEYS
from ansible_collections.inferops.vllm.plugins.module_utils.serving._model_task import runner_type
from support.ansible import ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# The cluster connection, set once per play as the collection's playbooks do
# (the roles take no kubeconfig variable of their own).
K8S_CONNECTION = {group: {"kubeconfig": "{{ inferops_kubeconfig }}"}
                  for group in ("group/inferops.vllm.k8s", "group/kubernetes.core.k8s")}


def example_fleet() -> tuple[dict, list[dict]]:
    """The example inventory's variables for all models, and its members as
    the fleet play makes them (fleet_members), each model's config.json read
    from files/ (the inventory reads it with a lookup)."""
    example = yaml.safe_load((ROOT / "inventories" / "example" / "group_vars" / "all.yml").read_text())
    shared = {k: v for k, v in example.items() if k.startswith(("vllm_serve_", "model_store_"))}
    entries = []
    for entry in example["inferops_models"]:
        entry = dict(entry)
        found = re.search(r"/files/([^']+\.json)", str(entry.get("vllm_serve_model_config", "")))
        if found:
            entry["vllm_serve_model_config"] = json.loads((ROOT / "inventories/example/files" / found.group(1)).read_text())
        if "model_store_subpath" in entry:  # no revision given: the folder is the model's name
            entry["model_store_subpath"] = entry["model_store_subpath"].split("{{")[0]
        entries.append(entry)
    members = fleet_members(entries, inventory={k: shared.get(k) for k in INVENTORY_KEYS})["members"]
    return shared, members


def test_example_fleet_has_none_of_the_writeup_mistakes(sandbox, namespace, kube, tmp_path):
    shared, members = example_fleet()
    assert [m["name"] for m in members] == ["vllm-qwen3-235b", "chat-7b", "embed-minilm"]
    plays = []
    for member in members:
        claim = member["vars"]["vllm_serve_model_claim"]
        if member["fetches"]:  # the model's claim, as the model_store role makes it (of the sandbox's class)
            size = member["vars"].get("model_store_size", "1Gi")
            kube.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
                         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": sandbox.state["storage_class"],
                                  "resources": {"requests": {"storage": size}}}}, namespace)
        plays.append({
            "name": f"deploy the example's {member['name']}", "hosts": "localhost", "gather_facts": False,
            "module_defaults": K8S_CONNECTION,
            "vars": shared | member["vars"] | {
                "inferops_kubeconfig": sandbox.kubeconfig,
                "vllm_serve_namespace": namespace,
                # The sandbox's GPU nodes are not labelled in this test's namespace run; select them by GPU label.
                "vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"},
                # kwok runs no vLLM: the endpoint check is proved elsewhere (test_site, test_fleet).
                "vllm_serve_check": False,
                "vllm_serve_wait_timeout": 120,
            },
            "roles": [{"role": "inferops.vllm.vllm_serve"}],
        })
    playbook = tmp_path / "deploy.yml"
    playbook.write_text(yaml.safe_dump(plays))
    result = run_playbook(playbook, inventory="localhost,", extra_args=["-c", "local", "-e",
                          "ansible_python_interpreter=" + sys.executable])
    assert result.rc == 0, result.failures()

    # The 7B and the embedding model in HAMi slices, each from its own download, with nothing of the large one's.
    for name, claim, limits in (
            ("chat-7b", "models-qwen2-5-7b-instruct",
             {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "24576", "nvidia.com/gpucores": "40"}),
            ("embed-minilm", "models-all-minilm-l6-v2",
             {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "4096", "nvidia.com/gpucores": "10"})):
        sts = kube.get("apps/v1", "StatefulSet", namespace, name)
        container = sts["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["limits"] == limits
        assert [v["persistentVolumeClaim"]["claimName"] for v in sts["spec"]["template"]["spec"]["volumes"]
                if v.get("persistentVolumeClaim")] == [claim]
        assert container["args"][container["args"].index("--served-model-name") + 1] == name
        assert not any(a.startswith("--tool-call-parser") for a in container["args"])
        assert not kube.list("networking.k8s.io/v1", "Ingress", namespace,
                             label_selector=f"app.kubernetes.io/instance={name}")
    assert kube.get("apps/v1", "StatefulSet", namespace, "chat-7b")["spec"]["replicas"] == 2
    # vLLM serves the embedding model for embeddings (its config.json: BertModel), the 7B for chat.
    assert runner_type(members[2]["vars"]["vllm_serve_model_config"]) == "pooling"
    assert runner_type(members[1]["vars"]["vllm_serve_model_config"]) == "generate"

    sts = kube.get("apps/v1", "StatefulSet", namespace, "vllm-qwen3-235b")
    pod_spec = sts["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    args = container["args"]
    # vLLM 0.34.0's image, checked against 0.34.0's flags (the example pins the newest release).
    assert container["image"] == "docker.io/vllm/vllm-openai:v0.34.0"
    assert args[0] == "/models/qwen3-235b"
    for flag in ("--api-key", "--trust-remote-code", "--max-paddings", "--swap-space", "--disable-log-requests"):
        assert not any(a.startswith(flag) for a in args), flag
    assert args[args.index("--served-model-name") + 1] == "qwen3-235b"
    assert args[args.index("--tensor-parallel-size") + 1] == "8"
    assert args[args.index("--max-model-len") + 1] == "131072"
    env = {e["name"]: e for e in container["env"]}
    assert "CUDA_VISIBLE_DEVICES" not in env and "NCCL_SHM_DISABLE" not in env
    key_ref = env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
    secret = kube.get("v1", "Secret", namespace, key_ref["name"])
    assert len(base64.b64decode(secret["data"][key_ref["key"]])) >= 32  # generated, kept in the Secret only
    limits = container["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8" and "nvidia.com/gpumem" not in limits  # whole GPUs, no bogus total
    assert "nodeName" not in pod_spec and pod_spec.get("nodeSelector")  # scheduled by selector, never nodeName
    # Least privilege: no API token in the pod, no capabilities, no escalation; the namespace enforces the
    # strictest Pod Security level these pods pass (and the pods were admitted under it: the rollout completed).
    assert pod_spec["automountServiceAccountToken"] is False
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    labels = kube.get("v1", "Namespace", None, namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "restricted"
    assert len(kube.list("v1", "Pod", namespace, label_selector="app.kubernetes.io/instance=vllm-qwen3-235b")) == 1
    shm = next(v for v in pod_spec["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory" and shm["emptyDir"]["sizeLimit"] == "16Gi"
    assert container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"] >= 600
    # One claim, declared once (by model_store), referenced here.
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"] if v.get("persistentVolumeClaim")]
    assert claims == ["models-qwen3-235b"] and not sts["spec"].get("volumeClaimTemplates")
    # HAMi's GPU type, and the key's salted HMAC (a new key rolls the pods; docs/api-key-rotation.md): no other.
    annotations = sts["spec"]["template"]["metadata"].get("annotations") or {}
    assert annotations.get("nvidia.com/use-gputype") == "H100", annotations
    assert set(annotations) == {"nvidia.com/use-gputype", "inferops.io/api-key-hmac"}, annotations
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["inferops.io/api-key-hmac"]), annotations
    # Service, PodDisruptionBudget and Ingress in front of it.
    service = kube.get("v1", "Service", namespace, "vllm-qwen3-235b")
    assert service["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    ingress = kube.get("networking.k8s.io/v1", "Ingress", namespace, "vllm-qwen3-235b")
    assert ingress["spec"]["rules"][0]["host"] == "llm.example.com" and ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["secretName"] == "llm-example-com-tls"
    pdb = kube.get("policy/v1", "PodDisruptionBudget", namespace, "vllm-qwen3-235b")
    assert pdb["spec"]["maxUnavailable"] == 1
    # Only the Ingress controller's pods reach vLLM's port (accepted by the API server; the sandbox has no
    # network plugin to enforce it).
    policy = kube.get("networking.k8s.io/v1", "NetworkPolicy", namespace, "vllm-qwen3-235b")
    assert policy["spec"]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                             "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}]


def deploy_with_init_container_fetch(sandbox, namespace, tmp_path, name: str, storage: dict) -> dict:
    """model_store then vllm_serve, the model fetched by each pod's
    initContainer; storage: the model_store/vllm_serve variables of the layout."""
    creds = sandbox.s3_credentials()
    playbook = tmp_path / "deploy.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": f"{name}: model storage with an initContainer fetch", "hosts": "localhost", "gather_facts": False,
        "module_defaults": K8S_CONNECTION,
        "vars": {
            "inferops_kubeconfig": sandbox.kubeconfig,
            "model_store_namespace": namespace, "model_store_name": "tiny-chat",
            "model_store_download": "init_container",
            "model_store_source": "s3", "model_store_endpoint_url": sandbox.s3_endpoint,
            "model_store_s3_bucket": "models", "model_store_s3_prefix": "tiny-chat",
            "model_store_s3_access_key": creds["access_key"], "model_store_s3_secret_key": creds["secret_key"],
            "model_store_fetch_image": "registry.invalid/inferops-model-fetch:0.1.0",
            "vllm_serve_namespace": namespace, "vllm_serve_name": name,
            "vllm_serve_served_model_name": "tiny-chat", "vllm_serve_model_subpath": "tiny-chat",
            "vllm_serve_model_dir": str(ROOT / ".cache" / "test-models" / "tiny-chat"),
            "vllm_serve_init_containers": ["{{ model_store_fetch_container }}"],
            "vllm_serve_replicas": 2, "vllm_serve_max_model_len": 512, "vllm_serve_gpu_memory_request_mib": 8192,
            "vllm_serve_image_glibc": "2.28", "vllm_serve_cpu_request": "1", "vllm_serve_memory_request": "4Gi",
            "vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"}, "vllm_serve_check": False,
            "vllm_serve_wait_timeout": 120,
            **storage,
        },
        "roles": [{"role": "inferops.vllm.model_store"}, {"role": "inferops.vllm.vllm_serve"}],
    }]))
    result = run_playbook(playbook, inventory="localhost,", extra_args=["-c", "local", "-e",
                          "ansible_python_interpreter=" + sys.executable])
    assert result.rc == 0, result.failures()
    return creds


def assert_fetched_by_init_container(sts, creds: dict) -> None:
    init = sts["spec"]["template"]["spec"]["initContainers"][0]
    assert init["args"][:4] == ["--source", "s3", "--dest", "/models/tiny-chat"]
    assert creds["secret_key"] not in json.dumps(init)  # the key comes from the Secret, by envFrom
    assert init["envFrom"][0]["secretRef"]["name"] == "tiny-chat-fetch-credentials"
    assert sts["status"].get("readyReplicas") == 2


def test_per_replica_storage_with_init_container_fetch(sandbox, namespace, kube, tmp_path):
    """model_store's other layout: a claim per replica (volumeClaimTemplates),
    each pod fetching the model in an initContainer before vLLM starts."""
    creds = deploy_with_init_container_fetch(sandbox, namespace, tmp_path, "per-replica", {
        "model_store_storage": "per_replica", "model_store_storage_class": sandbox.state["storage_class"],
        "model_store_size": "10Gi", "vllm_serve_model_claim_template": "{{ model_store_claim_template }}"})
    assert not kube.list("v1", "PersistentVolumeClaim", namespace, label_selector="app.kubernetes.io/managed-by=inferops.vllm")
    sts = kube.get("apps/v1", "StatefulSet", namespace, "per-replica")
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["models"]
    assert_fetched_by_init_container(sts, creds)
    claims = {c["metadata"]["name"]: (c.get("status") or {}).get("phase")
              for c in kube.list("v1", "PersistentVolumeClaim", namespace)}
    assert claims == {"models-per-replica-0": "Bound", "models-per-replica-1": "Bound"}
    assert not kube.list("batch/v1", "Job", namespace)  # no Job: each pod fetches


def test_hostpath_cache_with_init_container_fetch(sandbox, namespace, kube, tmp_path):
    """The third layout: a cache folder on each GPU node (hostPath), filled
    by each pod's initContainer; no claim at all."""
    creds = deploy_with_init_container_fetch(sandbox, namespace, tmp_path, "node-cache", {
        "model_store_storage": "hostpath", "model_store_hostpath": "/srv/models",
        "vllm_serve_model_volume": "{{ model_store_volume }}"})
    sts = kube.get("apps/v1", "StatefulSet", namespace, "node-cache")
    [volume] = [v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "models"]
    assert volume["hostPath"]["path"] == "/srv/models" and volume["hostPath"]["type"] == "DirectoryOrCreate"
    assert not sts["spec"].get("volumeClaimTemplates")
    assert not kube.list("v1", "PersistentVolumeClaim", namespace)
    mounts = {m["name"]: m["mountPath"] for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["models"] == "/models"
    assert_fetched_by_init_container(sts, creds)
    assert not kube.list("batch/v1", "Job", namespace)
    # A hostPath volume is allowed only at the privileged level: the namespace says so, and the pod was admitted.
    labels = kube.get("v1", "Namespace", None, namespace)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert len(kube.list("v1", "Pod", namespace)) == 2  # both replicas admitted
