"""Runs on the GPU machine (from `hack/device-vllm lora`): LoRA adapters made
there with peft on a small base model, served by real vLLM, and what vLLM
then answers and logs.

    python3 hack/device-vllm-lora.py

1. Two adapters made with peft (from the carried wheels) on
   Qwen2.5-0.5B-Instruct's shapes (its config.json, random base weights:
   no model hub is reachable there): `sql-lora`, rank 8 on q_proj and
   v_proj, and `chat-lora`, rank 16 on every linear layer; lora_B drawn at
   random (peft's init_lora_weights=False), so that an adapter changes the
   output.
2. vLLM (`--load-format dummy`, eager) started once without LoRA and once
   per LoRA setting below; each run's memory lines are kept, so that the
   memory LoRA takes out of the KV cache can be compared with the plan's.
3. With both adapters (`--lora-modules`), the HTTP exchanges: /v1/models,
   a chat to each adapter's name and to the base, an unknown name, streamed.

Writes to $OUT: lora-summary.json (runs: flags, memory lines; the adapters'
configs and file sizes), lora-http.json (the exchanges, in
hack/device-vllm-run.py's record format), lora-<run>.log."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("device_vllm_run", ROOT / "hack" / "device-vllm-run.py")
run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run)  # the record format, the log patterns, the key, nvidia-smi

OUT = run.OUT
LIB = run.LIB
BASE = ROOT / ".device" / "models" / "qwen2.5-0.5b-instruct"
ADAPTERS = Path("/tmp/lora-adapters")
PORT = 8123
# name -> (rank, alpha, target modules)
MADE = {"sql-lora": (8, 16, ["q_proj", "v_proj"]),
        "chat-lora": (16, 32, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])}
# Runs: name -> extra flags. "base" has no LoRA; the others vary slots and rank.
RUNS = {
    "base": [],
    "l1-r8": ["--enable-lora", "--max-loras", "1", "--max-lora-rank", "8"],
    "l4-r16": ["--enable-lora", "--max-loras", "4", "--max-lora-rank", "16"],
    "l8-r64": ["--enable-lora", "--max-loras", "8", "--max-lora-rank", "64"],
}
DEADLINE_S = 540  # the device call's 600 s, less the time to bring the files back
SERVE = [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]


def make_adapters() -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    shutil.rmtree(ADAPTERS, ignore_errors=True)
    made = {}
    config = AutoConfig.from_pretrained(BASE)
    for name, (rank, alpha, targets) in MADE.items():
        torch.manual_seed(7)
        model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
        peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets,
                                                      init_lora_weights=False, task_type="CAUSAL_LM"))
        peft_model.save_pretrained(ADAPTERS / name)
        files = {p.name: p.stat().st_size for p in (ADAPTERS / name).iterdir()}
        made[name] = {"adapter_config": json.loads((ADAPTERS / name / "adapter_config.json").read_text()),
                      "files": files}
    return made


def serve(name: str, flags: list[str], record: bool) -> dict:
    log_path = OUT / f"lora-{name}.log"
    env = dict(os.environ, **run.HARNESS_ENV, VLLM_API_KEY=run.KEY,
               PYTHONPATH=f"{LIB}:{os.environ.get('PYTHONPATH', '')}", CUDA_VISIBLE_DEVICES="0")
    argv = SERVE + [str(BASE), "--served-model-name", "base-0.5b", "--port", str(PORT), "--load-format", "dummy",
                    "--enforce-eager", "--max-model-len", "2048", "--gpu-memory-utilization", "0.5",
                    "--max-num-seqs", "32"] + flags
    if record:
        argv += ["--lora-modules", *(f"{n}={ADAPTERS / n}" for n in MADE)]
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    result = {"flags": flags + (["--lora-modules", "..."] if record else []), "ready_s": None}
    try:
        while time.monotonic() - started < 300:
            if proc.poll() is not None:
                result["exit_code"] = proc.returncode
                break
            try:
                if run.request(PORT, "GET", "/health", timeout=2)[0] == 200:
                    result["ready_s"] = round(time.monotonic() - started, 1)
                    break
            except OSError:
                pass
            time.sleep(1)
        if result["ready_s"] is not None:
            result["nvidia_smi"] = run.nvidia_smi()
            if record:
                result["http"] = record_http()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
    text = log_path.read_text(errors="replace")
    result["memory"] = run.parse_log(text)
    result["lora_lines"] = [line for line in text.splitlines() if "lora" in line.lower() or "LoRA" in line][:60]
    return result


def record_http() -> list[dict]:
    def chat(model: str) -> dict:
        return {"model": model, "messages": [{"role": "user", "content": "Reply with the single word: ready"}],
                "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    ex = [run.exchange("lora_models", PORT, "GET", "/v1/models", run.KEY)]
    for model in ("sql-lora", "chat-lora", "base-0.5b"):
        ex.append(run.exchange(f"lora_chat_{model}", PORT, "POST", "/v1/chat/completions", run.KEY, chat(model)))
    ex.append(run.exchange("lora_chat_stream_sql-lora", PORT, "POST", "/v1/chat/completions", run.KEY,
                           dict(chat("sql-lora"), stream=True)))
    ex.append(run.exchange("lora_chat_unknown", PORT, "POST", "/v1/chat/completions", run.KEY, chat("no-such-lora")))
    return [dict(e, case="lora-l4-r16") for e in ex]


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, LIB)
    summary = {"gpus": run.nvidia_smi(), "base": "qwen2.5-0.5b-instruct (dummy weights)"}
    summary["adapters"] = make_adapters()
    summary["runs"] = {}
    began = time.monotonic()
    for name, flags in RUNS.items():
        if time.monotonic() - began > DEADLINE_S - 120:
            summary["runs"][name] = {"skipped": "no time left in this call"}
            continue
        summary["runs"][name] = serve(name, flags, record=(name == "l4-r16"))
        (OUT / "lora-summary.json").write_text(json.dumps(summary, indent=1))
    http = summary["runs"]["l4-r16"].pop("http", []) if "l4-r16" in summary["runs"] else []
    (OUT / "lora-http.json").write_text(json.dumps(http, indent=1))
    (OUT / "lora-summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({n: {"ready_s": r.get("ready_s"), "kv": r.get("memory", {}).get("available_kv_gib"),
                          "load": r.get("memory", {}).get("model_loading_gib")} for n, r in summary["runs"].items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
