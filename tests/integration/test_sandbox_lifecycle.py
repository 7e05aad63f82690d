"""hack/sandbox itself: a second sandbox next to the running one picks its own
ports, `status` and `kubeconfig` report it, and `down` stops every process it
started and leaves no state behind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from support.sandbox import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ROOT / "hack" / "sandbox"), *args],
        env={**os.environ, "SANDBOX_DIR": str(state_dir)},
        capture_output=True, text=True, timeout=600, check=False,
    )


def test_second_sandbox_uses_other_ports_and_down_cleans_up(sandbox, tmp_path):
    state_dir = tmp_path / "second"
    up = run(state_dir, "up", "--gpu-nodes", "1", "--gpus-per-node", "2", "--cpu-nodes", "0")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((state_dir / "state.json").read_text())
        assert set(state["ports"].values()).isdisjoint(sandbox.state["ports"].values())
        assert state["api_server"].startswith("https://127.0.0.1:")

        status = run(state_dir, "status")
        assert status.returncode == 0, status.stdout
        assert "kube-apiserver" in status.stdout and "STOPPED" not in status.stdout
        assert run(state_dir, "kubeconfig").stdout.strip() == str(state_dir / "kubeconfig")

        pids = [p["pid"] for p in state["processes"]]
        assert len(pids) == 7  # etcd, apiserver, controller-manager, scheduler, kwok, minio, vllm-standin
    finally:
        down = run(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]
    assert not state_dir.exists()
    assert run(state_dir, "status").returncode == 3
