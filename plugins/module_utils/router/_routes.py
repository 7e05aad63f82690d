# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the router decides, without any I/O: its configuration, which
replicas serve a model name, and in which order to try them.

Affinity is rendezvous hashing with bounded loads: every replica gets a score
from the request's key (its session header, else the start of its prompt)
and the replica's address; the replicas are tried in score order, skipping
one that already holds more than ``load_factor`` times its share of the
requests in flight (and more than FLOOR_IN_FLIGHT). So the same session or prompt prefix lands on the same
replica (whose prefix cache holds it) while that replica is not overloaded,
and a replica that goes away moves only its own keys (Thaler and Ravishankar's
highest-random-weight hashing; the load bound is Mirrokni, Thorup and
Zadimoghaddam's "consistent hashing with bounded loads")."""

from __future__ import annotations

import hashlib
import json
import math
import random

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError

POLICIES = ("affinity", "least_loaded")
SESSION_HEADER = "x-session-id"
PREFIX_CHARS = 1024  # about 250 tokens: a system prompt and the start of a conversation
LOAD_FACTOR = 1.25
# Below this many requests in flight a replica keeps its keys whatever the
# others hold: vLLM batches a few more sequences at almost no cost each, and
# a prefix cache hit saves the prefill. (The plain bound would send a
# session's second request elsewhere as soon as its first is in flight.)
FLOOR_IN_FLIGHT = 8
# The configuration's numbers, one table for both checks of them: the role's
# (config_from_routes, naming the variable) and the router's own
# (load_config, naming the key): (section, key, role variable, default,
# least, type, what to give).
NUMBERS = (
    ("affinity", "prefix_chars", "vllm_router_prefix_chars", PREFIX_CHARS, 0, int,
     "a whole number of characters, 0 (session only) or more"),
    ("affinity", "load_factor", "vllm_router_load_factor", LOAD_FACTOR, 1, float,
     "a number of 1 or more (1.25: up to 25% over a replica's share)"),
    (None, "unhealthy_s", "vllm_router_unhealthy_seconds", 10, 0, int, "whole seconds, 0 or more"),
    (None, "models_refresh_s", "vllm_router_models_refresh_seconds", 10, 1, int, "whole seconds, 1 or more"),
)


def load_config(text: str) -> dict:
    """The router's configuration (the role's ConfigMap), checked: every
    problem names the key and what to give."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise ParameterError(f"router configuration: not JSON ({exc})") from exc
    problems = []
    if not isinstance(config.get("namespace"), str) or not config.get("namespace"):
        problems.append("namespace: the namespace of the models' Services is required")
    models = config.get("models")
    if not isinstance(models, list) or not models:
        problems.append("models: a list of {name, service, port_name, key_file} is required")
        models = []
    seen = set()
    for i, model in enumerate(models):
        for key in ("name", "service", "key_file"):
            if not isinstance(model.get(key), str) or not model.get(key):
                problems.append(f"models[{i}].{key}: a string is required")
        if model.get("name") in seen:
            problems.append(f"models[{i}].name: {model.get('name')!r} is listed twice")
        seen.add(model.get("name"))
        model.setdefault("port_name", "http")
    affinity = config.setdefault("affinity", {})
    affinity.setdefault("policy", "affinity")
    affinity.setdefault("session_header", SESSION_HEADER)
    if affinity["policy"] not in POLICIES:
        problems.append(f"affinity.policy: {affinity['policy']!r} is not one of {', '.join(POLICIES)}")
    for section, key, _variable, default, least, kind, what in NUMBERS:
        holder = config[section] if section else config
        value = holder.setdefault(key, default)
        # JSON's own types: a whole number where one is needed (no string, no bool).
        typed = isinstance(value, (int, float) if kind is float else int) and not isinstance(value, bool)
        if not typed or value < least:
            problems.append(f"{section + '.' if section else ''}{key}: {what}")
    if problems:
        raise ParameterError("router configuration: " + "; ".join(problems))
    return config


def affinity_key(body: dict, headers: dict, affinity: dict) -> str:
    """The request's session header, else the start of its prompt (chat
    messages, a completion's prompt, an embedding's input); "" when neither."""
    session = headers.get(affinity["session_header"].lower()) or headers.get(affinity["session_header"])
    if session:
        return "session:" + session
    if not affinity["prefix_chars"]:
        return ""
    if body.get("messages") is not None:
        text = json.dumps(body["messages"], sort_keys=True, ensure_ascii=False)
    elif body.get("prompt") is not None:
        text = body["prompt"] if isinstance(body["prompt"], str) else json.dumps(body["prompt"])
    elif body.get("input") is not None:
        text = body["input"] if isinstance(body["input"], str) else json.dumps(body["input"])
    else:
        return ""
    return "prefix:" + text[:affinity["prefix_chars"]]


def _score(key: str, address: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}\0{address}".encode(), digest_size=8).digest(), "big")


def order(replicas: list[str], key: str, in_flight: dict[str, int], load_factor: float) -> list[str]:
    """The replicas in the order to try them. With a key: by rendezvous score,
    those within the load bound first (a replica over it goes last, in score
    order); without one: the least loaded first."""
    if not replicas:
        return []
    if not key:
        # Ties broken at random: idle, keyless requests spread rather than all go to one replica.
        return sorted(replicas, key=lambda r: (in_flight.get(r, 0), random.random()))
    ranked = sorted(replicas, key=lambda r: _score(key, r), reverse=True)
    total = sum(in_flight.get(r, 0) for r in replicas) + 1  # this request counted
    bound = max(FLOOR_IN_FLIGHT, math.ceil(load_factor * total / len(replicas)))
    within = [r for r in ranked if in_flight.get(r, 0) + 1 <= bound]
    return within + [r for r in ranked if r not in within]


def not_found(model) -> dict:
    """vLLM's answer for a model it does not serve (0.20.0, recorded:
    tests/data/real-vllm/http/chat_wrong_model.json; vllm/entrypoints/openai/
    serving_engine.py _check_model)."""
    return {"error": {"message": f"The model `{model}` does not exist.", "type": "NotFoundError",
                      "param": "model", "code": 404}}


def error(message: str, code: int, kind: str) -> dict:
    """An error in the OpenAI shape vLLM uses (ErrorResponse)."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


UNAUTHORIZED = {"error": "Unauthorized"}  # vLLM's 401 body (recorded: models_no_key.json)
NOT_FOUND_PATH = {"detail": "Not Found"}  # FastAPI's, for a path that is not served


class Table:
    """Which replicas serve which names: a model's Service's ready endpoints
    (from its EndpointSlices), and what each replica lists in /v1/models (its
    LoRA adapters, which replicas may load differently)."""

    def __init__(self, models: list[dict]):
        self.models = {m["name"]: m for m in models}
        self.replicas: dict[str, list[str]] = {m["name"]: [] for m in models}  # model -> ready addresses
        self.served: dict[str, list[dict]] = {}  # address -> the entries its /v1/models listed
        self.unhealthy: dict[str, float] = {}  # address -> until when it is skipped (monotonic s)

    def set_replicas(self, model: str, addresses: list[str]) -> None:
        self.replicas[model] = sorted(addresses)
        # What was known of replicas that are gone (an IP comes back only as another pod).
        alive = self.alive()
        for known in (self.served, self.unhealthy):
            for address in [a for a in known if a not in alive]:
                del known[address]

    def base_of(self, name: str) -> str | None:
        """The configured model that serves ``name``: the model itself, or the
        model one of whose replicas lists ``name`` (an adapter)."""
        if name in self.models:
            return name
        for model, addresses in self.replicas.items():
            for address in addresses:
                if any(e.get("id") == name for e in self.served.get(address, [])):
                    return model
        return None

    def ambiguous(self) -> dict[str, list[str]]:
        """Names (adapters) that the replicas of more than one model list."""
        owners: dict[str, list[str]] = {}
        for model, addresses in self.replicas.items():
            for entry in {e.get("id") for a in addresses for e in self.served.get(a, [])}:
                owners.setdefault(entry, [])
                if model not in owners[entry]:
                    owners[entry].append(model)
        return {name: models for name, models in owners.items() if len(models) > 1}

    def alive(self) -> set[str]:
        """Every ready replica of every model."""
        return {a for addresses in self.replicas.values() for a in addresses}

    def candidates(self, name: str, now: float) -> list[str]:
        """The ready replicas that serve ``name``, healthy ones first (a
        replica marked unhealthy is tried only when no other is left)."""
        model = self.base_of(name)
        if model is None:
            return []
        addresses = self.replicas[model]
        if name != model:
            addresses = [a for a in addresses if any(e.get("id") == name for e in self.served.get(a, []))]
        healthy = [a for a in addresses if self.unhealthy.get(a, 0) <= now]
        return healthy or addresses

    def listing(self, created: int) -> dict:
        """/v1/models for the fleet: every model and adapter a ready replica
        lists, once, in the backends' own entries (vLLM's shape); a model
        whose replicas have not answered yet is listed by its name."""
        data, seen = [], set()
        for model, addresses in self.replicas.items():
            entries = [e for a in addresses for e in self.served.get(a, [])]
            if not entries and addresses:
                entries = [{"id": model, "object": "model", "created": created, "owned_by": "vllm",
                            "root": model, "parent": None}]
            for entry in entries:
                if entry.get("id") not in seen:
                    seen.add(entry.get("id"))
                    data.append(entry)
        return {"object": "list", "data": data}


def config_from_routes(routes: list[dict], settings: dict) -> dict:
    """The router's configuration from the models' routes (each model's
    vllm_serve role, tasks_from: route) and the role's settings, with every
    problem named by the variable to change: {config, problems}."""
    problems = []
    if not routes:
        problems.append("no model to route to: vllm_router_routes is empty (playbooks/router.yml fills it from every "
                        "model of the run; a run narrowed with -e inferops_model leaves the router alone)")
    namespaces = sorted({r.get("namespace") or "" for r in routes})
    if len(namespaces) > 1:
        problems.append(f"the models are in {len(namespaces)} namespaces ({', '.join(namespaces)}): the router "
                        "serves the models of one namespace; give every model the same vllm_serve_namespace")
    seen: dict[str, str] = {}
    for route in routes:
        if route["name"] in seen:
            problems.append(f"models {seen[route['name']]} and {route['service']} both answer to {route['name']!r}: "
                            "give one another vllm_serve_served_model_name")
        seen[route["name"]] = route["service"]
    if settings.get("policy") not in POLICIES:
        problems.append(f"vllm_router_policy: {settings.get('policy')!r} is not one of {', '.join(POLICIES)}")
    values = {}
    for _section, key, variable, _default, least, kind, what in NUMBERS:
        try:
            value = kind(settings.get(key))  # the role's variables may come as strings (-e key=value)
        except (TypeError, ValueError):
            value = None
        if value is None or value < least:
            problems.append(f"{variable}: {settings.get(key)!r} is not {what}")
        values[key] = value
    header = settings.get("session_header") or ""
    if not header or not all(c.isalnum() or c in "-_" for c in header):
        problems.append(f"vllm_router_session_header: {header!r} is not an HTTP header name (letters, digits, '-')")
    config = {
        "namespace": namespaces[0] if len(namespaces) == 1 else "",
        "models": [{"name": r["name"], "service": r["service"], "port_name": r.get("port_name") or "http",
                    # Under the router's --keys-dir, where the pod mounts each model's key Secret.
                    "key_file": f"{r['service']}/api-key"} for r in routes],
        "affinity": {"policy": settings.get("policy"), "session_header": header.lower(),
                     "prefix_chars": values["prefix_chars"], "load_factor": values["load_factor"]},
        "unhealthy_s": values["unhealthy_s"], "models_refresh_s": values["models_refresh_s"],
    }
    return {"config": config, "problems": problems}
