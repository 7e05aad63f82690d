"""`site.yml --check --diff` changes nothing - in a namespace that does not
exist yet, and on a running deployment with a change pending - and its diff
shows the fields that would change, not managedFields or the last-applied
annotation."""

from __future__ import annotations

import pytest

from support.ansible import ROOT, run_playbook, run_playbook_text
from support.k8s import changed_between, cluster_state

# What site.yml adds to the shared sandbox (gpu=on, the HAMi release, ai-serving) is taken away after.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("site_put_back")]


def site_text(sandbox, *args):
    return run_playbook_text(ROOT / "site.yml", ROOT / "inventories" / "sandbox", *args,
                             env={"SANDBOX_DIR": str(sandbox.state_dir)})


def test_check_mode_in_a_namespace_not_created_yet_changes_nothing(sandbox, kube):
    fresh = "t-check-mode-not-there"
    before = cluster_state(kube)
    run = site_text(sandbox, "--check", "--diff", "-e", f"model_store_namespace={fresh}",
                    "-e", f"vllm_serve_namespace={fresh}")
    assert run.rc == 0 and run.recap["failed"] == 0, run.output[-3000:]
    assert changed_between(before, cluster_state(kube)) == []
    assert not kube.list("v1", "Namespace", field_selector=f"metadata.name={fresh}")
    # It says what it could not dry-run, rather than failing on it or passing over it.
    assert f"namespace {fresh} does not exist yet" in run.output
    assert "the serving plan and the StatefulSet, Service and checks that follow from it are not computed" \
        in run.output


def test_check_mode_on_a_running_deployment_shows_only_what_changes(sandbox, kube, namespace):
    deployed = run_playbook(ROOT / "site.yml", inventory=ROOT / "inventories" / "sandbox",
                            extra_vars={"model_store_namespace": namespace, "vllm_serve_namespace": namespace},
                            env={"SANDBOX_DIR": str(sandbox.state_dir)})
    assert deployed.rc == 0, deployed.failures()
    before = cluster_state(kube)
    run = site_text(sandbox, "--check", "--diff", "-e", f"model_store_namespace={namespace}",
                    "-e", f"vllm_serve_namespace={namespace}", "-e", "vllm_serve_replicas=2",
                    "-e", "vllm_serve_max_model_len=256")
    assert run.rc == 0 and run.recap["failed"] == 0, run.output[-3000:]
    assert changed_between(before, cluster_state(kube)) == []
    sts = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    assert sts["spec"]["replicas"] == 1 and "512" in sts["spec"]["template"]["spec"]["containers"][0]["args"]
    # The StatefulSet's diff: the two fields that change, and none of the bookkeeping.
    assert "managedFields" not in run.output and "last-applied-configuration" not in run.output
    diff = run.output[run.output.index("StatefulSet, Service, PodDisruptionBudget"):]
    diff = diff[:diff.index("TASK [")]
    assert '"replicas": 1' in diff and '"replicas": 2' in diff and '"256"' in diff
    assert len(diff.splitlines()) < 80, diff
    # The gated rollout is announced, not run.
    assert "pod(s) would be rolled one at a time" in run.output
    assert run.recap["changed"] > 0
