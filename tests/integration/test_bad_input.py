"""Bad input, as a new user or a hostile one gives it, to every module and
role: each case must fail before anything changes, with a message that names
the parameter (and says what to give instead). All cases run in one playbook
against the sandbox, each in a block whose rescue keeps the failure message;
the cluster (every object of the kinds the roles touch, in every namespace)
and a scratch folder are compared before and after: nothing may change.

The case count and the list are in the README ("Bad input")."""

from __future__ import annotations

import hashlib
import json
import sys

import pytest
import yaml

from support.ansible import ROOT, run_playbook

pytestmark = pytest.mark.integration
MISSING_NS = "inferops-no-such-namespace"
K8S = {group: {"kubeconfig": "{{ inferops_kubeconfig }}"}
       for group in ("group/inferops.vllm.k8s", "group/kubernetes.core.k8s")}
QWEN7B = json.loads((ROOT / "tests/unit/plugins/module_utils/serving/model_configs/qwen2.5-7b-instruct.json").read_text())
PLAN = {"model_config": QWEN7B, "gpu_memory_mib": 81559}


HOST = {"kernel": "6.1.0-18-amd64", "nvidia_pci_count": 8, "driver_version": "580.95.05"}


def plan(**bad):
    return {**PLAN, **bad}


# (id, module or "role:<name>", arguments or role vars, substrings the message must hold)
CASES = [
    # serving_plan: numbers
    ("plan-max-model-len-negative", "serving_plan", plan(max_model_len=-5), ["max_model_len", "-5"]),
    ("plan-max-model-len-zero", "serving_plan", plan(max_model_len=0), ["max_model_len"]),
    ("plan-tp-zero", "serving_plan", plan(tensor_parallel_size=0), ["tensor_parallel_size"]),
    ("plan-tp-negative", "serving_plan", plan(tensor_parallel_size=-2), ["tensor_parallel_size"]),
    ("plan-pp-zero", "serving_plan", plan(pipeline_parallel_size=0), ["pipeline_parallel_size"]),
    ("plan-gpu-memory-zero", "serving_plan", plan(gpu_memory_mib=0), ["gpu_memory_mib"]),
    ("plan-gpus-per-node-zero", "serving_plan", plan(gpus_per_node=0), ["gpus_per_node"]),
    ("plan-utilization-above-one", "serving_plan", plan(gpu_memory_utilization=1.5), ["gpu_memory_utilization"]),
    ("plan-max-num-seqs-zero", "serving_plan", plan(max_num_seqs=0), ["max_num_seqs"]),
    ("plan-port-out-of-range", "serving_plan", plan(port=70000), ["port"]),
    ("plan-overhead-negative", "serving_plan", plan(overhead_mib=-1), ["overhead_mib"]),
    ("plan-cores-percent-above-100", "serving_plan", plan(gpu_cores_percent=150), ["gpu_cores_percent"]),
    ("plan-gpumem-request-above-gpu", "serving_plan", plan(gpu_memory_request_mib=200000), ["nvidia.com/gpumem"]),
    ("plan-load-bandwidth-zero", "serving_plan", plan(load_bandwidth_mib_s=0), ["load_bandwidth_mib_s"]),
    ("plan-max-model-len-wrong-type", "serving_plan", plan(max_model_len="long"), ["max_model_len"]),
    # serving_plan: the model and the command line
    ("plan-model-dir-missing", "serving_plan", {"model_dir": "/nonexistent/model", "gpu_memory_mib": 81559},
     ["model_dir", "/nonexistent/model"]),
    ("plan-model-config-empty", "serving_plan", {"model_config": {}, "gpu_memory_mib": 81559}, ["model_config"]),
    ("plan-model-config-not-a-model", "serving_plan", {"model_config": {"architectures": ["X"]}, "gpu_memory_mib": 81559},
     ["num_hidden_layers"]),
    ("plan-model-and-dir-both", "serving_plan", {**PLAN, "model_dir": "/tmp"}, ["model_config", "model_dir"]),
    ("plan-served-name-in-extra-args", "serving_plan", plan(served_model_name="a", extra_args=["--served-model-name", "b"]),
     ["--served-model-name", "served_model_name"]),
    ("plan-api-key-in-extra-args", "serving_plan", plan(extra_args=["--api-key", "sk-123"]), ["--api-key", "Secret"]),
    ("plan-unknown-flag", "serving_plan", plan(extra_args=["--no-such-flag"]), ["--no-such-flag"]),
    ("plan-flag-removed-in-version", "serving_plan", plan(vllm_version="0.33.0", extra_args=["--device-ids", "0"]),
     ["--device-ids"]),
    ("plan-version-not-a-version", "serving_plan", plan(vllm_version="banana"), ["vllm_version", "banana"]),
    ("plan-version-unsupported", "serving_plan", plan(vllm_version="0.4.0"), ["vllm_version", "0.4.0"]),
    ("plan-trust-remote-code", "serving_plan", plan(extra_args=["--trust-remote-code"]), ["allow_trust_remote_code"]),
    ("plan-cuda-visible-devices-env", "serving_plan", plan(env={"CUDA_VISIBLE_DEVICES": "0"}), ["CUDA_VISIBLE_DEVICES"]),
    # endpoint_check
    ("check-no-target", "endpoint_check", {"model": "m"}, ["url", "service"]),
    ("check-max-tokens-zero", "endpoint_check", {"url": "http://127.0.0.1:9", "model": "m", "max_tokens": 0},
     ["max_tokens"]),
    ("check-startup-timeout-negative", "endpoint_check",
     {"url": "http://127.0.0.1:9", "model": "m", "startup_timeout": -1}, ["startup_timeout"]),
    ("check-url-not-http", "endpoint_check", {"url": "ftp://example.invalid/", "model": "m"}, ["url", "http"]),
    ("check-http-timeout-zero", "endpoint_check", {"url": "http://127.0.0.1:9", "model": "m", "http_timeout": 0},
     ["http_timeout"]),
    ("check-api-unknown", "endpoint_check", {"url": "http://127.0.0.1:9", "model": "m", "api": "completions"}, ["api"]),
    ("check-namespace-missing", "endpoint_check", {"service": "vllm", "namespace": MISSING_NS, "model": "m"},
     [MISSING_NS, "namespace"]),
    ("check-key-secret-missing", "endpoint_check",
     {"url": "http://127.0.0.1:9", "namespace": "default", "model": "m", "server_api_key_secret": "no-such-secret"},
     ["no-such-secret", "server_api_key_secret"]),
    ("check-kubeconfig-missing-file", "endpoint_check",
     {"service": "vllm", "namespace": "default", "model": "m", "kubeconfig": "/nonexistent/kubeconfig"},
     ["kubeconfig", "/nonexistent/kubeconfig"]),
    ("check-kubeconfig-malformed", "endpoint_check",
     {"service": "vllm", "namespace": "default", "model": "m", "kubeconfig": "{{ scratch }}/../malformed-kubeconfig"},
     ["kubeconfig"]),
    ("check-kubeconfig-unreachable", "endpoint_check",
     {"service": "vllm", "namespace": "default", "model": "m", "kubeconfig": "{{ scratch }}/../unreachable-kubeconfig",
      "request_timeout": 3}, ["kubeconfig", "127.0.0.1:9"]),
    # workload_wait
    ("wait-kind-unknown", "workload_wait", {"kind": "Pod", "name": "x", "namespace": "default"}, ["kind"]),
    ("wait-name-empty", "workload_wait", {"kind": "StatefulSet", "name": "", "namespace": "default"}, ["name"]),
    ("wait-timeout-zero", "workload_wait", {"kind": "StatefulSet", "name": "x", "namespace": "default", "timeout": 0},
     ["timeout"]),
    ("wait-namespace-missing", "workload_wait", {"kind": "StatefulSet", "name": "x", "namespace": MISSING_NS,
                                                 "timeout": 5}, [MISSING_NS]),
    ("wait-log-lines-negative", "workload_wait",
     {"kind": "StatefulSet", "name": "x", "namespace": "default", "log_lines": -1}, ["log_lines"]),
    # gpu_node
    ("node-selector-matches-nothing", "gpu_node", {"label_selector": "inferops.io/no-such-label=1",
                                                   "labels": {"gpu": "on"}}, ["label_selector", "no node"]),
    ("node-missing-name", "gpu_node", {"names": ["no-such-node"], "labels": {"gpu": "on"}}, ["no-such-node"]),
    ("node-no-target", "gpu_node", {"labels": {"gpu": "on"}}, ["names", "label_selector"]),
    ("node-label-key-invalid", "gpu_node", {"label_selector": "type=kwok", "labels": {"bad key!": "on"}},
     ["labels", "bad key!"]),
    ("node-label-value-invalid", "gpu_node", {"label_selector": "type=kwok", "labels": {"gpu": "on off"}},
     ["labels", "on off"]),
    ("node-taint-effect-invalid", "gpu_node", {"label_selector": "type=kwok", "taints": [{"key": "gpu", "effect": "Never"}]},
     ["effect"]),
    ("node-parallelism-zero", "gpu_node", {"label_selector": "type=kwok", "labels": {"gpu": "on"}, "parallelism": 0},
     ["parallelism"]),
    # k8s_secret
    ("secret-namespace-missing", "k8s_secret", {"name": "s", "namespace": MISSING_NS, "generate": ["api-key"]},
     [MISSING_NS, "namespace"]),
    ("secret-name-invalid", "k8s_secret", {"name": "Bad_Name", "namespace": "default", "generate": ["api-key"]},
     ["name", "Bad_Name"]),
    ("secret-key-invalid", "k8s_secret", {"name": "s", "namespace": "default", "data": {"bad/key": "value-1"}},
     ["data", "bad/key"]),
    ("secret-generate-length-zero", "k8s_secret",
     {"name": "s", "namespace": "default", "generate": ["k"], "generate_length": 0}, ["generate_length"]),
    ("secret-value-not-a-string", "k8s_secret", {"name": "s", "namespace": "default", "data": {"port": 5}},
     ["data", "port", "string"]),
    ("secret-namespace-invalid", "k8s_secret", {"name": "s", "namespace": "Bad_NS", "generate": ["k"]},
     ["namespace", "Bad_NS"]),
    # model_fetch (the scratch folder must stay empty)
    ("fetch-source-unknown", "model_fetch", {"source": "ftp", "dest": "{{ scratch }}/m"}, ["source"]),
    ("fetch-s3-no-bucket", "model_fetch", {"source": "s3", "dest": "{{ scratch }}/m"}, ["bucket"]),
    ("fetch-local-missing", "model_fetch", {"source": "local", "dest": "{{ scratch }}/m",
                                            "local_path": "/nonexistent/model"}, ["local_path", "/nonexistent/model"]),
    ("fetch-hub-no-model-id", "model_fetch", {"source": "huggingface", "dest": "{{ scratch }}/m"}, ["model_id"]),
    ("fetch-model-id-escape", "model_fetch", {"source": "huggingface", "dest": "{{ scratch }}/m",
                                              "model_id": "../../etc"}, ["model_id"]),
    ("fetch-max-concurrency-zero", "model_fetch", {"source": "local", "dest": "{{ scratch }}/m",
                                                   "local_path": "/tmp", "max_concurrency": 0}, ["max_concurrency"]),
    ("fetch-part-size-negative", "model_fetch", {"source": "s3", "bucket": "b", "dest": "{{ scratch }}/m",
                                                 "part_size": -1}, ["part_size"]),
    ("fetch-dest-relative", "model_fetch", {"source": "local", "dest": "relative/dir", "local_path": "/tmp"}, ["dest"]),
    # hami_values
    ("hami-chart-version-unsupported", "hami_values", {"chart_version": "2.4.0", "cluster_version": "1.37.2",
                                                       "node_label": {"gpu": "on"}}, ["chart_version", "2.4.0"]),
    ("hami-cluster-version-garbage", "hami_values", {"chart_version": "2.10.0", "cluster_version": "latest",
                                                     "node_label": {"gpu": "on"}}, ["cluster_version"]),
    ("hami-node-label-empty", "hami_values", {"chart_version": "2.10.0", "cluster_version": "1.37.2",
                                              "node_label": {}}, ["node_label"]),
    ("hami-split-count-zero", "hami_values", {"chart_version": "2.10.0", "cluster_version": "1.37.2",
                                              "node_label": {"gpu": "on"}, "device_split_count": 0},
     ["device_split_count"]),
    # gpu_preflight and gpu_facts (host side; read-only)
    ("preflight-kernel-garbage", "gpu_preflight", {**HOST, "kernel": "not-a-kernel"}, ["kernel", "not-a-kernel"]),
    ("preflight-min-driver-garbage", "gpu_preflight", {**HOST, "min_driver_version": "new"}, ["min_driver_version"]),
    ("preflight-vllm-version-garbage", "gpu_preflight", {**HOST, "vllm_version": "banana"}, ["vllm_version", "banana"]),
    ("preflight-runtime-unknown", "gpu_preflight", {**HOST, "container_runtime": "rkt"}, ["container_runtime"]),
    ("preflight-no-pci-facts", "gpu_preflight", {"kernel": "6.1.0"}, ["pci_vendor_ids", "nvidia_pci_count"]),
    ("facts-method-unknown", "gpu_facts", {"method": "lspci"}, ["method"]),
    # roles
    ("role-serve-served-name-empty", "role:vllm_serve", {"vllm_serve_served_model_name": ""},
     ["vllm_serve_served_model_name"]),
    ("role-serve-replicas-negative", "role:vllm_serve", {"vllm_serve_served_model_name": "m", "vllm_serve_replicas": -1},
     ["vllm_serve_replicas"]),
    ("role-serve-namespace-invalid", "role:vllm_serve", {"vllm_serve_served_model_name": "m",
                                                         "vllm_serve_namespace": "Bad_NS"}, ["vllm_serve_namespace"]),
    ("role-serve-max-model-len-negative", "role:vllm_serve", {"vllm_serve_served_model_name": "m",
                                                              "vllm_serve_namespace": "default",
                                                              "vllm_serve_model_config": QWEN7B,
                                                              "vllm_serve_gpu_memory_mib": 81559,
                                                              "vllm_serve_max_model_len": -5}, ["max_model_len"]),
    ("role-serve-no-model-config", "role:vllm_serve", {"vllm_serve_served_model_name": "m"},
     ["vllm_serve_model_config", "vllm_serve_model_dir"]),
    ("role-serve-claim-missing", "role:vllm_serve", {"vllm_serve_served_model_name": "m", "vllm_serve_namespace": "default",
                                                     "vllm_serve_model_claim": "no-such-claim",
                                                     "vllm_serve_model_config": QWEN7B, "vllm_serve_gpu_memory_mib": 81559},
     ["no-such-claim", "vllm_serve_model_claim"]),
    ("role-serve-port-wrong-type", "role:vllm_serve", {"vllm_serve_served_model_name": "m", "vllm_serve_port": "http"},
     ["vllm_serve_port"]),
    ("role-store-storage-class-missing", "role:model_store",
     {"model_store_namespace": "default", "model_store_name": "m", "model_store_source": "local",
      "model_store_local_path": "/tmp", "model_store_storage_class": "no-such-class",
      "model_store_fetch_image": "registry.invalid/model-fetch:1"},
     ["no-such-class", "model_store_storage_class"]),
    ("role-store-s3-no-bucket", "role:model_store", {"model_store_namespace": "default", "model_store_name": "m",
                                                     "model_store_source": "s3"}, ["model_store_s3_bucket"]),
    ("role-store-size-garbage", "role:model_store", {"model_store_namespace": "default", "model_store_name": "m",
                                                     "model_store_source": "local", "model_store_local_path": "/tmp",
                                                     "model_store_size": "lots"}, ["model_store_size"]),
    ("role-store-no-fetch-image", "role:model_store", {"model_store_namespace": "default", "model_store_name": "m",
                                                       "model_store_source": "local", "model_store_local_path": "/tmp"},
     ["model_store_fetch_image"]),
    ("role-store-source-unknown", "role:model_store", {"model_store_name": "m", "model_store_source": "ftp"},
     ["model_store_source"]),
    ("role-hami-chart-version-garbage", "role:hami", {"hami_chart_version": "latest-please"}, ["hami_chart_version"]),
    ("role-gpu-node-host-entry-bad-type", "role:gpu_node:host", {"gpu_node_require_gpus": "maybe"},
     ["gpu_node_require_gpus"]),
]


def snapshot(kube) -> dict:
    """Every object of the kinds the roles touch, by identity and content
    (no status, resourceVersion or managedFields: controllers move those)."""
    kinds = [("v1", "Namespace"), ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Service"),
             ("v1", "PersistentVolumeClaim"), ("v1", "ServiceAccount"), ("apps/v1", "StatefulSet"),
             ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("batch/v1", "Job"),
             ("networking.k8s.io/v1", "NetworkPolicy"), ("networking.k8s.io/v1", "Ingress"),
             ("policy/v1", "PodDisruptionBudget"), ("storage.k8s.io/v1", "StorageClass")]
    out = {}
    for api_version, kind in kinds:
        for obj in kube.list(api_version, kind):
            meta = obj["metadata"]
            body = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
            body["labels"], body["annotations"] = meta.get("labels"), meta.get("annotations")
            out[(kind, meta.get("namespace"), meta["name"])] = (
                meta["uid"], hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest())
    for node in kube.list("v1", "Node"):
        out[("Node", None, node["metadata"]["name"])] = (node["metadata"].get("labels"), node["spec"].get("taints"))
    return out


def case_tasks(case_id: str, target: str, args: dict) -> dict:
    if target.startswith("role:"):
        _prefix, role, *entry = target.split(":")
        call = {"name": case_id, "ansible.builtin.include_role": {"name": f"inferops.vllm.{role}",
                                                                  **({"tasks_from": entry[0]} if entry else {})},
                "vars": args}
    else:
        call = {"name": case_id, f"inferops.vllm.{target}": args}
    record = "{{ outcomes | combine({'%s': {'failed': %s, 'msg': %s}}) }}"
    return {
        "name": f"case {case_id}",
        "block": [call, {"ansible.builtin.set_fact": {"outcomes": record % (case_id, "false", "''")}}],
        "rescue": [{"ansible.builtin.set_fact": {
            "outcomes": record % (case_id, "true", "ansible_failed_result.msg | default('') | string")}}],
    }


@pytest.fixture(scope="module")
def outcomes(sandbox, kube, tmp_path_factory):
    base = tmp_path_factory.mktemp("bad-input")
    scratch = base / "scratch"
    scratch.mkdir()
    (base / "malformed-kubeconfig").write_text("apiVersion: v1\nclusters: [this is: not: yaml\n")
    (base / "unreachable-kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))
    playbook = base / "bad-input.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "bad input", "hosts": "localhost", "gather_facts": False, "module_defaults": K8S,
        "vars": {"inferops_kubeconfig": sandbox.kubeconfig, "scratch": str(scratch), "outcomes": {}},
        "tasks": [case_tasks(*c[:3]) for c in CASES] + [
            {"name": "outcomes", "ansible.builtin.debug": {"var": "outcomes"}}],
    }]))

    def terminating() -> set[str]:
        return {n["metadata"]["name"] for n in kube.list("v1", "Namespace") if n["metadata"].get("deletionTimestamp")}

    going_before = terminating()
    before = snapshot(kube)
    result = run_playbook(playbook, inventory="localhost,",
                          extra_args=["-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"])
    after = snapshot(kube)
    assert result.rc == 0, result.failures()
    # Namespaces that earlier tests left to be deleted in the background lose their objects meanwhile
    # (terminating before or after, or gone by the end; no case deletes a namespace).
    vanished = {k[2] for k in before if k[0] == "Namespace"} - {k[2] for k in after if k[0] == "Namespace"}
    going = going_before | terminating() | vanished
    seen = {"cases": result.task("outcomes")["outcomes"], "changed": sorted(
        str(k) for k in set(before) | set(after) if before.get(k) != after.get(k)
        and k[1] not in going and not (k[0] == "Namespace" and k[2] in going)),
        "scratch": sorted(str(p) for p in scratch.rglob("*"))}
    (base / "outcomes.json").write_text(json.dumps(seen, indent=1))  # kept for a failing run's reader
    return seen


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)


def test_nothing_changed(outcomes):
    assert outcomes["changed"] == [] and outcomes["scratch"] == []


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refused_with_the_parameter_named(outcomes, case):
    case_id, _target, _args, expect = case
    seen = outcomes["cases"][case_id]
    assert seen["failed"], f"{case_id}: not refused"
    msg = seen["msg"]
    assert "Traceback" not in msg and "unexpected error" not in msg.lower(), msg
    for text in expect:
        assert text in msg, f"{case_id}: {text!r} not in {msg!r}"


# A kubeconfig file that is not there, given the way a user gives it (-e or the inventory's
# inferops_kubeconfig), to each playbook: refused at its first Kubernetes task, naming the
# variable, the path and the fix, not with the client library's "Invalid kube-config file".
MISSING_KUBECONFIG = "/nonexistent/inferops/kubeconfig"
PLAYBOOKS = [
    ("site", ["site.yml"]),
    # --tags serve: the sandbox inventory's own lookups read it first.
    ("serve", ["site.yml", "--tags", "serve"]),
    ("scale", ["playbooks/scale.yml", "-e", "vllm_serve_replicas=2"]),
    ("upgrade", ["playbooks/upgrade.yml"]),
    ("teardown", ["playbooks/teardown.yml", "-e", "teardown_level=model"]),
    ("deployer-access", ["playbooks/deployer_access.yml", "-e", "deployer_access_kubeconfig_dest=/nonexistent/out"]),
]


@pytest.mark.parametrize("args", [p[1] for p in PLAYBOOKS], ids=[p[0] for p in PLAYBOOKS])
def test_a_missing_kubeconfig_is_named(sandbox, kube, args):
    before = snapshot(kube)
    result = run_playbook(ROOT / args[0], inventory=ROOT / "inventories" / "sandbox",
                          env={"SANDBOX_DIR": str(sandbox.state_dir)},
                          extra_args=[*args[1:], "-e", f"inferops_kubeconfig={MISSING_KUBECONFIG}"])
    assert result.rc != 0
    # What the user reads: each failed task's message, and a loop's for each item.
    failed = [r for t in result.tasks() for r in t["hosts"].values() if r.get("failed")]
    message = "\n".join(str(m.get("msg")) for r in failed for m in [r, *(r.get("results") or [])])
    assert f"inferops_kubeconfig: {MISSING_KUBECONFIG} does not exist" in message, message
    assert "-e inferops_kubeconfig=PATH" in message and "Invalid kube-config" not in message, message
    assert snapshot(kube) == before
