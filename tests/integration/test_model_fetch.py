"""inferops.vllm.model_fetch: S3 against the sandbox's real MinIO (resume
after the server dies, corruption found and fixed), Hugging Face and
ModelScope through their real libraries on local caches (offline), a local
directory, and the command a Kubernetes Job runs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import uuid

import pytest

from support.ansible import run_module
from support.hub_cache import ROOT, TEST_MODEL, build_hf_cache, build_modelscope_cache, model_files
from support.sandbox import sandbox_cmd
from support.s3 import client_putting_back_buckets

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
MARKER = ".inferops-model-complete.json"


@pytest.fixture(scope="module")
def s3(sandbox):
    yield from client_putting_back_buckets(sandbox)


def upload_model(s3, bucket: str, prefix: str, extra: dict[str, bytes] | None = None, manifest: bool = True) -> dict:
    """Upload the test model (plus extra files) under prefix, with a SHA256SUMS; return name -> sha256."""
    from boto3.s3.transfer import TransferConfig

    s3.create_bucket(Bucket=bucket)
    files = {str(p.relative_to(TEST_MODEL)): p.read_bytes() for p in model_files()}
    files.update(extra or {})
    sums = {}
    for name, data in files.items():
        s3.upload_fileobj(io.BytesIO(data), bucket, f"{prefix}/{name}",
                          Config=TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB))
        sums[name] = hashlib.sha256(data).hexdigest()
    if manifest:
        body = "".join(f"{h}  {n}\n" for n, h in sorted(sums.items())).encode()
        s3.put_object(Bucket=bucket, Key=f"{prefix}/SHA256SUMS", Body=body)
    return sums


def s3_args(sandbox, bucket, prefix, dest, **extra):
    creds = sandbox.s3_credentials()
    return {"source": "s3", "endpoint_url": sandbox.s3_endpoint, "bucket": bucket, "prefix": prefix,
            "access_key": creds["access_key"], "secret_key": creds["secret_key"], "dest": str(dest), **extra}


def test_s3_download_then_no_change_then_corruption_repaired(sandbox, s3, tmp_path):
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    sums = upload_model(s3, bucket, "minilm")
    dest = tmp_path / "minilm"
    first = run_module("inferops.vllm.model_fetch", s3_args(sandbox, bucket, "minilm", dest, part_size=5 * MIB))
    assert first.get("failed") is not True, first.get("msg")
    assert first["changed"] is True and first["complete"] is True
    assert first["architectures"] == ["BertModel"]
    for name, digest in sums.items():
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == digest
    marker = json.loads((dest / MARKER).read_text())
    assert {f["path"] for f in marker["files"]} == set(sums)
    assert creds_absent(first, sandbox)

    second = run_module("inferops.vllm.model_fetch", s3_args(sandbox, bucket, "minilm", dest))
    assert second["changed"] is False and second["bytes_downloaded"] == 0

    # Same size, different bytes: the quick check sees the new mtime, hashes, refetches.
    weights = dest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0xFF
    weights.write_bytes(bytes(data))
    third = run_module("inferops.vllm.model_fetch", s3_args(sandbox, bucket, "minilm", dest))
    assert third["changed"] is True and third["downloaded"] == ["model.safetensors"]
    assert any("model.safetensors" in p for p in third["problems"])
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == sums["model.safetensors"]


def creds_absent(result: dict, sandbox) -> bool:
    text = json.dumps(result)
    creds = sandbox.s3_credentials()
    return creds["secret_key"] not in text


def test_s3_check_mode_lists_and_downloads_nothing(sandbox, s3, tmp_path):
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    upload_model(s3, bucket, "m", manifest=False)
    dest = tmp_path / "m"
    result = run_module("inferops.vllm.model_fetch", s3_args(sandbox, bucket, "m", dest), check=True)
    assert result["changed"] is True and "model.safetensors" in result["to_download"]
    assert result["bytes_to_download"] > 90 * 10**6
    assert not dest.exists()


def test_s3_resumes_after_the_server_dies(sandbox, s3, tmp_path):
    """The S3 server is stopped after a few parts: the run fails with a clear
    message and leaves its finished parts; once the server is back, the next
    run fetches only what is missing, and the file verifies."""
    from ansible_collections.inferops.vllm.plugins.module_utils._errors import EndpointError
    from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model
    from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import S3Source

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    big = os.urandom(60 * MIB)
    sums = upload_model(s3, bucket, "big", extra={"shard-00001.safetensors": big})
    creds = sandbox.s3_credentials()
    dest = tmp_path / "big"
    stopped = threading.Event()

    # One part at a time, so that no other part slips through while the
    # hook is stopping the server.
    def stop_server_after_three(path, index, done, parts):
        if path == "shard-00001.safetensors" and done == 3 and not stopped.is_set():
            stopped.set()
            sandbox_cmd("stop", "minio")

    def source(hook=None):
        return S3Source(bucket, "big", sandbox.s3_endpoint, None, creds["access_key"], creds["secret_key"],
                        part_size=5 * MIB, max_concurrency=1, connect_timeout=2, read_timeout=5, max_attempts=2,
                        on_part_done=hook, allow=["shard-*", "config.json"])

    try:
        with pytest.raises(EndpointError) as failure:
            fetch_model(source(stop_server_after_three), str(dest))
        assert "S3 downloading shard-00001.safetensors" in failure.value.msg
        assert not (dest / MARKER).exists()  # never taken for a model
        state = json.loads((dest / ".inferops-partial" / "shard-00001.safetensors.json").read_text())
        assert len(state["done"]) >= 3
    finally:
        assert sandbox_cmd("start", "minio").returncode == 0
    result = fetch_model(source(), str(dest))
    assert result["complete"] is True
    assert result["bytes_downloaded"] <= len(big) - 3 * 5 * MIB  # the finished parts were not fetched again
    assert hashlib.sha256((dest / "shard-00001.safetensors").read_bytes()).hexdigest() == sums["shard-00001.safetensors"]
    assert not (dest / ".inferops-partial" / "shard-00001.safetensors.json").exists()


def test_s3_directory_without_config_is_refused(sandbox, s3, tmp_path):
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="weights-only/model.safetensors", Body=b"x" * 100)
    dest = tmp_path / "w"
    result = run_module("inferops.vllm.model_fetch", s3_args(sandbox, bucket, "weights-only", dest))
    assert result["failed"] is True and "no config.json" in result["msg"]
    assert not (dest / MARKER).exists()


def test_s3_wrong_credentials(sandbox, s3, tmp_path):
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    args = s3_args(sandbox, bucket, "x", tmp_path / "x")
    args["secret_key"] = "not-the-secret"
    result = run_module("inferops.vllm.model_fetch", {**args, "max_attempts": 1})
    assert result["failed"] is True and "credentials were refused" in result["msg"]
    assert "not-the-secret" not in json.dumps(result)


def test_huggingface_offline_cache(tmp_path):
    cache = tmp_path / "hf-cache"
    build_hf_cache(cache, "sentence-transformers/all-MiniLM-L6-v2")
    dest = tmp_path / "model"
    args = {"source": "huggingface", "model_id": "sentence-transformers/all-MiniLM-L6-v2", "dest": str(dest),
            "cache_dir": str(cache), "offline": True}
    first = run_module("inferops.vllm.model_fetch", args, env={"HF_HUB_OFFLINE": "1"})
    assert first.get("failed") is not True, first.get("msg")
    assert first["changed"] is True and "model.safetensors" in first["files"]
    assert (dest / "config.json").read_bytes() == (TEST_MODEL / "config.json").read_bytes()
    assert run_module("inferops.vllm.model_fetch", args, env={"HF_HUB_OFFLINE": "1"})["changed"] is False


def test_huggingface_unreachable_hub_says_so(tmp_path):
    with socket.socket() as s:  # a loopback port nothing listens on: no traffic leaves this machine
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    args = {"source": "huggingface", "model_id": "Qwen/Qwen2.5-7B-Instruct", "dest": str(tmp_path / "q"),
            "endpoint_url": endpoint, "max_attempts": 2, "connect_timeout": 2, "read_timeout": 2}
    result = run_module("inferops.vllm.model_fetch", args)
    assert result["failed"] is True
    assert "cannot download Hugging Face model Qwen/Qwen2.5-7B-Instruct@main" in result["msg"]
    assert "offline: true" in result["msg"]


def test_modelscope_offline_cache(tmp_path):
    cache = tmp_path / "ms-cache"
    build_modelscope_cache(cache, "iic/all-MiniLM-L6-v2")
    dest = tmp_path / "model"
    args = {"source": "modelscope", "model_id": "iic/all-MiniLM-L6-v2", "dest": str(dest), "cache_dir": str(cache),
            "offline": True}
    first = run_module("inferops.vllm.model_fetch", args)
    assert first.get("failed") is not True, first.get("msg")
    assert first["changed"] is True and first["architectures"] == ["BertModel"]
    second = run_module("inferops.vllm.model_fetch", args)
    assert second["changed"] is False


def test_modelscope_missing_from_offline_cache(tmp_path):
    args = {"source": "modelscope", "model_id": "Qwen/Qwen3-235B-A22B-Instruct-2507", "dest": str(tmp_path / "q"),
            "cache_dir": str(tmp_path / "empty"), "offline": True}
    result = run_module("inferops.vllm.model_fetch", args)
    assert result["failed"] is True and "not in the local cache" in result["msg"]


def test_local_directory_hardlinks_and_cli(tmp_path):
    dest = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".cache" / "collections")}
    cmd = [sys.executable, "-m", "ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli",
           "--source", "local", "--local-path", str(TEST_MODEL), "--dest", str(dest)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["complete"] is True and result["changed"] is True
    assert "progress" in proc.stderr
    assert (dest / "model.safetensors").stat().st_ino == (TEST_MODEL / "model.safetensors").stat().st_ino
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    assert json.loads(again.stdout.splitlines()[-1])["changed"] is False


def test_cli_bad_arguments_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".cache" / "collections")}
    proc = subprocess.run([sys.executable, "-m", "ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli",
                           "--source", "huggingface", "--dest", str(tmp_path)], env=env, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2 and "model_id: required" in proc.stdout
