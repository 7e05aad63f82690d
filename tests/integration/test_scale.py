"""playbooks/scale.yml on the sandbox: a count the GPUs cannot hold is
refused, with the numbers, before anything changes; a count that fits is
applied, waited for, and every new replica asked through the API; site.yml
with that count afterwards changes nothing; and back down."""

from __future__ import annotations

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.k8s._informer import wait_until

from support.ansible import ROOT, run_playbook, sandbox_playbook

# What site.yml adds to the shared sandbox (gpu=on, the HAMi release) is taken away after.
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("site_put_back")]

CAPACITY_TASK = ("Check that the cluster has the GPUs for the new count, per node (refused with the numbers when "
                 "not)")


playbook = sandbox_playbook


def test_scale_refuses_what_does_not_fit_then_scales_up_and_down(sandbox, kube, namespace):
    first = playbook(sandbox, "site.yml", namespace)
    assert first.rc == 0, first.failures()
    before = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    assert before["spec"]["replicas"] == 1

    # 4 nodes of 8 simulated H100s, 8 GiB slices: 10 slices per GPU (HAMi's
    # split count) cap it at 320 replicas; 400 do not fit.
    refused = playbook(sandbox, "playbooks/scale.yml", namespace, vllm_serve_replicas=400)
    assert refused.rc != 0
    capacity = refused.task(CAPACITY_TASK)
    assert capacity["failed"] is True and capacity["fits"] is False
    assert "399" in capacity["msg"], capacity["msg"]  # the replicas to add, and where they would not go
    assert all(node in capacity["msg"] for node in sandbox.gpu_nodes), capacity["msg"]
    after = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    up = playbook(sandbox, "playbooks/scale.yml", namespace, vllm_serve_replicas=3)
    assert up.rc == 0, up.failures()
    checked = up.task("Ask each new replica, as a client would")["results"]
    assert [r["pod"] for r in checked] == ["vllm-1", "vllm-2"]
    assert all(r["models"]["ids"] == ["tiny-chat"] for r in checked)
    sts = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    assert sts["spec"]["replicas"] == 3 and sts["status"]["readyReplicas"] == 3
    # The pod template did not change: no pod was replaced.
    assert sts["status"]["currentRevision"] == before["status"]["currentRevision"]

    again = playbook(sandbox, "playbooks/scale.yml", namespace, vllm_serve_replicas=3)
    assert again.rc == 0 and again.changed() == 0, again.failures()
    # The inventory says 3 as well now: site.yml sees nothing to change.
    site = playbook(sandbox, "site.yml", namespace, vllm_serve_replicas=3)
    assert site.rc == 0 and site.changed() == 0, [t["task"]["name"] for t in site.tasks()
                                                  if any(h.get("changed") for h in t["hosts"].values())]

    down = playbook(sandbox, "playbooks/scale.yml", namespace, vllm_serve_replicas=1)
    assert down.rc == 0, down.failures()
    assert down.task("Ask each new replica, as a client would")["results"] == []
    wait_until(kube.api, f"/api/v1/namespaces/{namespace}/pods", lambda pods: len(pods) == 1, 120,
               [("labelSelector", "app.kubernetes.io/instance=vllm")])
    # The removed pod drains before it goes (preStop, then vLLM's --shutdown-timeout): its StatefulSet's status
    # counts it until the controller sees it gone.
    kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
                  lambda s: s["metadata"]["name"] == "vllm" and s["status"].get("readyReplicas") == 1, 120)


def test_scale_refuses_bad_input_before_anything(sandbox, kube):
    refused = run_playbook(ROOT / "playbooks" / "scale.yml", inventory=ROOT / "inventories" / "sandbox",
                           extra_vars={"vllm_serve_replicas": "three"}, env={"SANDBOX_DIR": str(sandbox.state_dir)})
    assert refused.rc != 0
    # The scale entry point's argument spec refuses it, naming the variable, before any task.
    spec = refused.task("Validating arguments against arg spec 'scale' - A new replica count for the running "
                        "service, checked against the GPUs first")
    assert spec["failed"] and "vllm_serve_replicas" in spec["msg"] and "int" in spec["msg"], spec["msg"]
