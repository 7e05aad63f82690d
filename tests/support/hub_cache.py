"""Local caches in the Hugging Face and ModelScope libraries' own layouts,
so that their real snapshot_download finds a model offline (no hub is
reachable here, and tests must not try)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_MODEL = ROOT / ".cache" / "test-models" / "all-minilm-l6-v2"
COMMIT = "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"  # any 40-hex commit id: the cache names the snapshot by it


def model_files(src: Path = TEST_MODEL) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))


def build_hf_cache(cache_dir: Path, repo_id: str, src: Path = TEST_MODEL) -> Path:
    """models--owner--name/{blobs/<hash>, snapshots/<commit>/<file> -> blob, refs/main}.
    Large (LFS) files are named by their sha256 in blobs/, as the hub's ETag
    for them is; small files by their git blob sha1."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for path in model_files(src):
        rel = path.relative_to(src)
        data = path.read_bytes()
        if len(data) > 10 * 1024 * 1024:
            blob_name = hashlib.sha256(data).hexdigest()
        else:
            blob_name = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's object id
        blob = repo / "blobs" / blob_name
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(path, blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def build_modelscope_cache(cache_dir: Path, model_id: str, src: Path = TEST_MODEL, revision: str = "master") -> Path:
    """models/owner--name/snapshots/<revision>/<files> (the modelscope_hub layout)."""
    snapshot = cache_dir / "models" / model_id.replace("/", "--") / "snapshots" / revision
    for path in model_files(src):
        target = snapshot / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return snapshot
