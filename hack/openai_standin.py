"""A small OpenAI-compatible HTTP server that stands in for vLLM in tests
(kwok pods run no containers, and no GPU is here). It answers in exactly the
shapes real vLLM 0.20.0 answered on the GPU machine (recorded in
tests/data/real-vllm/http/, compared field by field in
tests/integration/test_standin_contract.py): GET /health (no auth; 503
while "loading", for a set number of health checks so that tests race no
clock), /version, /metrics, GET /v1/models, POST /v1/chat/completions with
and without stream=true (SSE, with include_usage's last chunk), bearer auth
on /v1 paths only, 404 for an unknown model. Like vLLM it serves only what
the model is for: a generative model gets chat and no embeddings, a pooling
(embedding) model gets /v1/embeddings and no chat: the route is not there
(plugins/module_utils/serving/_model_task.py says which and why).

A streamed chat can be slow (token_delay_s between tokens: a long stream a
test can keep in flight), and with ignore_eos it runs to max_tokens, as vLLM
does. On SIGTERM it does what vLLM 0.20.0 did on the GPU machine
(tests/data/real-vllm/sigterm-0.20.0-h200.json; see Container): with
--shutdown-timeout 0 (vLLM's default) the streams in flight end at once with
finish_reason "abort" and [DONE]; with --shutdown-timeout N they run to their
end, for up to N seconds; either way the listening socket is closed, so a
new request is refused, and the process exits once the last request has
ended.

Run as a program it is either one server, started as `vllm serve` is (the
model, then vLLM's flags: --served-model-name, --port, --max-model-len,
--shutdown-timeout..., the key from VLLM_API_KEY), or, with --kubeconfig and
--pod, the sandbox's stand-in for the vLLM pods (ClusterBackedStandIn)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GENERATE, POOLING = "generate", "pooling"
# The metric families the stand-in exposes (names and types as vLLM 0.20.0's
# /metrics has them; labels model_name and engine, vllm/v1/metrics/loggers.py).
METRICS = (
    ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches."),
    ("vllm:num_requests_waiting", "gauge", "Number of requests waiting to be processed."),
    ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage."),
    ("vllm:prompt_tokens", "counter", "Number of prefill tokens processed."),
    ("vllm:generation_tokens", "counter", "Number of generation tokens processed."),
    ("vllm:request_success", "counter", "Count of successfully processed requests."),
    ("vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token in seconds."),
    ("vllm:inter_token_latency_seconds", "histogram", "Histogram of inter-token latency in seconds."),
    ("vllm:e2e_request_latency_seconds", "histogram", "Histogram of e2e request latency in seconds."),
)
NOT_FOUND = {"detail": "Not Found"}  # FastAPI's answer for a route that is not registered
# A pod label that makes the sandbox's stand-in stream that slowly for the
# pod: milliseconds between tokens (a model that generates slowly).
TOKEN_DELAY_LABEL = "sandbox.inferops.io/token-delay-ms"


def _request_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


def _log(text: str) -> None:
    print(f"{time.strftime('%m-%d %H:%M:%S')} {text}", flush=True)


class Container:
    """One vLLM server process's life, as its clients see it: running, then
    stopping after SIGTERM, then exited (or killed by SIGKILL).

    What vLLM 0.20.0 did on SIGTERM, recorded on the GPU machine
    (tests/data/real-vllm/sigterm-0.20.0-h200.json, hack/device-vllm-sigterm.py),
    and its sources from 0.18.0 (vllm/entrypoints/launcher.py serve_http,
    vllm/v1/engine/core.py _handle_shutdown):
    - with --shutdown-timeout 0 (the default) the engine aborts every request
      at once: a stream in flight gets one more chunk, finish_reason "abort"
      (the shape of a last chunk, empty content), then [DONE];
    - with --shutdown-timeout N the requests in flight run to their end, for
      up to N seconds;
    - either way the listening socket is closed at SIGTERM (uvicorn's own
      signal handler runs too, 0.18 to 0.26): a new request, /health
      included, is refused; a request on a connection left open is not
      read, and an idle connection is closed;
    - the process exits (code 0) once no request is left: vLLM took 3 s more
      to tear its engine down; the stand-in has no engine and exits at once.
    Not recorded, from the sources only: at the end of the drain the API
    server kills the engine, and what a stream still running sees then
    depends on which of two tasks is cancelled first; here it is cut
    (the connection closes with no finish_reason and no [DONE]). SIGKILL
    cuts every connection."""

    def __init__(self, shutdown_timeout: int = 0, uid: str | None = None, log=_log):
        self.shutdown_timeout, self.uid, self.log = int(shutdown_timeout), uid, log
        self.cond = threading.Condition()
        self.sigterm_at: float | None = None
        self.killed = False
        self.connections: set = set()
        self.busy: set = set()  # connections with a request being answered
        self.exited = threading.Event()
        self.on_sigterm = []  # more to do at SIGTERM (the standalone server closes its socket)

    @property
    def running(self) -> bool:
        return self.sigterm_at is None and not self.killed

    def connected(self, conn) -> None:
        with self.cond:
            self.connections.add(conn)

    def disconnected(self, conn) -> None:
        with self.cond:
            self.connections.discard(conn)
            self.busy.discard(conn)

    def begin(self, conn) -> bool:
        """A request starts on conn; False if the server no longer takes one."""
        with self.cond:
            if not self.running:
                return False
            self.busy.add(conn)
            return True

    def end(self, conn) -> None:
        with self.cond:
            self.busy.discard(conn)
            self._exit_if_done()

    def sigterm(self) -> None:
        with self.cond:
            if not self.running:
                return
            self.sigterm_at = time.monotonic()
            in_flight = len(self.busy)
            self.log(f"Shutdown initiated (timeout={self.shutdown_timeout})")
            if in_flight and self.shutdown_timeout == 0:
                self.log(f"Aborting {in_flight} requests")
            elif in_flight:
                self.log(f"Draining {in_flight} in-flight requests (timeout={self.shutdown_timeout}s)")
            for conn in self.connections - self.busy:  # idle keep-alive connections are closed
                _close(conn)
            self.cond.notify_all()
            self._exit_if_done()
        for action in self.on_sigterm:
            action()

    def kill(self) -> None:
        with self.cond:
            if self.exited.is_set():
                return
            self.killed = True
            for conn in self.connections:
                _close(conn, reset=True)
            self.cond.notify_all()
            self.log("killed (SIGKILL)")
            self.exited.set()

    def _exit_if_done(self) -> None:
        if self.sigterm_at is not None and not self.busy and not self.exited.is_set():
            self.log("Shutdown complete")
            self.exited.set()

    def stream_state(self) -> str:
        """What a stream in flight does next: go on, abort (the engine
        aborted it), or cut (the drain is over, or SIGKILL)."""
        with self.cond:
            if self.killed:
                return "cut"
            if self.sigterm_at is None:
                return "go"
            if self.shutdown_timeout == 0:
                return "abort"
            return "cut" if time.monotonic() >= self.sigterm_at + self.shutdown_timeout else "go"

    def pause(self, seconds: float) -> None:
        """Wait between two tokens; SIGTERM, SIGKILL or the drain's end wakes it."""
        end = time.monotonic() + seconds
        with self.cond:
            while not self.killed:
                now = time.monotonic()
                limit = end
                if self.sigterm_at is not None:
                    if self.shutdown_timeout == 0:
                        return
                    limit = min(end, self.sigterm_at + self.shutdown_timeout)
                if now >= limit:
                    return
                self.cond.wait(limit - now)


def _flag(args: list[str], name: str) -> str | None:
    """A flag's value in a command line, as `NAME VALUE` or `NAME=VALUE`
    (the last one wins, as with argparse)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def lora_modules(args: list[str]) -> list[tuple[str, str]]:
    """(name, path) of --lora-modules' values (name=path each, until the next flag), as vLLM parses them."""
    if "--lora-modules" not in args:
        return []
    found = []
    for value in args[args.index("--lora-modules") + 1:]:
        if value.startswith("--"):
            break
        name, _sep, path = value.partition("=")
        found.append((name, path))
    return found


def _close(conn, reset: bool = False) -> None:
    """Close a client's connection now (reset: with a TCP reset, as a killed
    process's connections end)."""
    try:
        if reset:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class StandIn:
    def __init__(self, model: str = "standin-model", api_key: str | None = "test-key",
                 loading_health_checks: int = 0, port: int = 0, tls_cert: tuple[str, str] | None = None,
                 reply: str = "ready", runner: str = GENERATE, max_model_len: int = 4096,
                 root: str | None = None, version: str = "0.20.0", embedding_dims: int = 8,
                 token_delay_s: float = 0.0, shutdown_timeout: int = 0, log=None):
        self.model, self.api_key, self.reply = model, api_key, reply
        # LoRA adapters (--lora-modules name=path): listed in /v1/models and served by their names, as vLLM
        # 0.20.0 did (tests/data/real-vllm/lora/http-0.20.0-h200.json).
        self.adapters: list[tuple[str, str]] = []
        self.runner, self.max_model_len, self.root, self.version = runner, max_model_len, root, version
        self.embedding_dims = embedding_dims
        self.token_delay_s = token_delay_s
        self.log = log or (lambda text: None)
        self.container = Container(shutdown_timeout, log=self.log)  # the process's life (SIGTERM: sigterm())
        self.loading_health_checks = loading_health_checks
        self.requests: list[dict] = []
        self.created = int(time.time())
        self.counts = {"prompt": 0, "generation": 0, "success": 0}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def version_string(self):  # vLLM's server header
                return "uvicorn"

            def log_message(self, *args):  # keep test output clean
                pass

            def setup(self):
                super().setup()
                self.container = outer.container_for(self.connection)
                self.container.connected(self.connection)

            def finish(self):
                try:
                    super().finish()
                except OSError:
                    pass
                finally:
                    self.container.disconnected(self.connection)

            def handle_one_request(self):
                if not self.container.running:  # a stopping server reads no new request
                    self.close_connection = True
                    return
                try:
                    super().handle_one_request()
                except OSError:  # the connection was closed under it (a stop, a kill)
                    self.close_connection = True

            def _answer(self, method) -> None:
                if not self.container.begin(self.connection):
                    self.close_connection = True
                    return
                try:
                    if outer.before_request(self):
                        method()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                finally:
                    self.container.end(self.connection)

            def do_GET(self):  # noqa: N802
                self._answer(self._get)

            def do_POST(self):  # noqa: N802
                self._answer(self._post)

            def _send(self, code: int, payload: dict | None = None, body: bytes | None = None,
                      ctype: str | None = "application/json") -> None:
                data = body if body is not None else json.dumps(payload, separators=(",", ":")).encode()
                self.send_response(code)
                self.send_header("content-length", str(len(data)))
                if ctype:
                    self.send_header("content-type", ctype)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if outer.api_key is None:
                    return True
                if self.headers.get("Authorization") == f"Bearer {outer.api_key}":
                    return True
                self._send(401, {"error": "Unauthorized"})
                return False

            def _get(self):
                outer.requests.append({"method": "GET", "path": self.path,
                                       "authorization": self.headers.get("Authorization")})
                if self.path == "/health":
                    if outer.loading_health_checks > 0:
                        outer.loading_health_checks -= 1
                        return self._send(503, body=b"", ctype=None)
                    return self._send(200, body=b"", ctype=None)
                if self.path == "/version":
                    return self._send(200, {"version": outer.version})
                if self.path == "/metrics":
                    return self._send(200, body=outer.metrics_text().encode(),
                                      ctype="text/plain; version=1.0.0; charset=utf-8")
                if self.path.startswith("/v1") and not self._authorized():
                    return None
                if self.path == "/v1/models":
                    return self._send(200, outer.models_body())
                return self._send(404, NOT_FOUND)

            def _post(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append({"method": "POST", "path": self.path, "body": body,
                                       "authorization": self.headers.get("Authorization")})
                if self.path.startswith("/v1") and not self._authorized():
                    return None
                route = {GENERATE: "/v1/chat/completions", POOLING: "/v1/embeddings"}[outer.runner]
                if self.path != route:
                    return self._send(404, NOT_FOUND)
                if body.get("model") != outer.model and body.get("model") not in dict(outer.adapters):
                    return self._send(404, {"error": {
                        "message": f"The model `{body.get('model')}` does not exist.",
                        "type": "NotFoundError", "param": "model", "code": 404}})
                if outer.runner == POOLING:
                    return self._send(200, outer.embeddings_body(body))
                if not body.get("stream"):
                    return self._send(200, outer.chat_body(body))
                return self._stream(body)

            def _stream(self, body: dict) -> None:
                """SSE in HTTP chunks, a token at a time (token_delay_s
                apart), as the container's state allows (Container)."""
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()

                def write(event: str) -> None:
                    raw = f"data: {event}\n\n".encode()
                    self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                    self.wfile.flush()

                events = outer.chat_events(body)
                tokens = len(events) - 2 - (1 if (body.get("stream_options") or {}).get("include_usage") else 0)
                for i, event in enumerate(events):
                    if 1 <= i <= tokens:
                        if outer.token_delay_s:
                            self.container.pause(outer.token_delay_s)
                        state = self.container.stream_state()
                        if state == "cut":
                            self.close_connection = True
                            _close(self.connection)
                            return
                        if state == "abort":
                            for aborted in outer.abort_events(events[0], body, i - 1):
                                write(aborted)
                            break
                    write(event)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.scheme = "http"
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls_cert)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.container.on_sigterm.append(self.close_socket)

    # --- the process's life ---------------------------------------------------------------

    def container_for(self, conn) -> Container:  # pylint: disable=unused-argument
        """The server process a new connection reaches: this one's."""
        return self.container

    def before_request(self, handler) -> bool:  # pylint: disable=unused-argument
        """Anything to do before answering (True: answer)."""
        return True

    def sigterm(self) -> None:
        """What SIGTERM does to vLLM (Container): the socket closes, the
        requests in flight are aborted or drained, and exited is set when
        the last has ended."""
        self.container.sigterm()

    def close_socket(self) -> None:
        """Stop listening: a new connection is refused."""
        def close() -> None:
            if self.thread.is_alive():
                self.server.shutdown()
            self.server.server_close()
        threading.Thread(target=close, daemon=True).start()

    # --- bodies, in vLLM 0.20.0's shapes -------------------------------------------------

    def models_body(self) -> dict:
        def card(name: str, root: str, parent, max_model_len) -> dict:
            return {"id": name, "object": "model", "created": self.created, "owned_by": "vllm", "root": root,
                    "parent": parent, "max_model_len": max_model_len,
                    "permission": [{
                        "id": _request_id("modelperm"), "object": "model_permission", "created": self.created,
                        "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                        "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                        "organization": "*", "group": None, "is_blocking": False}]}
        # An adapter: its path as root, the base model's served name as parent, no max_model_len.
        return {"object": "list", "data": [card(self.model, self.root or self.model, None, self.max_model_len)]
                + [card(name, path, self.model, None) for name, path in self.adapters]}

    @staticmethod
    def _prompt_tokens(body: dict) -> int:
        # The chat template's wrapping (ChatML: 5 tokens a message, 3 for the reply's start) plus words.
        messages = body.get("messages") or []
        return 3 + sum(5 + len(str(m.get("content", "")).split()) for m in messages)

    def _completion(self, body: dict) -> tuple[list[str], str]:
        """The reply's pieces (a word each) and why it ended: "length" when
        max_tokens cut it, as vLLM reports."""
        words = self.reply.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        if limit is not None and body.get("ignore_eos"):
            # No end of sequence: generate until max_tokens, as vLLM does (the reply again and again).
            pieces = [" " + words[i % len(words)] if i else words[0] for i in range(int(limit))]
        if limit is not None and len(pieces) >= int(limit):
            return pieces[:int(limit)], "length"
        return pieces, "stop"

    def _count(self, prompt: int, generated: int) -> None:
        self.counts["prompt"] += prompt
        self.counts["generation"] += generated
        self.counts["success"] += 1

    def answering(self, body: dict) -> str:
        """The name an answer carries: the adapter's when one was asked for (vLLM's model_name(lora_request))."""
        return body.get("model") if body.get("model") in dict(self.adapters) else self.model

    def chat_body(self, body: dict) -> dict:
        pieces, finish = self._completion(body)
        prompt = self._prompt_tokens(body)
        self._count(prompt, len(pieces))
        return {
            "id": _request_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": self.answering(body),
            "choices": [{"index": 0, "message": {
                "role": "assistant", "content": "".join(pieces), "refusal": None, "annotations": None,
                "audio": None, "function_call": None, "tool_calls": [], "reasoning": None},
                "logprobs": None, "finish_reason": finish, "stop_reason": None, "token_ids": None}],
            "service_tier": None, "system_fingerprint": None,
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt + len(pieces),
                      "completion_tokens": len(pieces), "prompt_tokens_details": None},
            "prompt_logprobs": None, "prompt_token_ids": None, "kv_transfer_params": None,
        }

    def chat_events(self, body: dict) -> list[str]:
        """The SSE data lines of a streamed chat: the role first, a chunk a
        token, the finish reason on the last, usage alone after it when
        stream_options.include_usage, then [DONE]."""
        pieces, finish = self._completion(body)
        prompt = self._prompt_tokens(body)
        self._count(prompt, len(pieces))
        head = {"id": _request_id("chatcmpl"), "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.answering(body)}

        def dump(obj: dict) -> str:
            return json.dumps(obj, separators=(",", ":"))

        events = [dump({**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "logprobs": None, "finish_reason": None}],
                        "prompt_token_ids": None})]
        for i, piece in enumerate(pieces):
            choice = {"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": None,
                      "token_ids": None}
            if i == len(pieces) - 1:
                choice = {"index": 0, "delta": {"content": piece}, "logprobs": None, "finish_reason": finish,
                          "stop_reason": None, "token_ids": None}
            events.append(dump({**head, "choices": [choice]}))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(dump({**head, "choices": [], "usage": {
                "prompt_tokens": prompt, "total_tokens": prompt + len(pieces), "completion_tokens": len(pieces)}}))
        events.append("[DONE]")
        return events

    @staticmethod
    def abort_events(first: str, body: dict, sent: int) -> list[str]:
        """What a stream in flight gets when the engine aborts it (vLLM
        0.20.0, vllm/entrypoints/openai/chat_completion/serving.py: the last
        chunk of a finished output, here with no new text): finish_reason
        "abort", usage when asked (the tokens sent so far), then [DONE]."""
        head = {k: v for k, v in json.loads(first).items() if k != "choices" and k != "prompt_token_ids"}

        def dump(obj: dict) -> str:
            return json.dumps(obj, separators=(",", ":"))

        events = [dump({**head, "choices": [{"index": 0, "delta": {"content": ""}, "logprobs": None,
                                             "finish_reason": "abort", "stop_reason": None, "token_ids": None}]})]
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt = StandIn._prompt_tokens(body)
            events.append(dump({**head, "choices": [], "usage": {
                "prompt_tokens": prompt, "total_tokens": prompt + sent, "completion_tokens": sent}}))
        events.append("[DONE]")
        return events

    def embeddings_body(self, body: dict) -> dict:
        """vLLM 0.20.0's EmbeddingResponse (vllm/entrypoints/pooling/embed/protocol.py), as
        recorded on the GPU machine (tests/data/real-vllm/http/embed_embeddings.json)."""
        inputs = body.get("input")
        inputs = inputs if isinstance(inputs, list) else [inputs]
        prompt = sum(len(str(text).split()) + 2 for text in inputs)
        self._count(prompt, 0)
        return {"id": _request_id("embd"), "object": "list", "created": int(time.time()), "model": self.model,
                "data": [{"index": i, "object": "embedding", "embedding": [0.0] * self.embedding_dims}
                         for i in range(len(inputs))],
                "usage": {"prompt_tokens": prompt, "total_tokens": prompt, "completion_tokens": 0,
                          "prompt_tokens_details": None}}

    def metrics_text(self) -> str:
        labels = f'engine="0",model_name="{self.model}"'
        values = {"vllm:prompt_tokens": self.counts["prompt"], "vllm:generation_tokens": self.counts["generation"],
                  "vllm:request_success": self.counts["success"]}
        lines = []
        for name, kind, doc in METRICS:
            lines += [f"# HELP {name}{'_total' if kind == 'counter' else ''} {doc}",
                      f"# TYPE {name}{'_total' if kind == 'counter' else ''} {kind}"]
            if kind == "counter":
                lines.append(f"{name}_total{{{labels}}} {float(values.get(name, 0))}")
            elif kind == "gauge":
                lines.append(f"{name}{{{labels}}} 0.0")
            else:
                lines += [f'{name}_bucket{{{labels},le="+Inf"}} 0.0', f"{name}_count{{{labels}}} 0.0",
                          f"{name}_sum{{{labels}}} 0.0"]
        return "\n".join(lines) + "\n"

    def __enter__(self) -> "StandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.container.kill()  # streams still running end now
        self.server.shutdown()
        self.server.server_close()


class ClusterBackedStandIn(StandIn):
    """The sandbox's stand-in for the vLLM pods of the collection's
    vllm_serve role: kwok forwards those pods' ports here, and on each request
    this reads the pod's spec through the API, as vLLM would be started from
    it: the served name from --served-model-name, the key from the Secret
    that VLLM_API_KEY refers to, read once for each pod (by its uid) and
    kept while that pod lives, as vLLM does (the kubelet sets the container's
    environment when it starts it and never updates it, and vLLM reads
    VLLM_API_KEY once, when it builds the app: `args.api_key or
    [envs.VLLM_API_KEY]` in init_entrypoints_middleware, vllm/entrypoints/
    serve/middleware/register.py at commit 41a041c8; docs/api-key-rotation.md),
    so a rotated Secret reaches a pod only when it is replaced; the context
    length from --max-model-len, the drain from --shutdown-timeout, the
    version from the image tag, and what
    the model is for from its files: the model path (the first argument)
    is found in the volume mounted there, a sandbox hostPath volume on this
    machine, and its config.json (and modules.json) read as vLLM reads them.
    So a key or name that differs between the deployment and the check, or
    a chat check of an embedding model, fails here as it would against vLLM.

    Each pod of the name is a server process of its own (a Container, by
    the pod's uid), stopped as the kubelet stops it when the pod is deleted
    (Kubelet): a new connection goes to the newest pod of the name that is
    not being deleted, else to one being deleted whose process has not had
    SIGTERM yet (its preStop hook is running); once every pod of the name
    has had SIGTERM, a new connection is refused (closed at once with a
    reset: the port stays open here, since it stands for the pod name in
    every namespace). Before any pod of the name exists it answers as the
    last pod it read said.

    Each pod is also served on its own IP (PodListener, opened and closed by
    the Kubelet): there a connection reaches that very pod, as a connection
    to a pod's IP does, whatever other pod has its name."""

    def __init__(self, kubeconfig: str, pod_names: tuple[str, ...], port: int, log=None):
        super().__init__(model="", api_key=None, port=port, log=log)
        self.kubeconfig, self.pod_names = kubeconfig, pod_names
        self._api = None
        self._keys: dict[str, str | None] = {}  # pod uid -> the key it started with
        self.pods: dict[str, dict] = {}  # uid -> pod of this name (any namespace), as the Kubelet's watch has it
        self.containers: dict[str, Container] = {}  # uid -> its server process
        self.bound: dict = {}  # a new connection -> the uid of the pod it reaches
        self.lock = threading.Lock()
        self.server.verify_request = self.admit_connection

    # --- which pod a connection reaches ----------------------------------------------------

    def container_of(self, pod: dict) -> Container:
        """The server process of this pod (made when first needed)."""
        uid = pod["metadata"]["uid"]
        with self.lock:
            container = self.containers.get(uid)
            if container is None:
                drain = int(_flag(pod["spec"]["containers"][0].get("args") or [], "--shutdown-timeout") or 0)
                ref = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
                container = self.containers[uid] = Container(drain, uid, log=lambda text: self.log(f"{ref}: {text}"))
            return container

    def admit(self) -> str | None | bool:
        """The uid of the pod a new connection reaches; None (no pod of the
        name: answer as the last one read said); False: refused."""
        pods = list(self.pods.values())
        if not pods:
            return None

        def newest(candidates: list[dict]) -> str:
            return max(candidates, key=lambda p: p["metadata"]["creationTimestamp"])["metadata"]["uid"]

        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if live:
            return newest(live)
        with self.lock:
            stopping = [p for p in pods if (self.containers.get(p["metadata"]["uid"]) is None
                                            or self.containers[p["metadata"]["uid"]].running)]
        return newest(stopping) if stopping else False

    def bind(self, request, uid: str) -> bool:
        """A connection to the pod's own IP: it reaches the pod of that uid."""
        self.bound[request] = uid
        return True

    def admit_connection(self, request, client_address) -> bool:  # pylint: disable=unused-argument
        uid = self.admit()
        if uid is False:
            _close(request, reset=True)
            return False
        if uid is not None:
            self.bound[request] = uid
        return True

    def container_for(self, conn) -> Container:
        uid = self.bound.pop(conn, None)
        pod = self.pods.get(uid) if uid else None
        return self.container_of(pod) if pod else self.container

    def before_request(self, handler) -> bool:
        try:
            self.load_from_cluster(handler.container.uid)
        except Exception as exc:  # noqa: BLE001 - answer it, as a broken server would, rather than hang up
            handler.send_error(500, f"stand-in cannot read its pod from the cluster: {exc}"[:200])
            return False
        return True

    def load_from_cluster(self, uid: str | None = None) -> None:
        import base64

        from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _client as k8s

        if self._api is None:
            self._api = k8s.connect({"kubeconfig": self.kubeconfig})
        for name in self.pod_names:
            listed = k8s.request_json(self._api, "GET", "/api/v1/pods", query=[("fieldSelector", f"metadata.name={name}")],
                                      timeout=10, retries=0)
            items = listed.get("items", [])
            # The connection's own pod (being deleted or not); else the newest that is not being deleted,
            # if a pod of that name is left in another namespace.
            pods = [p for p in items if p["metadata"]["uid"] == uid] \
                or [p for p in items if not p["metadata"].get("deletionTimestamp")]
            if not pods:
                continue
            pod = max(pods, key=lambda p: p["metadata"]["creationTimestamp"])
            container = pod["spec"]["containers"][0]
            args = list(container.get("args") or [])
            if "--served-model-name" in args:
                self.model = args[args.index("--served-model-name") + 1]
            if "--max-model-len" in args:
                self.max_model_len = int(args[args.index("--max-model-len") + 1])
            self.adapters = lora_modules(args)
            delay_ms = (pod["metadata"].get("labels") or {}).get(TOKEN_DELAY_LABEL)
            self.token_delay_s = int(delay_ms) / 1000 if delay_ms and delay_ms.isdigit() else 0.0
            tag = container.get("image", "").rpartition(":")[2]
            if tag[:1] == "v" and tag[1:2].isdigit():
                self.version = tag[1:].split("-")[0]
            if args and not args[0].startswith("-"):
                self.root = args[0]
                self.runner = self.runner_of(pod, container, args)
            uid = pod["metadata"]["uid"]
            if uid not in self._keys:
                key = None
                for env in container.get("env") or []:
                    ref = (env.get("valueFrom") or {}).get("secretKeyRef") if env["name"] == "VLLM_API_KEY" else None
                    if ref:
                        ns = pod["metadata"]["namespace"]
                        secret = k8s.request_json(self._api, "GET", f"/api/v1/namespaces/{ns}/secrets/{ref['name']}",
                                                  timeout=10, retries=0)
                        key = base64.b64decode(secret["data"][ref["key"]]).decode()
                self._keys = {uid: key}  # only this pod's: an earlier pod of the name is gone
            self.api_key = self._keys[uid]
            return

    def runner_of(self, pod: dict, container: dict, args: list[str]) -> str:
        """generate or pooling, from the model's files behind the pod's
        volume, by vLLM's rule (_model_task); generate if they cannot be read
        (vLLM's own fallback)."""
        from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _client as k8s
        from ansible_collections.inferops.vllm.plugins.module_utils.serving import _model_task as task

        model_dir = self.model_dir_on_host(pod, container, args[0], k8s)
        runner = task.runner_from_args(args)
        if model_dir is None:
            return task.runner_type({}, runner=runner)
        config, modules = model_dir / "config.json", model_dir / "modules.json"
        try:
            parsed = json.loads(config.read_text())
        except (OSError, ValueError):
            parsed = {}
        if parsed.get("hidden_size"):
            self.embedding_dims = int(parsed["hidden_size"])
        return task.runner_type(parsed, task.has_pooling_modules(modules.read_text() if modules.is_file() else None),
                                runner)

    def model_dir_on_host(self, pod: dict, container: dict, model_path: str, k8s):
        from pathlib import Path

        ns = pod["metadata"]["namespace"]
        volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            root = mount["mountPath"].rstrip("/")
            if model_path != root and not model_path.startswith(root + "/"):
                continue
            claim = (volumes.get(mount["name"]) or {}).get("persistentVolumeClaim")
            if not claim:
                continue
            pvc = k8s.request_json(self._api, "GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/"
                                   f"{claim['claimName']}", timeout=10, retries=0)
            volume = pvc.get("spec", {}).get("volumeName")
            if not volume:
                return None
            pv = k8s.request_json(self._api, "GET", f"/api/v1/persistentvolumes/{volume}", timeout=10, retries=0)
            host = (pv.get("spec", {}).get("hostPath") or {}).get("path")
            if not host:
                return None
            inside = Path(host) / (mount.get("subPath") or "") / model_path[len(root):].lstrip("/")
            return inside
        return None


class PodListener:
    """A pod's own address, (pod IP, container port): the same handler as
    the pod name's port, every connection bound to this pod (its uid), so
    that a pod's status.podIP (kwok's, of the sandbox's pod_cidr) answers as
    on a cluster's pod network, where that network is local to this machine
    (docs/sandbox.md, Pod IPs)."""

    def __init__(self, server: ClusterBackedStandIn, uid: str, ip: str, port: int):
        self.address = (ip, port)
        self.httpd = ThreadingHTTPServer(self.address, server.server.RequestHandlerClass)
        self.httpd.daemon_threads = True
        self.httpd.verify_request = lambda request, _client: server.bind(request, uid)
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop listening now: a new connection is refused, as at a gone pod's IP."""
        with self.lock:
            if self.closed:
                return
            self.closed = True
            # The serving loop ends first: a socket closed under its poll would spin it.
            self.httpd.shutdown()
            self.httpd.server_close()


class Kubelet:
    """The kubelet's part for the stand-in's pods: kwok leaves their
    deletion to this (hack/sandboxctl/kwok.py), which stops each pod as a
    kubelet stops its container (hack/sandboxctl/termination.py): a pod
    being deleted whose container runs has its preStop hook run (exec: its
    command, run on this machine; httpGet: asked of the pod's stand-in
    port; sleep), then SIGTERM (Container.sigterm: the drain its
    --shutdown-timeout says), SIGKILL at the end of the grace period,
    counted from the start of preStop; once its process has exited the pod
    is deleted for good (grace 0), as the kubelet finishes a deletion. A
    pod gone from the API (deleted with grace 0) has its process killed.
    Waiting is watching: one informer on the pods bound to a node.

    It also gives each pod its network: once the pod has an IP (kwok's),
    a PodListener on that IP and each port of its first container; closed
    at SIGTERM (vLLM closes its socket then), or when the pod is deleted or
    gone, so that a new connection to the IP is refused."""

    def __init__(self, kubeconfig: str, servers: dict[str, ClusterBackedStandIn], log=_log):
        import queue

        from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect

        self.api = connect({"kubeconfig": kubeconfig})
        self.servers, self.log = servers, log
        self.changes: queue.Queue = queue.Queue()
        self.stop_event = threading.Event()
        self.stopping: set[str] = set()  # uids whose deletion is under way here
        self.informer = None
        self.listeners: dict[str, list[PodListener]] = {}  # pod uid -> its listeners
        self.stopped: set[str] = set()  # uids whose listeners were closed for good (SIGTERM, deletion)
        self.unbindable: set = set()  # addresses (or "not local") already reported unbindable
        self.listeners_lock = threading.Lock()

    def start(self) -> None:
        from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import Informer

        self.informer = Informer(self.api, "/api/v1/pods", [("fieldSelector", "spec.nodeName!=")], self.changes,
                                 self.stop_event, key="uid")
        self.informer.start()
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self) -> None:
        while not self.stop_event.is_set():
            self.changes.get()
            while not self.changes.empty():
                self.changes.get_nowait()
            if self.informer.error:
                self.log(f"kubelet: the watch of pods failed: {self.informer.error}; pods are no longer stopped here")
                return
            if not self.informer.synced.is_set():
                continue
            self.reconcile(self.informer.snapshot())

    def reconcile(self, pods: list[dict]) -> None:
        by_name: dict[str, dict[str, dict]] = {name: {} for name in self.servers}
        for pod in pods:
            if pod["metadata"]["name"] in by_name:
                by_name[pod["metadata"]["name"]][pod["metadata"]["uid"]] = pod
        for name, server in self.servers.items():
            gone = set(server.pods) - set(by_name[name])
            server.pods = by_name[name]
            for uid in gone:
                self.close_listeners(uid)
                with self.listeners_lock:
                    self.stopped.discard(uid)
                with server.lock:
                    container = server.containers.pop(uid, None)
                if container is not None and not container.exited.is_set():
                    container.kill()
                self.stopping.discard(uid)
            for uid, pod in by_name[name].items():
                self.open_listeners(server, pod)
                if pod["metadata"].get("deletionTimestamp") and uid not in self.stopping:
                    self.stopping.add(uid)
                    threading.Thread(target=self.stop, args=(server, pod), daemon=True).start()

    def open_listeners(self, server: ClusterBackedStandIn, pod: dict) -> None:
        """The pod's IP, listened on at each port of its first container
        (vllm_serve's: 8000, named http), once kwok has given it one."""
        import errno

        uid, ip = pod["metadata"]["uid"], (pod.get("status") or {}).get("podIP")
        with self.listeners_lock:
            if not ip or uid in self.listeners or uid in self.stopped:
                return
        with server.lock:
            container = server.containers.get(uid)
        if container is not None and not container.running:
            return
        ports = [p["containerPort"] for p in pod["spec"]["containers"][0].get("ports") or []
                 if (p.get("protocol") or "TCP") == "TCP"]
        opened, retry = [], False
        for port in ports:
            try:
                opened.append(PodListener(server, uid, ip, port))
            except OSError as exc:
                # Another pod's listener on a reused IP is still closing: tried again shortly.
                retry = retry or exc.errno == errno.EADDRINUSE
                # Pod IPs that are not this machine's are said once, not for every pod.
                said = "not local" if exc.errno == errno.EADDRNOTAVAIL else (ip, port)
                if said not in self.unbindable:
                    self.unbindable.add(said)
                    self.log(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}: cannot listen on "
                             f"{ip}:{port}: {exc.strerror}")
        if retry:
            for listener in opened:
                listener.close()
            threading.Timer(1.0, self.changes.put, args=(None,)).start()
            return
        with self.listeners_lock:
            late = uid in self.stopped  # stopped while these were opened
            if not late:
                self.listeners[uid] = opened
        if late:
            for listener in opened:
                listener.close()
            return
        self.unbindable -= {(ip, p) for p in ports}
        if opened:
            self.log(f"{pod['metadata']['namespace']}/{pod['metadata']['name']}: listening on "
                     + ", ".join(f"{ip}:{p}" for p in ports))

    def close_listeners(self, uid: str) -> None:
        """The pod's IP no longer answers (closed for good: its SIGTERM, its deletion)."""
        with self.listeners_lock:
            listeners = self.listeners.pop(uid, [])
            self.stopped.add(uid)
        for listener in listeners:
            listener.close()

    def signal(self, uid: str, container: Container, sig: int) -> None:
        if sig == signal.SIGTERM:
            self.close_listeners(uid)  # vLLM closes its listening socket at SIGTERM
            container.sigterm()
        else:
            container.kill()

    def stop(self, server: ClusterBackedStandIn, pod: dict) -> None:
        from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError
        from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import request_json
        from sandboxctl import termination

        meta, spec = pod["metadata"], pod["spec"]
        ref = f"{meta['namespace']}/{meta['name']}"
        main = spec["containers"][0]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        running = any(cs.get("name") == main["name"] and "running" in (cs.get("state") or {}) for cs in statuses)
        if running:
            container = server.container_of(pod)
            hooks: list = []
            try:
                outcome = termination.stop_container(
                    main, termination.grace_period(pod), lambda handler, cancel: self.run_hook(server, handler, cancel, hooks),
                    lambda sig: self.signal(meta["uid"], container, sig), container.exited.wait,
                    log=lambda text: self.log(f"{ref}: {text}"))
                self.log(f"{ref}: stopped (preStop {outcome['prestop_s']}s, then SIGTERM with {outcome['stop_grace_s']}s "
                         f"left of the grace period, drain {container.shutdown_timeout}s"
                         + ("; SIGKILL)" if outcome["killed"] else ")"))
            except Exception as exc:  # noqa: BLE001 - the pod must go all the same
                self.log(f"{ref}: stopping failed ({exc}): killed")
                container.kill()
            finally:
                for hook in hooks:  # a hook still running goes with its container
                    try:
                        os.killpg(hook.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
        self.close_listeners(meta["uid"])  # not running, or stopped: its IP is closed before the pod goes
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}}
        try:
            request_json(self.api, "DELETE", f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}", body=body,
                         action=f"deleting pod {ref}")
        except ClusterError as exc:
            if exc.details.get("status") not in (404, 409):
                self.log(f"{ref}: not deleted: {exc}")

    def run_hook(self, server: ClusterBackedStandIn, handler: dict, cancel: threading.Event, hooks: list) -> None:
        import subprocess
        import tempfile
        import urllib.request

        from sandboxctl import termination

        def run_exec(command: list[str]) -> None:
            argv = list(command)
            if argv and argv[0].rpartition("/")[2] in ("python", "python3"):
                argv[0] = sys.executable
            proc = subprocess.Popen(argv, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, cwd=tempfile.gettempdir(),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                    start_new_session=True)
            hooks.append(proc)
            code = proc.wait()
            if code != 0:
                raise RuntimeError(f"exec {argv[0]!r}: exit code {code}")

        def http_get(get: dict) -> None:
            # The pod's port is this stand-in's port for the pod's name.
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{get.get('path') or '/'}", timeout=30):
                pass

        termination.run_handler(handler, run_exec, http_get, cancel)


def serve_one(argv: list[str]) -> int:
    """One server, started as `vllm serve` is: the model, then vLLM's flags
    (those the stand-in needs are read, the others accepted), the key from
    VLLM_API_KEY; SIGTERM stops it as vLLM stops (Container)."""
    import argparse

    parser = argparse.ArgumentParser(description="OpenAI-compatible stand-in for vLLM: one server, as `vllm serve`")
    parser.add_argument("model")
    parser.add_argument("--served-model-name")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--shutdown-timeout", type=int, default=0)
    parser.add_argument("--api-key")
    parser.add_argument("--runner", default=GENERATE)
    parser.add_argument("--lora-modules", nargs="*", default=[])
    parser.add_argument("--token-delay-s", type=float, default=0.0,
                        help="the stand-in's own: seconds between two tokens of a stream")
    parser.add_argument("--standin-version", default="0.20.0", help="the stand-in's own: the version it says it is")
    args, _others = parser.parse_known_args(argv)
    server = StandIn(model=args.served_model_name or args.model, api_key=args.api_key or os.environ.get("VLLM_API_KEY"),
                     port=args.port, runner=GENERATE if args.runner in ("auto", "generate") else POOLING,
                     max_model_len=args.max_model_len, root=args.model, version=args.standin_version,
                     token_delay_s=args.token_delay_s, shutdown_timeout=args.shutdown_timeout, log=_log)
    server.adapters = lora_modules(["--lora-modules", *args.lora_modules])
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: server.sigterm())
    server.thread.start()
    _log(f"stand-in for vLLM {args.standin_version} serving {server.model!r} on port {server.port} "
         f"(--shutdown-timeout {args.shutdown_timeout})")
    while not server.container.exited.wait(3600):
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    argv = sys.argv[1:] if argv is None else argv
    # The collection's API client, as the modules use it (hack/setup-python puts the checkout there),
    # and the sandbox's kubelet parts (hack/sandboxctl).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".cache" / "collections"))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if not any(a == "--kubeconfig" or a.startswith("--kubeconfig=") for a in argv):
        return serve_one(argv)

    parser = argparse.ArgumentParser(description="OpenAI-compatible stand-in for vLLM (sandbox)")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--pod", action="append", required=True, metavar="NAME=PORT",
                        help="a pod whose spec configures the stand-in listening on PORT (kwok forwards it there)")
    args = parser.parse_args(argv)
    servers = {}
    for item in args.pod:
        name, port = item.split("=", 1)
        servers[name] = ClusterBackedStandIn(args.kubeconfig, (name,), int(port), log=_log)
    Kubelet(args.kubeconfig, servers).start()
    for server in list(servers.values())[1:]:
        threading.Thread(target=server.server.serve_forever, daemon=True).start()
    list(servers.values())[0].server.serve_forever()  # until SIGTERM ends the process
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
