"""The stand-in answers in exactly the shapes real vLLM 0.20.0 answered on
the GPU machine (tests/data/real-vllm/http/, recorded by hack/device-vllm):
each recorded request is sent to the stand-in and the answer compared field
by field - status, the headers that matter, every JSON key at every depth
with its type, and the values, except those that differ by nature (ids,
timestamps, generated text and token counts, which are checked for type and
sense). A streamed answer is compared event by event in its SSE framing.
/metrics: every family the stand-in serves is in vLLM's, with vLLM's type."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path

import pytest

from support.openai_standin import StandIn

ROOT = Path(__file__).resolve().parents[2]
RECORDED = {p.stem: json.loads(p.read_text()) for p in (ROOT / "tests" / "data" / "real-vllm" / "http").glob("*.json")}
KEY = "sk-contract-test"
MODEL = RECORDED["models"]["json"]["data"][0]["id"]
ROOT_PATH = RECORDED["models"]["json"]["data"][0]["root"]
# Values that differ between any two answers, even from the same vLLM: ids,
# times, what the model generated, how many tokens that took.
VOLATILE = re.compile(r"(^|\.)(id|created)$|\.content$|^usage\.|\.finish_reason$|permission\.\d+\.id$|"
                      r"\.embedding\.\d+$")
HEADERS = ("server", "content-type", "transfer-encoding")


def send(server: StandIn, recorded: dict) -> tuple[int, dict, str]:
    req = recorded["request"]
    headers = {}
    auth = req["headers"].get("Authorization")
    if auth == "Bearer <the server's key>":
        headers["Authorization"] = f"Bearer {KEY}"
    elif auth:
        headers["Authorization"] = "Bearer sk-wrong"
    body = None
    if req["json"] is not None:
        body = json.dumps(req["json"]).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(req["method"], req["path"], body=body, headers=headers)
    resp = conn.getresponse()
    text = resp.read().decode()
    out = (resp.status, {k.lower(): v for k, v in resp.getheaders()}, text)
    conn.close()
    return out


def compare(seen, want, path: str = "") -> list[str]:
    """Differences: a key missing or extra, a type that differs, a value
    that differs outside VOLATILE."""
    if isinstance(want, dict):
        if not isinstance(seen, dict):
            return [f"{path or '.'}: {type(seen).__name__} where vLLM has an object"]
        diffs = [f"{path}.{k}: missing" for k in want if k not in seen]
        diffs += [f"{path}.{k}: not in vLLM's answer" for k in seen if k not in want]
        for k in want:
            if k in seen:
                diffs += compare(seen[k], want[k], f"{path}.{k}" if path else k)
        return diffs
    if isinstance(want, list):
        if not isinstance(seen, list):
            return [f"{path}: {type(seen).__name__} where vLLM has a list"]
        if len(want) != len(seen):
            return [f"{path}: {len(seen)} items where vLLM has {len(want)}"]
        return [d for i, (s, w) in enumerate(zip(seen, want)) for d in compare(s, w, f"{path}.{i}")]
    if type(seen) is not type(want):
        return [f"{path}: {seen!r} ({type(seen).__name__}) where vLLM has {want!r} ({type(want).__name__})"]
    if not VOLATILE.search(path) and seen != want:
        return [f"{path}: {seen!r} where vLLM has {want!r}"]
    return []


def events(body: str) -> list[str]:
    """SSE data lines: every event is `data: <payload>` and a blank line."""
    assert body.endswith("\n\n"), body[-40:]
    chunks = body[:-2].split("\n\n")
    assert all(c.startswith("data: ") and "\n" not in c for c in chunks), chunks
    return [c[len("data: "):] for c in chunks]


@pytest.fixture(scope="module")
def server():
    # The recorded server: --served-model-name MODEL, --max-model-len 8192, a key, vLLM 0.20.0.
    with StandIn(model=MODEL, api_key=KEY, root=ROOT_PATH, max_model_len=8192, version="0.20.0") as s:
        yield s


POOLING = {"embed_health", "embed_models", "embed_embeddings", "embed_embeddings_no_key", "embed_chat",
           "embed_chat_no_key", "embed_unknown_path"}


def test_recordings_cover_the_contract():
    assert set(RECORDED) == {"health", "version", "models", "models_no_key", "models_wrong_key", "chat",
                             "chat_no_key", "chat_wrong_model", "chat_stream", "chat_stream_usage", "metrics"} | POOLING
    assert {r["case"] for r in RECORDED.values()} == {"dense-eager-tp1", "embed-tp1"}


@pytest.mark.parametrize("name", ["health", "version", "models", "models_no_key", "models_wrong_key", "chat",
                                  "chat_no_key", "chat_wrong_model"])
def test_json_answers_match_vllm(server, name):
    recorded = RECORDED[name]
    status, headers, text = send(server, recorded)
    assert status == recorded["status"]
    want_headers = dict(recorded["headers"])
    for h in HEADERS:
        assert headers.get(h) == want_headers.get(h), h
    assert ("content-length" in headers) == ("content-length" in want_headers)
    if "json" in recorded:
        assert compare(json.loads(text), recorded["json"]) == []
    else:
        assert text == recorded["body_text"]


@pytest.mark.parametrize("name", ["chat_stream", "chat_stream_usage"])
def test_streams_match_vllm_event_by_event(server, name):
    recorded = RECORDED[name]
    status, headers, text = send(server, recorded)
    assert status == recorded["status"] == 200
    want_headers = dict(recorded["headers"])
    for h in HEADERS:
        assert headers.get(h) == want_headers.get(h), h
    seen, want = events(text), events(recorded["body_text"])
    assert seen[-1] == want[-1] == "[DONE]"
    seen, want = [json.loads(e) for e in seen[:-1]], [json.loads(e) for e in want[:-1]]
    usage = bool(recorded["request"]["json"].get("stream_options"))
    if usage:  # the last event has no choices, only usage
        assert compare(seen.pop(), want.pop()) == []
    # First: the role; last: the finish reason; between: one token each.
    assert compare(seen[0], want[0]) == []
    assert compare(seen[-1], want[-1]) == []
    for middle in seen[1:-1]:
        assert compare(middle, want[1]) == []
    assert len({e["id"] for e in seen}) == 1 and seen[0]["choices"][0]["delta"]["role"] == "assistant"
    assert seen[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_non_streamed_values_make_sense(server):
    status, _headers, text = send(server, RECORDED["chat"])
    answer = json.loads(text)
    assert status == 200
    assert answer["id"].startswith("chatcmpl-") and answer["model"] == MODEL
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")


def test_metrics_families_are_vllms(server):
    recorded = RECORDED["metrics"]
    status, headers, text = send(server, recorded)
    assert status == 200 and headers["content-type"] == dict(recorded["headers"])["content-type"]
    served = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert served, text[:300]
    vllm_types = recorded["vllm_metric_types"]
    assert {name: vllm_types.get(name) for name in served} == served
    # What autoscaling and the dashboards read.
    assert {"vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
            "vllm:time_to_first_token_seconds"} <= set(served)


@pytest.mark.parametrize("name", sorted(POOLING))
def test_pooling_answers_match_vllm(name):
    """The embedding model's server, as recorded (all-MiniLM-L6-v2, vLLM
    0.20.0 resolved --runner auto to pooling): embeddings served, chat and
    any other unregistered path answered with FastAPI's 404."""
    recorded = RECORDED[name]
    model = RECORDED["embed_models"]["json"]["data"][0]
    with StandIn(model=model["id"], api_key=KEY, runner="pooling", root=model["root"],
                 max_model_len=model["max_model_len"], embedding_dims=384) as server:
        status, headers, text = send(server, recorded)
    assert status == recorded["status"]
    want_headers = dict(recorded["headers"])
    for h in HEADERS:
        assert headers.get(h) == want_headers.get(h), h
    if "json" in recorded:
        assert compare(json.loads(text), recorded["json"]) == []
    else:
        assert text == recorded["body_text"]


def test_pooling_model_gets_no_chat():
    """vLLM registers the chat routes only for generative models: an
    embedding model's server answers chat with FastAPI's 404 (after the key
    check, which is middleware), and answers embeddings."""
    with StandIn(model="minilm", api_key=KEY, runner="pooling") as s:
        request = dict(RECORDED["chat"]["request"], json=dict(RECORDED["chat"]["request"]["json"], model="minilm"))
        chat = dict(RECORDED["chat"], request=request)
        status, _headers, text = send(s, chat)
        assert (status, json.loads(text)) == (404, {"detail": "Not Found"})
        status, _headers, text = send(s, RECORDED["chat_no_key"])
        assert (status, json.loads(text)) == (401, {"error": "Unauthorized"})
        embed = {"request": {"method": "POST", "path": "/v1/embeddings",
                             "headers": {"Authorization": "Bearer <the server's key>"},
                             "json": {"model": "minilm", "input": "hello"}}}
        status, _headers, text = send(s, embed)
        answer = json.loads(text)
        assert status == 200 and answer["object"] == "list" and answer["data"][0]["object"] == "embedding"
        assert answer["id"].startswith("embd-") and answer["usage"]["completion_tokens"] == 0
    with StandIn(model=MODEL, api_key=KEY) as s:  # and a generative one has no embeddings route
        status, _headers, text = send(s, dict(embed, request=dict(embed["request"], json={"model": MODEL, "input": "x"})))
        assert (status, json.loads(text)) == (404, {"detail": "Not Found"})


SIGTERM_RECORD = json.loads((ROOT / "tests" / "data" / "real-vllm" / "sigterm-0.20.0-h200.json").read_text())
# The stand-in streams a token each TOKEN_DELAY_S: long enough that a stream
# is still in flight when the recorder asks its new request, 1 s after SIGTERM.
TOKEN_DELAY_S, TOKENS = 0.01, 500


def recorder(tmp_path, monkeypatch):
    """The very tool that recorded vLLM (hack/device-vllm-sigterm.py),
    pointed at the stand-in: DEVICE_VLLM_SERVE_CMD replaces `vllm serve`, so
    the stand-in is started with the plan's args for the recorded case, the
    key in VLLM_API_KEY, and measured as vLLM was."""
    import importlib.util
    import shlex
    import sys

    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setenv("DEVICE_VLLM_SHM", "0")  # no /dev/shm of its own: the stand-in needs none
    monkeypatch.setenv("DEVICE_VLLM_SERVE_CMD", shlex.join([sys.executable, str(ROOT / "hack" / "openai_standin.py"),
                                                            "--token-delay-s", str(TOKEN_DELAY_S)]))
    spec = importlib.util.spec_from_file_location("device_vllm_sigterm", ROOT / "hack" / "device-vllm-sigterm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("recorded", SIGTERM_RECORD["results"], ids=lambda r: f"shutdown-timeout-{r['drain']}")
def test_sigterm_as_real_vllm_did(tmp_path, monkeypatch, recorded):
    """SIGTERM with a streamed completion in flight, measured by the tool
    that recorded real vLLM 0.20.0 (tests/data/real-vllm/sigterm-0.20.0-h200.json),
    with the same args (the plan's for the case, --shutdown-timeout as
    recorded): what the stream's client saw, how the requests asked during
    the shutdown were answered, the exit code, the log's shutdown lines."""
    from ansible_collections.inferops.vllm.plugins.module_utils.serving._plan import ENGINE_EXIT_S

    tool = recorder(tmp_path, monkeypatch)
    case = SIGTERM_RECORD["case"]
    spec = json.loads(json.dumps(tool.run.CASES[case]))
    port = free_port()
    spec["inputs"]["port"] = port
    spec["args"][spec["args"].index("--port") + 1] = str(port)
    seen = tool.one(case.rsplit("-", 1)[0], spec, recorded["drain"], TOKENS, 20)
    assert seen["started"], seen
    stream, want = seen["stream"], recorded["stream"]
    assert {k: stream[k] for k in ("status", "done", "ended", "finish_reason")} \
        == {k: want[k] for k in ("status", "done", "ended", "finish_reason")}
    if recorded["drain"] == 0:
        # The engine aborted it: one more chunk (its finish_reason), then [DONE].
        assert stream["chunks_after_sigterm"] == want["chunks_after_sigterm"] == 1
        assert stream["chunks"] < TOKENS
    else:
        # Every token asked for (a first chunk carries the role), inside the drain.
        assert stream["chunks"] - TOKENS == want["chunks"] - recorded["tokens_asked"] == 1
        assert stream["ended_after_sigterm_s"] < recorded["drain"]
        assert stream["chunks_after_sigterm"] > 0
    # A second into the shutdown, /health and a new completion were refused.
    assert seen["during_drain"] == recorded["during_drain"]
    assert seen["exit_code"] == recorded["exit_code"] == 0
    assert seen["exited_after_sigterm_s"] - stream["ended_after_sigterm_s"] <= ENGINE_EXIT_S
    # vLLM's engine lines about the shutdown, in the stand-in's log.
    messages = [line.split("] ", 1)[1] for line in recorded["log_lines"] if "[core.py:" in line]
    assert messages and all(any(m in line for line in seen["log_lines"]) for m in messages), \
        (messages, seen["log_lines"])
