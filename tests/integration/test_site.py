"""site.yml on the sandbox inventory, as `make sandbox` runs it: every stage
end to end, then a second run that changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.ansible import ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def site(sandbox, *extra: str):
    return run_playbook(ROOT / "site.yml", inventory=ROOT / "inventories" / "sandbox",
                        env={"SANDBOX_DIR": str(sandbox.state_dir)}, extra_args=list(extra))


def test_site_end_to_end_then_no_change(sandbox, core_v1, apps_v1):
    first = site(sandbox)
    assert first.rc == 0 and first.failed() == 0, first.failures()
    assert first.changed() > 0

    report = first.task("Report the cluster and its GPU nodes")["msg"]
    assert report[0] == "Kubernetes v1.35.4"
    # GPU nodes labelled for HAMi, and HAMi's device plugin on every one of them.
    for name in sandbox.gpu_nodes:
        assert core_v1.read_node(name).metadata.labels["gpu"] == "on"
    assert "gpu" not in (core_v1.read_node(sandbox.cpu_nodes[0]).metadata.labels or {})
    plugin = apps_v1.read_namespaced_daemon_set("hami-device-plugin", "kube-system")
    assert plugin.status.number_ready == len(sandbox.gpu_nodes)
    assert apps_v1.read_namespaced_deployment("hami-scheduler", "kube-system").status.ready_replicas == 1
    # The model claim bound, and the model fetched from S3 into the volume behind it.
    claim = core_v1.read_namespaced_persistent_volume_claim("models-minilm", "ai-serving")
    assert claim.status.phase == "Bound"
    volume = core_v1.read_persistent_volume(claim.spec.volume_name)
    model_dir = Path(volume.spec.host_path.path) / "minilm"
    marker = json.loads((model_dir / ".inferops-model-complete.json").read_text())
    assert "model.safetensors" in {f["path"] for f in marker["files"]}
    # vLLM (the stand-in behind kwok) answered through the Kubernetes API.
    answer = first.task("Health, model list, a chat completion and a streamed one")
    assert answer["models"]["ids"] == ["minilm"] and answer["chat"]["reply"] == "ready"
    assert apps_v1.read_namespaced_stateful_set("vllm", "ai-serving").status.ready_replicas == 1

    second = site(sandbox)
    assert second.rc == 0 and second.failed() == 0, second.failures()
    changed = [t["task"]["name"] for t in second.tasks() if any(h.get("changed") for h in t["hosts"].values())]
    assert second.changed() == 0, changed

    # One stage alone, as an operator re-runs it: the serve stage finds the
    # model from the claim's volume, and changes nothing either.
    serve = site(sandbox, "--tags", "serve")
    assert serve.rc == 0 and serve.failed() == 0, serve.failures()
    assert serve.changed() == 0
    assert serve.task("inferops.vllm.vllm_serve : Ask the server, as a client would")["chat"]["reply"] == "ready"
