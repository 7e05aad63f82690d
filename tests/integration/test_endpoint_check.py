"""inferops.vllm.endpoint_check against a local OpenAI-compatible server that
stands in for vLLM (tests/support/openai_standin.py), by URL and through the
Kubernetes API (port-forward to a sandbox pod, which kwok forwards to the
stand-in)."""

from __future__ import annotations

import datetime
import json
import socket

import pytest

from support.ansible import run_module
from support.openai_standin import StandIn

pytestmark = pytest.mark.integration
KEY = "sk-test-0123456789"


def check(**args) -> dict:
    return run_module("inferops.vllm.endpoint_check", args, env=args.pop("_env", None))


def test_full_check_with_stream():
    with StandIn(model="qwen3-235b", api_key=KEY, reply="ready to serve") as server:
        result = check(url=server.url, model="qwen3-235b", server_api_key=KEY, stream=True)
        assert result.get("failed") is not True, result.get("msg")
        assert result["health"]["status"] == 200
        assert result["models"]["ids"] == ["qwen3-235b"]
        assert result["chat"]["reply"] == "ready to serve" and result["chat"]["finish_reason"] == "stop"
        assert result["chat"]["ttfb_s"] <= result["chat"]["total_s"]
        # vLLM's first chunk carries the role, then one a token (tests/data/real-vllm/http/chat_stream.json).
        assert result["stream"]["reply"] == "ready to serve" and result["stream"]["chunks"] == 4
        assert result["stream"]["ttft_s"] is not None
        # The key went only to /v1 paths, as a bearer token; a last /v1/models without it was refused.
        auth = {(r["method"], r["path"]): r["authorization"] for r in server.requests}
        assert auth[("GET", "/health")] is None
        assert [r["authorization"] for r in server.requests if r["path"] == "/v1/models"] == [f"Bearer {KEY}", None]
        assert result["unauthenticated"] == {"path": "/v1/models", "status": 401}
    # ... and never into the result.
    assert KEY not in json.dumps(result)


def test_embedding_model_checked_with_embeddings():
    """vLLM serves a pooling model's /v1/embeddings and has no chat route
    for it: api=embeddings checks it; a chat check says why it cannot."""
    with StandIn(model="minilm", api_key=KEY, runner="pooling") as server:
        result = check(url=server.url, model="minilm", server_api_key=KEY, api="embeddings")
        assert result.get("failed") is not True, result.get("msg")
        assert result["embeddings"]["dimensions"] > 0 and "chat" not in result
        assert result["unauthenticated"]["status"] == 401
        chat = check(url=server.url, model="minilm", server_api_key=KEY)
        auto = check(url=server.url, model="minilm", server_api_key=KEY, api="auto", stream=True)
    assert chat["failed"] is True
    assert "/v1/chat/completions: the server has no such route (404" in chat["msg"]
    assert "check it with api: embeddings" in chat["msg"]
    # api=auto finds out by itself, and says what it checked.
    assert auto.get("failed") is not True, auto.get("msg")
    assert auto["api"] == "embeddings" and auto["embeddings"]["dimensions"] > 0
    with StandIn(model="m", api_key=KEY) as server:
        generative = check(url=server.url, model="m", server_api_key=KEY, api="auto")
    assert generative["api"] == "chat" and generative["chat"]["reply"] == "ready"


def test_waits_while_the_server_loads():
    with StandIn(api_key=KEY, loading_health_checks=2) as server:
        result = check(url=server.url, model="standin-model", server_api_key=KEY, startup_timeout=30)
        assert result.get("failed") is not True, result.get("msg")
        assert result["health"]["tries"] == 3  # two 503s while loading, then 200


def test_a_server_open_to_anyone_fails_the_check():
    """Started without a key, the server answers /v1 to anyone: a check given
    the key the deployment meant it to have says so."""
    with StandIn(api_key=None) as server:
        result = check(url=server.url, model="standin-model", server_api_key=KEY)
    assert result["failed"] is True
    assert "/v1/models answered 200 without the API key" in result["msg"]


def test_wrong_key():
    with StandIn(api_key=KEY) as server:
        result = check(url=server.url, model="standin-model", server_api_key="sk-wrong")
    assert result["failed"] is True
    assert "/v1/models: the server rejected the given server_api_key (401)" in result["msg"], result["msg"]
    assert "sk-wrong" not in json.dumps(result)


def test_no_key_names_the_vllm_key_option_not_the_clusters_token():
    """In this module api_key is kubernetes.core's option for the cluster's
    bearer token: a 401 from the vLLM server sends the user to server_api_key
    (or server_api_key_secret), never to api_key."""
    with StandIn(api_key=KEY) as server:
        result = check(url=server.url, model="standin-model")
        # What a user who followed the old message did: the vLLM key as the cluster's token.
        followed = check(url=server.url, model="standin-model", api_key=KEY)
    for answer in (result, followed):
        assert answer["failed"] is True
        assert "none was given: give the key the server was started with as server_api_key" in answer["msg"], \
            answer["msg"]
        assert "server_api_key_secret" in answer["msg"]
        assert "set api_key" not in answer["msg"]
    assert "api_key is the Kubernetes API server's bearer token" in followed["msg"], followed["msg"]


def test_wrong_key_from_a_secret_names_the_secret(sandbox, namespace, kube):
    import base64

    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "old-key"},
                 "data": {"api-key": base64.b64encode(b"sk-old-key").decode()}}, namespace)
    with StandIn(api_key=KEY) as server:
        result = run_module("inferops.vllm.endpoint_check",
                            {"url": server.url, "model": "standin-model", "namespace": namespace,
                             "server_api_key_secret": "old-key"}, kubeconfig=sandbox.kubeconfig)
    assert result["failed"] is True
    assert (f"the server rejected the key from Secret {namespace}/old-key (key api-key, given as "
            "server_api_key_secret) (401)") in result["msg"], result["msg"]
    assert "sk-old-key" not in json.dumps(result)


def test_wrong_model_lists_what_is_served():
    with StandIn(model="Qwen3-235B-A22B-Instruct-2507", api_key=KEY) as server:
        result = check(url=server.url, model="qwen3-235b", server_api_key=KEY)
    assert result["failed"] is True
    assert "'qwen3-235b' is not served" in result["msg"] and "Qwen3-235B-A22B-Instruct-2507" in result["msg"]


def test_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = check(url=f"http://127.0.0.1:{port}", model="m", startup_timeout=1)
    assert result["failed"] is True and "refused" in result["msg"] and "nothing listens" in result["msg"]


def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "standin")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return str(tmp_path / "c.pem"), str(tmp_path / "k.pem")


def test_tls_failure_and_fix(tmp_path):
    cert, key = self_signed(tmp_path)
    with StandIn(api_key=KEY, tls_cert=(cert, key)) as server:
        bad = check(url=server.url, model="standin-model", server_api_key=KEY)
        good = check(url=server.url, model="standin-model", server_api_key=KEY, server_ca_cert=cert)
    assert bad["failed"] is True and "TLS verification" in bad["msg"] and "server_ca_cert" in bad["msg"]
    assert good.get("failed") is not True, good.get("msg")


def test_url_and_service_are_exclusive():
    result = check(url="http://127.0.0.1:1", service="s", namespace="n", model="m")
    assert result["failed"] is True and "mutually exclusive" in result["msg"]


def test_through_the_kubernetes_api(sandbox, namespace, kube):
    """Only a Service name: the check goes API server -> kwok (the pod's
    "kubelet") -> the stand-in, all on loopback."""
    kube.create({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "standin"},
        "spec": {"replicas": 1, "serviceName": "standin", "selector": {"matchLabels": {"app": "standin"}},
                 "template": {"metadata": {"labels": {"app": "standin"}}, "spec": {"containers": [
                     {"name": "vllm", "image": "registry.invalid/vllm-openai:v0.12.0",
                      "ports": [{"name": "http", "containerPort": 8000}]}]}}}}, namespace)
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "standin"}, "spec": {
        "selector": {"app": "standin"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}, namespace)
    kube.wait_for(("v1", "Pod", namespace), lambda p: any(
        c["type"] == "Ready" and c["status"] == "True" for c in ((p.get("status") or {}).get("conditions") or [])), 60)
    with StandIn(model="qwen3-235b", api_key=KEY, port=sandbox.state["ports"]["standin"]):
        result = run_module("inferops.vllm.endpoint_check",
                            {"service": "standin", "namespace": namespace, "model": "qwen3-235b", "server_api_key": KEY,
                             "stream": True}, kubeconfig=sandbox.kubeconfig)
    assert result.get("failed") is not True, result.get("msg")
    assert result["pod"] == "standin-0" and result["chat"]["reply"] == "ready"
    assert result["stream"]["chunks"] == 2  # the role, then the one token

    # One pod by name, its port found by the container port's name (http).
    with StandIn(model="qwen3-235b", api_key=KEY, port=sandbox.state["ports"]["standin"]):
        one = run_module("inferops.vllm.endpoint_check",
                         {"pod": "standin-0", "namespace": namespace, "model": "qwen3-235b", "server_api_key": KEY},
                         kubeconfig=sandbox.kubeconfig)
        missing = run_module("inferops.vllm.endpoint_check",
                             {"pod": "standin-9", "namespace": namespace, "model": "qwen3-235b", "server_api_key": KEY},
                             kubeconfig=sandbox.kubeconfig)
        wrong_port = run_module("inferops.vllm.endpoint_check",
                                {"pod": "standin-0", "namespace": namespace, "model": "qwen3-235b",
                                 "server_api_key": KEY, "service_port": "metrics"}, kubeconfig=sandbox.kubeconfig)
    assert one.get("failed") is not True, one.get("msg")
    assert one["pod"] == "standin-0" and one["chat"]["reply"] == "ready"
    assert missing["failed"] is True and f"pod 'standin-9' does not exist in namespace '{namespace}'" in missing["msg"]
    assert wrong_port["failed"] is True and "'metrics' is not a port of pod" in wrong_port["msg"]
    assert "it declares ['http']" in wrong_port["msg"]


def test_check_mode_fails_on_a_mistyped_service_in_a_namespace_that_exists(sandbox, namespace, kube):
    """Reading is safe in check mode: a Service that is not there in a
    namespace that is fails there as outside check mode, naming the Service
    and the ones the namespace has. Only a namespace that does not exist
    (an earlier task only pretended to create it) is reported as not checked."""
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vllm"}, "spec": {
        "selector": {"app": "vllm"}, "ports": [{"name": "http", "port": 80, "targetPort": 8000}]}}, namespace)
    args = {"service": "vlm", "namespace": namespace, "model": "m", "server_api_key": KEY}
    for check_mode in (False, True):
        typo = run_module("inferops.vllm.endpoint_check", args, kubeconfig=sandbox.kubeconfig, check=check_mode)
        assert typo.get("failed") is True and not typo.get("skipped"), (check_mode, typo)
        assert f"Service 'vlm' does not exist in namespace '{namespace}'" in typo["msg"], typo["msg"]
    # A pod name with a typo, the same.
    typo = {**{k: v for k, v in args.items() if k != "service"}, "pod": "vlm-0"}
    pod = run_module("inferops.vllm.endpoint_check", typo,
                     kubeconfig=sandbox.kubeconfig, check=True)
    assert pod.get("failed") is True and f"pod 'vlm-0' does not exist in namespace '{namespace}'" in pod["msg"]

    gone = run_module("inferops.vllm.endpoint_check", {**args, "namespace": f"{namespace}-not-made"},
                      kubeconfig=sandbox.kubeconfig, check=True)
    assert gone.get("failed") is not True and gone["skipped"] is True, gone
    assert "does not exist" in gone["msg"] and "check mode: not created yet, not checked" in gone["msg"]
