"""Each file is checked against the checksum its source publishes, computed
as the source computes it: S3's single-part and multipart ETags and its
additional checksums (full-object and composite), a Hugging Face blob's
sha256 or git blob id; and the marker records that checksum, so that
verify: full compares with the source, not with what was on disk."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import (
    MARKER, FileSpec, VerifyFailed, fetch_model, source_digest, verify_file,
)
from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import HubSource
from support.hub_cache import build_hf_cache

MIB = 1024 * 1024


def multipart_etag(data: bytes, part: int) -> str:
    """What S3 and MinIO give a multipart upload: the MD5 of the parts' MD5s, '-N'."""
    parts = [data[i:i + part] for i in range(0, len(data), part)]
    return hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"  # noqa: S324


@pytest.fixture
def blob(tmp_path):
    data = os.urandom(11 * MIB + 123)
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, data


def test_multipart_etag(blob):
    path, data = blob
    sizes = [5 * MIB, 5 * MIB, MIB + 123]
    sha, value = source_digest(str(path), {"algorithm": "s3-etag", "value": "", "part_sizes": sizes})
    assert value == multipart_etag(data, 5 * MIB)
    assert sha == hashlib.sha256(data).hexdigest()
    # Other part sizes give another ETag: the sizes are part of the checksum.
    assert source_digest(str(path), {"algorithm": "s3-etag", "value": "", "part_sizes": [6 * MIB, 5 * MIB + 123]})[1] \
        != value


def test_single_part_etag_and_git_blob_id(blob):
    path, data = blob
    assert source_digest(str(path), {"algorithm": "md5", "value": ""})[1] == hashlib.md5(data).hexdigest()  # noqa: S324
    git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's object id
    assert source_digest(str(path), {"algorithm": "git-sha1", "value": ""})[1] == git


def test_s3_additional_checksums_full_object_and_composite(blob):
    path, data = blob
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert source_digest(str(path), {"algorithm": "s3-CRC32", "type": "FULL_OBJECT", "value": ""})[1] == crc
    parts = [data[:5 * MIB], data[5 * MIB:10 * MIB], data[10 * MIB:]]
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    expected = base64.b64encode(composite).decode() + "-3"
    got = source_digest(str(path), {"algorithm": "s3-SHA256", "type": "COMPOSITE", "value": "",
                                    "part_sizes": [5 * MIB, 5 * MIB, MIB + 123]})[1]
    assert got == expected


def test_one_flipped_byte_fails_the_multipart_etag(blob):
    path, data = blob
    checksum = {"algorithm": "s3-etag", "value": multipart_etag(data, 5 * MIB), "part_sizes": [5 * MIB, 5 * MIB, MIB + 123]}
    spec = FileSpec("w.safetensors", len(data), checksum=checksum)
    assert verify_file(str(path), spec) == hashlib.sha256(data).hexdigest()
    with open(path, "r+b") as f:
        f.seek(9 * MIB)
        f.write(bytes([data[9 * MIB] ^ 1]))
    with pytest.raises(VerifyFailed, match="multipart ETag"):
        verify_file(str(path), spec)


def hf_model(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (src / "model.safetensors").write_bytes(os.urandom(11 * MIB))  # > 10 MiB: an LFS file, blob named by sha256
    cache = tmp_path / "hf"
    build_hf_cache(cache, "acme/tiny", src=src)
    return src, cache


def hf_source(cache):
    return HubSource("huggingface", "acme/tiny", None, str(cache), offline=True)


def test_hugging_face_hashes_come_from_the_library_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src, cache = hf_model(tmp_path)
    source = hf_source(cache)
    source.prepare()
    specs = {s.path: s for s in source.list_files()}
    weights = (src / "model.safetensors").read_bytes()
    assert specs["model.safetensors"].sha256 == hashlib.sha256(weights).hexdigest()
    assert specs["config.json"].checksum["algorithm"] == "git-sha1"
    dest = tmp_path / "dest"
    fetch_model(source, str(dest))
    marker = {f["path"]: f for f in json.loads((dest / MARKER).read_text())["files"]}
    assert marker["model.safetensors"]["source_checksum"] == {"algorithm": "sha256",
                                                              "value": hashlib.sha256(weights).hexdigest()}
    assert marker["config.json"]["source_checksum"]["algorithm"] == "git-sha1"


def test_corrupted_hub_cache_blob_is_refused_and_not_marked(tmp_path, monkeypatch):
    """The hub library's cache holds a blob whose bytes no longer match its
    name (the hub's sha256): the fetch fails naming the file; no marker."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src, cache = hf_model(tmp_path)
    blob = next(p for p in (cache / "models--acme--tiny" / "blobs").iterdir() if len(p.name) == 64)
    data = bytearray(blob.read_bytes())
    data[4242] ^= 0x10
    blob.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    with pytest.raises(VerifyFailed, match="model.safetensors.*sha256"):
        fetch_model(hf_source(cache), str(dest))
    assert not (dest / MARKER).exists()


def test_verify_full_compares_with_the_source_checksum_not_the_disk(tmp_path, monkeypatch):
    """A marker whose sha256 field was taken from a corrupt copy (what the
    old marker did after an unverified multipart download): verify: full
    checks the source's checksum it recorded and refetches."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src, cache = hf_model(tmp_path)
    dest = tmp_path / "dest"
    fetch_model(hf_source(cache), str(dest))
    # Break the hard link to the cache's blob, then damage the copy and record its hash as the old marker would.
    weights = dest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    weights.unlink()
    data[100] ^= 1
    weights.write_bytes(bytes(data))
    marker_path = dest / MARKER
    marker = json.loads(marker_path.read_text())
    for entry in marker["files"]:
        if entry["path"] == "model.safetensors":
            entry["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
            entry["mtime_ns"] = weights.stat().st_mtime_ns
    marker_path.write_text(json.dumps(marker))
    assert fetch_model(hf_source(cache), str(dest))["changed"] is False  # quick: size and mtime as recorded
    full = fetch_model(hf_source(cache), str(dest), verify="full")
    assert full["changed"] is True and full["downloaded"] == ["model.safetensors"]
    assert weights.read_bytes() == (src / "model.safetensors").read_bytes()
