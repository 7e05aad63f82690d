"""Runs on the GPU machine (from hack/device-vllm serve): starts `vllm serve`
for each case with exactly the args and env that serving_plan rendered
(tests/data/real-vllm/plan-cases.json), waits for /health, proves it with
the collection's endpoint_check and records the raw HTTP exchanges, then
stops it. Cases of one call run side by side when the machine has GPUs for
all of them (one GPU each, or TP GPUs), else one after another.

    python3 hack/device-vllm-run.py [--record CASE] [--deadline S] CASE...

CASE is a plan-cases.json name without the GPU suffix (dense-eager-tp1);
the suffix (h100, h200) is chosen from the card's memory. Writes to $OUT:
CASE.log (vLLM's whole output), summary.json (per case: GPUs, time to
ready, the memory lines vLLM logged, nvidia-smi while serving), and with
--record, http.json (the exchanges) and endpoint_check.json. The key is
made here and reaches vLLM only as VLLM_API_KEY in its environment.
DEVICE_VLLM_SERVE_CMD replaces `python3 -m vllm.entrypoints.cli.main serve`
(to try this tool where there is no GPU)."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = json.loads((ROOT / "tests/data/real-vllm/plan-cases.json").read_text())
OUT = Path(os.environ.get("OUT") or "/tmp/device-vllm-out")
LIB = os.environ.get("DEVICE_VLLM_LIB", "/tmp/vllm-lib")
KEY = "sk-device-" + secrets.token_hex(12)
# What the test harness adds to the plan's env, and why: no hub, no usage
# reporting; NVLink multicast stays off on the shared hosts (KINDS.md).
HARNESS_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1",
               "PYTHONUNBUFFERED": "1"}
LOG_PATTERNS = {
    "model_loading_gib": r"Model loading took ([\d.]+) GiB",
    "available_kv_gib": r"Available KV cache memory: ([\d.]+) GiB",
    "kv_cache_tokens": r"GPU KV cache size: ([\d,]+) tokens",
    "max_concurrency": r"Maximum concurrency for [\d,]+ tokens per request: ([\d.]+)x",
    "cuda_graph_estimate_gib": r"[Ee]stimated CUDA graph memory:? ([\d.]+) GiB",
    "cuda_graph_took_gib": r"Graph capturing finished in [\d.]+ secs?, took ([\d.]+) GiB",
    "init_engine_s": r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s",
}
# Lines worth keeping as test data: the memory accounting, graphs, compile.
KEEP = re.compile(r"GiB|KV cache|concurrency|CUDA graph|Graph capturing|torch\.compile|init engine|"
                  r"Using .*backend|Starting vLLM|non-default args|Application startup|Error|error|Traceback")


def shm_sizable() -> bool:
    """Whether a tmpfs can be mounted on /dev/shm in a mount namespace of its own here (root, unshare)."""
    try:
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               "mount -t tmpfs -o size=1m shm /dev/shm"], capture_output=True, timeout=30,
                              check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


SHM_SIZABLE = os.environ.get("DEVICE_VLLM_SHM", "1") == "1" and shm_sizable()


def nvidia_smi() -> list[dict]:
    try:
        text = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total,memory.used,driver_version",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in text.strip().splitlines():
        i, name, total, used, driver = [x.strip() for x in line.split(",")]
        rows.append({"index": int(i), "name": name, "memory_total_mib": int(total), "memory_used_mib": int(used),
                     "driver": driver})
    return rows


def gpu_suffix(gpus: list[dict]) -> str:
    total = gpus[0]["memory_total_mib"] if gpus else 81559
    return "h200" if total > 100_000 else "h100"


def request(port: int, method: str, path: str, headers: dict | None = None, body: dict | None = None,
            timeout: float = 120) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = json.dumps(body).encode() if body is not None else None
    hdrs = dict(headers or {})
    if data is not None:
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    out = (resp.status, resp.getheaders(), raw)
    conn.close()
    return out


def exchange(name: str, port: int, method: str, path: str, key: str | None = None, body: dict | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    start = time.monotonic()
    status, resp_headers, raw = request(port, method, path, headers, body)
    took = round(time.monotonic() - start, 4)
    shown_headers = dict(headers)
    if "Authorization" in shown_headers:
        shown_headers["Authorization"] = "Bearer <the server's key>" if key == KEY else "Bearer <a wrong key>"
    record = {"name": name, "request": {"method": method, "path": path, "headers": shown_headers, "json": body},
              "status": status, "headers": [[k.lower(), "<date>" if k.lower() == "date" else v]
                                            for k, v in resp_headers],
              "seconds": took}
    ctype = dict((k.lower(), v) for k, v in resp_headers).get("content-type", "")
    text = raw.decode("utf-8", errors="replace")
    if path == "/metrics":
        types = {}
        for line in text.splitlines():
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                types[m.group(1)] = m.group(2)
        record["metric_types"] = types
        record["body_bytes"] = len(raw)
    elif "text/event-stream" in ctype:
        record["body_text"] = text
        events = []
        for chunk in text.split("\n\n"):
            if chunk.startswith("data: ") and chunk[6:] != "[DONE]":
                events.append(json.loads(chunk[6:]))
        record["events"] = events
    else:
        try:
            record["json"] = json.loads(text)
        except ValueError:
            record["body_text"] = text
    return record


def record_http(case: str, port: int, served: str) -> list[dict]:
    chat = {"model": served, "messages": [{"role": "user", "content": "Reply with the single word: ready"}],
            "max_tokens": 16, "temperature": 0, "ignore_eos": True}
    wrong = dict(chat, model="no-such-model")
    ex = [
        exchange("health", port, "GET", "/health"),
        exchange("version", port, "GET", "/version"),
        exchange("models", port, "GET", "/v1/models", KEY),
        exchange("chat", port, "POST", "/v1/chat/completions", KEY, chat),
        exchange("chat_stream", port, "POST", "/v1/chat/completions", KEY, dict(chat, stream=True)),
        exchange("chat_stream_usage", port, "POST", "/v1/chat/completions", KEY,
                 dict(chat, stream=True, stream_options={"include_usage": True})),
        exchange("chat_wrong_model", port, "POST", "/v1/chat/completions", KEY, wrong),
        exchange("models_wrong_key", port, "GET", "/v1/models", "sk-wrong"),
        exchange("models_no_key", port, "GET", "/v1/models"),
        exchange("chat_no_key", port, "POST", "/v1/chat/completions", None, chat),
        exchange("metrics", port, "GET", "/metrics"),
    ]
    return [dict(e, case=case) for e in ex]


def record_pooling_http(case: str, port: int, served: str) -> list[dict]:
    """A pooling model's server: what it serves (embeddings) and what it does
    not (chat), with and without the key."""
    chat = {"model": served, "messages": [{"role": "user", "content": "Reply with the single word: ready"}],
            "max_tokens": 16}
    ex = [
        exchange("embed_health", port, "GET", "/health"),
        exchange("embed_models", port, "GET", "/v1/models", KEY),
        exchange("embed_embeddings", port, "POST", "/v1/embeddings", KEY, {"model": served, "input": "ready"}),
        exchange("embed_embeddings_no_key", port, "POST", "/v1/embeddings", None, {"model": served, "input": "x"}),
        exchange("embed_chat", port, "POST", "/v1/chat/completions", KEY, chat),
        exchange("embed_chat_no_key", port, "POST", "/v1/chat/completions", None, chat),
        exchange("embed_unknown_path", port, "GET", "/v1/no-such-path", KEY),
    ]
    return [dict(e, case=case) for e in ex]


def endpoint_check(port: int, served: str, api: str = "chat") -> dict:
    """The collection's own endpoint_check module, run by ansible-playbook
    (ansible-core from the carried wheels), against the running server."""
    coll = Path("/tmp/inferops-collections/ansible_collections/inferops")
    coll.mkdir(parents=True, exist_ok=True)
    link = coll / "vllm"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ROOT)
    result = Path("/tmp/inferops-endpoint-check.json")
    result.unlink(missing_ok=True)
    play = Path("/tmp/inferops-endpoint-check.yml")
    play.write_text(f"""
- hosts: localhost
  gather_facts: false
  tasks:
    - name: endpoint_check against the real vLLM
      inferops.vllm.endpoint_check:
        url: http://127.0.0.1:{port}
        model: {served}
        server_api_key: "{{{{ lookup('ansible.builtin.env', 'VLLM_API_KEY') }}}}"
        api: {api}
        stream: {"true" if api == "chat" else "false"}
        startup_timeout: 60
      register: check
    - ansible.builtin.copy:
        content: "{{{{ check | to_nice_json }}}}"
        dest: {result}
""")
    env = dict(os.environ, VLLM_API_KEY=KEY, ANSIBLE_COLLECTIONS_PATH=f"/tmp/inferops-collections:{ROOT}/.device/collections",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false", PYTHONPATH=LIB)
    code = ("import sys; from ansible.cli.playbook import main; sys.argv=['ansible-playbook','-i','localhost,',"
            f"'-c','local','-e','ansible_python_interpreter={sys.executable}','{play}']; main()")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, check=False)
    out = {"rc": proc.returncode, "output_tail": (proc.stdout + proc.stderr)[-4000:]}
    if result.is_file():
        out["result"] = json.loads(result.read_text())
    return out


def parse_log(text: str) -> dict:
    found = {}
    for name, pattern in LOG_PATTERNS.items():
        values = [float(v.replace(",", "")) for v in re.findall(pattern, text)]
        if values:
            found[name] = values
    found["lines"] = [line for line in text.splitlines() if KEEP.search(line)][:200]
    return found


class Server:
    def __init__(self, case: str, spec: dict, gpus: list[int]):
        self.case, self.spec, self.gpus = case, spec, gpus
        self.port = int(spec["inputs"]["port"])
        self.log_path = OUT / f"{case}.log"
        env = dict(os.environ)
        for item in spec["env"]:
            if "value" in item:
                env[item["name"]] = item["value"]
        env.update(HARNESS_ENV)
        env["VLLM_API_KEY"] = KEY  # the Secret's stand-in: never on the command line
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))  # as the device plugin sets it
        env["PYTHONPATH"] = LIB + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        base = shlex.split(os.environ.get("DEVICE_VLLM_SERVE_CMD") or
                           f"{sys.executable} -m vllm.entrypoints.cli.main serve")
        self.cmd = base + spec["args"]
        self.log = open(self.log_path, "w")
        self.log.write(f"# device-vllm: {case} on GPU(s) {self.gpus}: {shlex.join(self.cmd)}\n")
        # /dev/shm as the pod has it: a tmpfs of the plan's size (the role's emptyDir, medium Memory), in a
        # mount namespace of the server's own, so the machine's /dev/shm stays as it is.
        self.shm_mib = spec.get("predicted", {}).get("shm_size_mib") if SHM_SIZABLE else None
        wrap = []
        if self.shm_mib:
            wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs -o size="$0"m shm /dev/shm && exec "$@"', str(self.shm_mib)]
            self.log.write(f"# device-vllm: /dev/shm: a tmpfs of {self.shm_mib} MiB (the plan's shm_size_mib)\n")
        self.log.flush()
        self.shm_peak_mib = None
        self.started = time.monotonic()
        self.proc = subprocess.Popen(wrap + self.cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd="/tmp")
        self.ready_s = None

    def watch_shm(self) -> None:
        """The most of the server's /dev/shm in use, seen through its own mount namespace."""
        try:
            st = os.statvfs(f"/proc/{self.proc.pid}/root/dev/shm")
        except OSError:
            return
        used = (st.f_blocks - st.f_bfree) * st.f_frsize // (1024 * 1024)
        self.shm_peak_mib = max(self.shm_peak_mib or 0, used)
        self.shm_total_mib = st.f_blocks * st.f_frsize // (1024 * 1024)

    def healthy(self) -> bool:
        try:
            return request(self.port, "GET", "/health", timeout=5)[0] == 200
        except OSError:
            return False

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(10)
        self.log.close()
        return self.proc.returncode


def run_batch(servers: list[Server], summary: dict, record: str | None, deadline: float) -> None:
    pending = list(servers)
    while pending and time.monotonic() < deadline:
        for s in servers:
            s.watch_shm()
        for s in list(pending):
            if s.healthy():
                s.ready_s = round(time.monotonic() - s.started, 1)
                pending.remove(s)
            elif s.proc.poll() is not None:
                pending.remove(s)
        time.sleep(1)
    for s in servers:
        entry = {"gpus": s.gpus, "port": s.port, "args": s.spec["args"], "ready_s": s.ready_s}
        if s.ready_s is not None:
            entry["nvidia_smi_serving"] = nvidia_smi()
            served = s.spec["served_model_name"]
            try:
                if s.spec.get("runner") == "pooling":
                    ex = record_pooling_http(s.case, s.port, served)
                    (OUT / "http-pooling.json").write_text(json.dumps(ex, indent=1))
                    entry["http"] = [(e["name"], e["status"]) for e in ex]
                    check = endpoint_check(s.port, served, api="embeddings")
                    (OUT / "endpoint_check-pooling.json").write_text(json.dumps(check, indent=1))
                    entry["endpoint_check_rc"] = check["rc"]
                elif s.case == record:
                    ex = record_http(s.case, s.port, served)
                    (OUT / "http.json").write_text(json.dumps(ex, indent=1))
                    entry["http"] = [(e["name"], e["status"]) for e in ex]
                    check = endpoint_check(s.port, served)
                    (OUT / "endpoint_check.json").write_text(json.dumps(check, indent=1))
                    entry["endpoint_check_rc"] = check["rc"]
                else:
                    chat = exchange("chat", s.port, "POST", "/v1/chat/completions", KEY,
                                    {"model": served, "messages": [{"role": "user", "content": "hi"}],
                                     "max_tokens": 16, "ignore_eos": True})
                    entry["chat"] = {"status": chat["status"], "usage": (chat.get("json") or {}).get("usage")}
            except Exception as exc:  # record, keep going: the logs matter most
                entry["http_error"] = repr(exc)
        s.watch_shm()
        if s.shm_peak_mib is not None:
            entry["shm"] = {"size_mib": getattr(s, "shm_total_mib", None), "peak_used_mib": s.shm_peak_mib,
                            "sized_as_planned": bool(s.shm_mib)}
        entry["rc"] = s.stop()
        entry["ran_s"] = round(time.monotonic() - s.started, 1)
        entry.update(parse_log(s.log_path.read_text(errors="replace")))
        summary["cases"][s.case] = entry
        (OUT / "summary.json").write_text(json.dumps(summary, indent=1))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--record", help="the case whose HTTP exchanges are recorded and endpoint_check run")
    ap.add_argument("--deadline", type=float, default=540, help="seconds for the whole call")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    end = time.monotonic() + a.deadline
    gpus = nvidia_smi()
    suffix = os.environ.get("DEVICE_VLLM_GPU") or gpu_suffix(gpus)  # the override: to try this tool without a GPU
    count = len(gpus) or 1
    summary = {"gpus": gpus, "suffix": suffix, "shm_sizable": SHM_SIZABLE, "cases": {}}
    queue = [(c, CASES[f"{c}-{suffix}"]) for c in a.cases]
    while queue and time.monotonic() < end - 60:
        batch, free = [], list(range(count))
        for c, spec in list(queue):
            tp = int(spec["inputs"]["tensor_parallel_size"])
            if tp <= len(free):
                batch.append(Server(c, spec, free[:tp]))
                free = free[tp:]
                queue.remove((c, spec))
        if not batch:
            summary["skipped"] = [name for name, _spec in queue] + ["(not enough GPUs)"]
            break
        run_batch(batch, summary, a.record, end - 45)
    if queue:
        summary["skipped"] = [name for name, _spec in queue]
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    for case, e in summary["cases"].items():
        print(case, {k: v for k, v in e.items() if k not in ("lines", "args", "nvidia_smi_serving")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
