"""A copy of the checkout laid out as ansible_collections/inferops/vllm,
where ansible-test insists a collection lives, with only the files git knows
(ansible-test tests only those)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collection_copy(base: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    dest = base / "ansible_collections" / "inferops" / "vllm"
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    # The collections it depends on, beside it: ansible-test looks for them
    # there, not on ANSIBLE_COLLECTIONS_PATH.
    for namespace in ("kubernetes", "ansible"):
        (base / "ansible_collections" / namespace).symlink_to(ROOT / ".cache" / "collections" / "ansible_collections" / namespace)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    # ansible-test fetches a pip bootstrap script from a server this machine
    # cannot reach; put our stand-in where it caches that script.
    # Two files may do this at once (pytest-xdist), and one may be running
    # ansible-test already: each script is written only when it differs, to a
    # temporary name first, then renamed over it (no reader sees half a file).
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    ours = (ROOT / "hack" / "ansible-test-get-pip.py").read_bytes()
    wanted = {f"get_pip_{version}.py" for version in ("24_2", "25_3", "25_2", "25_1", "25_0")}
    for script in cache.glob("get_pip_*.py"):
        if script.name not in wanted:
            script.unlink(missing_ok=True)
    for name in sorted(wanted):
        target = cache / name
        if not target.exists() or target.read_bytes() != ours:
            tmp = target.with_name(f".{name}.{os.getpid()}")
            tmp.write_bytes(ours)
            os.replace(tmp, target)
    return dest
