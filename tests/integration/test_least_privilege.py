"""The serving stages as a least-privilege account: an administrator runs
playbooks/deployer_access.yml once; site.yml then runs every stage but HAMi's
with the account's kubeconfig (the sandbox's API server authorizes with
RBAC), twice, the second changing nothing; and what the account may not do
fails with a message that names the account, the verb and the namespace."""

from __future__ import annotations

import os
import stat

import pytest
import yaml

from support.ansible import ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAMESPACE = "lp-serving"
ACCOUNT = "system:serviceaccount:inferops-system:inferops-deployer"


def playbook(sandbox, path, *extra: str):
    return run_playbook(ROOT / path, inventory=ROOT / "inventories" / "sandbox",
                        env={"SANDBOX_DIR": str(sandbox.state_dir)}, extra_args=list(extra))


@pytest.fixture
def cleanup(kube):
    yield
    # What the test made, so that later tests see a sandbox without it.
    for name in (NAMESPACE, "inferops-system"):
        kube.delete("v1", "Namespace", None, name, propagation="Background", missing_ok=True)
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

    # Not allowed: serving into a namespace it was not given.
    denied = playbook(sandbox, "site.yml", "--tags", "serve", "-e", f"inferops_kubeconfig={dest}", "-e",
                      f"model_store_namespace={NAMESPACE}", "-e", "vllm_serve_namespace=not-granted")
    assert denied.rc != 0
    message = denied.failures().replace("\\", "")
    assert f'User "{ACCOUNT}" cannot get resource "persistentvolumeclaims"' in message, message
    assert 'in the namespace "not-granted"' in message and "Forbidden" in message, message
    assert not kube.list("v1", "Namespace", field_selector="metadata.name=not-granted")
