"""The oldest supported Python client: the cluster-facing modules run with
`kubernetes` 35 where they execute (a target host's interpreter), against the
sandbox, and do the same work as with the pinned 37."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from support.ansible import run_module

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
OLDEST_CLIENT = "35.0.0"


@pytest.fixture(scope="module")
def oldest_client_python() -> str:
    """A venv with only the oldest supported client (and what it pulls in),
    made once and kept in .cache."""
    venv = ROOT / ".cache" / f"venv-kubernetes-{OLDEST_CLIENT}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        f"kubernetes=={OLDEST_CLIENT}"], check=True, timeout=600)
        (venv / ".complete").touch()
    out = subprocess.run([str(python), "-c", "import kubernetes; print(kubernetes.__version__)"], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == OLDEST_CLIENT
    return str(python)


def test_modules_on_the_oldest_client(sandbox, namespace, kube, oldest_client_python):
    nodes = run_module("inferops.vllm.gpu_node", {"label_selector": "nvidia.com/gpu.present=true",
                                                  "labels": {"inferops.io/client-test": "yes"}},
                       kubeconfig=sandbox.kubeconfig, python=oldest_client_python)
    assert nodes.get("failed") is not True, nodes.get("msg")
    assert nodes["changed"] is True and len(nodes["changed_nodes"]) == len(sandbox.gpu_nodes)
    again = run_module("inferops.vllm.gpu_node", {"label_selector": "nvidia.com/gpu.present=true",
                                                  "labels": {"inferops.io/client-test": None}},
                       kubeconfig=sandbox.kubeconfig, python=oldest_client_python)
    assert again["changed"] is True
    assert "inferops.io/client-test" not in kube.get("v1", "Node", None, sandbox.gpu_nodes[0])["metadata"]["labels"]

    secret = run_module("inferops.vllm.k8s_secret", {"name": "s", "namespace": namespace, "generate": ["k"]},
                        kubeconfig=sandbox.kubeconfig, python=oldest_client_python)
    assert secret.get("failed") is not True and secret["generated"] == ["k"], secret.get("msg")

    kube.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                 "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                          "template": {"metadata": {"labels": {"app": "web"}},
                                       "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]}}}},
                namespace)
    waited = run_module("inferops.vllm.workload_wait", {"kind": "Deployment", "name": "web", "namespace": namespace,
                                                        "timeout": 120}, kubeconfig=sandbox.kubeconfig, python=oldest_client_python)
    assert waited.get("failed") is not True and waited["rolled_out"] is True, waited.get("msg")
