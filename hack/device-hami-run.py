"""Runs on the GPU machine (hack/device-vllm hami-build / hami-probe / hami):
real vLLM inside real HAMi slices of the one GPU.

    python3 hack/device-hami-run.py build            # HAMi-core at each carried commit, with its own build.sh
    python3 hack/device-hami-run.py probe            # what a process sees inside a slice, per build
    python3 hack/device-hami-run.py run --deadline S # the cases of tests/data/real-vllm/hami-cases.json

HAMi-core comes as source tarballs in .device/hami/ (hami-core-<release>.tar.gz,
made here from the commit each HAMi release vendors). Each case runs as HAMi's
device plugin runs a pod's container: in a mount namespace of its own, the
hook folder bound at /usr/local/vgpu (libvgpu.so and the shared cache file),
its ld.so.preload bound over /etc/ld.so.preload (so every process of the
server, the engine core too, loads HAMi-core), the environment the plugin sets
(the case's `hami_env`, from plugins/module_utils/gpu/_hami.py) and /dev/shm a
tmpfs of the plan's size. The machine's own /etc/ld.so.preload and /dev/shm
stay as they are.

Cases run side by side while their slices fit the card (in the file's order;
a case without a slice runs alone), until the deadline; what is done is kept
in /tmp/hami-state, so the next call goes on where this one stopped. Each call
writes to $OUT: hami-summary.json (every case done so far) and
hami-logs.tar.gz (this call's logs). The API key is made here and reaches
vLLM only as VLLM_API_KEY."""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("OUT") or "/tmp/device-hami-out")
LIB = os.environ.get("DEVICE_VLLM_LIB", "/tmp/vllm-lib")
STATE = Path("/tmp/hami-state")
BUILDS = Path("/tmp/hami-builds")
CASES = json.loads((ROOT / "tests/data/real-vllm/hami-cases.json").read_text())
KEY = "sk-device-" + secrets.token_hex(12)
HOOK_DIR = "/usr/local/vgpu"  # where HAMi's device plugin mounts the hook in the container
HARNESS_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
               "PYTHONUNBUFFERED": "1"}
CARD_BUDGET_MIB = int(os.environ.get("HAMI_CARD_BUDGET_MIB", "139500"))  # the slices of one card, together
MAX_SIDE_BY_SIDE = int(os.environ.get("HAMI_MAX_SIDE_BY_SIDE", "7"))
LOG_PATTERNS = {
    "model_loading_gib": r"Model loading took ([\d.]+) GiB",
    "available_kv_gib": r"Available KV cache memory: ([\d.]+) GiB",
    "kv_cache_tokens": r"GPU KV cache size: ([\d,]+) tokens",
    "max_concurrency": r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x",
    "cuda_graph_estimate_gib": r"Estimated CUDA graph memory: ([\d.]+) GiB",
    "cuda_graph_took_gib": r"Graph capturing finished in [\d.]+ secs?, took ([-\d.]+) GiB",
    "torch_peak_gib": r"torch peak memory increase: ([-\d.]+)GiB",
    "non_torch_gib": r"non-torch forward increase memory: ([-\d.]+)GiB",
    "non_kv_gib": r"Total non KV cache memory: ([-\d.]+)GiB",
    "batched_tokens": r"max_num_batched_tokens=(\d+)",
    "init_total_gib": r"worker init memory snapshot: .*total_memory=([\d.]+)GiB",
    "init_free_gib": r"worker init memory snapshot: .*free_memory=([\d.]+)GiB",
    "init_non_torch_gib": r"worker init memory snapshot: .*non_torch_memory=([\d.]+)GiB",
}
KEEP = re.compile(r"GiB|KV cache|concurrency|CUDA graph|Graph capturing|torch\.compile|init engine|memory|"
                  r"max_num_batched_tokens|max_num_seqs|capture|HAMI|vgpu|Using .*backend|non-default args|"
                  r"Application startup|Error|error|Traceback|OOM|out of memory", re.I)


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


# ---------------------------------------------------------------- build

def build() -> dict:
    """Each carried HAMi-core source (by commit), configured as its build.sh does and built with `make vgpu`
    (the library alone) against the machine's CUDA 13 headers; 8be6d90 (HAMi v2.7.1's) does not compile
    against CUDA 13's and gets the CUDA 12.2 headers carried beside it, as HAMi built it in a CUDA 12 image.
    From a tarball (no .git) its CMakeLists needs CI_COMMIT_REF_NAME for the branch name."""
    out = {}
    headers12 = BUILDS / "cu122"
    if not headers12.is_dir() and (ROOT / ".device/hami/cuda12.2-headers.tar.gz").is_file():
        headers12.mkdir(parents=True)
        with tarfile.open(ROOT / ".device/hami/cuda12.2-headers.tar.gz") as tf:
            tf.extractall(headers12, filter="data")
    for tarball in sorted(glob.glob(str(ROOT / ".device/hami/hami-core-*.tar.gz"))):
        commit = re.search(r"hami-core-(.+)\.tar\.gz", tarball).group(1)
        src = BUILDS / commit
        lib = src / "libvgpu.so"
        if lib.is_file():
            out[commit] = {"lib": str(lib), "cached": True}
            continue
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        with tarfile.open(tarball) as tf:
            tf.extractall(src, filter="data")
        top = next(p for p in src.iterdir() if p.is_dir())
        (top / "build").mkdir(exist_ok=True)
        cuda_home = str(headers12) if commit.startswith("8be6d90") else "/usr/local/cuda"
        env = dict(os.environ, CUDA_HOME=cuda_home, CI_COMMIT_REF_NAME=f"hami-core-{commit}",
                   LIBRARY_PATH="/usr/local/cuda/lib64/stubs",
                   PATH=f"/usr/local/cuda/bin:{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
        start = time.monotonic()
        conf = sh(["cmake", "..", "-DDLSYM_HOOK_ENABLE=1", "-DMULTIPROCESS_LIMIT_ENABLE=1",
                   "-DHOOK_MEMINFO_ENABLE=1", "-DHOOK_NVML_ENABLE=1", "-DCMAKE_BUILD_TYPE=Debug",
                   "-DTEST_DEVICE_ID=0", "-DCMAKE_POLICY_VERSION_MINIMUM=3.5"], cwd=top / "build", env=env, timeout=300)
        make = sh(["make", "-j8", "vgpu"], cwd=top / "build", env=env, timeout=300)
        entry = {"cuda_headers": "12.2" if cuda_home != "/usr/local/cuda" else "machine's",
                 "rc": [conf.returncode, make.returncode], "seconds": round(time.monotonic() - start, 1),
                 "tail": (conf.stdout + conf.stderr + make.stdout + make.stderr)[-1500:]}
        if (top / "build/libvgpu.so").is_file():
            shutil.copyfile(top / "build/libvgpu.so", lib)
            entry["lib"] = str(lib)
        out[commit] = entry
    (OUT / "hami-build.json").write_text(json.dumps(out, indent=1))
    for commit, entry in out.items():
        print(commit, {k: v for k, v in entry.items() if k != "tail"} if entry.get("lib") else entry)
    return out


def hook_dir(case_name: str, commit: str) -> Path:
    """The folder a container sees at /usr/local/vgpu: libvgpu.so, and the preload file naming it; made
    new for every run, so that the shared cache file (which holds the limits HAMi-core read first) is too."""
    d = STATE / "hooks" / case_name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    shutil.copyfile(BUILDS / commit / "libvgpu.so", d / "libvgpu.so")
    (d / "ld.so.preload").write_text(f"{HOOK_DIR}/libvgpu.so\n")
    return d


def container_wrap(hooks: Path | None, shm_mib: int | None) -> list[str]:
    """The pod's view: a mount namespace with the hook at /usr/local/vgpu, it preloaded through
    /etc/ld.so.preload, and /dev/shm a tmpfs of the plan's size."""
    steps = []
    if shm_mib:
        steps.append(f"mount -t tmpfs -o size={int(shm_mib)}m shm /dev/shm")
    if hooks:
        steps.append(f"mount --bind {shlex.quote(str(hooks))} {HOOK_DIR}")
        steps.append(f"mount --bind {HOOK_DIR}/ld.so.preload /etc/ld.so.preload")
    if not steps:
        return []
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", " && ".join(steps) + ' && exec "$@"', "sh"]


def prepare_host() -> None:
    if os.environ.get("DEVICE_VLLM_SERVE_CMD"):
        return
    # Mount points for the binds above; an empty ld.so.preload preloads nothing for the machine itself.
    Path(HOOK_DIR).mkdir(parents=True, exist_ok=True)
    preload = Path("/etc/ld.so.preload")
    if not preload.exists():
        preload.write_text("")
    Path("/tmp/vgpulock").mkdir(exist_ok=True)


# ---------------------------------------------------------------- probe

PROBE = r'''
import ctypes, json, os, sys
import torch
out = {}
free, total = torch.cuda.mem_get_info()
out["mem_get_info_gib"] = [round(free / 2**30, 3), round(total / 2**30, 3)]
out["device_properties_total_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 3)
try:
    import pynvml
    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(0)
    m = pynvml.nvmlDeviceGetMemoryInfo(h)
    out["nvml_memory_gib"] = {"total": round(m.total / 2**30, 3), "used": round(m.used / 2**30, 3)}
except Exception as exc:
    out["nvml_memory_gib"] = repr(exc)
cuda = ctypes.CDLL("libcuda.so.1")
class Loc(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]
class Flags(ctypes.Structure):
    _fields_ = [("compressionType", ctypes.c_ubyte), ("gpuDirectRDMACapable", ctypes.c_ubyte),
                ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 4)]
class Prop(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("requestedHandleTypes", ctypes.c_int), ("location", Loc),
                ("win32HandleMetaData", ctypes.c_void_p), ("allocFlags", Flags)]
prop = Prop(); prop.type = 1; prop.location = Loc(1, 0)
gib = 1 << 30
handles, rc = [], 0
limit = int(sys.argv[1])
while len(handles) < limit:
    h = ctypes.c_ulonglong()
    rc = cuda.cuMemCreate(ctypes.byref(h), ctypes.c_size_t(gib), ctypes.byref(prop), ctypes.c_ulonglong(0))
    if rc:
        break
    handles.append(h)
out["cuMemCreate_1gib_handles"] = len(handles)
out["cuMemCreate_stop_rc"] = rc
for h in handles:
    cuda.cuMemRelease(h)
tensors = []
try:
    while len(tensors) < limit:
        tensors.append(torch.empty(gib, dtype=torch.uint8, device="cuda"))
except torch.OutOfMemoryError as exc:
    out["torch_oom_after_gib"] = len(tensors)
else:
    out["torch_allocated_gib"] = len(tensors)
print("PROBE " + json.dumps(out))
'''


def probe(builds: dict) -> dict:
    """Inside a 20 GiB slice, per build: what CUDA, torch and NVML report, and where
    raw cuMemCreate (the driver's virtual-memory calls) and torch's allocator stop."""
    prepare_host()
    result = {"glibc": sh(["ldd", "--version"]).stdout.splitlines()[0] if shutil.which("ldd") else None,
              "nvidia_smi": sh(["nvidia-smi", "--query-gpu=name,memory.total,memory.used,driver_version",
                                "--format=csv,noheader"]).stdout.strip()}
    script = STATE / "probe.py"
    STATE.mkdir(parents=True, exist_ok=True)
    script.write_text(PROBE)
    for commit in ["none"] + sorted(builds):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        wrap = []
        if commit != "none":
            if not builds[commit].get("lib"):
                continue
            hooks = hook_dir(f"probe-{commit}", commit)
            env.update(CASES[0]["hami_env"])
            env["CUDA_DEVICE_MEMORY_LIMIT_0"] = "20480m"
            env["CUDA_DEVICE_SM_LIMIT"] = "0"
            wrap = container_wrap(hooks, None)
        proc = sh(wrap + [sys.executable, str(script), "24" if commit != "none" else "4"], env=env, timeout=180)
        found = re.search(r"^PROBE (.*)$", proc.stdout, re.M)
        entry = json.loads(found.group(1)) if found else {}
        entry["rc"] = proc.returncode
        entry["hami_lines"] = [line for line in (proc.stdout + proc.stderr).splitlines()
                               if "HAMI" in line.upper() or "vgpu" in line.lower()][:20]
        if not found:
            entry["tail"] = (proc.stdout + proc.stderr)[-2000:]
        result[commit] = entry
    (OUT / "hami-probe.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


# ---------------------------------------------------------------- serving

def request(port: int, method: str, path: str, body: dict | None = None, key: str | None = KEY,
            timeout: float = 300) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, raw


def compute_apps() -> dict[int, int]:
    """Physical GPU memory per process, as nvidia-smi sees it from outside every slice."""
    if not shutil.which("nvidia-smi"):
        return {}
    text = sh(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]).stdout
    out = {}
    for line in text.strip().splitlines():
        try:
            pid, used = (int(x.strip()) for x in line.split(","))
        except ValueError:
            continue
        out[pid] = used
    return out


def card_used_mib() -> int | None:
    if not shutil.which("nvidia-smi"):
        return None
    text = sh(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]).stdout.strip()
    return int(text.splitlines()[0]) if text else None


class Server:
    def __init__(self, case: dict):
        self.case = case
        self.name = case["name"]
        self.port = int(case["inputs"]["port"])
        self.log_path = STATE / "logs" / f"{self.name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for item in case["env"]:
            if "value" in item:
                env[item["name"]] = item["value"]
        env.update(HARNESS_ENV)
        env.update(case["hami_env"])
        if case["debug"]:
            env["VLLM_LOGGING_LEVEL"] = "DEBUG"
        env["VLLM_API_KEY"] = KEY
        # A torch.compile cache of its own, empty, as a pod starts with (a shared one made later runs warm).
        env["VLLM_CACHE_ROOT"] = str(STATE / "vllm-cache" / self.name)
        env["CUDA_VISIBLE_DEVICES"] = "0"
        env["PYTHONPATH"] = LIB
        dry = os.environ.get("DEVICE_VLLM_SERVE_CMD")  # to try this harness where there is no GPU
        hooks = hook_dir(self.name, case["hami_core"]) if case["hami_env"] and not dry else None
        self.cmd = shlex.split(dry or f"{sys.executable} -m vllm.entrypoints.cli.main serve") + case["args"]
        wrap = [] if dry else container_wrap(hooks, case["predicted"]["shm_size_mib"])
        self.log = open(self.log_path, "w")
        shown = dict(case["hami_env"])
        self.log.write(f"# device-hami: {self.name}: slice {case['slice_mib']} MiB, HAMi-core of "
                       f"{case['hami_version'] if hooks else '-'}, env {shown}\n# {shlex.join(self.cmd)}\n")
        self.log.flush()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(wrap + self.cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd="/tmp")
        self.pgid = self.proc.pid
        self.ready_s = None
        self.kv_s = None
        self.peak_physical_mib = 0
        self.result: dict = {}

    def pids(self) -> set[int]:
        out = set()
        for d in glob.glob("/proc/[0-9]*"):
            try:
                if os.getpgid(int(d[6:])) == self.pgid:
                    out.add(int(d[6:]))
            except (ProcessLookupError, ValueError, PermissionError):
                pass
        return out

    def physical_mib(self, apps: dict[int, int]) -> int:
        return sum(used for pid, used in apps.items() if pid in self.pids())

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> bool:
        try:
            return request(self.port, "GET", "/health", key=None, timeout=5)[0] == 200
        except OSError:
            return False

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.pgid, signal.SIGTERM)
                self.proc.wait(30)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            os.killpg(self.pgid, signal.SIGKILL)  # what is left of the group (the engine core)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        return self.proc.returncode


def chat(port: int, served: str, max_tokens: int) -> dict:
    status, raw = request(port, "POST", "/v1/chat/completions",
                          {"model": served, "messages": [{"role": "user", "content": "Count to a thousand."}],
                           "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0})
    body = json.loads(raw) if raw.startswith(b"{") else {}
    return {"status": status, "completion_tokens": (body.get("usage") or {}).get("completion_tokens")}


def decode_load(port: int, served: str, streams: int, max_tokens: int) -> dict:
    """One fixed synthetic load: `streams` chats at once, each `max_tokens` tokens (ignore_eos)."""
    results = []

    def one():
        results.append(chat(port, served, max_tokens))

    start = time.monotonic()
    threads = [threading.Thread(target=one) for _stream in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - start
    tokens = sum(r["completion_tokens"] or 0 for r in results)
    return {"streams": streams, "max_tokens": max_tokens, "seconds": round(took, 2), "completion_tokens": tokens,
            "tokens_per_s": round(tokens / took, 1), "statuses": sorted({r["status"] for r in results})}


def finish(s: Server, summary: dict) -> None:
    entry = s.result
    hooked = bool(s.case["hami_env"])
    entry.update({"slice_mib": s.case["slice_mib"], "hami_version": s.case["hami_version"] if hooked else None,
                  "hami_core": s.case["hami_core"] if hooked else None, "hami_env": s.case["hami_env"],
                  "ready_s": s.ready_s, "kv_s": s.kv_s, "peak_physical_mib": s.peak_physical_mib})
    entry["rc"] = s.stop()
    entry["ran_s"] = round(time.monotonic() - s.started, 1)
    text = s.text()
    for name, pattern in LOG_PATTERNS.items():
        values = [float(v.replace(",", "")) for v in re.findall(pattern, text)]
        if values:
            entry[name] = values
    entry["hami_lines"] = [line for line in text.splitlines() if "HAMI" in line.upper()][:30]
    entry["errors"] = [line for line in text.splitlines()
                       if re.search(r"Error|OOM|out of memory|No available memory", line)][-12:]
    entry["outcome"] = "served" if s.ready_s else ("kv-sized" if s.kv_s else "failed")
    entry["batched_tokens_default"] = [float(v) for v in re.findall(r"Defaulting max_num_batched_tokens to (\d+)", text)]
    summary["cases"][s.name] = entry
    summary["order"].append(s.name)
    kept = [line for line in text.splitlines() if KEEP.search(line)]
    (STATE / "logs" / f"{s.name}.kept.log").write_text("\n".join(kept) + "\n")


def run(deadline_s: float, only: list[str] | None = None) -> dict:
    prepare_host()
    end = time.monotonic() + deadline_s
    summary_path = STATE / "summary.json"
    fresh = {"cases": {}, "order": [], "calls": []}
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else fresh
    call = {"started": time.strftime("%H:%M:%S"), "ran": []}
    summary["calls"].append(call)
    todo = [c for c in CASES if c["name"] not in summary["cases"] and (not only or c["name"] in only)]
    running: list[Server] = []

    def save():
        summary_path.write_text(json.dumps(summary, indent=1))

    try:
        loop(todo, running, summary, call, end, save)
    finally:
        for s in running:  # cut by the deadline (or a failure here): not kept, the next call runs it again
            s.stop()
            call.setdefault("cut", []).append(s.name)
    summary["not_run"] = [c["name"] for c in CASES
                          if c["name"] not in summary["cases"] and (not only or c["name"] in only)]
    save()
    shutil.copyfile(summary_path, OUT / "hami-summary.json")
    with tarfile.open(OUT / "hami-logs.tar.gz", "w:gz") as tf:
        for name in call["ran"]:
            for suffix in (".log", ".kept.log"):
                f = STATE / "logs" / f"{name}{suffix}"
                if f.is_file():
                    tf.add(f, arcname=f.name)
    for name in call["ran"]:
        e = summary["cases"].get(name)
        if e:
            print(name, e["outcome"], {k: e.get(k) for k in ("kv_cache_tokens", "model_loading_gib", "torch_peak_gib",
                                                             "non_torch_gib", "cuda_graph_estimate_gib",
                                                             "init_total_gib", "peak_physical_mib", "ready_s")})
    print("not run:", summary["not_run"])
    return summary


def loop(todo: list, running: list, summary: dict, call: dict, end: float, save) -> None:
    """Start cases while they fit, watch each to its stop, until the deadline."""
    def fits(case: dict) -> bool:
        if len(running) >= MAX_SIDE_BY_SIDE:
            return False
        if not case["slice_mib"]:
            return not running  # the whole card: alone
        if any(not s.case["slice_mib"] for s in running):
            return False
        used = sum(s.case["slice_mib"] for s in running)
        group = [c for c in todo if c["group"] and c["group"] == case["group"]] if case["group"] else [case]
        return used + sum(c["slice_mib"] for c in group) <= CARD_BUDGET_MIB

    # Each case's rough time to its stop, to start none that cannot finish before the deadline.
    def estimate(case: dict) -> float:
        graphs = "--enforce-eager" not in case["args"]
        return (150 if graphs else 100) + (60 if case["load"] else 0) + (40 if case["stop"] == "ready" else 0)

    while (todo or running) and time.monotonic() < end:
        # In order, skipping ahead to a small case that fits; a large one (a group, the whole card, a slice of
        # over 60 GiB) that does not fit yet holds back everything after it, so that it is not starved.
        for case in list(todo):
            if case not in todo:  # started with its group
                continue
            if time.monotonic() + estimate(case) >= end:
                continue
            if not fits(case):
                if case["group"] or not case["slice_mib"] or case["slice_mib"] > 60 * 1024:
                    break
                continue
            batch = [c for c in todo if case["group"] and c["group"] == case["group"]] or [case]
            for c in batch:
                todo.remove(c)
                running.append(Server(c))
                call["ran"].append(c["name"])
        if not running:
            break
        apps = compute_apps()
        for s in list(running):
            if s not in running:  # finished with its group above
                continue
            s.peak_physical_mib = max(s.peak_physical_mib, s.physical_mib(apps))
            text = s.text()
            if s.kv_s is None and "GPU KV cache size" in text:
                s.kv_s = round(time.monotonic() - s.started, 1)
            if s.ready_s is None and s.case["stop"] == "ready" and s.healthy():
                s.ready_s = round(time.monotonic() - s.started, 1)
                s.result["physical_at_ready_mib"] = s.physical_mib(compute_apps())
                s.result["card_used_at_ready_mib"] = card_used_mib()
            done = s.proc.poll() is not None or time.monotonic() - s.started > 480
            if s.case["stop"] == "kv" and s.kv_s is not None and ("Graph capturing finished" in text or
                                                                  "--enforce-eager" in s.case["args"] or
                                                                  time.monotonic() - s.started > s.kv_s + 60):
                done = True
            if s.case["stop"] == "ready" and s.ready_s is not None:
                group = [o for o in running if s.case["group"] and o.case["group"] == s.case["group"]] or [s]
                if all(o.ready_s is not None or o.proc.poll() is not None for o in group):
                    # Every server of the group is up at once: each answers, then (load) one after another.
                    try:
                        for o in group:
                            if o.ready_s is not None and "chat" not in o.result:
                                o.result["chat"] = chat(o.port, o.case["inputs"]["served_model_name"], 16)
                                o.result["physical_serving_mib"] = o.physical_mib(compute_apps())
                        for o in group:
                            if o.case["load"] and o.ready_s is not None and "load" not in o.result:
                                served = o.case["inputs"]["served_model_name"]
                                chat(o.port, served, 32)  # warm
                                o.result["load"] = [decode_load(o.port, served, 1, 256),
                                                    decode_load(o.port, served, 32, 256)]
                    except Exception as exc:  # keep the logs and the numbers so far
                        s.result["http_error"] = repr(exc)
                    for o in group:
                        o.result["card_used_with_group_mib"] = card_used_mib()
                    done = True
                    for o in group:
                        if o is not s:
                            finish(o, summary)
                            running.remove(o)
            if done:
                finish(s, summary)
                running.remove(s)
                save()
        time.sleep(1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("verb", choices=["build", "probe", "run"])
    ap.add_argument("--deadline", type=float, default=480)
    ap.add_argument("--from-case", help="run only this case and those after it in the file")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    STATE.mkdir(parents=True, exist_ok=True)
    if a.verb == "build":
        build()
    elif a.verb == "probe":
        probe(build())
    else:
        names = [c["name"] for c in CASES]
        run(a.deadline, names[names.index(a.from_case):] if a.from_case else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
