"""A remote file name never leaves the destination, whatever the source
lists. The S3 listings come from a stub S3 server (tests/support/s3_stub.py)
because MinIO refuses such keys; other S3-compatible stores accept them."""

from __future__ import annotations

import json
import os

import pytest

from support.ansible import run_module
from support.s3_stub import S3Stub

CONFIG = json.dumps({"architectures": ["Qwen2ForCausalLM"]}).encode()


def s3_args(stub: S3Stub, dest, prefix="model"):
    return {"source": "s3", "endpoint_url": stub.endpoint, "bucket": stub.bucket, "prefix": prefix,
            "access_key": "stub-access", "secret_key": "stub-secret", "dest": str(dest), "max_attempts": 1}


def files_under(path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(folder, n), path) for folder, _dirs, names in os.walk(path) for n in names)


@pytest.mark.parametrize("key, reason", [
    ("model/../../escaped.txt", "contains '..'"),
    ("model/sub/../../../escaped.txt", "contains '..'"),
    ("model//escaped.txt", "absolute path"),  # '/' after the prefix: os.path.join would drop dest
    ("model/./config.json", "empty or '.' path segment"),
    ("model/.inferops-model-complete.json.tmp", "bookkeeping"),
])
def test_s3_key_outside_the_destination_is_refused_before_any_download(tmp_path, key, reason):
    dest = tmp_path / "work" / "dest"
    objects = {"model/config.json": CONFIG, "model/weights.safetensors": b"w" * 1000, key: b"pwned"}
    with S3Stub("models", objects) as stub:
        result = run_module("inferops.vllm.model_fetch", s3_args(stub, dest))
        gets = list(stub.gets)
    assert result.get("failed") is True, result
    assert reason in result["msg"] and repr(key[len("model/"):]) in result["msg"], result["msg"]
    assert "nothing was downloaded" in result["msg"]
    assert gets == []  # refused on the listing: no object was read
    assert files_under(tmp_path) == []  # nothing written, inside dest or beside it
    assert "stub-secret" not in json.dumps(result)


def test_s3_clean_listing_from_the_stub_downloads(tmp_path):
    """The same stub with clean keys: the refusal above is about the names,
    not the stub."""
    dest = tmp_path / "dest"
    objects = {"model/config.json": CONFIG, "model/sub/weights.safetensors": b"w" * 1000}
    with S3Stub("models", objects) as stub:
        result = run_module("inferops.vllm.model_fetch", s3_args(stub, dest))
    assert result.get("failed") is not True, result.get("msg")
    assert result["files"] == ["config.json", "sub/weights.safetensors"]
    assert (dest / "sub" / "weights.safetensors").read_bytes() == b"w" * 1000


def test_s3_copy_of_a_fetched_folder_skips_its_bookkeeping(tmp_path):
    """A bucket filled from a fetched folder holds its marker, partial files
    and hub cache: those are skipped (as for a local folder), never written."""
    dest = tmp_path / "dest"
    objects = {"model/config.json": CONFIG, "model/.inferops-model-complete.json": b"{}",
               "model/.inferops-partial/config.json": b"junk", "model/.cache/huggingface/x": b"junk"}
    with S3Stub("models", objects) as stub:
        result = run_module("inferops.vllm.model_fetch", s3_args(stub, dest))
    assert result.get("failed") is not True, result.get("msg")
    assert result["files"] == ["config.json"]
    assert sorted(files_under(dest)) == [".inferops-model-complete.json", "config.json"]
    assert json.loads((dest / ".inferops-model-complete.json").read_text())["files"][0]["path"] == "config.json"


def test_symlink_planted_in_the_destination_is_not_followed(tmp_path):
    """A folder in dest that links elsewhere: the file the source lists under
    it would land outside dest; it is refused, and the outside stays empty."""
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "config.json").write_bytes(CONFIG)
    (src / "sub" / "weights.safetensors").write_bytes(b"w" * 10)
    result = run_module("inferops.vllm.model_fetch", {"source": "local", "local_path": str(src), "dest": str(dest),
                                                      "hardlink": False})
    assert result.get("failed") is True
    assert "outside the destination" in result["msg"] and "symbolic link" in result["msg"]
    assert list(outside.iterdir()) == []


def test_tampered_marker_paths_are_problems_not_reads(tmp_path):
    """A marker whose list names a file outside dest is not trusted: the run
    downloads again instead of reading (or hashing) outside the folder."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_bytes(CONFIG)
    dest = tmp_path / "dest"
    args = {"source": "local", "local_path": str(src), "dest": str(dest), "hardlink": False}
    assert run_module("inferops.vllm.model_fetch", args)["changed"] is True
    marker_path = dest / ".inferops-model-complete.json"
    marker = json.loads(marker_path.read_text())
    marker["files"].append({"path": "../secret", "size": 1, "sha256": "0" * 64})
    marker_path.write_text(json.dumps(marker))
    (tmp_path / "secret").write_text("x")
    again = run_module("inferops.vllm.model_fetch", args)
    assert again.get("failed") is not True, again.get("msg")
    assert again["changed"] is False  # config.json itself is still right: nothing fetched
    assert "'../secret'" not in json.dumps(json.loads(marker_path.read_text()))  # the new marker lists the source's files only
