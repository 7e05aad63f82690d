"""The API key and the objects of other owners, on the sandbox.

- A key Secret the user made is used as it is (read, never rewritten,
  labelled or deleted), and the user's rotation of it rolls the pods.
- A new key rolls every replica through the gated rollout: afterwards the
  old key gets 401 and the new one 200 from every pod, and neither the key
  nor a plain hash of it is in anything a pod reader can read.
- An object of a name the roles would write that the collection did not
  create is refused, naming it and who manages it, before anything is
  applied.
- Turning the Ingress or NetworkPolicy off deletes the role's own (check
  mode and diff first), and only that.

The sandbox's stand-in answers for each pod with the key that pod started
with (hack/openai_standin.py, as vLLM reads VLLM_API_KEY once at start), on
a port of its own per pod, so each replica is asked directly. Keys are
compared as booleans: a failing assertion does not print a key."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.error
import urllib.request

import pytest

from support.ansible import sandbox_playbook

# site.yml installs HAMi and labels the nodes: put back when the file is done (tests/integration/conftest.py).
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("site_put_back")]

ROLL_TASK = ("inferops.vllm.vllm_serve : Lower the partition pod by pod, each gated by readiness and an endpoint "
             "check of that pod")
KEY_1, KEY_2 = "first-" + "a" * 40, "second-" + "b" * 40
PODS = ("vllm-0", "vllm-1")


def status(sandbox, pod: str, key: str) -> int:
    """What the pod answers to GET /v1/models with this key (its own port
    of the stand-in: hack/sandboxctl/settings.py vllm_port_key)."""
    port = sandbox.state["ports"]["vllm_standin" if pod == "vllm-0" else f"vllm_standin_{pod.rpartition('-')[2]}"]
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def answers(sandbox, key: str) -> list[int]:
    return [status(sandbox, pod, key) for pod in PODS]


def uids(kube, namespace) -> dict:
    return {p["metadata"]["name"]: p["metadata"]["uid"]
            for p in kube.list("v1", "Pod", namespace, label_selector="app.kubernetes.io/instance=vllm")}


def leaks(text: str, key: str) -> list[str]:
    """The forms of the key found in text: itself, base64, unsalted hashes."""
    forms = {"key": key, "base64": base64.b64encode(key.encode()).decode(),
             "sha256": hashlib.sha256(key.encode()).hexdigest(), "sha1": hashlib.sha1(key.encode()).hexdigest(),
             "md5": hashlib.md5(key.encode()).hexdigest()}
    return [name for name, form in forms.items() if form in text]


def changed_tasks(run) -> list[str]:
    return [t["task"]["name"] for t in run.tasks() if any(h.get("changed") for h in t["hosts"].values())]


def test_a_users_key_secret_is_used_as_it_is_rolled_when_rotated_and_left_at_teardown(sandbox, kube, namespace):
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-key", "namespace": namespace},
                 "data": {"api-key": base64.b64encode(KEY_1.encode()).decode(),
                          "other": base64.b64encode(b"kept").decode()}})
    made = kube.get("v1", "Secret", namespace, "team-key")

    first = sandbox_playbook(sandbox, "site.yml", namespace, vllm_serve_replicas=2,
                             vllm_serve_api_key_secret="team-key", vllm_serve_wait_timeout=120)
    assert first.rc == 0, first.failures()
    after = kube.get("v1", "Secret", namespace, "team-key")
    # Not rewritten, not labelled: the very object the user made.
    assert after["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    assert sorted(after["data"]) == ["api-key", "other"] and not after["metadata"].get("labels")
    assert answers(sandbox, KEY_1) == [200, 200]

    # The user rotates the key in their own Secret; the next run rolls every pod onto it.
    before = uids(kube, namespace)
    kube.patch("v1", "Secret", namespace, "team-key",
               body={"data": {"api-key": base64.b64encode(KEY_2.encode()).decode()}})
    rotated = sandbox_playbook(sandbox, "playbooks/serve.yml", namespace, vllm_serve_replicas=2,
                               vllm_serve_api_key_secret="team-key", vllm_serve_wait_timeout=120)
    assert rotated.rc == 0, rotated.failures()
    assert rotated.task(ROLL_TASK).get("skipped") is not True
    now = uids(kube, namespace)
    assert sorted(now) == sorted(before) and all(now[p] != before[p] for p in before), "a pod was not replaced"
    assert answers(sandbox, KEY_1) == [401, 401] and answers(sandbox, KEY_2) == [200, 200]
    assert kube.get("v1", "Secret", namespace, "team-key")["data"]["other"] == after["data"]["other"]

    down = sandbox_playbook(sandbox, "playbooks/teardown.yml", namespace, teardown_level="service",
                            vllm_serve_api_key_secret="team-key")
    assert down.rc == 0, down.failures()
    left = kube.get("v1", "Secret", namespace, "team-key")
    assert sorted(left["data"]) == ["api-key", "other"] and not left["metadata"].get("labels")
    # The role's own salt Secret went with the service.
    assert not kube.list("v1", "Secret", namespace, field_selector="metadata.name=vllm-api-key-salt")


def test_a_new_key_rolls_every_replica_and_is_nowhere_readable(sandbox, kube, namespace):
    first = sandbox_playbook(sandbox, "site.yml", namespace, vllm_serve_replicas=2, vllm_serve_api_key=KEY_1,
                             vllm_serve_wait_timeout=120)
    assert first.rc == 0, first.failures()
    assert answers(sandbox, KEY_1) == [200, 200]  # each pod runs with the first key
    before = uids(kube, namespace)

    # Check mode says the pods would be rolled, and changes nothing.
    preview = sandbox_playbook(sandbox, "playbooks/serve.yml", namespace, extra_args=["--check", "--diff"],
                               vllm_serve_replicas=2, vllm_serve_api_key=KEY_2, vllm_serve_wait_timeout=120)
    assert preview.rc == 0, preview.failures()
    assert "would be rolled" in json.dumps(preview.task(
        "inferops.vllm.vllm_serve : Say which pods would be rolled (check mode changes nothing)"))
    assert uids(kube, namespace) == before and answers(sandbox, KEY_1) == [200, 200]

    rotated = sandbox_playbook(sandbox, "playbooks/serve.yml", namespace, vllm_serve_replicas=2,
                               vllm_serve_api_key=KEY_2, vllm_serve_wait_timeout=120)
    assert rotated.rc == 0, rotated.failures()
    assert rotated.task(ROLL_TASK).get("skipped") is not True
    now = uids(kube, namespace)
    assert all(now[p] != before[p] for p in before), "a pod kept the old key"
    assert answers(sandbox, KEY_1) == [401, 401] and answers(sandbox, KEY_2) == [200, 200]

    # What someone who may read pods and StatefulSets sees holds neither key nor a plain hash of it.
    readable = json.dumps([kube.get("apps/v1", "StatefulSet", namespace, "vllm"),
                           kube.list("v1", "Pod", namespace), kube.list("apps/v1", "ControllerRevision", namespace)])
    assert leaks(readable, KEY_1) == [] and leaks(readable, KEY_2) == []
    template = kube.get("apps/v1", "StatefulSet", namespace, "vllm")["spec"]["template"]["metadata"]["annotations"]
    assert len(template["inferops.io/api-key-hmac"]) == 64

    again = sandbox_playbook(sandbox, "playbooks/serve.yml", namespace, vllm_serve_replicas=2,
                             vllm_serve_api_key=KEY_2, vllm_serve_wait_timeout=120)
    assert again.rc == 0 and again.changed() == 0, changed_tasks(again)


def test_objects_someone_else_made_are_refused_before_anything_is_applied(sandbox, kube, namespace):
    # A Service of the role's name, made by hand (kubectl create), not by the collection.
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "vllm", "namespace": namespace},
                 "spec": {"ports": [{"port": 80}], "selector": {"app": "theirs"}}})
    theirs = kube.get("v1", "Service", namespace, "vllm")
    model = sandbox_playbook(sandbox, "site.yml", namespace, vllm_serve_wait_timeout=120)
    # Their Service is as it was, and nothing of the service was applied.
    assert kube.get("v1", "Service", namespace, "vllm")["metadata"]["resourceVersion"] == \
        theirs["metadata"]["resourceVersion"], "their Service was changed"
    assert not kube.list("apps/v1", "StatefulSet", namespace)
    assert not [s for s in kube.list("v1", "Secret", namespace) if s["metadata"]["name"].startswith("vllm-api-key")]
    assert model.rc != 0
    refused = model.task("inferops.vllm.vllm_serve : Refuse, before anything changes, an object of these names "
                         "that the collection did not create")
    assert refused["failed"] is True, refused
    assert f"Service {namespace}/vllm exists and was not created by inferops.vllm" in refused["msg"], refused["msg"]
    assert "written by" in refused["msg"] and "vllm_serve_name" in refused["msg"], refused["msg"]

    # The same for the model's claim and credentials Secret (another namespace's worth of names: a fresh model).
    kube.create({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "other-model-fetch-credentials", "namespace": namespace},
                 "data": {"TOKEN": base64.b64encode(b"theirs").decode()}})
    stored = sandbox_playbook(sandbox, "playbooks/model.yml", namespace, model_store_name="other-model",
                              model_store_claim_name="models-other-model")
    assert stored.rc != 0
    assert f"Secret {namespace}/other-model-fetch-credentials exists and was not created" in stored.failures()
    assert not kube.list("v1", "PersistentVolumeClaim", namespace, field_selector="metadata.name=models-other-model")
    secret = kube.get("v1", "Secret", namespace, "other-model-fetch-credentials")
    assert sorted(secret["data"]) == ["TOKEN"] and not secret["metadata"].get("labels")


def test_turning_the_ingress_and_networkpolicy_off_deletes_the_roles_own(sandbox, kube, namespace):
    on = {"vllm_serve_ingress_enabled": True, "vllm_serve_ingress_host": "chat.example.test",
          "vllm_serve_network_policy_enabled": True, "vllm_serve_network_policy_from": [{"namespace": "apps"}],
          "vllm_serve_wait_timeout": 120}
    first = sandbox_playbook(sandbox, "site.yml", namespace, **on)
    assert first.rc == 0, first.failures()
    assert kube.get("networking.k8s.io/v1", "Ingress", namespace, "vllm")
    assert kube.get("networking.k8s.io/v1", "NetworkPolicy", namespace, "vllm")
    # Someone else's NetworkPolicy in the same namespace: never the role's to delete.
    kube.create({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "team-policy", "namespace": namespace},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
    off = {**on, "vllm_serve_ingress_enabled": False, "vllm_serve_network_policy_enabled": False}

    preview = sandbox_playbook(sandbox, "playbooks/serve.yml", namespace, extra_args=["--check", "--diff"], **off)
    assert preview.rc == 0, preview.failures()
    assert kube.get("networking.k8s.io/v1", "Ingress", namespace, "vllm")  # check mode deleted nothing

    gone = sandbox_playbook(sandbox, "playbooks/serve.yml", namespace, **off)
    assert gone.rc == 0, gone.failures()
    assert not kube.list("networking.k8s.io/v1", "Ingress", namespace), "the role's Ingress is still there"
    assert [p["metadata"]["name"] for p in kube.list("networking.k8s.io/v1", "NetworkPolicy", namespace)] == \
        ["team-policy"]
    # What check mode said it would delete, with its diff: exactly that.
    deleting = preview.task("StatefulSet, Service, PodDisruptionBudget, Ingress, NetworkPolicy, monitoring and "
                            "autoscaling")
    assert deleting["changed"] is True and deleting["pruned"] == ["Ingress/vllm", "NetworkPolicy/vllm"], deleting
    assert [d["after_header"] for d in deleting["diff"]] == ["Ingress/vllm (pruned)", "NetworkPolicy/vllm (pruned)"]
    again = sandbox_playbook(sandbox, "playbooks/serve.yml", namespace, **off)
    assert again.rc == 0 and again.changed() == 0, changed_tasks(again)
