"""What real vLLM 0.20.0 did on SIGTERM on an H200 (hack/device-vllm
sigterm, tests/data/real-vllm/sigterm-0.20.0-h200.json): a streamed chat
completion of 1500 tokens in flight, SIGTERM to the server's process after
about 20 chunks, once with no drain and once with --shutdown-timeout 30;
one second into the shutdown, /health and a new completion asked. The
plan's shutdown step (serving/_plan.py) rests on what is checked here."""

from __future__ import annotations

import json
from pathlib import Path

from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import ENGINE_EXIT_S, plan

ROOT = Path(__file__).resolve().parents[5]
RECORD = json.loads((ROOT / "tests" / "data" / "real-vllm" / "sigterm-0.20.0-h200.json").read_text())
CONFIGS = Path(__file__).resolve().parent / "model_configs"


def run_with(drain: int) -> dict:
    [run] = [r for r in RECORD["results"] if r["drain"] == drain]
    assert run["started"], run
    return run


def test_the_record_is_real_vllm_0_20_on_the_gpu():
    assert RECORD["vllm"] == "0.20.0" and RECORD["gpu"][0]["name"] == "NVIDIA H200"
    assert {r["drain"] for r in RECORD["results"]} == {0, 30}


def test_without_a_drain_the_stream_in_flight_is_cut():
    run = run_with(0)
    assert run["stream"]["finish_reason"] == "abort"
    assert run["stream"]["chunks"] < run["tokens_asked"]
    assert run["stream"]["chunks_after_sigterm"] <= 1
    assert any("Aborting 1 requests" in line for line in run["log_lines"])


def test_with_a_drain_the_stream_finishes_and_the_server_exits_within_the_plans_margin():
    run = run_with(30)
    stream = run["stream"]
    # Every token asked for came (a first chunk carries the role), then [DONE], inside the drain.
    assert stream["finish_reason"] == "length" and stream["done"]
    assert stream["chunks"] == run["tokens_asked"] + 1
    assert stream["ended_after_sigterm_s"] < run["drain"]
    assert any("Draining 1 in-flight requests (timeout=30s)" in line for line in run["log_lines"])
    # The process exits soon after the last request: the plan's margin for the engine's exit covers it.
    assert run["exit_code"] == 0
    assert run["exited_after_sigterm_s"] - stream["ended_after_sigterm_s"] <= ENGINE_EXIT_S
    # The plan for that case with a 30 s drain renders the flag and a grace period covering what was seen.
    inputs = dict(json.loads((ROOT / "tests/data/real-vllm/plan-cases.json").read_text())[RECORD["case"]]["inputs"])
    inputs["model_config"] = json.loads((CONFIGS / inputs.pop("model_config_file")).read_text())
    planned = plan({**inputs, "drain_timeout_s": 30})
    args = planned["args"]
    assert args[args.index("--shutdown-timeout") + 1] == "30"
    exit_seen_s = run["exited_after_sigterm_s"] - stream["ended_after_sigterm_s"]
    assert planned["shutdown"]["termination_grace_period_s"] >= planned["shutdown"]["prestop_s"] + run["drain"] + exit_seen_s


def test_new_requests_during_the_shutdown_are_refused_so_the_endpoint_must_go_first():
    """0.20 closes its socket at SIGTERM (uvicorn's own handler also runs,
    0.18 to 0.26): a request routed to the pod then fails. preStop keeps
    the pod serving until its endpoint has left the Service."""
    for drain in (0, 30):
        during = run_with(drain)["during_drain"]
        assert "Connection refused" in during["health"] and "Connection refused" in during["completion"]
