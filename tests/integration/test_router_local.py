"""The router's HTTP behaviour on real sockets, without a cluster: the
router's app in front of the vLLM stand-ins (hack/openai_standin.py, which
answers in real vLLM's recorded shapes), its replicas set as its
EndpointSlice watch would set them. What the sandbox test
(test_router.py) shows through Kubernetes, this shows case by case: a
stream passes byte for byte, a replica that refuses connections is skipped
for another, the keys are files read again when they change."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

from support import http
from support.openai_standin import StandIn

from ansible_collections.inferops.vllm.plugins.module_utils.router import _routes, router_cli

pytestmark = [pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningRouter:
    """The router's app on a port of this machine, in a thread of its own."""

    def __init__(self, tmp_path, models: dict[str, list[StandIn]], keys: dict[str, str]):
        from aiohttp import web

        (tmp_path / "router-key").write_text("router-key\n")
        routes = []
        for name, key in keys.items():
            (tmp_path / name).mkdir()
            (tmp_path / name / "api-key").write_text(key)
            routes.append({"name": name, "service": name, "namespace": "ai", "port_name": "http",
                           "key_secret": f"{name}-api-key"})
        built = _routes.config_from_routes(routes, {"policy": "affinity", "session_header": "x-session-id",
                                                    "prefix_chars": 1024, "load_factor": 1.25, "unhealthy_s": 10,
                                                    "models_refresh_s": 60})
        assert built["problems"] == []
        self.config = _routes.load_config(json.dumps(built["config"]))
        self.key_dir = tmp_path
        self.logs: list[str] = []
        self.router = router_cli.Router(
            self.config, router_cli.KeyFile(str(tmp_path / "router-key")),
            {m["name"]: router_cli.KeyFile(str(tmp_path / m["key_file"])) for m in self.config["models"]}, None,
            log=self.logs.append)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.router.app())
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.runner.setup())
            self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(10)
        self.set_replicas({name: [f"127.0.0.1:{s.port}" for s in servers] for name, servers in models.items()})

    def set_replicas(self, replicas: dict[str, list[str]]) -> None:
        """What the EndpointSlice watch does when the slices change."""
        def change():
            for name, addresses in replicas.items():
                self.router.table.set_replicas(name, addresses)
            return self.router.refresh_models()
        asyncio.run_coroutine_threadsafe(change(), self.loop).result(10)

    def call(self, path: str, body: dict | None = None, key: str | None = "router-key", headers: dict | None = None):
        return http.call(f"http://127.0.0.1:{self.port}{path}", body, key, headers)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def fleet(tmp_path):
    chat = [StandIn(model="chat", api_key="chat-key", port=0) for _n in range(2)]
    embed = [StandIn(model="embed", api_key="embed-key", port=0, runner="pooling")]
    for server in chat + embed:
        server.thread.start()
    router = RunningRouter(tmp_path, {"chat": chat, "embed": embed}, {"chat": "chat-key", "embed": "embed-key"})
    yield router, chat, embed
    router.close()
    for server in chat + embed:
        server.__exit__(None, None, None)


CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Reply with the single word: ready"}],
        "max_tokens": 4}


def test_routes_by_model_with_each_models_own_key(fleet):
    router, chat, embed = fleet
    status, _headers, body = router.call("/v1/chat/completions", CHAT)
    assert status == 200 and json.loads(body)["model"] == "chat"
    status, _headers, body = router.call("/v1/embeddings", {"model": "embed", "input": "hello"})
    assert status == 200 and json.loads(body)["model"] == "embed"
    # Each backend got its own key, never the router's.
    sent = [r["authorization"] for s in chat for r in s.requests if r["method"] == "POST"]
    assert sent == ["Bearer chat-key"]
    assert [r["authorization"] for r in embed[0].requests if r["method"] == "POST"] == ["Bearer embed-key"]
    status, _headers, body = router.call("/v1/models")
    assert status == 200 and [m["id"] for m in json.loads(body)["data"]] == ["chat", "embed"]


def test_the_key_unknown_models_and_paths_answer_as_vllm(fleet):
    router, _chat, _embed = fleet
    recorded = json.load(open("tests/data/real-vllm/http/chat_wrong_model.json", encoding="utf-8"))
    status, headers, body = router.call("/v1/chat/completions", dict(CHAT, model="no-such-model"))
    assert status == 404 and json.loads(body) == recorded["json"]
    assert headers["Content-Length"] == dict(recorded["headers"])["content-length"]
    for key in (None, "chat-key", "wrong"):
        status, _headers, body = router.call("/v1/models", key=key)
        assert (status, json.loads(body)) == (401, {"error": "Unauthorized"})
        status, _headers, body = router.call("/v1/chat/completions", CHAT, key=key)
        assert status == 401
    assert router.call("/nothing")[0] == 404
    assert router.call("/health", key=None)[0] == 200


def test_a_stream_passes_byte_for_byte(fleet):
    router, chat, _embed = fleet
    body = dict(CHAT, stream=True, stream_options={"include_usage": True})
    status, headers, through_router = router.call("/v1/chat/completions", body, headers={"x-session-id": "a"})
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    served = next(s for s in chat if any(r["method"] == "POST" for r in s.requests))
    req = urllib.request.Request(f"http://127.0.0.1:{served.port}/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Authorization": "Bearer chat-key", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        direct = resp.read()

    def shape(raw: bytes) -> list:
        # The same events, ids and timestamps aside.
        events = [e[len(b"data: "):] for e in raw.split(b"\n\n") if e]
        return [e if e == b"[DONE]" else {k: v for k, v in json.loads(e).items() if k not in ("id", "created")}
                for e in events]
    assert through_router.endswith(b"data: [DONE]\n\n") and shape(through_router) == shape(direct)


def test_a_session_stays_on_its_replica_and_sessions_spread(fleet):
    router, chat, _embed = fleet

    def served_by() -> list[int]:
        return [sum(1 for r in s.requests if r["method"] == "POST") for s in chat]

    for _n in range(6):
        assert router.call("/v1/chat/completions", CHAT, headers={"x-session-id": "one"})[0] == 200
    assert sorted(served_by()) == [0, 6]
    for n in range(20):
        assert router.call("/v1/chat/completions", CHAT, headers={"x-session-id": f"s{n}"})[0] == 200
    assert min(served_by()) > 0


def test_a_replica_that_refuses_connections_is_skipped(fleet):
    router, chat, _embed = fleet
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: connections are refused
    router.set_replicas({"chat": [dead, f"127.0.0.1:{chat[0].port}"]})
    # Sessions whose first choice is the dead replica: each answered by the other, the dead one then tried last.
    sessions = [f"s{n}" for n in range(40)
                if _routes.order([dead, f"127.0.0.1:{chat[0].port}"], f"session:s{n}", {}, 1.25)[0] == dead][:3]
    assert sessions
    for session in sessions:
        assert router.call("/v1/chat/completions", CHAT, headers={"x-session-id": session})[0] == 200
    assert any("could not be reached" in line and dead in line for line in router.logs)
    metrics = router.call("/metrics", key=None)[2].decode()
    assert 'inferops_router_retries_total{model="chat"} 1.0' in metrics
    # No replica left: the router says so in the OpenAI shape.
    router.set_replicas({"chat": [dead]})
    status, _headers, body = router.call("/v1/chat/completions", CHAT)
    assert status == 503 and json.loads(body)["error"]["type"] == "ServiceUnavailableError"
    router.set_replicas({"chat": []})
    status, _headers, body = router.call("/v1/chat/completions", CHAT)
    assert status == 503 and "No replica of model `chat` is ready" in json.loads(body)["error"]["message"]


def test_a_rotated_key_is_taken_without_a_restart(fleet):
    router, chat, _embed = fleet
    (router.key_dir / "router-key").write_text("new-router-key")
    assert router.call("/v1/models")[0] == 401
    assert router.call("/v1/models", key="new-router-key")[0] == 200
    for server in chat:
        server.api_key = "new-chat-key"
    # The replica refuses the router's old key for it: the router's fault, said as a 502, not the client's 401.
    status, _headers, body = router.call("/v1/chat/completions", CHAT, key="new-router-key")
    assert status == 502 and json.loads(body)["error"]["type"] == "BadGatewayError"
    (router.key_dir / "chat" / "api-key").write_text("new-chat-key")
    assert router.call("/v1/chat/completions", CHAT, key="new-router-key")[0] == 200


def test_an_adapter_is_routed_to_the_replica_that_lists_it(fleet):
    router, chat, _embed = fleet
    # vLLM lists an adapter of --lora-modules in /v1/models with the base model as its parent (the stand-in as
    # recorded: tests/data/real-vllm/lora/http-0.20.0-h200.json). Loaded on one replica only.
    chat[1].adapters = [("sql-lora", "/models/chat-lora/sql-lora")]
    router.router.last_refresh = -1e9  # the fixture's listing is over a second old (a listing asks at most once a second)
    status, _headers, body = router.call("/v1/models")
    listed = {m["id"]: m for m in json.loads(body)["data"]}
    assert status == 200 and listed["sql-lora"]["parent"] == "chat"
    for n in range(5):
        status, _headers, body = router.call("/v1/chat/completions", dict(CHAT, model="sql-lora"),
                                             headers={"x-session-id": f"{n}"})
        assert status == 200 and json.loads(body)["model"] == "sql-lora"
    assert not [r for r in chat[0].requests if r["method"] == "POST"]


class DropsAfterReading:
    """A replica that reads a whole request and closes the connection without
    answering (a vLLM killed mid-generation): it counts what it received."""

    def __init__(self):
        self.received = 0  # POSTs (the router's own GET /v1/models are not counted)
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _addr = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _sep, body = data.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))
                while len(body) < length:
                    body += conn.recv(65536)
                self.received += head.startswith(b"POST ")


def test_a_request_that_reached_a_replica_is_never_sent_again(fleet):
    router, chat, _embed = fleet
    dropper = DropsAfterReading()
    address = f"127.0.0.1:{dropper.port}"
    router.set_replicas({"chat": [address, f"127.0.0.1:{chat[0].port}"]})
    session = next(f"s{n}" for n in range(100)
                   if _routes.order([address, f"127.0.0.1:{chat[0].port}"], f"session:s{n}", {}, 1.25)[0] == address)
    status, _headers, body = router.call("/v1/chat/completions", CHAT, headers={"x-session-id": session})
    # The replica got it and may have run it: a 502, and the other replica never got it.
    assert status == 502 and json.loads(body)["error"]["type"] == "BadGatewayError", body
    assert dropper.received == 1 and not [r for r in chat[0].requests if r["method"] == "POST"]
    dropper.server.close()


def test_only_the_openai_paths_travel(fleet):
    router, chat, _embed = fleet
    for path in ("/v1/%2e%2e/tokenize", "/v1/../tokenize", "/v1/load_lora_adapter", "/tokenize", "/invocations"):
        status, _headers, body = router.call(path, CHAT)
        assert (status, json.loads(body)) == (404, {"detail": "Not Found"}), path
    assert not [r for s in chat for r in s.requests if r["method"] == "POST"]


def test_the_routers_own_errors_are_json(fleet):
    router, _chat, _embed = fleet
    deep = "[" * 100000 + "]" * 100000
    for data in (b"not json", deep.encode()):
        req = urllib.request.Request(f"http://127.0.0.1:{router.port}/v1/chat/completions", data=data,
                                     headers={"Authorization": "Bearer router-key"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 400 and json.loads(refused.value.read())["error"]["type"] == "BadRequestError"
    big = urllib.request.Request(f"http://127.0.0.1:{router.port}/v1/chat/completions",
                                 data=b" " * (router_cli.MAX_BODY + 1), headers={"Authorization": "Bearer router-key"})
    try:
        urllib.request.urlopen(big, timeout=60)
        raise AssertionError("a body over the limit was taken")
    except urllib.error.HTTPError as exc:
        assert exc.code == 413 and json.loads(exc.read())["error"]["code"] == 413
    except ConnectionError:
        pass  # the server may close while the client still sends; what it answered is not readable then
    # A model's key file gone: JSON, and the log says why.
    (router.key_dir / "chat" / "api-key").unlink()
    status, _headers, body = router.call("/v1/chat/completions", CHAT)
    assert status == 500 and json.loads(body)["error"]["type"] == "InternalServerError"
    assert any("api-key" in line for line in router.logs)
