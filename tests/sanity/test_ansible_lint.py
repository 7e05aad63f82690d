"""ansible-lint (production profile) on the roles, playbooks and inventories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ansible_lint_passes():
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-lint"), "--offline", "--nocolor", "-p",
                           "--profile", "production", "roles", "playbooks", "site.yml", "inventories"],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
