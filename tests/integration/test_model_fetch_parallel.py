"""model_fetch at wire speed, against the sandbox's real S3 server (MinIO):
files in flight together under one bound shared with a large file's parts,
every file hashed as its bytes arrive (nothing read back on a clean
download), resumed parts hashed from disk and not fetched again, the source's
multipart ETag checked in the same pass, and progress a person can read (the
progress file and the command's lines). A local source copied by the
filesystem or in one hashing pass."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from support.ansible import run_module
from support.hub_cache import ROOT
from support.s3 import client_putting_back_buckets

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
CONFIG = json.dumps({"architectures": ["LlamaForCausalLM"]}).encode()


@pytest.fixture(scope="module")
def s3(sandbox):
    yield from client_putting_back_buckets(sandbox)


def upload(s3, bucket: str, prefix: str, files: dict[str, bytes], manifest: bool) -> None:
    """Multipart above 5 MiB, as boto3 uploads large files: without the
    SHA256SUMS, a file's multipart ETag is all the fetcher has to check it."""
    from boto3.s3.transfer import TransferConfig

    s3.create_bucket(Bucket=bucket)
    for name, data in files.items():
        s3.upload_fileobj(io.BytesIO(data), bucket, f"{prefix}/{name}",
                          Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB))
    if manifest:
        sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items())).encode()
        s3.put_object(Bucket=bucket, Key=f"{prefix}/SHA256SUMS", Body=sums)


def model_files() -> dict[str, bytes]:
    files = {"config.json": CONFIG, "tokenizer.json": os.urandom(300_000)}
    files.update({f"model-{i:05d}.safetensors": os.urandom((7 + i) * MIB + i) for i in range(6)})
    files["large.safetensors"] = os.urandom(41 * MIB + 17)
    return files


def exact_copy(dest, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        got = (dest / name).read_bytes()
        assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name


def source(sandbox, bucket, prefix, **kwargs):
    from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import S3Source

    creds = sandbox.s3_credentials()
    return S3Source(bucket, prefix, sandbox.s3_endpoint, None, creds["access_key"], creds["secret_key"],
                    part_size=5 * MIB, **kwargs)


class Watched:
    """Counts the GETs in flight, by file, while a real download runs."""

    def __init__(self, src):
        self.lock = threading.Lock()
        self.active: dict[tuple[str, int], int] = {}
        self.most, self.most_files = 0, 0
        original = src._get_part

        def get_part(transfer, index, progress):
            with self.lock:
                self.active[(transfer.spec.path, index)] = 1
                self.most = max(self.most, len(self.active))
                self.most_files = max(self.most_files, len({path for path, _index in self.active}))
            try:
                return original(transfer, index, progress)
            finally:
                with self.lock:
                    del self.active[(transfer.spec.path, index)]

        src._get_part = get_part


@pytest.mark.parametrize("manifest", [True, False], ids=["SHA256SUMS", "multipart-ETags"])
def test_files_in_flight_together_each_hashed_as_it_arrives(sandbox, s3, tmp_path, manifest):
    from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    files = model_files()
    upload(s3, bucket, "m", files, manifest)
    src = source(sandbox, bucket, "m", max_concurrency=4)
    watched = Watched(src)
    dest = tmp_path / "m"
    result = fetch_model(src, str(dest))
    assert result["complete"] is True
    exact_copy(dest, files)
    # One bound for files and parts alike: never more than 4 GETs, and several files at once.
    assert watched.most == 4 and watched.most_files >= 2
    # One pass: a clean download reads nothing back to hash it.
    assert result["transfer"]["bytes_hashed_from_disk"] == 0
    assert result["transfer"]["buffer_peak_bytes"] <= 4 * 5 * MIB
    marker = json.loads((dest / ".inferops-model-complete.json").read_text())
    checks = {f["path"]: f["source_checksum"]["algorithm"] for f in marker["files"]}
    expected = "sha256" if manifest else "s3-etag"
    assert checks["large.safetensors"] == expected  # checked against the source, in the same pass
    assert not (dest / ".inferops-partial").exists() or not os.listdir(dest / ".inferops-partial")


def test_memory_budget_spent_parts_are_hashed_from_disk_and_still_verified(sandbox, s3, tmp_path):
    """One large file, eight parts in flight and room in memory for one: the
    parts that arrive ahead of their turn are hashed from the partial file
    when it comes, and the multipart ETag still matches."""
    from ansible_collections.inferops.vllm.plugins.module_utils.model import _inorder
    from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    files = {"config.json": CONFIG, "large.safetensors": os.urandom(61 * MIB + 5)}
    upload(s3, bucket, "m", files, manifest=False)
    src = source(sandbox, bucket, "m", max_concurrency=8)
    real_fetch = src.fetch

    def fetch_with_a_small_budget(specs, dest, progress):
        original = _inorder.BufferBudget.__init__
        _inorder.BufferBudget.__init__ = lambda self, limit: original(self, 1 * MIB)
        try:
            return real_fetch(specs, dest, progress)
        finally:
            _inorder.BufferBudget.__init__ = original

    src.fetch = fetch_with_a_small_budget
    result = fetch_model(src, str(tmp_path / "m"))
    exact_copy(tmp_path / "m", files)
    assert result["transfer"]["buffer_peak_bytes"] <= 1 * MIB
    assert result["transfer"]["bytes_hashed_from_disk"] > 0


def test_resumed_parts_are_hashed_from_disk_not_fetched(sandbox, s3, tmp_path):
    """A download stopped after some parts (the lock taken over stops it at
    once): the next run fetches only the rest, hashes the parts it found, and
    the progress counts what it had as resumed."""
    from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError
    from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    big = os.urandom(40 * MIB)
    files = {"config.json": CONFIG, "large.safetensors": big}
    upload(s3, bucket, "m", files, manifest=False)

    class Stop(InferopsError):
        pass

    def stop_after_four(path, index, done, parts):
        if path == "large.safetensors" and done == 4:
            raise Stop("stopped on purpose after four parts")

    dest = tmp_path / "m"
    with pytest.raises(Stop):
        fetch_model(source(sandbox, bucket, "m", max_concurrency=1, on_part_done=stop_after_four), str(dest))
    snapshots = []
    result = fetch_model(source(sandbox, bucket, "m", max_concurrency=2), str(dest),
                         progress_callback=snapshots.append)
    exact_copy(dest, files)
    assert result["transfer"]["bytes_hashed_from_disk"] == 4 * 5 * MIB
    assert result["bytes_downloaded"] == len(big) - 4 * 5 * MIB
    last = snapshots[-1]
    assert last["bytes_resumed"] == 4 * 5 * MIB and last["bytes_done"] == last["bytes_total"]
    assert last["files_done"] == last["files_total"] == 1  # config.json was done in the first run


def test_progress_file_and_lines_a_person_can_read(sandbox, s3, tmp_path):
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    files = model_files()
    upload(s3, bucket, "qwen-tiny", files, manifest=True)
    creds = sandbox.s3_credentials()
    progress = tmp_path / "progress.json"
    result = run_module("inferops.vllm.model_fetch", {
        "source": "s3", "endpoint_url": sandbox.s3_endpoint, "bucket": bucket, "prefix": "qwen-tiny",
        "access_key": creds["access_key"], "secret_key": creds["secret_key"], "dest": str(tmp_path / "m"),
        "progress_file": str(progress)})
    assert result.get("failed") is not True, result.get("msg")
    snap = json.loads(progress.read_text())
    total = sum(len(d) for d in files.values())
    assert snap["model"] == "qwen-tiny"
    assert snap["bytes_done"] == snap["bytes_total"] == total
    assert snap["files_done"] == snap["files_total"] == len(files)
    assert snap["eta_s"] == 0.0 and snap["rate_bytes_s"] > 0

    env = {**os.environ, "PYTHONPATH": str(ROOT / ".cache" / "collections"),
           "AWS_ACCESS_KEY_ID": creds["access_key"], "AWS_SECRET_ACCESS_KEY": creds["secret_key"]}
    proc = subprocess.run([sys.executable, "-m",
                           "ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli",
                           "--source", "s3", "--endpoint-url", sandbox.s3_endpoint, "--bucket", bucket,
                           "--prefix", "qwen-tiny", "--dest", str(tmp_path / "cli")],
                          env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("progress ")]
    assert lines[-1] == (f"progress qwen-tiny: {total / MIB:.1f} MiB of {total / MIB:.1f} MiB (100.0%), "
                         f"{lines[-1].split(', ')[1]}, 0s left, {len(files)} of {len(files)} files")
    assert creds["secret_key"] not in proc.stderr + proc.stdout


def test_the_pinned_libraries_give_the_one_buffer_read(sandbox, s3):
    """body_chunks reads a response straight into the worker's buffer when
    botocore's and urllib3's response objects are as the pinned versions
    make them; if an upgrade changes them it falls back to read(), which is
    correct but slower: this test says so before a benchmark does."""
    import http.client

    from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import READ_CHUNK, body_chunks

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    data = os.urandom(3 * READ_CHUNK + 99)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="blob", Body=data)
    body = s3.get_object(Bucket=bucket, Key="blob", Range=f"bytes=5-{len(data) - 1}")["Body"]
    assert type(body).__name__ == "StreamingBody"
    assert isinstance(body._raw_stream._fp, http.client.HTTPResponse)
    buf = bytearray(READ_CHUNK)
    kinds, chunks = set(), []
    for chunk in body_chunks(body, buf):
        kinds.add(type(chunk))
        chunks.append(bytes(chunk))  # a view of buf: copied before the next one overwrites it
    assert b"".join(chunks) == data[5:]
    assert kinds == {memoryview} and len(chunks) >= 4  # views of the one buffer, not read()'s bytes


def test_a_short_partial_file_recorded_as_complete_is_refetched(sandbox, s3, tmp_path):
    """A state file that says every part is done beside a partial file that
    is shorter (a disk that lost the tail, an edited state file): the size
    check refuses it, it is fetched again from nothing, and the folder holds
    the object."""
    from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    big = os.urandom(12 * MIB)
    files = {"config.json": CONFIG, "large.safetensors": big}
    upload(s3, bucket, "m", files, manifest=False)
    etag = s3.head_object(Bucket=bucket, Key="m/large.safetensors")["ETag"]
    partial = tmp_path / "m" / ".inferops-partial"
    partial.mkdir(parents=True)
    (partial / "large.safetensors").write_bytes(big[:7 * MIB])
    (partial / "large.safetensors.json").write_text(json.dumps(
        {"etag": etag, "size": len(big), "part_size": 5 * MIB, "done": [0, 1, 2]}))
    result = fetch_model(source(sandbox, bucket, "m"), str(tmp_path / "m"))
    exact_copy(tmp_path / "m", files)
    assert any("large.safetensors: size" in p and "fetched again" in p for p in result["problems"]), result["problems"]


def test_a_disk_that_refuses_a_write_fails_at_once_and_is_not_blamed_on_the_network(sandbox, s3, tmp_path, monkeypatch):
    from ansible_collections.inferops.vllm.plugins.module_utils.model import _sources
    from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    upload(s3, bucket, "m", {"config.json": CONFIG, "w.safetensors": os.urandom(11 * MIB)}, manifest=False)

    def full_disk(fd, data, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_sources, "write_at", full_disk)
    src = source(sandbox, bucket, "m", max_concurrency=1)
    gets = []
    real_get = None

    def counting_get(**kwargs):
        gets.append(kwargs["Key"])
        return real_get(**kwargs)

    real_prepare = src.prepare

    def prepare(check_mode=False):
        nonlocal real_get
        real_prepare(check_mode)
        real_get = src._client.get_object
        src._client.get_object = counting_get

    src.prepare = prepare
    with pytest.raises(_sources.LocalWriteFailed, match="No space left on device") as failure:
        fetch_model(src, str(tmp_path / "m"))
    assert "endpoint" not in failure.value.msg
    assert len(gets) == 1  # not retried max_attempts times as a network error
