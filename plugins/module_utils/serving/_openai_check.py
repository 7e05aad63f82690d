# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Check an OpenAI-compatible server (vLLM's API) the way a user would:
/health, /v1/models, one chat completion and optionally a streamed one.
Standard library only, so it runs on any target host."""

from __future__ import annotations

import errno
import json
import socket
import ssl
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.inferops.vllm.plugins.module_utils._errors import EndpointError, ParameterError


class Transport:
    """Sends one HTTP request; returns (status, headers, body-iterator, ttfb).
    The default goes straight to a URL; tests and the Kubernetes tunnel can
    give another base URL."""

    def __init__(self, base_url: str, validate_certs: bool = True, ca_cert: str | None = None,
                 request_timeout: float = 30.0):
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ParameterError(f"url: {base_url!r} is not an http(s) URL; give e.g. http://vllm.example:8000")
        if request_timeout <= 0:
            raise ParameterError(f"http_timeout: must be more than 0 seconds, got {request_timeout:g}")
        self.base_url = base_url.rstrip("/")
        self.request_timeout = request_timeout
        self.validate_certs = validate_certs
        self.ca_cert = ca_cert

    def open(self, method: str, path: str, headers: dict, body: bytes | None):
        return open_url(self.base_url + path, data=body, method=method, headers=headers, timeout=self.request_timeout,
                        validate_certs=self.validate_certs, ca_path=self.ca_cert, follow_redirects="none")


def classify_connection_error(url: str, exc: BaseException) -> str:
    """A message that says which of the usual failures this is."""
    reason = getattr(exc, "reason", exc)
    if isinstance(exc, SSLValidationError):
        return (f"TLS verification of {url} failed: {exc}; give the CA that signed the server's certificate as "
                "server_ca_cert (or server_validate_certs: false for a test)")
    if isinstance(reason, ssl.SSLCertVerificationError) or isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS verification of {url} failed: {getattr(reason, 'verify_message', reason)}; "
                "give the CA that signed the server's certificate as server_ca_cert (or server_validate_certs: false for a test)")
    if isinstance(reason, ssl.SSLError):
        return f"TLS handshake with {url} failed: {reason}; is the server speaking https on this port?"
    if isinstance(reason, ConnectionRefusedError) or getattr(reason, "errno", None) == errno.ECONNREFUSED:
        return f"connection to {url} refused: nothing listens there (is the server up, and is the port right?)"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host of {url}: {reason}"
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"no answer from {url} within the request timeout"
    return f"cannot reach {url}: {reason}"


ROUTE_BY_API = {"chat": "/v1/chat/completions", "embeddings": "/v1/embeddings"}


class EndpointChecker:
    def __init__(self, transport: Transport, model: str, api_key: str | None = None,
                 prompt: str = "Reply with the single word: ready", max_tokens: int = 16,
                 startup_timeout: float = 300.0, clock=time.monotonic, waiter=None,
                 key_source: str = "the given server_api_key", cluster_token_given: bool = False):
        if not model:
            raise ParameterError("model: the served model name to expect is required")
        if max_tokens < 1:
            raise ParameterError(f"max_tokens: must be at least 1, got {max_tokens}")
        if startup_timeout < 0:
            raise ParameterError(f"startup_timeout: must be 0 or more seconds, got {startup_timeout:g}")
        self.t = transport
        self.model, self.api_key, self.prompt, self.max_tokens = model, api_key, prompt, max_tokens
        self.startup_timeout = startup_timeout
        # Where the key came from, for a 401's message; and whether the
        # cluster's own token (the module's api_key) was given, which a user
        # may have mistaken for the server's key.
        self.key_source, self.cluster_token_given = key_source, cluster_token_given
        self.clock = clock
        # Waiting between tries of an HTTP server that is still starting: there
        # is nothing to watch, so this backs off (tests replace it).
        import threading

        self.waiter = waiter or threading.Event().wait

    def _headers(self, auth: bool) -> dict:
        h = {"Accept": "application/json", "Content-Type": "application/json"}
        if auth and self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        return h

    def _request(self, method: str, path: str, auth: bool = True, payload: dict | None = None,
                 stream: bool = False) -> dict:
        url = self.t.base_url + path
        body = json.dumps(payload).encode() if payload is not None else None
        start = self.clock()
        try:
            resp = self.t.open(method, path, self._headers(auth), body)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise self._http_error(exc.code, path, detail) from None
        except (urllib.error.URLError, OSError, SSLValidationError) as exc:
            raise EndpointError(classify_connection_error(url, exc), reachable=False) from None
        with resp:
            if stream:
                return self._read_stream(resp, start)
            first = resp.read(1)
            ttfb = self.clock() - start
            data = first + resp.read()
            total = self.clock() - start
        return {"status": resp.status, "ttfb_s": round(ttfb, 4), "total_s": round(total, 4), "body": data}

    def refused_without_key(self) -> dict:
        """A server started with a key must refuse /v1 without it (vLLM:
        401 and {"error": "Unauthorized"}); one that answers is open to
        anyone who reaches it."""
        try:
            answer = self._request("GET", "/v1/models", auth=False)
        except EndpointError as exc:
            if exc.details.get("status") == 401:
                return {"path": "/v1/models", "status": 401}
            raise
        raise EndpointError(f"/v1/models answered {answer['status']} without the API key: the server is not "
                            "protected by the key it was given (is VLLM_API_KEY set in its environment?)",
                            status=answer["status"])

    def _http_error(self, code: int, path: str, detail: str) -> EndpointError:
        if code == 401:
            # The server's key is server_api_key (or server_api_key_secret); api_key is kubernetes.core's
            # option for the cluster's bearer token, never sent to the server.
            if self.api_key:
                msg = (f"{path}: the server rejected {self.key_source} (401): it must be the key the server was "
                       "started with (VLLM_API_KEY, from the Secret its pods read)")
            else:
                msg = (f"{path}: the server wants an API key (401) and none was given: give the key the server "
                       "was started with as server_api_key, or name the Secret that holds it as "
                       "server_api_key_secret")
                if self.cluster_token_given:
                    msg += ("; api_key is the Kubernetes API server's bearer token (kubernetes.core's option), "
                            "not the server's key")
            return EndpointError(msg, status=code)
        if code == 404 and "model" in detail.lower():
            return EndpointError(f"{path}: model {self.model!r} does not exist on the server (404): {detail}", status=code)
        if code == 404 and path in ROUTE_BY_API.values():
            # FastAPI's answer for a route that is not registered: vLLM registers
            # the chat routes for generative models only, the embeddings route for pooling ones.
            other = "embeddings" if path == ROUTE_BY_API["chat"] else "chat"
            return EndpointError(
                f"{path}: the server has no such route (404: {detail}). vLLM serves {path} only for "
                f"{'generative' if other == 'embeddings' else 'pooling (embedding)'} models; if this model is "
                f"served for {'pooling (embeddings)' if other == 'embeddings' else 'generation (chat)'}, "
                f"check it with api: {other}", status=code, route_missing=True)
        return EndpointError(f"{path}: HTTP {code}: {detail}", status=code)

    def _read_stream(self, resp, start: float) -> dict:
        ttft = None
        pieces, chunks = [], 0
        for raw in resp:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            chunks += 1
            delta = ((event.get("choices") or [{}])[0].get("delta") or {}).get("content")
            if delta:
                if ttft is None:
                    ttft = self.clock() - start
                pieces.append(delta)
        total = self.clock() - start
        return {"status": resp.status, "ttft_s": None if ttft is None else round(ttft, 4),
                "total_s": round(total, 4), "chunks": chunks, "reply": "".join(pieces)}

    def wait_healthy(self) -> dict:
        """GET /health until it answers 200, while the server starts (connection
        refused, or 503 while the engine loads), up to startup_timeout."""
        deadline = self.clock() + self.startup_timeout
        delay, tries = 0.2, 0
        while True:
            tries += 1
            try:
                result = self._request("GET", "/health", auth=False)
                result.pop("body", None)
                return {**result, "tries": tries}
            except EndpointError as exc:
                retryable = exc.details.get("reachable") is False or exc.details.get("status") in (502, 503, 504)
                if "TLS" in exc.msg or not retryable:
                    raise
                if self.clock() + delay > deadline:
                    raise EndpointError(f"/health did not answer 200 within {self.startup_timeout:g}s: {exc.msg}",
                                        tries=tries, **exc.details) from None
            self.waiter(delay)
            delay = min(delay * 2, 5.0)

    def check_embeddings(self) -> dict:
        """One embedding of the prompt: what a pooling model answers."""
        answer = self._request("POST", ROUTE_BY_API["embeddings"], payload={"model": self.model, "input": self.prompt})
        try:
            parsed = json.loads(answer["body"])
            vector = parsed["data"][0]["embedding"]
        except (ValueError, KeyError, IndexError, TypeError):
            vector = None
        if not isinstance(vector, list) or not vector:
            raise EndpointError(f"/v1/embeddings answered without an embedding: {answer['body'][:300]!r}")
        return {"dimensions": len(vector), "ttfb_s": answer["ttfb_s"], "total_s": answer["total_s"],
                "usage": parsed.get("usage") or {}}

    def check(self, stream: bool = False, api: str = "chat") -> dict:
        started = self.clock()
        result: dict = {"url": self.t.base_url, "model": self.model}
        result["health"] = self.wait_healthy()

        models = self._request("GET", "/v1/models")
        try:
            listed = [m.get("id") for m in json.loads(models["body"]).get("data", [])]
        except (ValueError, AttributeError):
            raise EndpointError(f"/v1/models did not return the OpenAI list format: {models['body'][:200]!r}") from None
        result["models"] = {"ids": listed, "ttfb_s": models["ttfb_s"], "total_s": models["total_s"]}
        if self.model not in listed:
            raise EndpointError(
                f"model {self.model!r} is not served here; the server lists {listed}. The served name comes from "
                "vLLM's --served-model-name (the same variable must feed the deployment and this check)",
                models=listed)

        if api == "auto":
            # Chat first; a server without the chat route (vLLM serving a pooling model) is checked for embeddings.
            try:
                return {**self.check(stream, "chat"), "api": "chat"}
            except EndpointError as exc:
                if not exc.details.get("route_missing"):
                    raise
            return {**self.check(False, "embeddings"), "api": "embeddings"}
        if api not in ROUTE_BY_API:
            raise ParameterError(f"api: must be one of auto, {', '.join(ROUTE_BY_API)}, got {api!r}")
        if api == "embeddings":
            result["embeddings"] = self.check_embeddings()
            if self.api_key:
                result["unauthenticated"] = self.refused_without_key()
            result["elapsed_s"] = round(self.clock() - started, 4)
            return result
        payload = {"model": self.model, "messages": [{"role": "user", "content": self.prompt}],
                   "max_tokens": self.max_tokens, "temperature": 0}
        chat = self._request("POST", "/v1/chat/completions", payload=payload)
        try:
            parsed = json.loads(chat["body"])
            reply = parsed["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointError(f"/v1/chat/completions answered without a reply: {chat['body'][:300]!r}") from None
        result["chat"] = {"reply": reply, "ttfb_s": chat["ttfb_s"], "total_s": chat["total_s"],
                          "usage": parsed.get("usage") or {}, "finish_reason": parsed["choices"][0].get("finish_reason")}
        if stream:
            s = self._request("POST", "/v1/chat/completions", payload={**payload, "stream": True}, stream=True)
            if not s["chunks"]:
                raise EndpointError("/v1/chat/completions with stream=true sent no data chunks")
            result["stream"] = s
        if self.api_key:
            result["unauthenticated"] = self.refused_without_key()
        result["elapsed_s"] = round(self.clock() - started, 4)
        return result
