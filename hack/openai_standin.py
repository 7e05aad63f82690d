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
(plugins/module_utils/serving/_model_task.py says which and why)."""

from __future__ import annotations

import json
import secrets
import ssl
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


def _request_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(8)}"


class StandIn:
    def __init__(self, model: str = "standin-model", api_key: str | None = "test-key",
                 loading_health_checks: int = 0, port: int = 0, tls_cert: tuple[str, str] | None = None,
                 reply: str = "ready", runner: str = GENERATE, max_model_len: int = 4096,
                 root: str | None = None, version: str = "0.20.0", embedding_dims: int = 8):
        self.model, self.api_key, self.reply = model, api_key, reply
        self.runner, self.max_model_len, self.root, self.version = runner, max_model_len, root, version
        self.embedding_dims = embedding_dims
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

            def do_GET(self):  # noqa: N802
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

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append({"method": "POST", "path": self.path, "body": body,
                                       "authorization": self.headers.get("Authorization")})
                if self.path.startswith("/v1") and not self._authorized():
                    return None
                route = {GENERATE: "/v1/chat/completions", POOLING: "/v1/embeddings"}[outer.runner]
                if self.path != route:
                    return self._send(404, NOT_FOUND)
                if body.get("model") != outer.model:
                    return self._send(404, {"error": {
                        "message": f"The model `{body.get('model')}` does not exist.",
                        "type": "NotFoundError", "param": "model", "code": 404}})
                if outer.runner == POOLING:
                    return self._send(200, outer.embeddings_body(body))
                if not body.get("stream"):
                    return self._send(200, outer.chat_body(body))
                self.send_response(200)
                self.send_header("content-type", "text/event-stream; charset=utf-8")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for event in outer.chat_events(body):
                    raw = f"data: {event}\n\n".encode()
                    self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.scheme = "http"
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls_cert)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- bodies, in vLLM 0.20.0's shapes -------------------------------------------------

    def models_body(self) -> dict:
        return {"object": "list", "data": [{
            "id": self.model, "object": "model", "created": self.created, "owned_by": "vllm",
            "root": self.root or self.model, "parent": None, "max_model_len": self.max_model_len,
            "permission": [{
                "id": _request_id("modelperm"), "object": "model_permission", "created": self.created,
                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                "organization": "*", "group": None, "is_blocking": False}]}]}

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
        if limit is not None and len(pieces) >= int(limit):
            return pieces[:int(limit)], "length"
        return pieces, "stop"

    def _count(self, prompt: int, generated: int) -> None:
        self.counts["prompt"] += prompt
        self.counts["generation"] += generated
        self.counts["success"] += 1

    def chat_body(self, body: dict) -> dict:
        pieces, finish = self._completion(body)
        prompt = self._prompt_tokens(body)
        self._count(prompt, len(pieces))
        return {
            "id": _request_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()),
            "model": self.model,
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
                "model": self.model}

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
    length from --max-model-len, the version from the image tag, and what
    the model is for from its files: the model path (the first argument)
    is found in the volume mounted there, a sandbox hostPath volume on this
    machine, and its config.json (and modules.json) read as vLLM reads them.
    So a key or name that differs between the deployment and the check, or
    a chat check of an embedding model, fails here as it would against vLLM."""

    def __init__(self, kubeconfig: str, pod_names: tuple[str, ...], port: int):
        super().__init__(model="", api_key=None, port=port)
        self.kubeconfig, self.pod_names = kubeconfig, pod_names
        self._api = None
        self._keys: dict[str, str | None] = {}  # pod uid -> the key it started with
        outer = self
        handler = self.server.RequestHandlerClass
        original_get, original_post = handler.do_GET, handler.do_POST

        def refresh_then(method):
            def wrapped(h):
                try:
                    outer.load_from_cluster()
                except Exception as exc:  # noqa: BLE001 - answer it, as a broken server would, rather than hang up
                    h.send_error(500, f"stand-in cannot read its pod from the cluster: {exc}"[:200])
                    return None
                return method(h)
            return wrapped

        handler.do_GET = refresh_then(original_get)
        handler.do_POST = refresh_then(original_post)

    def load_from_cluster(self) -> None:
        import base64

        from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _client as k8s

        if self._api is None:
            self._api = k8s.connect({"kubeconfig": self.kubeconfig})
        for name in self.pod_names:
            listed = k8s.request_json(self._api, "GET", "/api/v1/pods", query=[("fieldSelector", f"metadata.name={name}")],
                                      timeout=10, retries=0)
            pods = [p for p in listed.get("items", []) if not p["metadata"].get("deletionTimestamp")]
            if not pods:
                continue
            # The newest, if a pod of that name is left in another namespace.
            pod = max(pods, key=lambda p: p["metadata"]["creationTimestamp"])
            container = pod["spec"]["containers"][0]
            args = list(container.get("args") or [])
            if "--served-model-name" in args:
                self.model = args[args.index("--served-model-name") + 1]
            if "--max-model-len" in args:
                self.max_model_len = int(args[args.index("--max-model-len") + 1])
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


def main() -> int:
    import argparse
    from pathlib import Path

    # The collection's API client, as the modules use it (hack/setup-python puts the checkout there).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".cache" / "collections"))

    parser = argparse.ArgumentParser(description="OpenAI-compatible stand-in for vLLM (sandbox)")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--pod", action="append", required=True, metavar="NAME=PORT",
                        help="a pod whose spec configures the stand-in listening on PORT (kwok forwards it there)")
    args = parser.parse_args()
    servers = []
    for item in args.pod:
        name, port = item.split("=", 1)
        servers.append(ClusterBackedStandIn(args.kubeconfig, (name,), int(port)))
    for server in servers[1:]:
        threading.Thread(target=server.server.serve_forever, daemon=True).start()
    servers[0].server.serve_forever()  # until SIGTERM ends the process
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
