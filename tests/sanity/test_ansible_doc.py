"""Every module's documentation renders with ansible-doc, as users read it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_shows_module(module):
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), f"inferops.vllm.{module}"],
                          capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert proc.returncode == 0, proc.stderr
    assert f"inferops.vllm.{module}" in proc.stdout and "EXAMPLES" in proc.stdout and "RETURN VALUES" in proc.stdout
