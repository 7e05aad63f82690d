"""The gpu_node role's host side, by its molecule scenario, on real Debian
bookworm containers (podman): preflight, the toolkit from a signed local APT
repository the scenario builds, containerd's drop-in (read back with
`containerd config dump`) on one host and Docker's daemon.json (merged,
parsed back) on the other, handlers that fire once, a second converge that
changes nothing; the role's 'host' argument spec applied and refusing a wrong
type."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_gpu_node_molecule_scenario():
    image = subprocess.run([str(ROOT / "hack" / "host-test-image")], capture_output=True, text=True, check=False)
    assert image.returncode == 0, image.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "INFEROPS_APT_REPO_PORT": str(port), "INFEROPS_HOST_IMAGE": image.stdout.strip(),
           "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(["molecule", "test"], cwd=ROOT / "roles" / "gpu_node", env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    out = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)
    assert proc.returncode == 0, out[-6000:]
    for step in ("create", "prepare", "converge", "idempotence", "verify", "destroy"):
        assert f"{step}: Executed: Successful" in out, step
    # Each runtime's handler ran once, in the first converge; the second changed nothing.
    assert out.count("RUNNING HANDLER [inferops.vllm.gpu_node : Restart containerd]") == 1
    assert out.count("RUNNING HANDLER [inferops.vllm.gpu_node : Restart docker]") == 1
    # Called as playbooks/gpu_nodes.yml calls it (tasks_from: host), the role validates its 'host' argument spec
    # before its first task (tasks_from: host.yml would validate nothing).
    validation = out.find("TASK [inferops.vllm.gpu_node : Validating arguments against arg spec 'host'")
    assert 0 <= validation < out.find("TASK [inferops.vllm.gpu_node : Gather the facts the preflight reads"), "no spec"
    for host in ("gpu-host-1", "gpu-host-2"):
        recaps = re.findall(rf"{host}\s+: ok=\d+\s+changed=(\d+)", out)
        assert int(recaps[1]) > 0 and int(recaps[2]) == 0, (host, recaps)
