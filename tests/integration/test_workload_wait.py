"""inferops.vllm.workload_wait on real rollouts and on the failures an
operator meets, made by kwok stages (hack/cluster/stages)."""

from __future__ import annotations

import pytest

from support.ansible import run_module

pytestmark = pytest.mark.integration
IMAGE = "registry.invalid/vllm-openai:v0.12.0"
# More nvidia.com/gpu than a sandbox GPU node advertises (8 GPUs x HAMi's split count 10 device IDs):
# kube-scheduler finds no node for it.
TOO_MANY = "81"


def statefulset(name: str, gpus: int = 1, replicas: int = 1, labels: dict | None = None, probe: bool = False) -> dict:
    container = {"name": "vllm", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/health", "port": 8000}}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name, **(labels or {})}},
                              "spec": {"containers": [container]}}},
    }


def wait(sandbox, kind: str, name: str, namespace: str, **extra) -> dict:
    return run_module("inferops.vllm.workload_wait", {"kind": kind, "name": name, "namespace": namespace, **extra},
                      kubeconfig=sandbox.kubeconfig)


def test_statefulset_becomes_ready(sandbox, namespace, kube):
    kube.create(statefulset("serve", gpus=4, replicas=3), namespace)
    result = wait(sandbox, "StatefulSet", "serve", namespace, timeout=120)
    assert result.get("failed") is not True, result.get("msg")
    assert result["rolled_out"] is True and result["changed"] is False
    assert result["pods"] == ["serve-0", "serve-1", "serve-2"]
    assert 0 <= result["first_pod_ready_s"] <= result["all_ready_s"]
    assert result["status"]["readyReplicas"] == 3


def test_statefulset_rolling_update_waits_for_new_revision(sandbox, namespace, kube):
    kube.create(statefulset("roll", replicas=2), namespace)
    assert wait(sandbox, "StatefulSet", "roll", namespace, timeout=120)["rolled_out"] is True
    kube.patch("apps/v1", "StatefulSet", namespace, "roll", strategic=True, body={"spec": {"template": {"spec": {
        "containers": [{"name": "vllm", "image": IMAGE.replace("v0.12.0", "v0.12.1")}]}}}})
    result = wait(sandbox, "StatefulSet", "roll", namespace, timeout=180)
    assert result["rolled_out"] is True
    assert result["status"]["currentRevision"] == result["status"]["updateRevision"]
    assert result["status"]["updatedReplicas"] == 2


def test_unschedulable_fails_fast_with_scheduler_message(sandbox, namespace, kube):
    kube.create(statefulset("toobig", gpus=int(TOO_MANY)), namespace)
    result = wait(sandbox, "StatefulSet", "toobig", namespace, timeout=300, fail_fast_after=1)
    assert result["failed"] is True and result["rolled_out"] is False
    assert result["elapsed_s"] < 120  # it did not sit out the 300 s timeout
    [finding] = [d for d in result["diagnosis"] if d["cause"] == "Unschedulable"]
    assert finding["object"] == f"pod/{namespace}/toobig-0"
    assert "Insufficient nvidia.com/gpu" in finding["message"]
    assert "Insufficient nvidia.com/gpu" in result["msg"]


def test_bad_image_is_named(sandbox, namespace, kube):
    kube.create(statefulset("badimg", labels={"sandbox.inferops.io/fail": "imagepull"}), namespace)
    result = wait(sandbox, "StatefulSet", "badimg", namespace, timeout=300, fail_fast_after=1)
    assert result["failed"] is True
    [finding] = [d for d in result["diagnosis"] if d["cause"] == "ImagePullBackOff"]
    assert finding["image"] == IMAGE and finding["container"] == "vllm"
    assert IMAGE in result["msg"]


def test_crashloop_reports_restarts_and_previous_log(sandbox, namespace, kube):
    # kwok serves logs for pods named crasher-0 (tests/fixtures/sandbox.yml (logged_pods)).
    kube.create(statefulset("crasher", labels={"sandbox.inferops.io/fail": "crashloop"}), namespace)
    result = wait(sandbox, "StatefulSet", "crasher", namespace, timeout=300, fail_fast_after=1, log_lines=5)
    assert result["failed"] is True
    [finding] = [d for d in result["diagnosis"] if d["cause"] == "CrashLoopBackOff"]
    assert finding["container"] == "vllm" and finding["restart_count"] == 5 and finding["last_exit_code"] == 1
    # The previous (crashed) run's log, read through the API server from kwok.
    assert any("CUDA out of memory" in line for line in finding["log_tail"]), finding["log_tail"]


def test_unschedulable_waits_while_the_old_pod_terminates(sandbox, namespace, kube):
    """A rolling update that replaces a whole-node pod: the new pod cannot fit
    until the old one, still terminating (held here by a finalizer, as vLLM
    draining would hold it), has gone. That is not a reason to give up."""
    busy = {p["spec"].get("nodeName") for p in kube.list("/api/v1/pods")
            if p["spec"].get("nodeName") and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and any("nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {}) for c in p["spec"]["containers"])}
    node = next(n for n in sandbox.gpu_nodes if n not in busy)
    gpus = kube.get(f"/api/v1/nodes/{node}")["status"]["allocatable"]["nvidia.com/gpu"]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "whole"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "whole"}},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                 "template": {"metadata": {"labels": {"app": "whole"}}, "spec": {
                     "nodeSelector": {"kubernetes.io/hostname": node},
                     "containers": [{"name": "vllm", "image": IMAGE,
                                     "resources": {"limits": {"nvidia.com/gpu": gpus}}}]}}}}
    kube.create(deployment, namespace)
    assert wait(sandbox, "Deployment", "whole", namespace, timeout=120)["rolled_out"] is True
    [old] = kube.list("v1", "Pod", namespace, label_selector="app=whole")
    old_pod = ("v1", "Pod", namespace, old["metadata"]["name"])
    hold = {"metadata": {"finalizers": ["sandbox.inferops.io/hold"]}}
    kube.patch(*old_pod, strategic=True, body=hold)
    try:
        # Strategic: the image changes, the container keeps its GPU limit.
        kube.patch("apps/v1", "Deployment", namespace, "whole", strategic=True, body={"spec": {"template": {
            "spec": {"containers": [{"name": "vllm", "image": IMAGE.replace("v0.12.0", "v0.12.1")}]}}}})
        kube.wait_for(("v1", "Pod", namespace), lambda p: any(
            c.get("reason") == "Unschedulable" for c in ((p.get("status") or {}).get("conditions") or [])), 120)
        held = wait(sandbox, "Deployment", "whole", namespace, timeout=4, fail_fast_after=0.5)
        assert held["failed"] is True and "timed out after 4s" in held["msg"], held["msg"]
        assert any(d["cause"] == "Unschedulable" for d in held["diagnosis"])
    finally:
        kube.patch(*old_pod, strategic=True, body={"metadata": {"finalizers": None}})
    # The old pod goes, its GPUs come back, and the same wait now succeeds.
    result = wait(sandbox, "Deployment", "whole", namespace, timeout=120, fail_fast_after=0.5)
    assert result.get("failed") is not True, result.get("msg")
    assert result["rolled_out"] is True


def test_probe_failure_is_reported_on_timeout(sandbox, namespace, kube):
    kube.create(statefulset("unready", labels={"sandbox.inferops.io/fail": "readiness"}, probe=True), namespace)
    # The probe has failed (the kubelet's event is there) before the wait
    # starts, so the short timeout races nothing on a slow machine.
    kube.wait_for(f"/api/v1/namespaces/{namespace}/events", lambda e: e.get("reason") == "Unhealthy", 120)
    result = wait(sandbox, "StatefulSet", "unready", namespace, timeout=3)
    assert result["failed"] is True and "timed out after 3s" in result["msg"]
    [finding] = [d for d in result["diagnosis"] if d["cause"] == "ProbeFailed"]
    assert "Readiness probe failed" in finding["message"]


def test_job_backoff_limit(sandbox, namespace, kube):
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fetch"},
        "spec": {"backoffLimit": 0, "template": {
            "metadata": {"labels": {"pod-container-running-failed.stage.kwok.x-k8s.io": "true"},
                         "annotations": {"pod-container-running-failed.stage.kwok.x-k8s.io/delay": "100"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "fetch", "image": "registry.invalid/fetch:1"}]}}},
    }
    kube.create(job, namespace)
    result = wait(sandbox, "Job", "fetch", namespace, timeout=180)
    assert result["failed"] is True
    assert any(d["cause"] == "BackoffLimitExceeded" and d["object"] == f"job/{namespace}/fetch" for d in result["diagnosis"])


def test_job_completes(sandbox, namespace, kube):
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ok"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "registry.invalid/fetch:1"}]}}}}
    kube.create(job, namespace)
    result = wait(sandbox, "Job", "ok", namespace, timeout=120)
    assert result.get("failed") is not True, result.get("msg")
    assert result["rolled_out"] is True


def test_missing_workload_is_a_clear_error(sandbox, namespace):
    result = wait(sandbox, "Deployment", "nope", namespace, timeout=5)
    assert result["failed"] is True and "does not exist" in result["msg"] and namespace in result["msg"]


def test_wait_survives_an_api_server_restart(sandbox, namespace, kube):
    """The watches reconnect and re-list when the API server goes away and
    comes back; the rollout that finishes afterwards is still seen."""
    import threading

    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import RolloutWaiter
    from support.sandbox import sandbox_cmd

    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "survivor"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "survivor"}},
                 "template": {"metadata": {"labels": {"app": "survivor"}}, "spec": {"containers": [
                     {"name": "vllm", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": TOO_MANY}}}]}}},
    }
    kube.create(deployment, namespace)
    waiter = RolloutWaiter(connect({"kubeconfig": sandbox.kubeconfig}), "Deployment", "survivor", namespace,
                           timeout=240, fail_fast=[], fail_fast_after=0)
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = waiter.wait()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    assert waiter.watching.wait(60), "the waiter never started watching"
    restarted = sandbox_cmd("restart", "kube-apiserver", check=False)
    assert restarted.returncode == 0, restarted.stdout
    kube.patch("apps/v1", "Deployment", namespace, "survivor", strategic=True, body={"spec": {"template": {
        "spec": {"containers": [{"name": "vllm", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}})
    thread.join(240)
    assert "error" not in outcome, getattr(outcome.get("error"), "msg", outcome.get("error"))
    result = outcome["result"]
    assert result["rolled_out"] is True
    assert result["watch"]["reconnects"] >= 1  # the watch did break, and came back


def test_wait_rides_out_a_15_second_api_server_outage(sandbox, namespace, kube):
    """The API server is stopped for 15 s in the middle of a wait (the
    outage is the fault being injected, so it is timed); the wait keeps
    reconnecting with backoff and answers once the rollout completes."""
    import threading

    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._client import connect
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._wait import RolloutWaiter
    from support.sandbox import sandbox_cmd

    kube.create({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "outage"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "outage"}},
                 "template": {"metadata": {"labels": {"app": "outage"}}, "spec": {"containers": [
                     {"name": "vllm", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": TOO_MANY}}}]}}},
    }, namespace)
    waiter = RolloutWaiter(connect({"kubeconfig": sandbox.kubeconfig}), "Deployment", "outage", namespace,
                           timeout=240, fail_fast=[], fail_fast_after=0)
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = waiter.wait()
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    assert waiter.watching.wait(60), "the waiter never started watching"
    assert sandbox_cmd("stop", "kube-apiserver", check=False).returncode == 0
    try:
        threading.Event().wait(15)  # the outage itself
        assert "error" not in outcome, getattr(outcome.get("error"), "msg", outcome.get("error"))
    finally:
        started = sandbox_cmd("start", "kube-apiserver", check=False)
    assert started.returncode == 0, started.stdout
    kube.patch("apps/v1", "Deployment", namespace, "outage", strategic=True, body={"spec": {"template": {
        "spec": {"containers": [{"name": "vllm", "image": IMAGE, "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}})
    thread.join(240)
    assert "error" not in outcome, getattr(outcome.get("error"), "msg", outcome.get("error"))
    assert outcome["result"]["rolled_out"] is True and outcome["result"]["watch"]["reconnects"] >= 1


def test_node_going_not_ready_is_named_then_the_rollout_recovers(sandbox, namespace, kube):
    """The nodes' kubelets go silent in the middle of a rollout (kwok, which
    plays them, is stopped): after its grace period the node controller marks
    the nodes Unknown, taints them and marks their pods not Ready, and the new
    pod of the rollout cannot be placed. The wait names the node its pod is
    pinned to. When the kubelets are back the nodes are Ready again and their
    running pods are reported Ready again, as a kubelet does after an outage
    (the sandbox's job runner does that part for kwok); the same wait, run
    again, sees the rollout finish."""
    from support.sandbox import sandbox_cmd

    node = sandbox.gpu_nodes[-1]
    sts = statefulset("nodedown", replicas=2)
    sts["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    kube.create(sts, namespace)
    # A bystander on the same node that no rollout replaces: its pod must come back Ready by itself.
    bystander = statefulset("bystander")
    bystander["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    kube.create(bystander, namespace)
    assert wait(sandbox, "StatefulSet", "nodedown", namespace, timeout=60).get("rolled_out") is True
    assert wait(sandbox, "StatefulSet", "bystander", namespace, timeout=60).get("rolled_out") is True
    uid = kube.get("v1", "Pod", namespace, "bystander-0")["metadata"]["uid"]

    def ready_is(status):
        return lambda p: p["metadata"]["name"] == "bystander-0" and any(
            c["type"] == "Ready" and c["status"] == status for c in p["status"].get("conditions", []))

    stopped = sandbox_cmd("stop", "kwok", check=False)
    try:
        assert stopped.returncode == 0, stopped.stdout
        # No heartbeat: the node controller marks the nodes Unknown and their pods not Ready (50 s grace).
        kube.wait_for(("v1", "Pod", namespace), ready_is("False"), timeout=150)
        # A new revision rolls out while the node is down.
        kube.patch("apps/v1", "StatefulSet", namespace, "nodedown", strategic=True,
                   body={"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}})
        result = wait(sandbox, "StatefulSet", "nodedown", namespace, timeout=30)
        assert result.get("failed") is True, result
        causes = {f["cause"]: f for f in result["diagnosis"]}
        assert "NodeNotReady" in causes, result["diagnosis"]
        assert node in causes["NodeNotReady"]["message"], causes["NodeNotReady"]
    finally:
        started = sandbox_cmd("start", "kwok", check=False)
    assert started.returncode == 0, started.stdout
    again = wait(sandbox, "StatefulSet", "nodedown", namespace, timeout=120)
    assert again.get("failed") is not True and again["rolled_out"] is True, again
    # The same bystander pod, Ready again.
    assert kube.wait_for(("v1", "Pod", namespace), ready_is("True"), timeout=60)["metadata"]["uid"] == uid
    # The sandbox as the next test file must find it: every node Ready and without the taints the node
    # controller put on them during the outage (it takes them off once the nodes report again).
    from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

    outage_taints = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}
    wait_until(kube.api, "/api/v1/nodes", lambda nodes: all(
        not outage_taints & {t["key"] for t in (n.get("spec") or {}).get("taints") or []} and any(
            c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))
        for n in nodes), 180)


def fetch_job(sandbox, namespace, kube, name: str, prefix: str, policy: str | None) -> None:
    """A download Job as model_store makes it (the collection's fetch command in the image the sandbox
    runs, restartPolicy OnFailure, backoffLimit 3), from the sandbox's S3 server, at a prefix with nothing."""
    import base64

    creds = sandbox.s3_credentials()
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{name}-creds"}, "data": {
        "AWS_ACCESS_KEY_ID": base64.b64encode(creds["access_key"].encode()).decode(),
        "AWS_SECRET_ACCESS_KEY": base64.b64encode(creds["secret_key"].encode()).decode()}}, namespace)
    container = {"name": "model-fetch", "image": sandbox.state["job_runner"]["images"][0],
                 "command": ["python3", "-m", "ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli"],
                 "args": ["--source", "s3", "--dest", "/models/m", "--endpoint-url", sandbox.s3_endpoint,
                          "--bucket", sandbox.state["s3"]["seed_model"]["bucket"], "--prefix", prefix],
                 "envFrom": [{"secretRef": {"name": f"{name}-creds"}}],
                 "volumeMounts": [{"name": "models", "mountPath": "/models"}]}
    if policy:
        container["terminationMessagePolicy"] = policy
    kube.create({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {
        "backoffLimit": 3, "template": {"spec": {"restartPolicy": "OnFailure", "containers": [container],
                                                 "volumes": [{"name": "models", "emptyDir": {}}]}}}}, namespace)


def test_failed_download_job_says_what_the_fetcher_said(sandbox, namespace, kube):
    """Not only BackoffLimitExceeded: the fetcher's own error, from its
    container's termination message (FallbackToLogsOnError: the end of its
    output, where it prints its result), although the Job controller has
    deleted the pod by the time the Job is Failed. The sandbox's job runner
    really runs the fetcher against the sandbox's S3 server."""
    fetch_job(sandbox, namespace, kube, "fetch-missing", "no-such-model/", "FallbackToLogsOnError")
    result = wait(sandbox, "Job", "fetch-missing", namespace, timeout=180, fail_fast=["BackoffLimitExceeded"])
    assert result["failed"] is True
    [job] = [d for d in result["diagnosis"] if d["cause"] == "BackoffLimitExceeded"]
    assert job["object"] == f"job/{namespace}/fetch-missing"
    assert "container 'model-fetch' of pod fetch-missing-" in job["message"], job["message"]
    assert "no-such-model" in job["message"] and "exited with code 1: " in job["message"], job["message"]
    assert "exited with code 1: " in result["msg"] and "no-such-model" in result["msg"]
    # Its credentials are in no message.
    assert sandbox.s3_credentials()["secret_key"] not in str(result)
