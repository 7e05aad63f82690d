"""The sandbox is a real cluster: the real scheduler places GPU pods on
kwok's simulated GPU nodes, the real controller-manager rolls workloads out,
the real helm installs charts, and the S3 server stores bytes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from support.k8s import wait_for

pytestmark = pytest.mark.integration
CHART = Path(__file__).resolve().parents[1] / "charts" / "demo"


def gpu_statefulset(name: str, gpus: int, replicas: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "server",
                            "image": "registry.invalid/vllm-openai:v0.12.0",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ]
                },
            },
        },
    }


def test_gpu_nodes_are_ready_and_advertise_gpus(sandbox, core_v1):
    nodes = {n.metadata.name: n for n in core_v1.list_node().items}
    assert len(sandbox.gpu_nodes) >= 4 and len(sandbox.cpu_nodes) >= 1
    for name in sandbox.gpu_nodes:
        node = nodes[name]
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True", name
        assert node.status.allocatable["nvidia.com/gpu"] == "8"
        assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert "topology.kubernetes.io/zone" in node.metadata.labels
        devices = json.loads(node.metadata.annotations["hami.io/node-nvidia-register"])
        assert len(devices) == 8 and all(d["health"] for d in devices)
    for name in sandbox.cpu_nodes:
        assert "nvidia.com/gpu" not in nodes[name].status.allocatable


def test_statefulset_with_8_gpus_schedules_and_becomes_ready(sandbox, namespace, apps_v1, core_v1):
    apps_v1.create_namespaced_stateful_set(namespace, gpu_statefulset("eight", gpus=8))
    sts = wait_for(
        apps_v1.list_namespaced_stateful_set, lambda s: (s.status.ready_replicas or 0) == 2, 120, namespace
    )
    assert sts.status.ready_replicas == 2
    pods = core_v1.list_namespaced_pod(namespace, label_selector="app=eight").items
    assert {p.spec.node_name for p in pods} <= set(sandbox.gpu_nodes)
    # 8 GPUs each: the two pods cannot share a node.
    assert len({p.spec.node_name for p in pods}) == 2


def test_statefulset_with_9_gpus_stays_pending_with_scheduler_reason(namespace, apps_v1, core_v1):
    apps_v1.create_namespaced_stateful_set(namespace, gpu_statefulset("nine", gpus=9, replicas=1))

    def unschedulable(pod) -> bool:
        return any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in (pod.status.conditions or [])
        )

    pod = wait_for(core_v1.list_namespaced_pod, unschedulable, 120, namespace)
    assert pod.status.phase == "Pending"
    message = next(c.message for c in pod.status.conditions if c.type == "PodScheduled")
    assert "Insufficient nvidia.com/gpu" in message, message
    event = wait_for(
        core_v1.list_namespaced_event,
        lambda e: e.reason == "FailedScheduling" and e.involved_object.name == pod.metadata.name,
        60,
        namespace,
    )
    assert "Insufficient nvidia.com/gpu" in event.message


def test_deployment_rollout_to_new_image_completes(namespace, apps_v1):
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    apps_v1.create_namespaced_deployment(namespace, deployment)

    def rolled_out(d) -> bool:
        s = d.status
        return (
            (s.observed_generation or 0) >= d.metadata.generation
            and (s.updated_replicas or 0) == d.spec.replicas
            and (s.available_replicas or 0) == d.spec.replicas
            and (s.replicas or 0) == d.spec.replicas
        )

    wait_for(apps_v1.list_namespaced_deployment, rolled_out, 120, namespace)
    apps_v1.patch_namespaced_deployment(
        "web", namespace, {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.invalid/web:2"}]}}}}
    )
    d = wait_for(
        apps_v1.list_namespaced_deployment,
        lambda d: d.metadata.generation == 2 and rolled_out(d),
        120,
        namespace,
    )
    assert d.spec.template.spec.containers[0].image == "registry.invalid/web:2"
    replica_sets = apps_v1.list_namespaced_replica_set(namespace).items
    assert len(replica_sets) == 2  # the controller-manager made a new ReplicaSet
    old = next(rs for rs in replica_sets if rs.spec.template.spec.containers[0].image.endswith(":1"))
    assert old.spec.replicas == 0


def helm(sandbox, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": sandbox.kubeconfig, "HELM_CACHE_HOME": str(sandbox.state_dir / "helm" / "cache"),
           "HELM_CONFIG_HOME": str(sandbox.state_dir / "helm" / "config"), "HELM_DATA_HOME": str(sandbox.state_dir / "helm" / "data")}
    proc = subprocess.run([sandbox.helm, *args], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_helm_install_upgrade_and_list(sandbox, namespace, core_v1, apps_v1):
    helm(sandbox, "install", "demo", str(CHART), "-n", namespace, "--wait", "--timeout", "2m")
    assert core_v1.read_namespaced_config_map("demo-demo", namespace).data["message"] == "hello"
    helm(sandbox, "upgrade", "demo", str(CHART), "-n", namespace, "--set", "message=upgraded",
         "--set", "replicas=2", "--wait", "--timeout", "2m")
    assert core_v1.read_namespaced_config_map("demo-demo", namespace).data["message"] == "upgraded"
    assert apps_v1.read_namespaced_deployment("demo-demo", namespace).status.ready_replicas == 2
    releases = json.loads(helm(sandbox, "list", "-n", namespace, "-o", "json"))
    assert [(r["name"], r["revision"], r["status"]) for r in releases] == [("demo", "2", "deployed")]


def test_s3_object_round_trip_is_byte_identical(sandbox):
    import boto3
    from botocore.config import Config

    creds = sandbox.s3_credentials()
    s3 = boto3.client(
        "s3", endpoint_url=sandbox.s3_endpoint, aws_access_key_id=creds["access_key"],
        aws_secret_access_key=creds["secret_key"], region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket="roundtrip")
    payload = os.urandom(12 * 1024 * 1024 + 17)  # above boto3's multipart threshold
    from boto3.s3.transfer import TransferConfig

    import io

    s3.upload_fileobj(io.BytesIO(payload), "roundtrip", "models/blob.bin",
                      Config=TransferConfig(multipart_threshold=8 * 1024 * 1024))
    head = s3.head_object(Bucket="roundtrip", Key="models/blob.bin")
    assert head["ContentLength"] == len(payload)
    assert "-" in head["ETag"]  # stored as a real multipart upload
    body = s3.get_object(Bucket="roundtrip", Key="models/blob.bin")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(payload).hexdigest()
