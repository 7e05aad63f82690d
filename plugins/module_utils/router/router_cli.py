# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fleet's router, as the command of its pod:

    python -m ansible_collections.inferops.vllm.plugins.module_utils.router.router_cli \\
        --config /etc/inferops-router/router.json --port 8000

One OpenAI-compatible endpoint for every model of the fleet: a request goes
to a ready replica of the model its ``model`` names (or of the model whose
replicas list that name: a LoRA adapter), by session or prompt-prefix
affinity within a load bound (_routes.py); ``/v1/models`` lists every model
and adapter; an unknown model gets vLLM's own 404; responses, streams
included, pass through byte for byte. The router's key and each model's key
are files of mounted Secrets (--api-key-file; the entries' key_file under
--keys-dir), read
again when they change, so a rotated key takes effect without a restart;
never flags or env. Needs aiohttp, no Ansible."""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import sys
import time

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.router import _endpoints, _routes
from ansible_collections.inferops.vllm.plugins.module_utils.router._metrics import Metrics

try:
    import aiohttp
    from aiohttp import web
except ImportError:  # the collection's controller side never imports this file; the router's image has aiohttp
    aiohttp = web = None

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length", "authorization",
              # aiohttp's server has already decoded a compressed request body
              "content-encoding"}
# The OpenAI API paths the router forwards (POST, a JSON body naming the model),
# each to the same path of a replica; any other path is not served: vLLM's
# other paths (/tokenize, /invocations, adapter loading, /v1/.. tricks) stay
# out of reach of the router's clients.
PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/rerank", "/v1/score")
MAX_BODY = 64 * 1024 * 1024  # a long prompt or a batch of embedding inputs, never a model's weights
ATTEMPTS = 3  # replicas tried for one request when they cannot be reached
# Below vLLM's keep-alive, VLLM_HTTP_TIMEOUT_KEEP_ALIVE (5 s by default,
# handed to uvicorn: vllm/envs.py and vllm/entrypoints/openai/api_server.py
# at 0.20.0): the router drops an idle connection before the replica does, so
# a request never goes out on a connection the replica is closing.
KEEPALIVE_S = 4


def _log(text: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} router: {text}\n")
    sys.stderr.flush()


class KeyFile:
    """A key kept in a file of a mounted Secret: read again when the file
    changes (the kubelet replaces a Secret volume's files when the Secret
    changes), so a rotated key is taken without a restart."""

    def __init__(self, path: str):
        self.path, self.seen, self.value = path, None, ""

    def read(self) -> str:
        stat = os.stat(self.path)
        if (stat.st_ino, stat.st_mtime_ns, stat.st_size) != self.seen:
            with open(self.path, encoding="utf-8") as f:
                self.value = f.read().strip()
            self.seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if not self.value:
            raise ParameterError(f"{self.path} is empty: the Secret behind it has no key")
        return self.value


class Router:
    def __init__(self, config: dict, api_key: KeyFile, backend_keys: dict[str, KeyFile], cluster, log=_log):
        self.config, self.api_key, self.backend_keys = config, api_key, backend_keys
        self.cluster, self.log = cluster, log
        self.table = _routes.Table(config["models"])
        self.in_flight: dict[str, int] = {}
        self.metrics = Metrics()
        self.created = int(time.time())
        self.session = self.api_session = None
        self.stop = None
        self.refresh_now = None
        self.last_refresh = -1e9
        self.said_ambiguous: dict[str, list] = {}
        self.tasks: list = []

    # --- the app ----------------------------------------------------------------------------

    def app(self):
        @web.middleware
        async def openai_errors(request, handler):
            return await self.openai_errors(request, handler)

        app = web.Application(client_max_size=MAX_BODY, middlewares=[openai_errors])
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/v1/models", self.models)
        for path in PATHS:
            app.router.add_post(path, self.proxy)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.cleanup)
        return app

    async def start(self, _app) -> None:
        # To the replicas: no overall timeout (a generation may stream for many minutes); bytes pass unchanged
        # (no decompression, and no Accept-Encoding of the router's own); no bound on connections.
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), auto_decompress=False,
            skip_auto_headers=["Accept-Encoding"],
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S))
        # To the API server: its lists may come gzipped (over 128 KiB), so decompressed here.
        self.api_session = aiohttp.ClientSession()
        self.stop, self.refresh_now = asyncio.Event(), asyncio.Event()
        services = sorted({m["service"] for m in self.config["models"]})
        if self.cluster is not None:
            self.tasks.append(asyncio.create_task(_endpoints.watch_slices(
                self.api_session, self.cluster, self.config["namespace"], services, self.endpoints_changed, self.log,
                self.stop)))
        self.tasks.append(asyncio.create_task(self.refresh_models_loop()))

    async def cleanup(self, _app) -> None:
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.session.close()
        await self.api_session.close()

    def endpoints_changed(self, by_service: dict[str, list[dict]]) -> None:
        for model in self.config["models"]:
            addresses = _endpoints.ready_addresses(by_service.get(model["service"], []), model["port_name"])
            if addresses != self.table.replicas[model["name"]]:
                self.log(f"{model['name']}: {len(addresses)} ready replica(s): {', '.join(addresses) or 'none'}")
            self.table.set_replicas(model["name"], addresses)
            self.metrics.set("inferops_router_replicas", len(addresses), model=model["name"])
        # The counts and series of replicas that are gone (the table forgot the rest of them).
        alive = self.table.alive()
        for address in [a for a in self.in_flight if a not in alive and not self.in_flight[a]]:
            del self.in_flight[address]
            self.metrics.forget(replica=address)
        self.refresh_now.set()

    # --- what each replica serves -----------------------------------------------------------

    async def refresh_models_loop(self) -> None:
        while not self.stop.is_set():
            await self.refresh_models()
            self.refresh_now.clear()
            try:
                await asyncio.wait_for(self.refresh_now.wait(), self.config["models_refresh_s"])
            except asyncio.TimeoutError:
                pass

    async def refresh_if_older(self, seconds: float) -> None:
        """What the replicas list, asked again unless asked within ``seconds``
        (a listing or an unknown name asks at most once a second)."""
        if time.monotonic() - self.last_refresh > seconds:
            await self.refresh_models()

    async def refresh_models(self) -> None:
        """Ask every ready replica what it lists (its model and adapters)."""
        self.last_refresh = time.monotonic()
        jobs = [(m, a) for m in self.config["models"] for a in self.table.replicas[m["name"]]]
        answers = await asyncio.gather(*(self.listed_by(m, a) for m, a in jobs), return_exceptions=True)
        for (model, address), answer in zip(jobs, answers):
            if isinstance(answer, list):
                self.table.served[address] = answer
            elif address in self.table.replicas[model["name"]]:
                self.log(f"{model['name']}: {address} did not list its models: {answer}")
        for name, models in self.table.ambiguous().items():
            if self.said_ambiguous.get(name) != models:
                self.said_ambiguous[name] = models
                self.log(f"{name} is listed by the replicas of {', '.join(models)}: requests for it go to {models[0]}; "
                         "give the adapters names of their own")

    async def listed_by(self, model: dict, address: str) -> list:
        headers = {"Authorization": f"Bearer {self.backend_keys[model['name']].read()}"}
        async with self.session.get(f"http://{address}/v1/models", headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=5)) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            body = json.loads(await resp.read())
        return [e for e in body.get("data") or [] if isinstance(e, dict) and e.get("id")]

    # --- handlers ---------------------------------------------------------------------------

    def authorized(self, request) -> bool:
        given = request.headers.get("Authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.api_key.read()}".encode())

    @staticmethod
    def answer(body: dict, status: int):
        # Compact, as FastAPI's JSONResponse writes it (vLLM's 404 is 115 bytes: chat_wrong_model.json).
        return web.json_response(body, status=status, dumps=lambda obj: json.dumps(obj, separators=(",", ":")))

    async def openai_errors(self, request, handler):
        """Every answer of the router's own in the OpenAI shape, never
        aiohttp's text pages: a body too large, a key file missing, a bug."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status == 404:
                return self.answer(_routes.NOT_FOUND_PATH, 404)
            return self.answer(_routes.error(exc.reason or "The request was refused.", exc.status,
                                             "BadRequestError" if exc.status < 500 else "InternalServerError"),
                               exc.status)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the client gets JSON, the log says what
            self.log(f"{request.method} {request.path}: {type(exc).__name__}: {exc}")
            return self.answer(_routes.error("The router could not handle the request; its log says why.", 500,
                                             "InternalServerError"), 500)

    def own_answer(self, body: dict, status: int, model: str, replica: str = ""):
        """An answer of the router's own (not a replica's), counted."""
        self.metrics.inc("inferops_router_requests_total", model=model, replica=replica, code=str(status))
        return self.answer(body, status)

    async def health(self, _request):
        return web.Response(status=200)

    async def metrics_page(self, _request):
        return web.Response(text=self.metrics.text(), content_type="text/plain", charset="utf-8")

    async def not_found(self, _request):
        return self.answer(_routes.NOT_FOUND_PATH, 404)

    async def models(self, request):
        if not self.authorized(request):
            return self.answer(_routes.UNAUTHORIZED, 401)
        await self.refresh_if_older(1.0)
        return self.answer(self.table.listing(self.created), 200)

    async def proxy(self, request):
        if not self.authorized(request):
            return self.answer(_routes.UNAUTHORIZED, 401)
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return self.answer(_routes.error("The request body is not a JSON object.", 400, "BadRequestError"), 400)
        name = body.get("model")
        if name is None and len(self.table.models) == 1:
            name = next(iter(self.table.models))  # one model: no doubt which
        if not isinstance(name, str) or not name:
            names = ", ".join(sorted(self.table.models))
            return self.answer(_routes.error(f"The request has no model: name one of {names} (GET /v1/models "
                                             "lists every model and adapter).", 400, "BadRequestError"), 400)
        model = self.table.base_of(name)
        if model is None:
            await self.refresh_if_older(1.0)  # perhaps an adapter loaded since the last refresh
            model = self.table.base_of(name)
        if model is None:
            return self.own_answer(_routes.not_found(name), 404, "")
        candidates = self.table.candidates(name, time.monotonic())
        if not candidates:
            return self.own_answer(_routes.error(f"No replica of model `{model}` is ready.", 503,
                                                 "ServiceUnavailableError"), 503, model)
        affinity = self.config["affinity"]
        key = _routes.affinity_key(body, {k.lower(): v for k, v in request.headers.items()}, affinity) \
            if affinity["policy"] == "affinity" else ""
        tried = _routes.order(candidates, key, self.in_flight, affinity["load_factor"])[:ATTEMPTS]
        # Hop-by-hop headers, and those the client's Connection header names (RFC 9110 7.6.1), stay here.
        named = {h.strip().lower() for h in request.headers.get("Connection", "").split(",") if h.strip()}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | named}
        headers["Authorization"] = f"Bearer {self.backend_keys[model].read()}"
        started = time.monotonic()
        for attempt, address in enumerate(tried):
            self.in_flight[address] = self.in_flight.get(address, 0) + 1
            self.metrics.set("inferops_router_in_flight", self.in_flight[address], model=model, replica=address)
            try:
                return await self.forward(request, model, address, raw, headers, started)
            except _Unreachable as exc:
                self.table.unhealthy[address] = time.monotonic() + self.config["unhealthy_s"]
                self.log(f"{model}: {address} could not be reached ({exc}); "
                         + ("trying another replica" if attempt + 1 < len(tried) else "no replica left to try"))
                if attempt + 1 < len(tried):
                    self.metrics.inc("inferops_router_retries_total", model=model)
            finally:
                self.in_flight[address] -= 1
                self.metrics.set("inferops_router_in_flight", self.in_flight[address], model=model, replica=address)
        return self.own_answer(_routes.error(f"No replica of model `{model}` could be reached (tried {len(tried)}).",
                                             503, "ServiceUnavailableError"), 503, model)

    async def forward(self, request, model: str, address: str, raw: bytes, headers: dict, started: float):
        """The request to one replica, its answer back unchanged. Raises
        _Unreachable when the connection could not be made, so another
        replica can be tried; once the request may have reached the replica,
        it is never sent again (a generation is not repeated): a failure
        before the answer is a 502, one after ends the answer."""
        # The route's own path, never the client's (its dot segments or escapes do not travel).
        url = f"http://{address}{request.match_info.route.resource.canonical}"
        try:
            upstream = await self.session.request(request.method, url, params=request.query, data=raw,
                                                  headers=headers)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise _Unreachable(str(exc) or type(exc).__name__) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.log(f"{model}: {address} failed before answering ({type(exc).__name__}: {exc}); not sent again, since "
                     "the replica may have run it")
            return self.own_answer(_routes.error(f"The replica of `{model}` failed before answering; the request was "
                                                 "not sent again.", 502, "BadGatewayError"), 502, model, address)
        if upstream.status == 401:
            # The replica refused the router's key for it: the router's fault, not the client's.
            upstream.release()
            self.log(f"{model}: {address} refused the model's key (401): the router's copy is not the model's "
                     "(rotated and not yet remounted?)")
            return self.own_answer(_routes.error(f"The replica of `{model}` refused the router's key for it.", 502,
                                                 "BadGatewayError"), 502, model, address)
        try:
            self.metrics.observe(time.monotonic() - started, model=model)
            self.metrics.inc("inferops_router_requests_total", model=model, replica=address, code=str(upstream.status))
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP or name.lower() == "content-length":
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            upstream.release()


class _Unreachable(Exception):
    pass


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="inferops-router", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the router's JSON configuration (the role's ConfigMap)")
    ap.add_argument("--host", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--api-key-file", required=True, help="the router's key: a file of its mounted Secret")
    ap.add_argument("--keys-dir", required=True,
                    help="where the models' key Secrets are mounted: the entries' key_file are under it")
    ap.add_argument("--service-account-dir", default=_endpoints.SERVICE_ACCOUNT_DIR)
    ap.add_argument("--drain-seconds", type=float, default=30.0,
                    help="on SIGTERM, how long requests in flight (streams) may go on")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        with open(args.config, encoding="utf-8") as f:
            config = _routes.load_config(f.read())
        api_key = KeyFile(args.api_key_file)
        api_key.read()
        backend_keys = {m["name"]: KeyFile(os.path.join(args.keys_dir, m["key_file"])) for m in config["models"]}
        for key in backend_keys.values():
            key.read()
        cluster = _endpoints.Cluster(args.service_account_dir)
    except (OSError, RuntimeError, ParameterError) as exc:
        _log(f"cannot start: {exc}")
        return 2
    router = Router(config, api_key, backend_keys, cluster)
    _log(f"listening on {args.host}:{args.port} for {', '.join(m['name'] for m in config['models'])} "
         f"(policy {config['affinity']['policy']})")
    # reuse_port: an old and a new pod of a rollout may share the address where pods share a host (the sandbox).
    # handler_cancellation: a client that hangs up cancels its request to the replica, which then stops generating.
    web.run_app(router.app(), host=args.host, port=args.port, reuse_port=True, shutdown_timeout=args.drain_seconds,
                print=None, access_log=None, handler_cancellation=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
