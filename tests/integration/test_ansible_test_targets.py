"""`ansible-test integration`: one target per module under
tests/integration/targets/, the cluster-facing ones against the sandbox
(named in integration_config.yml, as ansible-test expects)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.collection import collection_copy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))


def test_every_module_has_a_target():
    targets = {p.name for p in (ROOT / "tests" / "integration" / "targets").iterdir()}
    assert set(MODULES) <= targets, sorted(set(MODULES) - targets)


def test_ansible_test_integration(sandbox, tmp_path):
    dest = collection_copy(tmp_path)
    (dest / "tests" / "integration" / "integration_config.yml").write_text(
        yaml.safe_dump({"inferops_kubeconfig": sandbox.kubeconfig}))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-test"), "integration", "--local", "--python",
         f"{sys.version_info[0]}.{sys.version_info[1]}", "--color", "no", *MODULES],
        cwd=dest, capture_output=True, text=True, timeout=1500, check=False,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections")})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for module in MODULES:
        assert f"Running {module} integration test role" in out, module
