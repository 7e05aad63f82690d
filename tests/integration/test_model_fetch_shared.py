"""Two fetchers on one folder, and corruption the source's own checksum must
catch, against the sandbox's real S3 server (MinIO).

Where it happens: model_store's init_container mode on a shared claim, a
hostPath cache with several replicas on a node, a group's ranks sharing one
claim: every pod runs the fetch command into the same folder at once."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support.ansible import run_module
from support.hub_cache import ROOT
from support.s3 import client_putting_back_buckets

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
MARKER = ".inferops-model-complete.json"
CONFIG = json.dumps({"architectures": ["Qwen2ForCausalLM"]}).encode()


@pytest.fixture(scope="module")
def s3(sandbox):
    yield from client_putting_back_buckets(sandbox)


def upload(s3, bucket: str, prefix: str, files: dict[str, bytes], part: int = 5 * MIB) -> None:
    """Upload as boto3 does for large files: multipart above one part, so the
    ETag is '<md5 of the part MD5s>-N'. No SHA256SUMS: the object's own
    checksum is all the fetcher has."""
    from boto3.s3.transfer import TransferConfig

    s3.create_bucket(Bucket=bucket)
    for name, data in files.items():
        s3.upload_fileobj(io.BytesIO(data), bucket, f"{prefix}/{name}",
                          Config=TransferConfig(multipart_threshold=part, multipart_chunksize=part))


def model(size: int = 48 * MIB) -> dict[str, bytes]:
    return {"config.json": CONFIG, "model.safetensors": os.urandom(size)}


def cli(sandbox, bucket, prefix, dest, *extra):
    creds = sandbox.s3_credentials()
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".cache" / "collections"),
           "AWS_ACCESS_KEY_ID": creds["access_key"], "AWS_SECRET_ACCESS_KEY": creds["secret_key"]}
    cmd = [sys.executable, "-m", "ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli",
           "--source", "s3", "--endpoint-url", sandbox.s3_endpoint, "--bucket", bucket, "--prefix", prefix,
           "--dest", str(dest), "--part-size", str(5 * MIB), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def exact_copy(dest, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        got = (dest / name).read_bytes()
        assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), name


def test_two_fetchers_started_together_leave_an_exact_copy(sandbox, s3, tmp_path):
    """Two real fetch processes (as two pods' initContainers) on one folder:
    one downloads, the other waits on the folder's lock and then finds the
    model complete. Both succeed; the folder is an exact copy."""
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    files = model()
    upload(s3, bucket, "m", files)
    dest = tmp_path / "shared" / "m"
    procs = [cli(sandbox, bucket, "m", dest, "--max-concurrency", "2"), cli(sandbox, bucket, "m", dest, "--max-concurrency", "2")]
    outs = [p.communicate(timeout=300) for p in procs]
    results = []
    for proc, (out, err) in zip(procs, outs):
        assert proc.returncode == 0, out + err[-3000:]
        results.append(json.loads(out.splitlines()[-1]))
    exact_copy(dest, files)
    assert sorted(r["changed"] for r in results) == [False, True], results  # one wrote, one found it done
    assert not (dest / ".inferops-fetch.lock").exists()
    assert not os.listdir(dest / ".inferops-partial")


class CorruptingProxy:
    """An HTTP proxy in front of MinIO that flips one byte in the body of
    every ranged GET of one key: corruption in transit that the TCP and
    HTTP layers do not see. Requests pass through unchanged (the Host
    header too), so MinIO's signature check still holds."""

    def __init__(self, upstream: str, key_suffix: str, offset: int = 1000):
        self.flipped = 0
        target = urllib.parse.urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    conn.putheader(k, v)
                conn.endheaders(body)
                resp = conn.getresponse()
                data = resp.read() if self.command != "HEAD" else b""
                if self.command == "GET" and urllib.parse.urlsplit(self.path).path.endswith(key_suffix) \
                        and self.headers.get("Range") and len(data) > offset:
                    data = bytearray(data)
                    data[offset] ^= 0x01
                    data = bytes(data)
                    proxy.flipped += 1
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", resp.getheader("Content-Length") if self.command == "HEAD"
                                 else str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = forward  # noqa: N815 - http.server's names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def args(sandbox, bucket, prefix, dest, endpoint=None, **extra):
    creds = sandbox.s3_credentials()
    return {"source": "s3", "endpoint_url": endpoint or sandbox.s3_endpoint, "bucket": bucket, "prefix": prefix,
            "access_key": creds["access_key"], "secret_key": creds["secret_key"], "dest": str(dest),
            "part_size": 5 * MIB, "max_attempts": 2, **extra}


def test_multipart_object_corrupted_in_transit_is_refused(sandbox, s3, tmp_path):
    """A multipart object (ETag '<md5>-N') whose bytes are changed on the way:
    the size is right, so a size check passes it. The fetcher checks the
    content against the ETag (each part's MD5, part sizes from HEAD with
    partNumber) and refuses the file; no marker is written, so neither a
    later run nor vLLM takes the folder for a model. Once the path is clean
    the next run leaves an exact copy."""
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    files = model(24 * MIB)
    upload(s3, bucket, "m", files)
    assert s3.head_object(Bucket=bucket, Key="m/model.safetensors")["ETag"].strip('"').endswith("-5")
    dest = tmp_path / "m"
    with CorruptingProxy(sandbox.s3_endpoint, "/m/model.safetensors") as proxy:
        bad = run_module("inferops.vllm.model_fetch", args(sandbox, bucket, "m", dest, endpoint=proxy.endpoint))
    assert proxy.flipped > 0
    assert bad.get("failed") is True, bad
    assert "model.safetensors" in bad["msg"] and "ETag" in bad["msg"], bad["msg"]
    assert not (dest / MARKER).exists()
    good = run_module("inferops.vllm.model_fetch", args(sandbox, bucket, "m", dest, verify="full"))
    assert good.get("failed") is not True, good.get("msg")
    assert good["changed"] is True
    exact_copy(dest, files)
    entry = next(f for f in json.loads((dest / MARKER).read_text())["files"] if f["path"] == "model.safetensors")
    etag = s3.head_object(Bucket=bucket, Key="m/model.safetensors")["ETag"].strip('"')
    assert entry["source_checksum"]["value"] == etag  # the source's own hash, not one of the disk


def test_corrupted_resumed_part_is_caught(sandbox, s3, tmp_path):
    """A download interrupted after some parts, one finished part then
    damaged on disk (at rest) before the run that resumes: the resumed file
    does not match the object's ETag, so it is fetched again, not marked."""
    from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model
    from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import S3Source

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    files = model(24 * MIB)
    upload(s3, bucket, "m", files)
    creds = sandbox.s3_credentials()
    dest = tmp_path / "m"

    class Interrupted(Exception):
        pass

    def stop_after_two(path, index, done, parts):
        if path == "model.safetensors" and done == 2:
            raise Interrupted

    def source(hook=None):
        return S3Source(bucket, "m", sandbox.s3_endpoint, None, creds["access_key"], creds["secret_key"],
                        part_size=5 * MIB, max_concurrency=1, on_part_done=hook)

    with pytest.raises(Interrupted):
        fetch_model(source(stop_after_two), str(dest))
    partial = dest / ".inferops-partial" / "model.safetensors"
    with open(partial, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x01]))
    result = fetch_model(source(), str(dest))
    assert result["complete"] is True
    assert any("model.safetensors" in p and "ETag" in p for p in result["problems"]), result["problems"]
    exact_copy(dest, files)


def test_flipped_byte_is_caught_by_verify_full(sandbox, s3, tmp_path):
    """One byte flipped in a downloaded file, its size and mtime kept (a
    quick check cannot see it): verify: full hashes it against the source's
    checksum the marker recorded and fetches it again."""
    bucket = f"models-{uuid.uuid4().hex[:8]}"
    files = model(12 * MIB)
    upload(s3, bucket, "m", files)
    dest = tmp_path / "m"
    assert run_module("inferops.vllm.model_fetch", args(sandbox, bucket, "m", dest))["changed"] is True
    weights = dest / "model.safetensors"
    st = weights.stat()
    with open(weights, "r+b") as f:
        f.seek(7 * MIB)
        byte = f.read(1)
        f.seek(7 * MIB)
        f.write(bytes([byte[0] ^ 0x80]))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    quick = run_module("inferops.vllm.model_fetch", args(sandbox, bucket, "m", dest))
    assert quick["changed"] is False  # what verify: quick promises, and no more
    full = run_module("inferops.vllm.model_fetch", args(sandbox, bucket, "m", dest, verify="full"))
    assert full.get("failed") is not True, full.get("msg")
    assert full["changed"] is True and full["downloaded"] == ["model.safetensors"]
    assert any("model.safetensors" in p for p in full["problems"])
    exact_copy(dest, files)


def test_two_pods_fetch_into_one_claim(sandbox, s3, namespace, kube, tmp_path):
    """The user's case on the cluster: model_store's fetch container (as each
    replica's initContainer runs it with model_store_download: init_container)
    in two pods started together on one ReadWriteMany claim. The sandbox's job
    runner runs pods of the fetch image for real (a vLLM pod's initContainer
    only kwok would answer), so the two pods are a Job with parallelism 2 and
    no retry: both must succeed the first time, and the claim's folder is an
    exact copy."""
    import pathlib

    import yaml

    from support.ansible import run_playbook

    bucket = f"models-{uuid.uuid4().hex[:8]}"
    files = model()
    upload(s3, bucket, "m", files)
    creds = sandbox.s3_credentials()
    connection = {g: {"kubeconfig": "{{ inferops_kubeconfig }}"}
                  for g in ("group/inferops.vllm.k8s", "group/kubernetes.core.k8s")}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "two-fetchers", "namespace": namespace},
           "spec": {"parallelism": 2, "completions": 2, "backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never", "containers": ["{{ model_store_fetch_container }}"],
               "volumes": ["{{ model_store_volume }}"]}}}}
    playbook = tmp_path / "two.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "two fetchers, one claim", "hosts": "localhost", "gather_facts": False,
        "module_defaults": connection,
        "vars": {
            "inferops_kubeconfig": sandbox.kubeconfig,
            "model_store_namespace": namespace, "model_store_name": "shared",
            "model_store_download": "init_container", "model_store_storage": "claim",
            "model_store_storage_class": sandbox.state["storage_class"], "model_store_size": "10Gi",
            "model_store_source": "s3", "model_store_endpoint_url": sandbox.s3_endpoint,
            "model_store_s3_bucket": bucket, "model_store_s3_prefix": "m",
            "model_store_s3_access_key": creds["access_key"], "model_store_s3_secret_key": creds["secret_key"],
            "model_store_fetch_image": "registry.invalid/inferops-model-fetch:0.1.0",
        },
        "roles": [{"role": "inferops.vllm.model_store"}],
        "tasks": [
            {"name": "Two pods of the fetch container on the claim", "kubernetes.core.k8s": {"definition": job}},
            {"name": "Both complete", "inferops.vllm.workload_wait": {
                "kind": "Job", "name": "two-fetchers", "namespace": namespace, "timeout": 300}},
        ],
    }]))
    result = run_playbook(playbook, inventory="localhost,", extra_args=["-c", "local", "-e",
                          "ansible_python_interpreter=" + sys.executable])
    assert result.rc == 0, result.failures()
    pods = kube.list("v1", "Pod", namespace, label_selector="job-name=two-fetchers")
    assert len(pods) == 2 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    claim = kube.get("v1", "PersistentVolumeClaim", namespace, "models-shared")
    volume = kube.get("v1", "PersistentVolume", None, claim["spec"]["volumeName"])
    folder = pathlib.Path(volume["spec"]["hostPath"]["path"]) / "shared"
    exact_copy(folder, files)
    assert json.loads((folder / MARKER).read_text())["version"] == 2
    assert not (folder / ".inferops-fetch.lock").exists()
