"""The serving stages as a least-privilege account: an administrator runs
playbooks/deployer_access.yml once; site.yml then runs every stage but HAMi's
with the account's kubeconfig (the sandbox's API server authorizes with
RBAC), twice, the second changing nothing; the fleet's router, twice; then the day-2 playbooks as the
same account: scale.yml (its GPU count reads every namespace's pods), an
upgrade broken on purpose that is rolled back (the rollback reads the old
ControllerRevision and deletes the broken pod), and teardown.yml. What the
account may not do fails with a message that names the account, the verb and
the namespace. And the account's kubeconfig is renewed when its token is
revoked: an account deleted and made again under the same name."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest
import yaml

from support.ansible import ROOT, run_playbook
from support.k8s import Kube

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAMESPACE = "lp-serving"
ACCOUNT = "system:serviceaccount:inferops-system:inferops-deployer"
ROLL_TASK = ("inferops.vllm.vllm_serve : Lower the partition pod by pod, each gated by readiness and an endpoint "
             "check of that pod")


def playbook(sandbox, path, *extra: str, extra_vars: dict | None = None):
    return run_playbook(ROOT / path, inventory=ROOT / "inventories" / "sandbox", extra_vars=extra_vars,
                        env={"SANDBOX_DIR": str(sandbox.state_dir)}, extra_args=list(extra))


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def messages(result) -> str:
    """What the user reads: each failed task's message, and a loop's for each item."""
    failed = [r for t in result.tasks() for r in t["hosts"].values() if r.get("failed")]
    return "\n".join(str(m.get("msg")) for r in failed for m in [r, *(r.get("results") or [])])


def vllm_pods(kube) -> list[dict]:
    return kube.list("v1", "Pod", NAMESPACE, label_selector="app.kubernetes.io/instance=vllm")


@pytest.fixture
def cleanup(kube):
    nodes = {n["metadata"]["name"]: (n["metadata"].get("labels") or {}, n["spec"].get("taints"))
             for n in kube.list("v1", "Node")}
    yield
    # The GPU nodes' labels and taints as they were (site.yml's gpu_nodes stage puts its own on).
    for node in kube.list("v1", "Node"):
        labels, taints = nodes.get(node["metadata"]["name"], (None, None))
        if labels is None:
            continue
        now = node["metadata"].get("labels") or {}
        patch = {k: labels.get(k) for k in set(now) | set(labels) if now.get(k) != labels.get(k)}
        if patch or node["spec"].get("taints") != taints:
            kube.patch("v1", "Node", None, node["metadata"]["name"],
                       body={"metadata": {"labels": patch}, "spec": {"taints": taints}})
    # What the test made, so that later tests see a sandbox without it; the
    # namespaces watched until gone (the next test makes them again).
    for name in (NAMESPACE, "inferops-system"):
        kube.delete("v1", "Namespace", None, name, propagation="Background", missing_ok=True)
    for name in (NAMESPACE, "inferops-system"):
        wait_until(kube.api, "/api/v1/namespaces", lambda objects: not objects, 300,
                   [("fieldSelector", f"metadata.name={name}")])
    kube.delete("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", None, "inferops-deployer", missing_ok=True)
    kube.delete("rbac.authorization.k8s.io/v1", "ClusterRole", None, "inferops-deployer", missing_ok=True)
    for kind in ("RoleBinding", "Role"):
        kube.delete("rbac.authorization.k8s.io/v1", kind, "kube-system", "inferops-deployer-hami-read", missing_ok=True)


def test_serving_stages_run_as_the_least_privilege_account(sandbox, kube, tmp_path, cleanup):
    dest = tmp_path / "deployer.kubeconfig"
    where = ["-e", f"model_store_namespace={NAMESPACE}", "-e", f"vllm_serve_namespace={NAMESPACE}"]
    access = playbook(sandbox, "playbooks/deployer_access.yml", "-e", f"deployer_access_kubeconfig_dest={dest}",
                      *where)
    assert access.rc == 0 and access.failed() == 0, access.failures()
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    config = yaml.safe_load(dest.read_text())
    assert config["users"][0]["name"] == ACCOUNT and config["clusters"][0]["cluster"]["server"] == \
        yaml.safe_load(open(sandbox.kubeconfig))["clusters"][0]["cluster"]["server"]
    # No long-lived token Secret was made for it.
    assert not [s for s in kube.list("v1", "Secret", "inferops-system")
                if s["type"] == "kubernetes.io/service-account-token"]
    again = playbook(sandbox, "playbooks/deployer_access.yml", "-e", f"deployer_access_kubeconfig_dest={dest}", *where)
    assert again.rc == 0 and again.changed() == 0, again.failures()

    as_deployer = ["--skip-tags", "hami", "-e", f"inferops_kubeconfig={dest}", *where]
    first = playbook(sandbox, "site.yml", *as_deployer)
    assert first.rc == 0 and first.failed() == 0, first.failures()
    assert first.changed() > 0
    assert first.task("inferops.vllm.vllm_serve : Ask the server, as a client would")["models"]["ids"] == ["tiny-chat"]
    assert kube.get("apps/v1", "StatefulSet", NAMESPACE, "vllm")["status"].get("readyReplicas") == 1
    second = playbook(sandbox, "site.yml", *as_deployer)
    assert second.rc == 0 and second.changed() == 0, second.failures()

    # The fleet's router as the same account: its ServiceAccount, and a Role and RoleBinding that let it watch
    # EndpointSlices (the API server lets the account grant only what it holds), then a client's check through it.
    if sandbox.state.get("pod_route") is True:  # the router reaches the replica by its pod IP (docs/sandbox.md)
        port = sandbox.state["ports"]["router"]
        router = ["-e", "vllm_router_enabled=true", "-e", f"vllm_router_port={port}", "-e", "vllm_router_replicas=1",
                  "-e", f"vllm_router_check_url=http://127.0.0.1:{port}"]
        routed = playbook(sandbox, "playbooks/router.yml", *as_deployer[2:], *router)
        assert routed.rc == 0 and routed.failed() == 0, routed.failures()
        assert kube.get("rbac.authorization.k8s.io/v1", "Role", NAMESPACE, "inferops-router")["rules"] == [
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]
        again_routed = playbook(sandbox, "playbooks/router.yml", *as_deployer[2:], *router)
        assert again_routed.rc == 0 and again_routed.changed() == 0, again_routed.failures()
        for api, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap")):
            kube.delete(api, kind, NAMESPACE, "inferops-router")

    # Not allowed: serving into a namespace it was not given.
    denied = playbook(sandbox, "site.yml", "--tags", "serve", "-e", f"inferops_kubeconfig={dest}", "-e",
                      f"model_store_namespace={NAMESPACE}", "-e", "vllm_serve_namespace=not-granted")
    assert denied.rc != 0
    message = denied.failures().replace("\\", "")
    assert f'User "{ACCOUNT}" cannot get resource "persistentvolumeclaims"' in message, message
    assert 'in the namespace "not-granted"' in message and "Forbidden" in message, message
    assert not kube.list("v1", "Namespace", field_selector="metadata.name=not-granted")

    # Day 2, as the same account. scale.yml: its capacity count lists the pods of every namespace.
    scaled = playbook(sandbox, "playbooks/scale.yml", "-e", "vllm_serve_replicas=2", *as_deployer[2:])
    assert scaled.rc == 0 and scaled.failed() == 0, scaled.failures()
    capacity = scaled.task("Check that the cluster has the GPUs for the new count, per node (refused with the "
                           "numbers when not)")
    assert capacity["fits"] is True, capacity
    sts = kube.get("apps/v1", "StatefulSet", NAMESPACE, "vllm")
    assert sts["spec"]["replicas"] == 2 and sts["status"].get("readyReplicas") == 2
    good = sts["status"]["currentRevision"]

    # An upgrade broken on purpose (the sandbox never makes a pod with this label Ready,
    # hack/cluster/stages/readiness-failure.yaml): stopped at the first pod and rolled back.
    broken = playbook(sandbox, "playbooks/upgrade.yml", *as_deployer[2:], extra_vars={
        "vllm_serve_replicas": 2, "vllm_serve_wait_timeout": 20,
        "vllm_serve_pod_labels": {"sandbox.inferops.io/fail": "readiness"}})
    assert broken.rc != 0
    assert ROLL_TASK in [t["task"]["name"] for t in broken.tasks()], broken.failures()
    failed = broken.task(ROLL_TASK)
    assert failed["failed_pod"]["pod"] == "vllm-1", failed
    assert failed["rolled_back"] is True, failed.get("msg")
    assert "Rolled back to revision " + good in failed["msg"] and "forbidden" not in failed["msg"].lower(), failed
    restored = kube.get("apps/v1", "StatefulSet", NAMESPACE, "vllm")
    assert restored["status"]["currentRevision"] == restored["status"]["updateRevision"] == good
    assert restored["status"].get("readyReplicas") == 2
    assert "sandbox.inferops.io/fail" not in restored["spec"]["template"]["metadata"]["labels"]
    pods = vllm_pods(kube)
    assert sorted(p["metadata"]["name"] for p in pods) == ["vllm-0", "vllm-1"]
    assert all(ready(p) and p["metadata"]["labels"]["controller-revision-hash"] == good
               and not p["metadata"].get("deletionTimestamp") for p in pods), pods

    # Teardown keeping the model's files sets its volume's reclaim policy to Retain: a right over every
    # PersistentVolume of the cluster (one could bind another team's volume), not granted. With a
    # volume that would go with its claim (Delete, as dynamic provisioners set), the keep-files
    # teardown is refused, naming the right, before anything of the model goes: the download Job too.
    claim = kube.list("v1", "PersistentVolumeClaim", NAMESPACE)[0]
    volume = claim["spec"]["volumeName"]
    jobs_before = sorted(j["metadata"]["uid"] for j in kube.list("batch/v1", "Job", NAMESPACE))
    kube.patch("v1", "PersistentVolume", None, volume, body={"spec": {"persistentVolumeReclaimPolicy": "Delete"}})
    try:
        keep = playbook(sandbox, "playbooks/teardown.yml", "-e", "teardown_level=model", *as_deployer[2:])
    finally:
        # The sandbox's volumes are Retain (an administrator's choice the account then needs no right for).
        kube.patch("v1", "PersistentVolume", None, volume, body={"spec": {"persistentVolumeReclaimPolicy": "Retain"}})
    assert keep.rc != 0
    message = messages(keep).replace("\\", "")
    assert f'User "{ACCOUNT}" cannot patch resource "persistentvolumes"' in message, message
    assert [c["metadata"]["uid"] for c in kube.list("v1", "PersistentVolumeClaim", NAMESPACE)] == \
        [claim["metadata"]["uid"]]
    assert sorted(j["metadata"]["uid"] for j in kube.list("batch/v1", "Job", NAMESPACE)) == jobs_before
    # Teardown of the service and the model with its files. The namespace is kept: deployer_access
    # made it, and the account's own Role and RoleBinding are in it.
    down = playbook(sandbox, "playbooks/teardown.yml", "-e", "teardown_level=model", "-e",
                    "teardown_delete_model_data=true", *as_deployer[2:])
    assert down.rc == 0 and down.failed() == 0, down.failures()
    assert not kube.list("apps/v1", "StatefulSet", NAMESPACE) and not vllm_pods(kube)
    assert not kube.list("v1", "PersistentVolumeClaim", NAMESPACE)
    assert not kube.list("batch/v1", "Job", NAMESPACE)
    kept = down.task("Say which namespace was kept, and why")["msg"]
    assert f"Namespace {NAMESPACE} kept" in kept, kept
    again = playbook(sandbox, "playbooks/teardown.yml", "-e", "teardown_level=model", "-e",
                     "teardown_delete_model_data=true", *as_deployer[2:])
    assert again.rc == 0 and again.changed() == 0, again.failures()


def as_account(dest) -> Kube:
    return Kube(str(dest))


def refused(token: str, dest, within: float = 30.0) -> bool:
    """Whether the API server refuses ``token`` (401), asked until ``within``
    seconds pass: it keeps a token it accepted as accepted for 10 s
    (TokenSuccessCacheTTL, kubernetes v1.37.2
    pkg/kubeapiserver/options/authentication.go), and a cache has nothing
    to watch."""
    config = yaml.safe_load(dest.read_text())
    config["users"][0]["user"]["token"] = token
    old = dest.with_name("old.kubeconfig")
    old.write_text(yaml.safe_dump(config))
    old.chmod(0o600)
    deadline = time.monotonic() + within
    while True:
        try:
            Kube(str(old)).list("v1", "Pod", NAMESPACE)
        except Exception as exc:  # noqa: BLE001 - the client's own error or a ClusterError, both naming 401
            if "401" in str(exc) or "Unauthorized" in str(exc):
                return True
            raise
        if time.monotonic() > deadline:
            return False
        time.sleep(1)


def test_a_revoked_token_is_replaced(sandbox, kube, tmp_path, cleanup):
    """The account deleted and made again under the same name: the token in
    the kubeconfig names the old account's uid, which the API server no
    longer takes (kubernetes v1.37.2, pkg/serviceaccount/claims.go,
    Validate: "service account UID (%s) does not match claim (%s)"); a
    rerun of deployer_access replaces it. An unchanged account keeps its."""
    dest = tmp_path / "deployer.kubeconfig"
    args = ["-e", f"deployer_access_kubeconfig_dest={dest}", "-e", f"model_store_namespace={NAMESPACE}", "-e",
            f"vllm_serve_namespace={NAMESPACE}"]
    first = playbook(sandbox, "playbooks/deployer_access.yml", *args)
    assert first.rc == 0 and first.failed() == 0, first.failures()
    old_token = yaml.safe_load(dest.read_text())["users"][0]["user"]["token"]
    assert as_account(dest).list("v1", "Pod", NAMESPACE) == []

    kept = playbook(sandbox, "playbooks/deployer_access.yml", *args)
    assert kept.rc == 0 and kept.changed() == 0, kept.failures()
    assert yaml.safe_load(dest.read_text())["users"][0]["user"]["token"] == old_token

    account = kube.get("v1", "ServiceAccount", "inferops-system", "inferops-deployer")
    # A ServiceAccount has no finalizer: the DELETE's answer means it is gone.
    kube.delete("v1", "ServiceAccount", "inferops-system", "inferops-deployer")
    kube.create({"apiVersion": "v1", "kind": "ServiceAccount",
                 "metadata": {"name": "inferops-deployer", "namespace": "inferops-system",
                              "labels": account["metadata"]["labels"]}})
    renewed = playbook(sandbox, "playbooks/deployer_access.yml", *args)
    assert renewed.rc == 0 and renewed.failed() == 0, renewed.failures()
    written = renewed.task("inferops.vllm.deployer_access : A kubeconfig for the account (a bound token that "
                           "expires; renewed in its last hour)")
    assert written["changed"] is True and "uid" in written["replaced_because"], written
    assert old_token not in json.dumps(renewed.data)
    new_token = yaml.safe_load(dest.read_text())["users"][0]["user"]["token"]
    assert new_token != old_token and stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert as_account(dest).list("v1", "Pod", NAMESPACE) == []
    assert refused(old_token, dest), "the old token still works"
    settled = playbook(sandbox, "playbooks/deployer_access.yml", *args)
    assert settled.rc == 0 and settled.changed() == 0, settled.failures()
