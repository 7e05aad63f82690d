"""The oldest supported Kubernetes line (1.35): a sandbox of its own, built
with SANDBOX_KUBERNETES=1.35 (its binaries are built once and cached under
.cache/sandbox-bin), in its own state folder and on its own ports, and
site.yml end to end on it, then again with nothing to change."""

from __future__ import annotations

import json

import pytest

from support.ansible import ROOT, run_playbook
from support.sandbox import sandbox_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_site_on_the_oldest_supported_kubernetes(tmp_path):
    state_dir = tmp_path / "sandbox-1.35"
    env = {"SANDBOX_KUBERNETES": "1.35", "SANDBOX_FIXTURES": "", "SANDBOX_RUN_IMAGES": ""}
    try:
        up = sandbox_cmd("up", check=False, state_dir=state_dir, env=env)
        assert up.returncode == 0, up.stdout
        state = json.loads((state_dir / "state.json").read_text())
        assert state["kubernetes"]["line"] == "1.35"
        version = state["kubernetes"]["version"]
        assert version.startswith("v1.35."), version

        # The sandbox inventory, pointed at this sandbox (and only at it).
        site_env = {"SANDBOX_DIR": str(state_dir), "K8S_AUTH_KUBECONFIG": state["kubeconfig"]}
        first = run_playbook(ROOT / "site.yml", inventory=ROOT / "inventories" / "sandbox", env=site_env)
        assert first.rc == 0 and first.failed() == 0, first.failures()
        assert first.changed() > 0
        assert first.task("Report the cluster and its GPU nodes")["msg"][0] == f"Kubernetes {version}"
        answer = first.task("inferops.vllm.vllm_serve : Ask the server, as a client would")
        assert answer["models"]["ids"] == ["tiny-chat"] and answer["chat"]["reply"] == "ready"

        second = run_playbook(ROOT / "site.yml", inventory=ROOT / "inventories" / "sandbox", env=site_env)
        assert second.rc == 0 and second.failed() == 0, second.failures()
        assert second.changed() == 0, [t["task"]["name"] for t in second.tasks()
                                       if any(h.get("changed") for h in t["hosts"].values())]
    finally:
        down = sandbox_cmd("down", check=False, state_dir=state_dir)
    assert down.returncode == 0, down.stdout
    assert not state_dir.exists()
