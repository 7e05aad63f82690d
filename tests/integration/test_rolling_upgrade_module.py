"""rolling_upgrade on the sandbox, beyond its ansible-test target: KEDA
paused while it rolls and resumed however it ends (only the collection's
ScaledObject), nothing to roll for a StatefulSet of no replicas, and a
failed rollback that says which pod runs which revision. No KEDA operator
runs in the sandbox: the pause is the annotation KEDA v2.21.0 reads
(plugins/module_utils/serving/_autoscaling.py cites where)."""

from __future__ import annotations

import pytest

from support.ansible import run_module
from support.keda import MARK, PAUSED, Recorder, check_paused_around_the_rollout, crds_put_back
from support.sandbox import sandbox_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def keda_crds_removed_after(kube):
    yield from crds_put_back(kube)


OURS = {"app.kubernetes.io/managed-by": "inferops.vllm", "app.kubernetes.io/instance": "web"}


def statefulset(namespace: str, replicas: int, image: str = "registry.invalid/web:1", labels: dict | None = None,
                partition: int = 0) -> dict:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": replicas, "serviceName": "web", "podManagementPolicy": "Parallel",
                     "selector": {"matchLabels": {"app": "web"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
                     "template": {"metadata": {"labels": {"app": "web", **(labels or {})}},
                                  "spec": {"containers": [{"name": "web", "image": image}]}}}}


def scaled_object(namespace: str, name: str, target: str, labels: dict, annotations: dict | None = None) -> dict:
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations or {}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": target},
                     "minReplicaCount": 1, "maxReplicaCount": 4,
                     "triggers": [{"type": "prometheus", "metadata": {
                         "serverAddress": "http://prometheus:9090", "query": "sum(up)", "threshold": "1"}}]}}


def roll(sandbox, namespace, **extra) -> dict:
    return run_module("inferops.vllm.rolling_upgrade", {"name": "web", "namespace": namespace, "check": False,
                                                        "timeout": 60, **extra}, kubeconfig=sandbox.kubeconfig)


def wait_ready(kube, namespace, replicas: int):
    kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
                  lambda s: s["metadata"]["name"] == "web" and s["status"].get("readyReplicas", 0) == replicas
                  and s["status"].get("observedGeneration") == s["metadata"]["generation"], 120)


def new_template(kube, namespace, image: str, labels: dict | None = None, partition: int = 2):
    """A new pod template, held back by the partition (as vllm_serve applies it before rolling)."""
    kube.patch("apps/v1", "StatefulSet", namespace, "web", body={"spec": {
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
        "template": {"metadata": {"labels": {"app": "web", **(labels or {})}},
                     "spec": {"containers": [{"name": "web", "image": image}]}}}})


def test_keda_is_paused_while_rolling_and_resumed_however_it_ends(sandbox, kube, namespace):
    installed = sandbox_cmd("crds", "keda", state_dir=sandbox.state_dir, check=False)
    assert installed.returncode == 0, installed.stdout
    kube.create(statefulset(namespace, 2))
    wait_ready(kube, namespace, 2)
    kube.create(scaled_object(namespace, "web", "web", OURS))
    # Not the collection's (no managed-by label), and the collection's for another StatefulSet: never touched.
    kube.create(scaled_object(namespace, "other", "web", {"team": "theirs"}))
    kube.create(scaled_object(namespace, "elsewhere", "db", {**OURS, "app.kubernetes.io/instance": "db"}))

    new_template(kube, namespace, "registry.invalid/web:2")
    preview = run_module("inferops.vllm.rolling_upgrade", {"name": "web", "namespace": namespace, "check": False},
                         kubeconfig=sandbox.kubeconfig, check=True)
    assert preview["would_pause_autoscaling"] == ["web"]
    assert (kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, "web")["metadata"].get("annotations")
            or {}).get(PAUSED) is None
    with Recorder(kube, namespace, "app=web") as recorder:
        done = roll(sandbox, namespace)
    assert done.get("failed") is not True, done
    assert done["autoscaling_paused"] == ["web"] and done["autoscaling_resumed"] == ["web"]
    assert any("ScaledObject other scales this StatefulSet and was not created by the collection" in w
               for w in done.get("warnings", [])), done.get("warnings")
    check_paused_around_the_rollout(recorder.states, done["revision"]["to"], "web", ["other", "elsewhere"])
    for name in ("web", "other", "elsewhere"):
        annotations = kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, name)["metadata"].get("annotations")
        assert not set(annotations or {}) & {PAUSED, MARK}, (name, annotations)

    # A broken revision: stopped at the first pod, rolled back, and KEDA resumed.
    good = done["revision"]["to"]
    new_template(kube, namespace, "registry.invalid/web:3", {"sandbox.inferops.io/fail": "readiness"})
    with Recorder(kube, namespace, "app=web") as recorder:
        broken = roll(sandbox, namespace, timeout=15)
    assert broken["failed"] is True and broken["rolled_back"] is True, broken["msg"]
    assert broken["autoscaling_resumed"] == ["web"]
    assert any(s["paused"].get("web") == "true" for s in recorder.states)
    assert recorder.states[-1]["paused"].get("web") is None
    assert all(state[0] == good for state in recorder.states[-1]["pods"].values())

    # A pause a rollout cut short left (its mark on it) is lifted by the next run, which has nothing to roll;
    # one the user set is left alone.
    kube.patch("keda.sh/v1alpha1", "ScaledObject", namespace, "web",
               body={"metadata": {"annotations": {PAUSED: "true", MARK: good}}})
    kube.patch("keda.sh/v1alpha1", "ScaledObject", namespace, "other", body={"metadata": {"annotations": {
        PAUSED: "true"}}})
    lifted = roll(sandbox, namespace)
    assert lifted["changed"] is True and lifted["autoscaling_resumed"] == ["web"], lifted
    assert not set(kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, "web")["metadata"].get(
        "annotations") or {}) & {PAUSED, MARK}
    assert kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, "other")["metadata"]["annotations"][PAUSED] == "true"
    assert roll(sandbox, namespace)["changed"] is False


def test_a_statefulset_of_no_replicas_has_nothing_to_roll(sandbox, kube, namespace):
    kube.create(statefulset(namespace, 2))
    wait_ready(kube, namespace, 2)
    # A pod of the old revision still there (a finalizer holds it while it terminates): the StatefulSet has not
    # finished its revision, yet there is no pod to roll.
    kube.patch("v1", "Pod", namespace, "web-0", body={"metadata": {"finalizers": ["inferops.io/test-hold"]}})
    kube.patch("apps/v1", "StatefulSet", namespace, "web", body={"spec": {"replicas": 0}})
    new_template(kube, namespace, "registry.invalid/web:2", partition=0)
    kube.wait_for(f"/api/v1/namespaces/{namespace}/pods",
                  lambda p: p["metadata"]["name"] == "web-0" and p["metadata"].get("deletionTimestamp"), 60)
    quiet = roll(sandbox, namespace)
    assert quiet.get("failed") is not True, quiet
    assert quiet["changed"] is False and "has no replicas: nothing to roll" in quiet["message"], quiet
    # A partition left above 0 (vllm_serve holds a template change there) is set back, once: pods made later
    # start on the update revision.
    new_template(kube, namespace, "registry.invalid/web:3", partition=2)
    cleared = roll(sandbox, namespace)
    assert cleared["changed"] is True and "partition 2 set to 0" in cleared["message"], cleared
    sts = kube.get("apps/v1", "StatefulSet", namespace, "web")
    assert sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 0
    assert roll(sandbox, namespace)["changed"] is False
    kube.patch("v1", "Pod", namespace, "web-0", body={"metadata": {"finalizers": None}})
    kube.patch("apps/v1", "StatefulSet", namespace, "web", body={"spec": {"replicas": 2}})
    wait_ready(kube, namespace, 2)
    update = kube.get("apps/v1", "StatefulSet", namespace, "web")["status"]["updateRevision"]
    pods = kube.list("v1", "Pod", namespace, label_selector="app=web")
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {update}
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"registry.invalid/web:3"}


def test_a_failed_rollback_says_which_pod_runs_which_revision(sandbox, kube, namespace):
    installed = sandbox_cmd("crds", "keda", state_dir=sandbox.state_dir, check=False)
    assert installed.returncode == 0, installed.stdout
    # The revision running now is broken too (never Ready): the rollback to it cannot succeed.
    kube.create(statefulset(namespace, 2, labels={"sandbox.inferops.io/fail": "readiness"}))
    kube.wait_for(f"/api/v1/namespaces/{namespace}/pods",
                  lambda p: p["metadata"]["name"] == "web-1" and p["status"].get("phase") == "Running", 120)
    kube.create(scaled_object(namespace, "web", "web", OURS))
    current = kube.get("apps/v1", "StatefulSet", namespace, "web")["status"]["currentRevision"]
    new_template(kube, namespace, "registry.invalid/web:2", {"sandbox.inferops.io/fail": "readiness"})
    failed = roll(sandbox, namespace, timeout=10)
    assert failed["failed"] is True and failed["rolled_back"] is False, failed["msg"]
    assert f"The rollback to revision {current} failed too" in failed["msg"], failed["msg"]
    pods = {p["metadata"]["name"]: p for p in kube.list("v1", "Pod", namespace, label_selector="app=web")}
    # Every pod, its revision (controller-revision-hash) and readiness, in the message and in the result.
    assert [p["pod"] for p in failed["pods"]] == ["web-0", "web-1"]
    for entry in failed["pods"]:
        assert entry["ready"] is False
        assert f"{entry['pod']} revision {entry['revision']} not Ready" in failed["msg"], failed["msg"]
    assert failed["pods"][0]["revision"] == pods["web-0"]["metadata"]["labels"]["controller-revision-hash"] == current
    # KEDA is resumed all the same.
    assert failed["autoscaling_resumed"] == ["web"]
    assert PAUSED not in (kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, "web")["metadata"].get(
        "annotations") or {})
