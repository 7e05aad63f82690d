"""site.yml on the sandbox inventory: what `make sandbox` runs."""

from __future__ import annotations

import pytest

from support.ansible import ROOT, run_playbook

pytestmark = pytest.mark.integration


def test_site_reports_cluster_version_and_gpu_nodes(sandbox):
    result = run_playbook(ROOT / "site.yml", inventory=ROOT / "inventories" / "sandbox",
                          env={"K8S_AUTH_KUBECONFIG": sandbox.kubeconfig})
    assert result.rc == 0 and result.failed() == 0, result.stderr
    report = result.task("Report the cluster and its GPU nodes")["msg"]
    assert report[0] == "Kubernetes v1.35.4"
    assert f"{len(sandbox.gpu_nodes) + len(sandbox.cpu_nodes)} nodes, {len(sandbox.gpu_nodes)} with GPUs" == report[1]
    assert all(f"{n}: 8 GPUs" in report[2] for n in sandbox.gpu_nodes)
    assert result.changed() == 0
