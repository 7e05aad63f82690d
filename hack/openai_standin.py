"""A small OpenAI-compatible HTTP server that stands in for vLLM in tests
(kwok pods run no containers, and no GPU is here). It follows vLLM's API
where the collection relies on it: GET /health (no auth; 503 while
"loading", for a set number of health checks so that tests race no clock),
GET /v1/models, POST /v1/chat/completions with and without stream=true,
bearer auth on /v1 paths only, 404 for an unknown model."""

from __future__ import annotations

import json
import ssl
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandIn:
    def __init__(self, model: str = "standin-model", api_key: str | None = "test-key",
                 loading_health_checks: int = 0, port: int = 0, tls_cert: tuple[str, str] | None = None,
                 reply: str = "ready"):
        self.model, self.api_key, self.reply = model, api_key, reply
        self.loading_health_checks = loading_health_checks
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code: int, payload: dict | None = None, body: bytes | None = None,
                      ctype: str = "application/json") -> None:
                data = body if body is not None else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
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
                        return self._send(503, body=b"", ctype="text/plain")
                    return self._send(200, body=b"", ctype="text/plain")
                if self.path == "/v1/models":
                    if not self._authorized():
                        return None
                    return self._send(200, {"object": "list", "data": [
                        {"id": outer.model, "object": "model", "owned_by": "vllm", "max_model_len": 4096}]})
                return self._send(404, {"detail": "Not Found"})

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.requests.append({"method": "POST", "path": self.path, "body": body,
                                       "authorization": self.headers.get("Authorization")})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"detail": "Not Found"})
                if not self._authorized():
                    return None
                if body.get("model") != outer.model:
                    return self._send(404, {"object": "error", "type": "NotFoundError", "code": 404,
                                            "message": f"The model `{body.get('model')}` does not exist."})
                words = outer.reply.split(" ")
                if not body.get("stream"):
                    return self._send(200, {
                        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "model": outer.model,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": outer.reply},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 12, "completion_tokens": len(words), "total_tokens": 12 + len(words)},
                    })
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def chunk(data: str) -> None:
                    raw = f"data: {data}\n\n".encode()
                    self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                    self.wfile.flush()

                for i, word in enumerate(words):
                    chunk(json.dumps({"object": "chat.completion.chunk", "model": outer.model, "choices": [
                        {"index": 0, "delta": {"content": word if i == 0 else " " + word}, "finish_reason": None}]}))
                chunk("[DONE]")
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
    that VLLM_API_KEY refers to (the kubelet would inject it). So a key or
    name that differs between the deployment and the check fails here as it
    would against vLLM."""

    def __init__(self, kubeconfig: str, pod_names: tuple[str, ...], port: int):
        super().__init__(model="", api_key=None, port=port)
        self.kubeconfig, self.pod_names = kubeconfig, pod_names
        self._api = None
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
            for env in container.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef") if env["name"] == "VLLM_API_KEY" else None
                if ref:
                    ns = pod["metadata"]["namespace"]
                    secret = k8s.request_json(self._api, "GET", f"/api/v1/namespaces/{ns}/secrets/{ref['name']}",
                                              timeout=10, retries=0)
                    self.api_key = base64.b64decode(secret["data"][ref["key"]]).decode()
            return


def main() -> int:
    import argparse
    from pathlib import Path

    # The collection's API client, as the modules use it (hack/setup-python puts the checkout there).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".cache" / "collections"))

    parser = argparse.ArgumentParser(description="OpenAI-compatible stand-in for vLLM (sandbox)")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pod", action="append", required=True, help="pod names whose spec configures it")
    args = parser.parse_args()
    server = ClusterBackedStandIn(args.kubeconfig, tuple(args.pod), args.port)
    server.server.serve_forever()  # until SIGTERM ends the process
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
