"""Runs on the GPU machine (after `hack/device-vllm stage`): one real vLLM
under load, its autoscaling gauges recorded once a second, for the KEDA
replay (tests/unit/plugins/module_utils/serving/test_autoscaling_replay.py).

    python3 hack/device-vllm-load.py [--case dense-eager-tp1] [--max-num-seqs 8]

The case's args as serving_plan rendered them (tests/data/real-vllm/
plan-cases.json), with --max-num-seqs set low so that a few clients fill
the scheduler. Phases, each a number of clients that keep one request in
flight each (a chat completion of --tokens tokens, ignore_eos):

  idle       0 clients
  saturated  max_num_seqs clients: every slot busy, nothing waiting
  queue      3 x max_num_seqs clients: a queue builds
  drain      0 clients: what was running finishes, then idle

Writes $OUT/keda-series.json: per second, the phase and the gauges
vllm:num_requests_running, vllm:num_requests_waiting and
vllm:kv_cache_usage_perc as /metrics served them, with vLLM's version."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("device_vllm_run", HERE / "device-vllm-run.py")
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)

GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")


def scrape(port: int) -> dict:
    status, _headers, raw = run.request(port, "GET", "/metrics", timeout=10)
    found = {}
    if status != 200:
        return found
    for line in raw.decode(errors="replace").splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN)$", line)
        if m and m.group(1) in GAUGES:
            found[m.group(1)] = found.get(m.group(1), 0.0) + float(m.group(3))
    return found


class Clients:
    """n clients, each keeping one request in flight until told to stop."""

    def __init__(self, port: int, model: str, tokens: int):
        self.port, self.model, self.tokens = port, model, tokens
        self.threads: list[tuple[threading.Thread, threading.Event]] = []
        self.done = 0
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def _loop(self, stop: threading.Event) -> None:
        body = {"model": self.model, "messages": [{"role": "user", "content": "Count."}],
                "max_tokens": self.tokens, "ignore_eos": True}
        while not stop.is_set():
            try:
                status, _h, raw = run.request(self.port, "POST", "/v1/chat/completions",
                                              {"Authorization": f"Bearer {run.KEY}"}, body, timeout=600)
                with self.lock:
                    if status == 200:
                        self.done += 1
                    else:
                        self.errors.append(f"{status}: {raw[:200]!r}")
            except OSError as exc:
                with self.lock:
                    self.errors.append(repr(exc))
                stop.wait(1)

    def resize(self, n: int) -> None:
        while len(self.threads) < n:
            stop = threading.Event()
            t = threading.Thread(target=self._loop, args=(stop,), daemon=True)
            t.start()
            self.threads.append((t, stop))
        while len(self.threads) > n:
            _t, stop = self.threads.pop()
            stop.set()  # finishes its request in flight, then stops


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="dense-eager-tp1")
    ap.add_argument("--max-num-seqs", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--phase-s", type=float, default=40)
    a = ap.parse_args()
    run.OUT.mkdir(parents=True, exist_ok=True)
    suffix = run.gpu_suffix(run.nvidia_smi())
    spec = json.loads(json.dumps(run.CASES[f"{a.case}-{suffix}"]))
    args = spec["args"]
    args[args.index("--max-num-seqs") + 1] = str(a.max_num_seqs)
    server = run.Server(f"load-{a.case}", spec, [0])
    deadline = time.monotonic() + 300
    while not server.healthy():
        if server.proc.poll() is not None or time.monotonic() > deadline:
            print(server.log_path.read_text(errors="replace")[-3000:])
            server.stop()
            return 1
        time.sleep(1)
    ready_s = round(time.monotonic() - server.started, 1)
    clients = Clients(server.port, spec["served_model_name"], a.tokens)
    phases = [("idle", 0, 10), ("saturated", a.max_num_seqs, a.phase_s),
              ("queue", 3 * a.max_num_seqs, a.phase_s), ("drain", 0, a.phase_s)]
    samples, t0 = [], time.monotonic()
    try:
        for phase, n, seconds in phases:
            clients.resize(n)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                tick = time.monotonic()
                samples.append({"t": round(tick - t0, 2), "phase": phase, "clients": n, **scrape(server.port)})
                time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    finally:
        clients.resize(0)
        server.stop()
    out = {"case": a.case, "gpu": run.nvidia_smi()[:1], "args": args, "ready_s": ready_s,
           "max_num_seqs": a.max_num_seqs, "tokens_per_request": a.tokens,
           "requests_done": clients.done, "errors": clients.errors[:10], "samples": samples}
    try:
        from importlib.metadata import version
        out["vllm"] = version("vllm")
    except Exception:  # the record is still worth keeping
        out["vllm"] = None
    (run.OUT / "keda-series.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}))
    for s in samples[::5]:
        print(s)
    return 0 if samples and not clients.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
