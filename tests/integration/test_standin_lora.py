"""The stand-in serves LoRA adapters as real vLLM 0.20.0 did on the GPU
machine (tests/data/real-vllm/lora/http-0.20.0-h200.json, recorded by
hack/device-vllm lora): /v1/models lists each adapter of --lora-modules with
the same fields, its path as root and the base model as parent; a chat to an
adapter's name answers under that name; an unknown name gets the 404."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from support.ansible import ROOT
from support.openai_standin import StandIn

pytestmark = [pytest.mark.integration]
RECORDED = {e["name"]: e for e in json.loads((ROOT / "tests/data/real-vllm/lora/http-0.20.0-h200.json").read_text())}


def call(port: int, path: str, body: dict | None = None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer k", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def shape(value):
    """The JSON's structure: keys and value types, values left out."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    return type(value).__name__


def test_adapters_answer_in_vllms_shapes():
    recorded_models = RECORDED["lora_models"]["json"]["data"]
    base = recorded_models[0]["id"]
    with StandIn(model=base, api_key="k", port=0, root="/models/qwen2.5-0.5b-instruct", max_model_len=2048) as server:
        server.adapters = [(m["id"], m["root"]) for m in recorded_models[1:]]
        status, listed = call(server.port, "/v1/models")
        assert status == 200
        assert [shape(m) for m in listed["data"]] == [shape(m) for m in recorded_models]
        for got, want in zip(listed["data"], recorded_models):
            assert {k: got[k] for k in ("id", "object", "owned_by", "root", "parent", "max_model_len")} == \
                {k: want[k] for k in ("id", "object", "owned_by", "root", "parent", "max_model_len")}
        for name in ("sql-lora", "chat-lora", base):
            want = RECORDED[f"lora_chat_{name}"]
            status, body = call(server.port, "/v1/chat/completions", want["request"]["json"])
            assert (status, body["model"]) == (want["status"], want["json"]["model"]) == (200, name)
            assert shape(body) == shape(want["json"])
        unknown = RECORDED["lora_chat_unknown"]
        assert call(server.port, "/v1/chat/completions", unknown["request"]["json"]) == (404, unknown["json"])
