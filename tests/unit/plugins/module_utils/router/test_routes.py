"""The router's decisions without I/O: affinity by session or prompt
prefix within a load bound, which replicas serve a name (a model, or an
adapter some of its replicas list), the fleet's /v1/models, the ready
endpoints of EndpointSlices, and the configuration with every problem named
by its variable."""

from __future__ import annotations

import collections
import json

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.router import _endpoints, _routes
from ansible_collections.inferops.vllm.plugins.module_utils.router._metrics import Metrics

REPLICAS = [f"10.1.0.{i}:8000" for i in range(1, 5)]
AFFINITY = {"policy": "affinity", "session_header": "x-session-id", "prefix_chars": 64, "load_factor": 1.25}


def test_the_same_session_goes_to_the_same_replica_and_sessions_spread():
    firsts = collections.Counter()
    for n in range(400):
        key = _routes.affinity_key({"messages": [{"role": "user", "content": f"q{n}"}]},
                                   {"x-session-id": f"s{n}"}, AFFINITY)
        chosen = {_routes.order(REPLICAS, key, {}, 1.25)[0] for _n in range(3)}
        assert len(chosen) == 1
        firsts[chosen.pop()] += 1
    # Rendezvous hashing spreads keys evenly: each of 4 replicas gets about 100 of 400.
    assert set(firsts) == set(REPLICAS) and min(firsts.values()) > 60, firsts


def test_a_replica_that_goes_away_moves_only_its_own_keys():
    keys = [f"session:s{n}" for n in range(300)]
    before = {k: _routes.order(REPLICAS, k, {}, 1.25)[0] for k in keys}
    after = {k: _routes.order(REPLICAS[:-1], k, {}, 1.25)[0] for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert moved and all(before[k] == REPLICAS[-1] for k in moved)


def test_a_replica_over_its_load_bound_passes_its_keys_to_the_next_in_line():
    key = "session:busy"
    first, second = _routes.order(REPLICAS, key, {}, 1.25)[:2]
    # Below the floor (8 in flight) a replica keeps its keys whatever the others hold.
    assert _routes.order(REPLICAS, key, {first: 7}, 1.25)[0] == first
    # 8 in flight on the first, none elsewhere: 9 with this one, the bound is max(8, ceil(1.25 * 9 / 4)) = 8.
    ordered = _routes.order(REPLICAS, key, {first: 8}, 1.25)
    assert ordered[0] == second and ordered[-1] == first
    # Under load the bound is the load factor's: 40 in flight over 4 replicas, 41 with this one: ceil(1.25 * 41 / 4) = 13.
    others = [r for r in REPLICAS if r != first]
    assert _routes.order(REPLICAS, key, {first: 12, others[0]: 10, others[1]: 10, others[2]: 8}, 1.25)[0] == first
    assert _routes.order(REPLICAS, key, {first: 13, others[0]: 10, others[1]: 9, others[2]: 8}, 1.25)[0] == second


def test_without_a_key_the_least_loaded_goes_first():
    in_flight = {REPLICAS[0]: 3, REPLICAS[1]: 0, REPLICAS[2]: 1, REPLICAS[3]: 2}
    assert _routes.order(REPLICAS, "", in_flight, 1.25)[0] == REPLICAS[1]


def test_the_key_is_the_session_header_else_the_prompt_start():
    body = {"messages": [{"role": "system", "content": "x" * 100}, {"role": "user", "content": "hi"}]}
    assert _routes.affinity_key(body, {"x-session-id": "abc"}, AFFINITY) == "session:abc"
    prefix = _routes.affinity_key(body, {}, AFFINITY)
    assert prefix.startswith("prefix:") and len(prefix) == len("prefix:") + 64
    # Two conversations with the same long system prompt share the key (the prefix cache they share).
    other = {"messages": [{"role": "system", "content": "x" * 100}, {"role": "user", "content": "bye"}]}
    assert _routes.affinity_key(other, {}, AFFINITY) == prefix
    assert _routes.affinity_key({"prompt": "abc"}, {}, AFFINITY) == "prefix:abc"
    assert _routes.affinity_key({"input": ["a", "b"]}, {}, AFFINITY) == 'prefix:["a", "b"]'
    assert _routes.affinity_key({}, {}, AFFINITY) == ""
    assert _routes.affinity_key(body, {}, dict(AFFINITY, prefix_chars=0)) == ""


def test_an_adapter_goes_only_to_the_replicas_that_list_it():
    table = _routes.Table([{"name": "chat"}, {"name": "embed"}])
    table.set_replicas("chat", ["a:8000", "b:8000"])
    table.set_replicas("embed", ["c:8000"])
    table.served = {"a:8000": [{"id": "chat"}, {"id": "sql-lora", "parent": "chat"}], "b:8000": [{"id": "chat"}],
                    "c:8000": [{"id": "embed"}]}
    assert table.base_of("sql-lora") == "chat" and table.base_of("nope") is None
    assert table.candidates("sql-lora", 0) == ["a:8000"]
    assert table.candidates("chat", 0) == ["a:8000", "b:8000"]
    # An unhealthy replica goes last: only when no other is left.
    table.unhealthy["a:8000"] = 100
    assert table.candidates("chat", 50) == ["b:8000"] and table.candidates("sql-lora", 50) == ["a:8000"]
    assert table.candidates("chat", 101) == ["a:8000", "b:8000"]
    ids = [e["id"] for e in table.listing(0)["data"]]
    assert ids == ["chat", "sql-lora", "embed"]
    # A replica gone from the endpoints takes its listing with it.
    table.set_replicas("chat", ["b:8000"])
    assert table.base_of("sql-lora") is None and "a:8000" not in table.served


def test_the_errors_are_vllms():
    recorded = json.load(open("tests/data/real-vllm/http/chat_wrong_model.json", encoding="utf-8"))
    assert _routes.not_found("no-such-model") == recorded["json"]
    assert len(json.dumps(recorded["json"], separators=(",", ":"))) == int(dict(recorded["headers"])["content-length"])
    no_key = json.load(open("tests/data/real-vllm/http/models_no_key.json", encoding="utf-8"))
    assert _routes.UNAUTHORIZED == no_key["json"]


def test_ready_addresses_from_endpointslices():
    slices = [{"addressType": "IPv4", "ports": [{"name": "http", "port": 8000}, {"name": "x", "port": 9}],
               "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                             {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
                             {"addresses": ["10.0.0.3"], "conditions": {}},
                             {"addresses": ["10.0.0.4"], "conditions": {"ready": True, "terminating": True}}]},
              {"addressType": "IPv6", "ports": [{"name": "http", "port": 8000}],
               "endpoints": [{"addresses": ["fd00::5"], "conditions": {"ready": True}}]},
              {"addressType": "FQDN", "ports": [{"name": "http", "port": 8000}],
               "endpoints": [{"addresses": ["x.example"]}]}]
    assert _endpoints.ready_addresses(slices, "http") == ["10.0.0.1:8000", "10.0.0.3:8000", "[fd00::5]:8000"]
    assert _endpoints.ready_addresses(slices, "metrics") == []


ROUTES = [{"name": "chat", "service": "chat", "namespace": "ai", "port_name": "http", "key_secret": "chat-api-key"},
          {"name": "embed", "service": "embed", "namespace": "ai", "port_name": "http", "key_secret": "embed-api-key"}]
SETTINGS = {"policy": "affinity", "session_header": "X-Session-Id", "prefix_chars": 1024, "load_factor": 1.25,
            "unhealthy_s": 10, "models_refresh_s": 10}


def test_the_configuration_from_the_models_routes():
    built = _routes.config_from_routes(ROUTES, SETTINGS)
    assert built["problems"] == []
    config = built["config"]
    assert config["namespace"] == "ai" and config["affinity"]["session_header"] == "x-session-id"
    assert config["models"][0] == {"name": "chat", "service": "chat", "port_name": "http", "key_file": "chat/api-key"}
    # What the router reads back is what the role wrote.
    assert _routes.load_config(json.dumps(config)) == config


def test_every_problem_is_named_by_its_variable():
    routes = ROUTES + [dict(ROUTES[0], service="chat-2", namespace="other")]
    settings = dict(SETTINGS, policy="random", load_factor=0.5, prefix_chars="many", session_header="x session",
                    models_refresh_s=0)
    problems = " | ".join(_routes.config_from_routes(routes, settings)["problems"])
    for expected in ("2 namespaces (ai, other)", "vllm_serve_namespace", "both answer to 'chat'",
                     "vllm_router_policy", "vllm_router_load_factor", "vllm_router_prefix_chars",
                     "vllm_router_session_header", "vllm_router_models_refresh_seconds"):
        assert expected in problems, problems
    assert "vllm_router_routes is empty" in _routes.config_from_routes([], SETTINGS)["problems"][0]


def test_a_broken_configuration_file_is_refused_with_its_keys():
    with pytest.raises(ParameterError, match="models: a list"):
        _routes.load_config(json.dumps({"namespace": "ai"}))
    with pytest.raises(ParameterError, match=r"models\[0\].key_file"):
        _routes.load_config(json.dumps({"namespace": "ai", "models": [{"name": "a", "service": "a"}]}))
    # The numbers by the same table as the role's check (NUMBERS), named by their keys here.
    numbers = {"namespace": "ai", "models": [{"name": "a", "service": "a", "key_file": "a/api-key"}],
               "affinity": {"load_factor": 0.5, "prefix_chars": "many"}, "models_refresh_s": 0}
    with pytest.raises(ParameterError) as refused:
        _routes.load_config(json.dumps(numbers))
    for key in ("affinity.load_factor", "affinity.prefix_chars", "models_refresh_s"):
        assert key in str(refused.value)


def test_metrics_in_prometheus_text_format():
    metrics = Metrics()
    metrics.inc("inferops_router_requests_total", model="chat", replica="a:8000", code="200")
    metrics.observe(0.03, model="chat")
    text = metrics.text()
    assert 'inferops_router_requests_total{code="200",model="chat",replica="a:8000"} 1.0' in text
    assert 'inferops_router_response_seconds_bucket{model="chat",le="0.025"} 0' in text
    assert 'inferops_router_response_seconds_bucket{model="chat",le="0.05"} 1' in text
    assert 'inferops_router_response_seconds_count{model="chat"} 1' in text
    assert "# TYPE inferops_router_response_seconds histogram" in text


def test_the_dashboard_reads_only_series_the_router_exports():
    from ansible_collections.inferops.vllm.plugins.module_utils.router._metrics import HELP
    from ansible_collections.inferops.vllm.plugins.module_utils.serving._monitoring import router_dashboard, series_names

    board = router_dashboard("inferops-router", "ai")
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exported = set(HELP) | {f"{n}_bucket" for n, (kind, _h) in HELP.items() if kind == "histogram"}
    read = set().union(*(series_names(e) for e in exprs))
    assert read and read <= exported, read - exported
    # Every metric the router exports has a panel, and every query is on the router's own scrape.
    assert set(HELP) <= {n.removesuffix("_bucket") for n in read}
    assert all('namespace="ai", job="inferops-router"' in e for e in exprs)
    assert board["uid"] == "router-ai-inferops-router"
