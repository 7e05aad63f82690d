"""`ansible-test sanity` on the collection, with no ignore file: it must pass
as it stands. Runs on a copy laid out as ansible_collections/inferops/vllm
(where ansible-test insists a collection lives)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_no_ignore_files():
    assert not list((ROOT / "tests" / "sanity").glob("ignore-*.txt"))


def test_ansible_test_sanity_passes(tmp_path):
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    dest = tmp_path / "ansible_collections" / "inferops" / "vllm"
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    # ansible-test only tests files git knows about.
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    # ansible-test fetches a pip bootstrap script from a server this machine
    # cannot reach; put our stand-in where it caches that script.
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for version in ("24_2",):
        shutil.copy2(ROOT / "hack" / "ansible-test-get-pip.py", cache / f"get_pip_{version}.py")
    ansible_test = Path(sys.executable).parent / "ansible-test"
    proc = subprocess.run([str(ansible_test), "sanity", "--python", f"{sys.version_info[0]}.{sys.version_info[1]}",
                           "--color", "no"], cwd=dest, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".cache" / "collections")}, check=False)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("ERROR", "FATAL"))]
    assert proc.returncode == 0, "\n".join(errors) or proc.stdout[-5000:] + proc.stderr[-5000:]
