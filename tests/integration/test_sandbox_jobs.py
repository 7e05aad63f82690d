"""The sandbox's job runner (hack/sandboxctl/jobs.py): pods of the images
`hack/sandbox up` was told to run locally (by default the sandbox inventory's
model_store_fetch_image) run on this machine as a kubelet would run them,
kwok leaves them alone, and what they did reaches the pod's status, so the
Job controller completes or fails their Jobs."""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import pytest
import yaml
from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

from support.ansible import run_playbook
from support.sandbox import sandbox_cmd

pytestmark = pytest.mark.integration
K8S_CONNECTION = {group: {"kubeconfig": "{{ inferops_kubeconfig }}"}
                  for group in ("group/inferops.vllm.k8s", "group/kubernetes.core.k8s")}


def local_image(sandbox) -> str:
    return sandbox.state["job_runner"]["images"][0]


def job(sandbox, name: str, command: list[str], args: list[str] | None = None, restart: str = "Never",
        backoff_limit: int = 0, pod: dict | None = None, **container) -> dict:
    """A Job whose one container runs the local image (container: more of its fields; pod: more of the pod's)."""
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": {
            "restartPolicy": restart,
            "containers": [{"name": "main", "image": local_image(sandbox), "command": command,
                            "args": args or [], **container}],
            **(pod or {}),
        }}},
    }


def finished(j: dict) -> str | None:
    for cond in (j.get("status") or {}).get("conditions") or []:
        if cond["type"] in ("Complete", "Failed") and cond["status"] == "True":
            return cond["type"]
    return None


def wait_job(kube, namespace: str, name: str, timeout: float = 120) -> dict:
    return kube.wait_for(("batch/v1", "Job", namespace), lambda j: j["metadata"]["name"] == name and finished(j),
                         timeout)


def job_pod(kube, namespace: str, name: str) -> dict:
    [pod] = kube.list("v1", "Pod", namespace, label_selector=f"batch.kubernetes.io/job-name={name}")
    return pod


def test_job_pod_exit_code_reaches_pod_status(sandbox, kube, namespace):
    kube.create(job(sandbox, "exits-3", ["python3", "-c", "import sys; print('giving up now'); sys.exit(3)"],
                    terminationMessagePolicy="FallbackToLogsOnError"), namespace)
    kube.create(job(sandbox, "exits-0", ["python3", "-c", "print('all done')"]), namespace)

    failed = wait_job(kube, namespace, "exits-3")
    assert finished(failed) == "Failed"
    reason = next(c["reason"] for c in failed["status"]["conditions"] if c["type"] == "Failed")
    assert reason == "BackoffLimitExceeded"
    pod = job_pod(kube, namespace, "exits-3")
    assert pod["status"]["phase"] == "Failed"
    [status] = pod["status"]["containerStatuses"]
    terminated = status["state"]["terminated"]
    assert terminated["exitCode"] == 3 and terminated["reason"] == "Error"
    assert terminated["message"] == "giving up now"  # FallbackToLogsOnError: the last lines of its output
    assert status["restartCount"] == 0 and not status["ready"]

    done = wait_job(kube, namespace, "exits-0")
    assert finished(done) == "Complete" and done["status"]["succeeded"] == 1
    pod = job_pod(kube, namespace, "exits-0")
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    # The pods ran here, not by kwok's rules: kwok's stages would have called both Completed.
    assert terminated["containerID"].startswith("sandbox://")


def test_termination_message_follows_the_containers_policy(sandbox, kube, namespace):
    """As the kubelet (v1.37.2, kuberuntime_container.go getTerminationMessage):
    the file at terminationMessagePath wins; without one, the default policy
    File gives no message, FallbackToLogsOnError the end of the output."""
    write = ("import sys; print('noise on stdout'); open(sys.argv[1], 'w').write('the reason, from the file'); "
             "sys.exit(4)")
    kube.create(job(sandbox, "writes-file", ["python3", "-c", write], ["/dev/termination-log"]), namespace)
    kube.create(job(sandbox, "file-policy", ["python3", "-c", "import sys; print('only on stdout'); sys.exit(5)"]),
                namespace)
    said = {}
    for name in ("writes-file", "file-policy"):
        assert finished(wait_job(kube, namespace, name)) == "Failed"
        [status] = job_pod(kube, namespace, name)["status"]["containerStatuses"]
        said[name] = status["state"]["terminated"].get("message")
    assert said == {"writes-file": "the reason, from the file", "file-policy": None}


def test_on_failure_restarts_count_against_the_backoff_limit(sandbox, kube, namespace):
    kube.create(job(sandbox, "flaky", ["python3", "-c", "import sys; sys.exit(7)"], restart="OnFailure",
                    backoff_limit=2), namespace)
    # The runner restarts the container in the same pod; the Job controller
    # counts its restarts and fails the Job at backoffLimit.
    restarted = kube.wait_for(("v1", "Pod", namespace),
                              lambda p: any(cs.get("restartCount", 0) >= 1 for cs in
                                            (p.get("status") or {}).get("containerStatuses") or []), 60)
    last = restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 7
    failed = wait_job(kube, namespace, "flaky")
    assert finished(failed) == "Failed"
    assert next(c["reason"] for c in failed["status"]["conditions"] if c["type"] == "Failed") == "BackoffLimitExceeded"


def test_job_pod_gets_its_env_and_its_claims_folder(sandbox, kube, namespace):
    """env and envFrom from a Secret and a ConfigMap (read through the API),
    $(VAR) expanded, and the claim's folder where the container mounts it."""
    kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                 "data": {"TOKEN": base64.b64encode(b"s3cr3t").decode()}}, namespace)
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                 "data": {"colour": "blue"}}, namespace)
    kube.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
                 "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": sandbox.state["storage_class"],
                          "resources": {"requests": {"storage": "1Gi"}}}}, namespace)
    script = ("import json, os, sys; json.dump({k: os.environ.get(k) for k in "
              "('TOKEN', 'COLOUR', 'GREETING', 'MY_NAMESPACE', 'OUT_DIR', 'AWS_ACCESS_KEY_ID')}, "
              "open(sys.argv[1], 'w'))")
    kube.create(job(sandbox, "writes", ["python3", "-c", script], ["/data/out.json"],
                    envFrom=[{"secretRef": {"name": "creds"}}],
                    env=[{"name": "COLOUR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "colour"}}},
                         {"name": "GREETING", "value": "hello $(COLOUR)"},
                         {"name": "MY_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                         {"name": "OUT_DIR", "value": "/data/results"}],
                    volumeMounts=[{"name": "data", "mountPath": "/data", "subPath": "job"}],
                    pod={"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]}), namespace)
    assert finished(wait_job(kube, namespace, "writes")) == "Complete"

    claim = kube.get("v1", "PersistentVolumeClaim", namespace, "data")
    volume = kube.get("v1", "PersistentVolume", None, claim["spec"]["volumeName"])
    folder = Path(volume["spec"]["hostPath"]["path"]) / "job"
    seen = json.loads((folder / "out.json").read_text())
    assert seen == {"TOKEN": "s3cr3t", "COLOUR": "blue", "GREETING": "hello blue", "MY_NAMESPACE": namespace,
                    # A path under the mount, in env too; nothing of the runner's own environment.
                    "OUT_DIR": str(folder / "results"), "AWS_ACCESS_KEY_ID": None}


def test_runner_restart_loses_running_containers_as_a_kubelet_would(sandbox, kube, namespace, tmp_path):
    """Restarted, the runner finds the containers it ran gone: a Never pod
    fails (ContainerStatusUnknown), an OnFailure pod runs it again."""
    script = ("import pathlib, sys, time; marker = pathlib.Path(sys.argv[1]); "
              "sys.exit(0) if marker.exists() else (marker.touch(), time.sleep(300))")
    for name, restart, backoff_limit in (("never", "Never", 0), ("on-failure", "OnFailure", 3)):
        kube.create(job(sandbox, name, ["python3", "-c", script], [str(tmp_path / name)], restart=restart,
                        backoff_limit=backoff_limit), namespace)
    # Both processes have started (each leaves its marker), then the runner goes and comes back.
    deadline = time.monotonic() + 60
    while not ((tmp_path / "never").exists() and (tmp_path / "on-failure").exists()):
        assert time.monotonic() < deadline, "the Job pods did not start"
        time.sleep(0.1)
    assert sandbox_cmd("restart", "job-runner", check=False).returncode == 0

    never = wait_job(kube, namespace, "never")
    assert finished(never) == "Failed"
    [status] = job_pod(kube, namespace, "never")["status"]["containerStatuses"]
    assert status["state"]["terminated"]["reason"] == "ContainerStatusUnknown"
    assert status["state"]["terminated"]["exitCode"] == 137
    again = wait_job(kube, namespace, "on-failure")
    assert finished(again) == "Complete"
    [status] = job_pod(kube, namespace, "on-failure")["status"]["containerStatuses"]
    assert status["restartCount"] == 1 and status["state"]["terminated"]["exitCode"] == 0


def test_a_deleted_pod_runs_its_prestop_hook_then_sigterm_then_sigkill_in_the_grace_period(sandbox, kube, namespace,
                                                                                           tmp_path):
    """As the kubelet stops a container (hack/sandboxctl/termination.py):
    the preStop hook first, SIGTERM once it has ended, SIGKILL at the end of
    the grace period counted from the start of preStop (4 s here: a 2.5 s
    hook leaves SIGTERM the 2 s minimum), then the pod is deleted."""
    out = str(tmp_path)
    main = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: open(sys.argv[1] + '/sigterm', 'w').write(repr(time.time())))\n"
            "while True:\n    time.sleep(0.05)\n")  # never exits on SIGTERM: only SIGKILL ends it
    hook = ("import sys, time; open(sys.argv[1] + '/prestop-start', 'w').write(repr(time.time())); time.sleep(2.5); "
            "open(sys.argv[1] + '/prestop-end', 'w').write(repr(time.time()))")
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stopped"}, "spec": {
        "nodeSelector": {"nvidia.com/gpu.present": "true"}, "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 4,
        "containers": [{"name": "main", "image": local_image(sandbox), "command": ["python3", "-c", main, out],
                        "lifecycle": {"preStop": {"exec": {"command": ["python3", "-c", hook, out]}}}}]}}, namespace)
    kube.wait_for(("v1", "Pod", namespace), lambda p: p["metadata"]["name"] == "stopped"
                  and (p.get("status") or {}).get("phase") == "Running", 60)
    kube.delete("v1", "Pod", namespace, "stopped")
    wait_until(kube.api, f"/api/v1/namespaces/{namespace}/pods",
               lambda pods: not any(p["metadata"]["name"] == "stopped" for p in pods), 60)
    gone = time.time()
    start, end, sigterm = (float((tmp_path / name).read_text()) for name in ("prestop-start", "prestop-end", "sigterm"))
    assert start < end <= sigterm, (start, end, sigterm)
    # Killed 4 s after preStop began (2.5 s of hook, then 2 s), not 4 s after SIGTERM (6.5 s).
    assert 4.0 <= gone - start < 6.0, gone - start


def test_model_store_download_failure_fails_the_role_wait(sandbox, namespace, tmp_path):
    """The role's download Job, given a bucket that does not exist: the pod's
    download really fails, the Job controller fails the Job at its backoff
    limit, and the role's wait says so."""
    creds = sandbox.s3_credentials()
    playbook = tmp_path / "model.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "model_store with a wrong bucket", "hosts": "localhost", "gather_facts": False,
        "module_defaults": K8S_CONNECTION,
        "vars": {
            "inferops_kubeconfig": sandbox.kubeconfig,
            "model_store_namespace": namespace, "model_store_name": "broken",
            "model_store_storage_class": sandbox.state["storage_class"], "model_store_size": "1Gi",
            "model_store_source": "s3", "model_store_endpoint_url": sandbox.s3_endpoint,
            "model_store_s3_bucket": "no-such-bucket", "model_store_s3_prefix": "all-minilm-l6-v2",
            "model_store_s3_access_key": creds["access_key"], "model_store_s3_secret_key": creds["secret_key"],
            "model_store_fetch_image": local_image(sandbox),
            "model_store_wait_timeout": 300,
        },
        "roles": [{"role": "inferops.vllm.model_store"}],
    }]))
    result = run_playbook(playbook, inventory="localhost,", extra_args=["-c", "local", "-e",
                          "ansible_python_interpreter=" + sys.executable])
    assert result.rc != 0
    wait = result.task("inferops.vllm.model_store : Wait for the download Job")
    assert wait.get("failed"), wait
    assert "failed: BackoffLimitExceeded" in wait["msg"], wait["msg"]
    causes = {d["cause"]: d for d in wait["diagnosis"]}
    assert causes["BackoffLimitExceeded"]["object"].startswith(f"job/{namespace}/fetch-broken-")
    assert creds["secret_key"] not in json.dumps(result.data)


def test_a_pod_that_also_needs_another_image_waits_and_is_deleted(sandbox, kube, namespace):
    """The runner runs no image it was not given; deleting the pod still
    finishes as on a node (kwok's deletion stage leaves the runner's pods alone)."""
    kube.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "mixed"}, "spec": {
        "nodeSelector": {"nvidia.com/gpu.present": "true"}, "restartPolicy": "Never",
        "containers": [{"name": "local", "image": local_image(sandbox), "command": ["python3", "-c", "pass"]},
                       {"name": "other", "image": "registry.invalid/not-here:1"}]}}, namespace)
    pod = kube.wait_for(("v1", "Pod", namespace), lambda p: any(
        ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "ErrImageNeverPull"
        for cs in (p.get("status") or {}).get("containerStatuses") or []), 60)
    assert pod["status"]["phase"] == "Pending"
    kube.delete("v1", "Pod", namespace, "mixed")
    wait_until(kube.api, f"/api/v1/namespaces/{namespace}/pods",
               lambda pods: not any(p["metadata"]["name"] == "mixed" for p in pods), 60)


def test_runner_pods_are_not_kwoks(sandbox):
    """Every kwok pod stage carries the condition that leaves the runner's
    pods alone."""
    config = list(yaml.safe_load_all((Path(sandbox.state["state_dir"]) / "kwok-config.yaml").read_text()))
    pod_stages = [d for d in config if d and d["kind"] == "Stage" and d["spec"]["resourceRef"]["kind"] == "Pod"]
    assert len(pod_stages) >= 6
    for stage in pod_stages:
        assert {"key": ".spec.containers.[].image", "operator": "NotIn",
                "values": sandbox.state["job_runner"]["images"]} in stage["spec"]["selector"]["matchExpressions"], \
            stage["metadata"]["name"]
