"""The fleet's router on the sandbox: site.yml with vllm_router_enabled in
front of inventories/sandbox-fleet's three models. The router's own code
runs as its pod (the sandbox's job runner, as a kubelet would run it, with
its ServiceAccount's token), watches the models' EndpointSlices through the
real API server and reaches the stand-ins' pods by their pod IPs. Asked as a
client would: every model and a LoRA adapter through one URL and one key,
vLLM's 404 and 401, a stream, a session kept on its replica and sessions spread, a replica going
away while the others answer; the router's account may read EndpointSlices
and nothing else; the rerun changes nothing."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
import yaml

from support import http
from support.ansible import ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("site_put_back")]
INVENTORY = ROOT / "inventories" / "sandbox-fleet"
NAMESPACE = "ai-fleet"
CHAT = {"messages": [{"role": "user", "content": "Reply with the single word: ready"}], "max_tokens": 4}


def router_vars(port: int, tmp_path) -> list[str]:
    """The router on, and chat-small with a LoRA adapter (the fleet's entries, one of them given an adapter).
    The job runner's pods share this machine's network: the router listens on a port the sandbox reserved,
    and the check asks it there (on a cluster: through its Service)."""
    models = yaml.safe_load((INVENTORY / "group_vars" / "all.yml").read_text())["inferops_models"]
    for entry in models:
        if entry["name"] == "chat-small":
            entry["vllm_serve_lora_adapters"] = [{"name": "sql-lora", "rank": 8}]
    extra = tmp_path / "router-fleet.yml"
    extra.write_text(yaml.safe_dump({"inferops_models": models, "vllm_router_enabled": True,
                                     "vllm_router_port": port, "vllm_router_replicas": 1,
                                     "vllm_router_grafana_dashboard": True,
                                     "vllm_router_check_url": f"http://127.0.0.1:{port}"}))
    return ["-e", f"@{extra}"]


def run(sandbox, playbook: str, *extra: str):
    return run_playbook(ROOT / playbook, inventory=INVENTORY, env={"SANDBOX_DIR": str(sandbox.state_dir)},
                        extra_args=list(extra))


class Client:
    def __init__(self, port: int, key: str):
        self.base, self.key = f"http://127.0.0.1:{port}", key

    def call(self, path: str, body: dict | None = None, key: str | None = "router", headers: dict | None = None):
        return http.call(self.base + path, body, self.key if key == "router" else key, headers)

    def metric(self, series: str) -> float | None:
        for line in self.call("/metrics", key=None)[2].decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return None

    def wait_metric(self, series: str, predicate, timeout: float) -> None:
        """Until the router's metric says so: asked again with a capped backoff (the router has no watch)."""
        end, delay = time.monotonic() + timeout, 0.05
        while not predicate(self.metric(series) or 0.0):
            if time.monotonic() > end:
                raise TimeoutError(f"{series} is still {self.metric(series)}")
            time.sleep(delay)
            delay = min(1.0, delay * 2)

    def served(self, model: str) -> dict[str, float]:
        """Requests answered by each replica of the model (the router's metrics)."""
        text = self.call("/metrics", key=None)[2].decode()
        found: dict[str, float] = {}
        for line in text.splitlines():
            m = re.match(r'inferops_router_requests_total\{code="200",model="([^"]*)",replica="([^"]+)"\} (\S+)', line)
            if m and m.group(1) == model:
                found[m.group(2)] = float(m.group(3))
        return found


def secret_value(kube, name: str) -> str:
    return base64.b64decode(kube.get("v1", "Secret", NAMESPACE, name)["data"]["api-key"]).decode()


def pod_addresses(kube, model: str) -> set[str]:
    pods = kube.list("v1", "Pod", NAMESPACE, label_selector=f"app.kubernetes.io/instance={model}")
    return {f"{p['status']['podIP']}:8000" for p in pods if (p.get("status") or {}).get("podIP")}


def test_one_endpoint_for_the_fleet(sandbox, kube, tmp_path):
    if sandbox.state.get("pod_route") is not True:
        pytest.skip(f"the sandbox's pod network is not local to this machine ({sandbox.state.get('pod_route')}): the "
                    "router reaches the replicas by their pod IPs (docs/sandbox.md, Pod IPs)")
    port = sandbox.state["ports"]["router"]
    first = run(sandbox, "site.yml", *router_vars(port, tmp_path))
    assert first.rc == 0 and first.failed() == 0, first.failures()
    checks = first.task("Ask the router for each model, as a client would")
    assert checks, "the router's check did not run"

    client = Client(port, secret_value(kube, "inferops-router-api-key"))
    status, _headers, body = client.call("/v1/models")
    listed = {m["id"]: m for m in json.loads(body)["data"]}
    assert status == 200 and sorted(listed) == ["chat-large", "chat-small", "embed", "sql-lora"]
    # The adapter as vLLM lists it: its folder as root, its base model as parent; the plan rendered vLLM's flags.
    assert listed["sql-lora"]["parent"] == "chat-small" and listed["sql-lora"]["root"].endswith("-lora/sql-lora")
    args = kube.get("apps/v1", "StatefulSet", NAMESPACE, "chat-small")["spec"]["template"]["spec"]["containers"][0]["args"]
    at = args.index("--enable-lora")
    assert args[at:at + 7] == ["--enable-lora", "--max-loras", "1", "--max-lora-rank", "8", "--lora-modules",
                               f"sql-lora={listed['sql-lora']['root']}"]

    # Each model by its name through the one URL and key.
    for model in ("chat-large", "chat-small"):
        status, _headers, body = client.call("/v1/chat/completions", dict(CHAT, model=model))
        assert status == 200 and json.loads(body)["model"] == model, body
    # The adapter, by its name, to chat-small's replicas only.
    small_before = sum(client.served("chat-small").values())
    status, _headers, body = client.call("/v1/chat/completions", dict(CHAT, model="sql-lora"))
    assert status == 200 and json.loads(body)["model"] == "sql-lora", body
    assert sum(client.served("chat-small").values()) == small_before + 1
    status, _headers, body = client.call("/v1/embeddings", {"model": "embed", "input": "hello"})
    assert status == 200 and json.loads(body)["data"][0]["object"] == "embedding", body

    # vLLM's own answers: an unknown model, no key, a model's own key (it is not the router's).
    recorded = json.loads((ROOT / "tests/data/real-vllm/http/chat_wrong_model.json").read_text())
    status, _headers, body = client.call("/v1/chat/completions", dict(CHAT, model="no-such-model"))
    assert (status, json.loads(body)) == (404, recorded["json"])
    for key in (None, secret_value(kube, "chat-small-api-key")):
        status, _headers, body = client.call("/v1/models", key=key)
        assert (status, json.loads(body)) == (401, {"error": "Unauthorized"})

    # A stream passes through to its end.
    status, headers, body = client.call("/v1/chat/completions", dict(CHAT, model="chat-small", stream=True))
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert body.endswith(b"data: [DONE]\n\n") and body.count(b"data: ") >= 3

    # The router reaches the replicas by their pod IPs, from the EndpointSlices.
    replicas = pod_addresses(kube, "chat-small")
    assert len(replicas) == 2
    before = client.served("chat-small")
    assert set(before) <= replicas
    for _n in range(5):
        assert client.call("/v1/chat/completions", dict(CHAT, model="chat-small"), headers={"x-session-id": "one"})[0] == 200
    after = client.served("chat-small")
    grew = {r: after.get(r, 0) - before.get(r, 0) for r in replicas}
    assert sorted(grew.values()) == [0, 5], grew  # one session, one replica
    for n in range(20):
        assert client.call("/v1/chat/completions", dict(CHAT, model="chat-small"),
                           headers={"x-session-id": f"s{n}"})[0] == 200
    spread = client.served("chat-small")
    assert all(spread.get(r, 0) > after.get(r, 0) for r in replicas), spread  # sessions spread over both

    # A replica goes away: the other answers every session meanwhile.
    kept = next(r for r in replicas if grew[r] == 5)
    gone_pod = next(p for p in kube.list("v1", "Pod", NAMESPACE, label_selector="app.kubernetes.io/instance=chat-small")
                    if f"{p['status']['podIP']}:8000" == kept)
    kube.delete("v1", "Pod", NAMESPACE, gone_pod["metadata"]["name"])
    # The endpointslice controller takes it out (terminating, not ready) ...
    kube.wait_for(("discovery.k8s.io/v1", "EndpointSlice", NAMESPACE),
                  lambda s: s["metadata"]["labels"].get("kubernetes.io/service-name") == "chat-small" and not any(
                      kept.split(":")[0] in e["addresses"] and e["conditions"].get("ready") for e in s["endpoints"] or []),
                  timeout=30)
    # ... and the router's watch sees it (its metrics: no API object records what the router saw).
    client.wait_metric('inferops_router_replicas{model="chat-small"}', lambda v: v < 2, timeout=30)
    before = client.served("chat-small")
    for n in range(10):
        session = "one" if n % 2 else f"t{n}"
        status, _headers, body = client.call("/v1/chat/completions", dict(CHAT, model="chat-small"),
                                             headers={"x-session-id": session})
        assert status == 200, body
    # Every one went to the other replica, none was tried on the one going away first.
    after = client.served("chat-small")
    assert after.get(kept, 0) == before.get(kept, 0) and sum(after.values()) - sum(before.values()) == 10
    assert 'inferops_router_retries_total{model="chat-small"}' not in client.call("/metrics", key=None)[2].decode()

    # The models take requests only from the router's pods (and whom the user names; enforced where the
    # cluster's network plugin enforces NetworkPolicy: the sandbox has none).
    for model in ("chat-large", "chat-small", "embed"):
        policy = kube.get("networking.k8s.io/v1", "NetworkPolicy", NAMESPACE, model)
        peers = policy["spec"]["ingress"][0]["from"]
        assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "inferops-router"}}} in peers, peers

    # The router's dashboard, for the Grafana chart's sidecar.
    board = kube.get("v1", "ConfigMap", NAMESPACE, "inferops-router-dashboard")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(board["data"][f"router-{NAMESPACE}-inferops-router.json"])["panels"]
    assert "Requests by model" in [p["title"] for p in panels]

    # The router's account reads EndpointSlices and nothing else.
    def allowed(verb: str, resource: str, group: str = "") -> bool:
        review = kube.create({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                              "spec": {"user": f"system:serviceaccount:{NAMESPACE}:inferops-router",
                                       "resourceAttributes": {"namespace": NAMESPACE, "verb": verb,
                                                              "group": group, "resource": resource}}})
        return review["status"].get("allowed", False)
    assert allowed("watch", "endpointslices", "discovery.k8s.io")
    assert not allowed("get", "secrets") and not allowed("list", "pods") and not allowed("update", "endpointslices",
                                                                                         "discovery.k8s.io")

    # The rerun of the router's stage changes nothing.
    again = run(sandbox, "site.yml", "--tags", "router", *router_vars(port, tmp_path))
    changed = [t["task"]["name"] for t in again.tasks() if any(h.get("changed") for h in t["hosts"].values())]
    assert again.rc == 0 and again.changed() == 0, changed
