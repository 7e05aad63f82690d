"""hack/sandbox itself: a second sandbox next to the running one picks its own
ports, `status` and `kubeconfig` report it, its state folder keeps the
Kubernetes line it was started with, and `down` stops every process it
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
    # The default sandbox, whatever line or settings this shell asks for.
    env = {k: v for k, v in os.environ.items() if k not in ("SANDBOX_KUBERNETES", "SANDBOX_FIXTURES", "SANDBOX_RUN_IMAGES")}
    return subprocess.run(
        [str(ROOT / "hack" / "sandbox"), *args],
        env={**env, "SANDBOX_DIR": str(state_dir)},
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
        assert state["kubernetes"]["line"] == "1.37" and state["kubernetes"]["version"].startswith("v1.37.")
        # Without fixtures: only what a site.yml run needs (no test stand-in port, no crash logs).
        assert state["fixtures"] is None and "standin" not in state["ports"]

        status = run(state_dir, "status")
        assert status.returncode == 0, status.stdout
        assert "kube-apiserver" in status.stdout and "STOPPED" not in status.stdout
        assert run(state_dir, "kubeconfig").stdout.strip() == str(state_dir / "kubeconfig")

        pids = [p["pid"] for p in state["processes"]]
        # etcd, apiserver, controller-manager, scheduler, kwok, minio, vllm-standin, job-runner
        assert [p["name"] for p in state["processes"]][-1] == "job-runner" and len(pids) == 8

        # The same folder is not started again with another Kubernetes line.
        other = run(state_dir, "up", "--kubernetes", "1.35")
        assert other.returncode == 1 and "started with Kubernetes 1.37, not 1.35" in other.stderr, other.stderr
        assert run(state_dir, "status").returncode == 0
    finally:
        down = run(state_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]
    assert not state_dir.exists()
    assert run(state_dir, "status").returncode == 3
