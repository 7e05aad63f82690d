"""The reconcile engine (k8s_reconcile) against the sandbox's real API
server: what a user of the roles relies on when a stage is applied. Every
refusal is listed before anything is written; a rerun changes nothing; what
the stage no longer wants is pruned, never another's object; a changed pod
template is held by the partition; a field KEDA owns is left alone; check
mode writes nothing and shows the diff. And the k8s_retry action with the
play's module_defaults."""

from __future__ import annotations

import json

import pytest

from support.ansible import run_module
from support.modules import call

pytestmark = [pytest.mark.integration]

OURS = {"app.kubernetes.io/managed-by": "inferops.vllm", "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": "rec"}
SELECTOR = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "rec"}
PRUNE = {"kinds": [{"api_version": "v1", "kind": "Service"}, {"api_version": "v1", "kind": "ConfigMap"},
                   {"api_version": "apps/v1", "kind": "StatefulSet"},
                   {"api_version": "keda.sh/v1alpha1", "kind": "ScaledObject"}],
         "labels": SELECTOR}


def service(namespace: str, name: str = "rec", port: int = 8000, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": OURS if labels is None else labels},
            "spec": {"selector": SELECTOR, "ports": [{"name": "http", "port": port, "targetPort": port}]}}


def config_map(namespace: str, name: str, data: dict, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": OURS if labels is None else labels},
            "data": data}


def statefulset(namespace: str, image: str, replicas: int | None = 2, partition: int = 0) -> dict:
    spec = {"serviceName": "rec", "podManagementPolicy": "Parallel", "selector": {"matchLabels": SELECTOR},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            "template": {"metadata": {"labels": SELECTOR},
                         "spec": {"containers": [{"name": "vllm", "image": image}]}}}
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "rec", "namespace": namespace, "labels": OURS}, "spec": spec}


def reconcile(sandbox, capsys, definitions, check_mode=False, diff=False, **extra) -> dict:
    return call("k8s_reconcile", {"definitions": definitions, "kubeconfig": sandbox.kubeconfig, **extra}, capsys,
                check_mode=check_mode, diff=diff)


def test_applies_then_a_rerun_changes_nothing_and_check_mode_writes_nothing(sandbox, kube, namespace, capsys):
    objects = [service(namespace), config_map(namespace, "rec-a", {"k": "1"})]
    planned = reconcile(sandbox, capsys, objects, check_mode=True, diff=True)
    assert planned["changed"] and [o["action"] for o in planned["objects"]] == ["create", "create"]
    assert kube.list("v1", "ConfigMap", namespace, label_selector="app.kubernetes.io/instance=rec") == []

    first = reconcile(sandbox, capsys, objects)
    assert first["changed"] and [o["action"] for o in first["objects"]] == ["create", "create"]
    again = reconcile(sandbox, capsys, objects)
    assert not again["changed"] and [o["action"] for o in again["objects"]] == ["none", "none"]

    # One field changes: that object alone is written, and its diff is that field.
    objects[1] = config_map(namespace, "rec-a", {"k": "2"})
    version = kube.get("v1", "Service", namespace, "rec")["metadata"]["resourceVersion"]
    changed = reconcile(sandbox, capsys, objects, diff=True)
    assert [o["action"] for o in changed["objects"]] == ["none", "update"]
    assert changed["objects"][1]["diff"] == {"before": {"data": {"k": "1"}}, "after": {"data": {"k": "2"}}}
    assert kube.get("v1", "ConfigMap", namespace, "rec-a")["data"] == {"k": "2"}
    assert kube.get("v1", "Service", namespace, "rec")["metadata"]["resourceVersion"] == version


def test_every_refusal_is_listed_and_nothing_is_written(sandbox, kube, namespace, capsys):
    kube.create(config_map(namespace, "theirs", {"k": "v"}, labels={"app": "theirs"}))
    objects = [config_map(namespace, "rec-new", {"k": "1"}),
               config_map(namespace, "theirs", {"k": "mine"}),
               service(namespace, "rec-bad", port=70000),
               {"apiVersion": "example.invalid/v1", "kind": "Widget",
                "metadata": {"name": "rec", "namespace": namespace, "labels": OURS}}]
    failed = reconcile(sandbox, capsys, objects)
    assert failed["failed"]
    # The ownership refusal and the unserved kind come first, together...
    assert "ConfigMap " + namespace + "/theirs exists and was not created by inferops.vllm" in failed["msg"]
    assert "example.invalid/v1/Widget" in failed["msg"] and "nothing was applied" in failed["msg"]
    assert kube.get("v1", "ConfigMap", namespace, "theirs")["data"] == {"k": "v"}
    # ...then, with those gone, what the API server refuses in the dry run, before any write.
    failed = reconcile(sandbox, capsys, [objects[0], objects[2]])
    assert failed["failed"] and "Service/rec-bad" in failed["msg"] and "Nothing was applied" in failed["msg"]
    assert kube.list("v1", "ConfigMap", namespace, label_selector="app.kubernetes.io/instance=rec") == []


def test_prunes_only_its_own_objects_that_the_stage_no_longer_wants(sandbox, kube, namespace, capsys):
    reconcile(sandbox, capsys, [service(namespace), service(namespace, "rec-group"),
                                config_map(namespace, "rec-dash", {"d": "1"})])
    # Look-alikes: the same labels without the collection's, and another instance's.
    kube.create(config_map(namespace, "rec-theirs", {"k": "v"}, labels=SELECTOR))
    kube.create(config_map(namespace, "other", {"k": "v"}, labels={**OURS, "app.kubernetes.io/instance": "other"}))

    planned = reconcile(sandbox, capsys, [service(namespace)], prune=PRUNE, check_mode=True)
    assert sorted(planned["pruned"]) == ["ConfigMap/rec-dash", "Service/rec-group"]
    assert kube.get("v1", "Service", namespace, "rec-group")

    done = reconcile(sandbox, capsys, [service(namespace)], prune=PRUNE)
    assert done["changed"] and sorted(done["pruned"]) == ["ConfigMap/rec-dash", "Service/rec-group"]
    left = {c["metadata"]["name"] for c in kube.list("v1", "ConfigMap", namespace)}
    assert {"rec-theirs", "other"} <= left and "rec-dash" not in left
    assert [s["metadata"]["name"] for s in kube.list("v1", "Service", namespace)] == ["rec"]
    assert not reconcile(sandbox, capsys, [service(namespace)], prune=PRUNE)["changed"]


def test_a_changed_template_is_held_by_the_partition_and_a_field_keda_owns_is_left(
        sandbox, kube, namespace, capsys):
    gate = {"name": "rec", "replicas": 2}
    first = reconcile(sandbox, capsys, [statefulset(namespace, "registry.invalid/vllm:1")], gate=gate)
    assert first["gate"]["gated"] is False and first["gate"]["partition"] == 0
    kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
                  lambda s: s["metadata"]["name"] == "rec" and s["status"].get("readyReplicas", 0) == 2, 120)

    rolled = reconcile(sandbox, capsys, [statefulset(namespace, "registry.invalid/vllm:2")], gate=gate, diff=True)
    assert rolled["gate"] == {"name": "rec", "gated": True, "partition": 2, "template_changed": True,
                              "unfinished": False}
    live = kube.get("apps/v1", "StatefulSet", namespace, "rec")
    assert live["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 2
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.invalid/vllm:2"
    # The same run again: the rollout is unfinished, the partition stays where it is.
    again = reconcile(sandbox, capsys, [statefulset(namespace, "registry.invalid/vllm:2")], gate=gate)
    assert again["gate"]["gated"] and again["gate"]["unfinished"] and not again["changed"]

    # KEDA scales it (replicas 3); the definition leaves replicas out: the count stays.
    kube.patch("apps/v1", "StatefulSet", namespace, "rec", body={"spec": {"replicas": 3}})
    kept = reconcile(sandbox, capsys, [statefulset(namespace, "registry.invalid/vllm:2", replicas=None, partition=2)],
                     leave_fields=["spec.replicas"])
    live = kube.get("apps/v1", "StatefulSet", namespace, "rec")
    assert live["spec"]["replicas"] == 3, kept
    # The record forgets the count (a later apply must not delete it), once: the next run changes nothing.
    record = json.loads(live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    assert "replicas" not in record["spec"] and kept["changed"]
    again = reconcile(sandbox, capsys, [statefulset(namespace, "registry.invalid/vllm:2", replicas=None, partition=2)],
                      leave_fields=["spec.replicas"])
    assert not again["changed"], again["objects"]


def test_k8s_retry_runs_a_kubernetes_core_module_with_the_plays_connection(sandbox, namespace):
    found = run_module("inferops.vllm.k8s_retry", {"module": "kubernetes.core.k8s_info",
                                                   "args": {"kind": "Namespace", "name": namespace}},
                       kubeconfig=sandbox.kubeconfig)
    assert found["attempts"] == 1 and found["resources"][0]["metadata"]["name"] == namespace
    wrong = run_module("inferops.vllm.k8s_retry", {"module": "ansible.builtin.command", "args": {}})
    assert wrong["failed"] and "kubernetes.core module" in wrong["msg"]
