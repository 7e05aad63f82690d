"""The sandbox's pod network and in-cluster API access, as a pod on a cluster
sees them (docs/sandbox.md): kwok gives pods IPs of the sandbox's own /16
(state.json pod_cidr) and the endpointslice controller lists them; where that
network is local to this machine (a `local` route to lo; the API server
refuses 127.0.0.0/8 in EndpointSlices), the vLLM stand-in serves each of its
pods on that pod's IP and container port until the pod is gone; and a pod
the job runner runs gets what a kubelet gives for API access (a
ServiceAccount token bound to the pod, ca.crt, the namespace,
KUBERNETES_SERVICE_HOST/PORT), enough to list EndpointSlices and ask the
vLLM pods at their IPs, as a router does."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json
import socket
import threading
import time

import pytest
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

pytestmark = pytest.mark.integration

POD = "chat-small-0"  # a name the stand-in answers for (hack/sandboxctl/settings.py STANDIN_PODS)
SERVED = "chat-small"
KEY = "sk-pod-network"
LABELS = {"app.kubernetes.io/name": "pod-network"}
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def standin_pod(namespace: str) -> dict:
    """A pod as vllm_serve makes one: served name and key from its spec, port 8000 named http."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "namespace": namespace, "labels": LABELS},
            "spec": {"terminationGracePeriodSeconds": 5, "containers": [{
                "name": "vllm", "image": "registry.invalid/vllm-openai:v0.20.0",
                "args": ["/models/tiny-chat", "--served-model-name", SERVED, "--port", "8000"],
                "ports": [{"containerPort": 8000, "name": "http"}],
                "env": [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vllm-key", "key": "key"}}}]}]}}


def make_standin(kube, namespace: str) -> dict:
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vllm-key"},
                 "data": {"key": base64.b64encode(KEY.encode()).decode()}}, namespace)
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat"},
                 "spec": {"selector": LABELS, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
                namespace)
    kube.create(standin_pod(namespace), namespace)
    return kube.wait_for(("v1", "Pod", namespace), lambda p: p["metadata"]["name"] == POD
                         and (p.get("status") or {}).get("podIP"), 60)


def slice_addresses(kube, namespace: str, timeout: float = 60) -> set[str]:
    """The ready addresses the endpointslice controller lists for the Service "chat" (watched until it has one)."""
    found = kube.wait_for(("discovery.k8s.io/v1", "EndpointSlice", namespace),
                          lambda s: any((e.get("conditions") or {}).get("ready") for e in s.get("endpoints") or []),
                          timeout, query=[("labelSelector", "kubernetes.io/service-name=chat")])
    return {a for e in found["endpoints"] if e["conditions"].get("ready") for a in e["addresses"]}


def test_a_standin_pod_gets_an_ip_of_the_pod_network_that_its_endpointslice_lists(sandbox, kube, namespace):
    pod = make_standin(kube, namespace)
    ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(sandbox.state["pod_cidr"])
    # The real endpointslice controller, for a Service that selects the pod.
    assert ip in slice_addresses(kube, namespace)


def pod_network_is_local(sandbox) -> bool:
    """Whether an address of the pod network can be listened on here."""
    network = ipaddress.ip_network(sandbox.state["pod_cidr"])
    with socket.socket() as probe:
        try:
            probe.bind((str(network[-2]), 0))
        except OSError:
            return False
    return True


def need_local_pod_network(sandbox) -> None:
    if not pod_network_is_local(sandbox):
        pytest.skip(f"the pod network {sandbox.state['pod_cidr']} is not local to this machine "
                    "(docs/sandbox.md, Pod IPs: `ip route add local CIDR dev lo`)")


def get_models(ip: str, key: str, deadline_s: float = 10) -> tuple[int, dict]:
    """GET /v1/models of the pod at ip:8000. The stand-in listens once its own
    watch has seen the pod's IP, which no API object records: a connection
    refused meanwhile is tried again (capped backoff), as a client of a pod
    that just became Ready would."""
    end, delay = time.monotonic() + deadline_s, 0.02
    while True:
        conn = http.client.HTTPConnection(ip, 8000, timeout=10)
        try:
            conn.request("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
            answer = conn.getresponse()
            return answer.status, json.loads(answer.read() or b"{}")
        except ConnectionRefusedError:
            if time.monotonic() + delay > end:
                raise
        finally:
            conn.close()
        threading.Event().wait(delay)
        delay = min(delay * 2, 0.5)


def wait_gone(kube, namespace: str, uid: str) -> None:
    wait_until(kube.api, f"/api/v1/namespaces/{namespace}/pods",
               lambda pods: not any(p["metadata"]["uid"] == uid for p in pods), 60)


def test_a_standin_pod_answers_on_its_own_ip_until_it_is_deleted(sandbox, kube, namespace):
    need_local_pod_network(sandbox)
    pod = make_standin(kube, namespace)
    ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(sandbox.state["pod_cidr"])

    status, body = get_models(ip, KEY)
    assert status == 200 and [m["id"] for m in body["data"]] == [SERVED]
    assert get_models(ip, "sk-wrong")[0] == 401

    kube.delete("v1", "Pod", namespace, POD)
    wait_gone(kube, namespace, pod["metadata"]["uid"])
    # A gone pod's IP refuses a connection.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ip, 8000), timeout=5).close()


# What the router does with only what its pod is given: the token, ca.crt and
# namespace files, and the `kubernetes` Service's variables. It writes what it
# found to its termination-log file (the pod's status carries it back).
ROUTER = r'''
import base64, http.client, json, os, ssl, sys
token_file, ca_file, ns_file, out = sys.argv[1:5]
token, namespace = open(token_file).read(), open(ns_file).read()
api = http.client.HTTPSConnection(os.environ["KUBERNETES_SERVICE_HOST"], int(os.environ["KUBERNETES_SERVICE_PORT"]),
                                  context=ssl.create_default_context(cafile=ca_file))
def get(path):
    api.request("GET", path, headers={"Authorization": "Bearer " + token})
    answer = api.getresponse()
    return answer.status, json.loads(answer.read() or b"{}")
status, slices = get(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
                     "?labelSelector=kubernetes.io/service-name%3Dchat")
ips = sorted(a for s in slices.get("items", []) for e in s.get("endpoints") or [] for a in e["addresses"])
models = []
for ip in ips if os.environ["ASK_PODS"] == "1" else []:
    pod = http.client.HTTPConnection(ip, 8000, timeout=10)
    pod.request("GET", "/v1/models", headers={"Authorization": "Bearer " + os.environ["VLLM_API_KEY"]})
    models += [m["id"] for m in json.loads(pod.getresponse().read())["data"]]
claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
json.dump({"slices": status, "ips": ips, "models": models, "secrets": get(f"/api/v1/namespaces/{namespace}/secrets")[0],
           "claims": claims["kubernetes.io"], "aud": claims["aud"]}, open(out, "w"))
'''


def test_a_job_runner_pod_finds_and_asks_the_standin_pod_with_its_service_account(sandbox, kube, namespace):
    pod = make_standin(kube, namespace)
    assert pod["status"]["podIP"] in slice_addresses(kube, namespace)
    local = pod_network_is_local(sandbox)
    if local:
        assert get_models(pod["status"]["podIP"], KEY)[0] == 200  # it listens (the router asks once)
    kube.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "router"}}, namespace)
    kube.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "router"},
                 "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                            "verbs": ["get", "list", "watch"]}]}, namespace)
    kube.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "router"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "router"},
                 "subjects": [{"kind": "ServiceAccount", "name": "router", "namespace": namespace}]}, namespace)
    image = sandbox.state["job_runner"]["images"][0]
    # No volume of its own: the ServiceAccount admission plugin adds kube-api-access-* (token, ca.crt, namespace).
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "router"}, "spec": {
        "serviceAccountName": "router", "restartPolicy": "Never",
        "containers": [{"name": "router", "image": image, "command": ["python3", "-c", ROUTER],
                        "args": [f"{SA_DIR}/token", f"{SA_DIR}/ca.crt", f"{SA_DIR}/namespace", "/dev/termination-log"],
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "env": [{"name": "ASK_PODS", "value": "1" if local else "0"},
                                {"name": "VLLM_API_KEY",
                                 "valueFrom": {"secretKeyRef": {"name": "vllm-key", "key": "key"}}}]}]}}, namespace)
    done = kube.wait_for(("v1", "Pod", namespace), lambda p: p["metadata"]["name"] == "router"
                         and (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"), 120)
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert done["status"]["phase"] == "Succeeded", terminated.get("message")
    found = json.loads(terminated["message"])
    assert found["slices"] == 200 and found["ips"] == [pod["status"]["podIP"]]
    assert found["models"] == ([SERVED] if local else [])  # asked at the pod's IP, where it can be
    assert found["secrets"] == 403  # beyond its Role
    # The kubelet's TokenRequest: the pod's ServiceAccount, bound to the pod, the API server's own audience.
    assert found["claims"]["serviceaccount"]["name"] == "router"
    assert found["claims"]["pod"] == {"name": "router", "uid": done["metadata"]["uid"]}
    assert found["aud"] == ["https://kubernetes.default.svc.cluster.local"]


def test_projected_volume_sources_are_written_as_the_kubelet_writes_them(sandbox, kube, namespace):
    """configMap and secret items (key -> path), downwardAPI fields and a
    token with an audience and a lifetime of its own, in one folder."""
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "router-config"},
                 "data": {"routes.json": '{"chat": "chat"}', "unused": "x"}}, namespace)
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "router-secret"},
                 "data": {"password": base64.b64encode(b"hunter2").decode()}}, namespace)
    script = ("import base64, json, os, sys; d = sys.argv[1]; "
              "files = {f: open(os.path.join(d, f)).read() for f in sorted(os.listdir(d)) if not f.startswith('.')}; "
              "tok = files.pop('token'); claims = json.loads(base64.urlsafe_b64decode(tok.split('.')[1] + '==')); "
              "json.dump({'files': files, 'aud': claims['aud'], 'ttl': claims['exp'] - claims['iat'], "
              "'env': {k: v for k, v in os.environ.items() if k.startswith('KUBERNETES_')}}, open(sys.argv[2], 'w'))")
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "projected", "labels": {"tier": "router"}},
                 "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                          "containers": [{"name": "main", "image": sandbox.state["job_runner"]["images"][0],
                                          "command": ["python3", "-c", script],
                                          "args": ["/etc/router", "/dev/termination-log"],
                                          "volumeMounts": [{"name": "all", "mountPath": "/etc/router"}]}],
                          "volumes": [{"name": "all", "projected": {"sources": [
                              {"configMap": {"name": "router-config",
                                             "items": [{"key": "routes.json", "path": "routes"}]}},
                              {"secret": {"name": "router-secret"}},
                              {"downwardAPI": {"items": [
                                  {"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}},
                                  {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                              {"serviceAccountToken": {"path": "token", "audience": "router",
                                                       "expirationSeconds": 900}}]}}]}}, namespace)
    done = kube.wait_for(("v1", "Pod", namespace), lambda p: p["metadata"]["name"] == "projected"
                         and (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"), 120)
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert done["status"]["phase"] == "Succeeded", terminated.get("message")
    found = json.loads(terminated["message"])
    # Every label, key="value" a line, sorted (the API server adds the node's topology labels to a bound pod).
    labels = found["files"].pop("labels").splitlines()
    assert 'tier="router"' in labels and labels == sorted(labels)
    assert found["files"] == {"routes": '{"chat": "chat"}', "password": "hunter2", "namespace": namespace}
    assert found["aud"] == ["router"] and found["ttl"] == 900
    port = sandbox.state["ports"]["apiserver"]
    assert found["env"] == {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(port), "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
        f"KUBERNETES_PORT_{port}_TCP": f"tcp://127.0.0.1:{port}", f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
        f"KUBERNETES_PORT_{port}_TCP_PORT": str(port), f"KUBERNETES_PORT_{port}_TCP_ADDR": "127.0.0.1"}
