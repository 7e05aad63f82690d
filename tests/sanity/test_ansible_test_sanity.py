"""`ansible-test sanity` on the collection, with no ignore file: it must pass
as it stands. Runs on a copy laid out as ansible_collections/inferops/vllm
(where ansible-test insists a collection lives)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.collection import collection_copy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_no_ignore_files():
    assert not list((ROOT / "tests" / "sanity").glob("ignore-*.txt"))


def test_ansible_test_sanity_passes(tmp_path):
    dest = collection_copy(tmp_path)
    ansible_test = Path(sys.executable).parent / "ansible-test"
    proc = subprocess.run([str(ansible_test), "sanity", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}",
                           "--color", "no"], cwd=dest, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections")}, check=False)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("ERROR", "FATAL"))]
    assert proc.returncode == 0, "\n".join(errors) or proc.stdout[-5000:] + proc.stderr[-5000:]
