"""Each role's README lists its variables as meta/argument_specs.yml
describes them (hack/role-readme writes that part)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_role_readmes_are_current():
    proc = subprocess.run([sys.executable, str(ROOT / "hack" / "role-readme.py"), "--check"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
