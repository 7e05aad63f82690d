"""Runs on the GPU machine (after `hack/device-vllm stage`): what real vLLM
does on SIGTERM with a streamed completion in flight, with no drain and with
--shutdown-timeout. For each drain: start `vllm serve` with the plan's args
for the case (tests/data/real-vllm/plan-cases.json) plus the flag, wait for
/health, stream a long chat completion (ignore_eos, so it runs until
max_tokens), send SIGTERM to the server's process as the kubelet does after
preStop, keep reading; one second into the drain ask /health and start a new
completion. Records what the client saw: chunks after SIGTERM, the last
finish_reason, whether [DONE] came, how the stream ended, when the process
exited, and how the new request was answered. Writes $OUT/sigterm.json.

    hack/device-vllm sigterm [--case dense-eager-tp1] [--drains 0 30]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

_spec = importlib.util.spec_from_file_location("device_vllm_run", Path(__file__).with_name("device-vllm-run.py"))
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)


def stream(port: int, model: str, tokens: int, seen: dict, sigterm_at: dict) -> None:
    """One streamed chat completion; every chunk's time and finish_reason."""
    body = {"model": model, "messages": [{"role": "user", "content": "Count to a million."}], "stream": True,
            "max_tokens": tokens, "ignore_eos": True}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {run.KEY}"})
        resp = conn.getresponse()
        seen["status"] = resp.status
        while True:
            line = resp.readline()
            if not line:
                seen["ended"] = "connection closed"
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            now = time.monotonic()
            if data == b"[DONE]":
                seen["done"] = True
                seen["ended"] = "[DONE]"
                break
            chunk = json.loads(data)
            seen["chunks"] += 1
            if "t" in sigterm_at:
                seen["chunks_after_sigterm"] += 1
                seen["last_chunk_after_sigterm_s"] = round(now - sigterm_at["t"], 2)
            for choice in chunk.get("choices") or []:
                if choice.get("finish_reason"):
                    seen["finish_reason"] = choice["finish_reason"]
            if "error" in chunk:
                seen["error_chunk"] = chunk["error"]
    except Exception as exc:  # noqa: BLE001 - how the stream broke is the finding
        seen["ended"] = f"{type(exc).__name__}: {exc}"[:300]
    seen["ended_after_sigterm_s"] = round(time.monotonic() - sigterm_at["t"], 2) if "t" in sigterm_at else None


def new_request(port: int, model: str) -> dict:
    """A request arriving during the drain."""
    out = {}
    try:
        out["health"] = run.request(port, "GET", "/health", timeout=10)[0]
    except Exception as exc:  # noqa: BLE001
        out["health"] = f"{type(exc).__name__}: {exc}"[:200]
    try:
        status, _headers, raw = run.request(port, "POST", "/v1/chat/completions",
                                            headers={"Authorization": f"Bearer {run.KEY}"},
                                            body={"model": model, "messages": [{"role": "user", "content": "hi"}],
                                                  "max_tokens": 8}, timeout=60)
        answer = json.loads(raw) if raw.startswith(b"{") else {}
        out["completion"] = {"status": status,
                             "finish_reason": ((answer.get("choices") or [{}])[0]).get("finish_reason"),
                             "body": raw[:300].decode(errors="replace")}
    except Exception as exc:  # noqa: BLE001
        out["completion"] = f"{type(exc).__name__}: {exc}"[:200]
    return out


def one(case: str, spec: dict, drain: int, tokens: int, after_chunks: int) -> dict:
    spec = json.loads(json.dumps(spec))
    if drain:
        spec["args"] += ["--shutdown-timeout", str(drain)]
    server = run.Server(f"sigterm-{case}-drain{drain}", spec, [0])
    deadline = time.monotonic() + 400
    while not server.healthy():
        if server.proc.poll() is not None or time.monotonic() > deadline:
            tail = server.log_path.read_text(errors="replace")[-3000:]
            server.stop()
            return {"drain": drain, "started": False, "log_tail": tail}
        time.sleep(1)
    seen = {"chunks": 0, "chunks_after_sigterm": 0, "done": False, "finish_reason": None}
    sigterm_at: dict = {}
    reader = threading.Thread(target=stream, args=(server.port, spec["served_model_name"], tokens, seen, sigterm_at))
    reader.start()
    wait_until = time.monotonic() + 120
    while seen["chunks"] < after_chunks and reader.is_alive() and time.monotonic() < wait_until:
        time.sleep(0.05)
    chunks_before = seen["chunks"]
    sigterm_at["t"] = time.monotonic()
    os.kill(server.proc.pid, signal.SIGTERM)  # the container's main process, as the kubelet signals it
    time.sleep(1)
    during = new_request(server.port, spec["served_model_name"])
    reader.join(drain + 60)
    exit_code = None
    try:
        exit_code = server.proc.wait(drain + 60)
    except Exception:  # noqa: BLE001 - still running: recorded as None, then stopped
        pass
    exited_s = round(time.monotonic() - sigterm_at["t"], 2) if exit_code is not None else None
    server.stop()
    log_lines = [line for line in server.log_path.read_text(errors="replace").splitlines()
                 if any(w in line for w in ("hutdown", "rain", "bort", "SIGTERM", "Rejecting", "Terminat"))][:40]
    return {"drain": drain, "started": True, "tokens_asked": tokens, "chunks_before_sigterm": chunks_before,
            "stream": seen, "during_drain": during, "exit_code": exit_code, "exited_after_sigterm_s": exited_s,
            "log_lines": log_lines}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="dense-eager-tp1")
    ap.add_argument("--drains", type=int, nargs="+", default=[0, 30])
    ap.add_argument("--tokens", type=int, default=1500)
    ap.add_argument("--after-chunks", type=int, default=20)
    a = ap.parse_args()
    run.OUT.mkdir(parents=True, exist_ok=True)
    suffix = run.gpu_suffix(run.nvidia_smi())
    spec = run.CASES[f"{a.case}-{suffix}"]
    results = [one(a.case, spec, d, a.tokens, a.after_chunks) for d in a.drains]
    try:
        from importlib.metadata import version  # pylint: disable=import-outside-toplevel
        vllm = version("vllm")
    except Exception:  # noqa: BLE001
        vllm = None
    out = {"vllm": vllm, "case": f"{a.case}-{suffix}", "gpu": run.nvidia_smi()[:1], "results": results}
    (run.OUT / "sigterm.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1)[:6000])
    return 0 if all(r.get("started") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
