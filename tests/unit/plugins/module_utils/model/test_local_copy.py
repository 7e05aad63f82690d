"""A local or mounted source, on real files: a hard link where it can, a
copy by the filesystem (copy_file_range) on the same filesystem, else one
pass that hashes what it copies; every way checked against the folder's
SHA256SUMS, and a file that does not match leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.model import _sources
from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import MARKER, VerifyFailed, fetch_model
from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import DirectorySource

MIB = 1024 * 1024


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"config.json": json.dumps({"architectures": ["LlamaForCausalLM"]}).encode(),
             "model.safetensors": os.urandom(20 * MIB + 3), "sub/tokenizer.json": os.urandom(70_000)}
    for name, data in files.items():
        (src / name).write_bytes(data)
    (src / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in files.items()))
    return src, files


def check(dest, files):
    for name, data in files.items():
        assert (dest / name).read_bytes() == data, name
    assert (dest / MARKER).exists()
    assert not list(dest.rglob("*.inferops-tmp"))


def test_hard_links_where_they_can(tmp_path, folder):
    src, files = folder
    result = fetch_model(DirectorySource(str(src)), str(tmp_path / "dest"))
    check(tmp_path / "dest", files)
    assert result["transfer"] == {"files_linked": 3, "files_range_copied": 0, "files_copied": 0}
    assert (tmp_path / "dest" / "model.safetensors").stat().st_ino == (src / "model.safetensors").stat().st_ino


def test_without_links_the_filesystem_copies(tmp_path, folder):
    src, files = folder
    result = fetch_model(DirectorySource(str(src), hardlink=False, workers=2), str(tmp_path / "dest"))
    check(tmp_path / "dest", files)
    assert result["transfer"]["files_range_copied"] == 3
    assert (tmp_path / "dest" / "model.safetensors").stat().st_ino != (src / "model.safetensors").stat().st_ino


def test_across_filesystems_one_pass_hashes_what_it_copies(tmp_path, folder, monkeypatch):
    src, files = folder
    monkeypatch.setattr(_sources, "_copy_range", lambda a, b: False)  # as on another filesystem
    result = fetch_model(DirectorySource(str(src), hardlink=False), str(tmp_path / "dest"))
    check(tmp_path / "dest", files)
    assert result["transfer"]["files_copied"] == 3


@pytest.mark.parametrize("range_copy", [True, False])
def test_a_file_that_does_not_match_its_sum_leaves_nothing(tmp_path, folder, monkeypatch, range_copy):
    src, _files = folder
    if not range_copy:
        monkeypatch.setattr(_sources, "_copy_range", lambda a, b: False)
    data = bytearray((src / "model.safetensors").read_bytes())
    data[12345] ^= 1
    (src / "model.safetensors").write_bytes(bytes(data))
    dest = tmp_path / "dest"
    with pytest.raises(VerifyFailed, match="model.safetensors"):
        fetch_model(DirectorySource(str(src), hardlink=False), str(dest))
    assert not (dest / "model.safetensors").exists()
    assert not list(dest.rglob("*.inferops-tmp")) and not (dest / MARKER).exists()


def test_the_first_file_that_fails_stops_the_rest(tmp_path, folder):
    src, files = folder
    (src / "a-first.bin").write_bytes(b"x" * 1000)
    with open(src / "SHA256SUMS", "a") as f:
        f.write(f"{'0' * 64}  a-first.bin\n")  # a sum this file does not have
    dest = tmp_path / "dest"
    with pytest.raises(VerifyFailed, match="a-first.bin"):  # the real error, not the others' stop
        fetch_model(DirectorySource(str(src), hardlink=False, workers=1), str(dest))
    assert not [p for p in dest.rglob("*") if p.is_file() and p.name in {"model.safetensors", "tokenizer.json"}]
