"""vllm_serve's autoscaling on the sandbox: a KEDA ScaledObject accepted by a
real API server against KEDA v2.21.0's own CRD schema (hack/sandbox crds),
its most replicas what the sandbox's GPUs can hold, a fixed count handed to
KEDA without the StatefulSet dropping to 1, a count KEDA set kept by the
next run (changed=0), KEDA paused while a new template is rolled and
resumed after, scale.yml refused, and a minimum the GPUs cannot hold
refused before anything changes. No KEDA operator runs: what it would do
with the object is read from its source (plugins/module_utils/serving/_autoscaling.py)."""

from __future__ import annotations

import json

import pytest

from support.ansible import run_module, sandbox_playbook
from support.k8s import changed_between, cluster_state
from support.keda import MARK, PAUSED, Recorder, check_paused_around_the_rollout, crds_put_back
from support.sandbox import sandbox_cmd

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def keda_crds_removed_after(kube):
    yield from crds_put_back(kube)


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"
ROLL_TASK = ("inferops.vllm.vllm_serve : Lower the partition pod by pod, each gated by readiness and an endpoint check "
             "of that pod")
# The sandbox's GPU nodes: 4 of 8 simulated H100s (81559 MiB); the inventory's pod asks for one 8192 MiB slice,
# so a GPU holds 9 of them (10 would pass its memory): at most 4 x 8 x 9 replicas, less what other tests hold.
MOST = 4 * 8 * (81559 // 8192)


def site(sandbox, namespace, **extra):
    # The GPU stage (which puts gpu=on on the nodes) does not run here: GPU feature discovery's label.
    return sandbox_playbook(sandbox, "site.yml", namespace, ["--tags", "model,serve"],
                            **{"vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"}, **extra})


def capacity_room(sandbox, namespace) -> int:
    answer = run_module("inferops.vllm.gpu_capacity", {"name": "vllm", "namespace": namespace, "replicas": 100000,
                                                       "fail_when_short": False}, kubeconfig=sandbox.kubeconfig)
    return answer["room"]


def autoscaling(**extra) -> dict:
    return {"vllm_serve_autoscaling": True, "vllm_serve_autoscaling_prometheus_url": PROMETHEUS, **extra}


def test_keda_scales_within_what_the_gpus_hold_and_a_rerun_keeps_its_count(sandbox, kube, namespace):
    installed = sandbox_cmd("crds", "keda", state_dir=sandbox.state_dir, check=False)
    assert installed.returncode == 0, installed.stdout

    fixed = site(sandbox, namespace, vllm_serve_replicas=2)
    assert fixed.rc == 0, fixed.failures()
    sts = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    assert sts["spec"]["replicas"] == 2 and json.loads(sts["metadata"]["annotations"][LAST_APPLIED])["spec"][
        "replicas"] == 2

    # A minimum the GPUs cannot hold: refused with the numbers, nothing changed.
    before = cluster_state(kube)
    refused = site(sandbox, namespace, **autoscaling(vllm_serve_autoscaling_min_replicas=MOST + 1))
    assert refused.rc != 0
    message = refused.task("inferops.vllm.vllm_serve : Bound the ScaledObject by them (refused, with the numbers, "
                           "when the minimum cannot be placed)")["msg"]
    assert f"vllm_serve_autoscaling_min_replicas {MOST + 1} cannot be placed: the GPUs hold " in message, message
    assert "(2 running, room for " in message, message
    assert changed_between(before, cluster_state(kube)) == []

    # What the GPUs hold for this pod now (other tests' namespaces may still be going away, freeing some).
    room_before = capacity_room(sandbox, namespace)

    # On: the count becomes KEDA's. The StatefulSet keeps its 2 pods (an apply that just left the field out would
    # have dropped it to 1), and the record of what was applied no longer holds a count.
    on = site(sandbox, namespace, **autoscaling())
    assert on.rc == 0, on.failures()
    sts = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    assert sts["spec"]["replicas"] == 2 and sts["status"]["readyReplicas"] == 2
    assert "replicas" not in json.loads(sts["metadata"]["annotations"][LAST_APPLIED])["spec"]

    scaled = kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, "vllm")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "vllm"}
    # What it scales on: the requests in flight over what one replica runs at once (the --max-num-seqs its pods
    # run with), and the KV-cache use, an empty answer an error (test_autoscaling_replay.py: what the HPA makes of it).
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    max_num_seqs = args[args.index("--max-num-seqs") + 1]
    selected = f'namespace="{namespace}", job="vllm"'
    assert spec["triggers"] == [
        {"type": "prometheus", "metricType": "AverageValue", "metadata": {
            "serverAddress": PROMETHEUS, "threshold": max_num_seqs, "ignoreNullValues": "false",
            "query": f'sum({{__name__=~"vllm:num_requests_running|vllm:num_requests_waiting", {selected}}})'}},
        {"type": "prometheus", "metricType": "AverageValue", "metadata": {
            "serverAddress": PROMETHEUS, "threshold": "0.85", "ignoreNullValues": "false",
            "query": f'sum(vllm:kv_cache_usage_perc{{{selected}}})'}}]
    # The most: the 2 running plus the room the GPUs have for more, as gpu_capacity counts it before and after.
    assert spec["minReplicaCount"] == 1
    assert 2 + room_before <= spec["maxReplicaCount"] <= 2 + capacity_room(sandbox, namespace)
    assert 2 < spec["maxReplicaCount"] <= MOST
    said = on.task("inferops.vllm.vllm_serve : Say how far it may scale")["msg"]
    assert f"between 1 and {spec['maxReplicaCount']} replicas (bounded by the GPUs" in said, said
    assert f"one replica for every {max_num_seqs} requests in flight" in said, said

    # KEDA's HPA scales through the scale subresource: a rerun keeps its count and changes nothing.
    kube.patch("/apis/apps/v1/namespaces/" + namespace + "/statefulsets/vllm/scale", body={"spec": {"replicas": 3}})
    kube.wait_for(f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
                  lambda s: s["metadata"]["name"] == "vllm" and s["status"].get("readyReplicas") == 3, 120)
    again = site(sandbox, namespace, **autoscaling())
    assert again.rc == 0 and again.changed() == 0, [t["task"]["name"] for t in again.tasks()
                                                    if any(h.get("changed") for h in t["hosts"].values())]
    assert kube.get("apps/v1", "StatefulSet", namespace, "vllm")["spec"]["replicas"] == 3
    # The third replica's GPUs were room before, and count as running now: the bound does not drop (it may grow
    # only by what other tests' namespaces freed meanwhile).
    assert spec["maxReplicaCount"] <= kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, "vllm")["spec"][
        "maxReplicaCount"] <= 3 + capacity_room(sandbox, namespace)

    # A smaller maximum of the user's is kept. With a new pod template in the same run: the gated rollout
    # (rolling_upgrade) pauses the ScaledObject before the first pod is touched and resumes it after the last.
    with Recorder(kube, namespace, "app.kubernetes.io/instance=vllm") as recorder:
        capped = site(sandbox, namespace, **autoscaling(vllm_serve_autoscaling_max_replicas=4,
                                                        vllm_serve_max_model_len=256))
    assert capped.rc == 0, capped.failures()
    assert kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, "vllm")["spec"]["maxReplicaCount"] == 4
    rolled = capped.task(ROLL_TASK)
    assert [r["pod"] for r in rolled["replicas"]] == ["vllm-2", "vllm-1", "vllm-0"]
    assert rolled["autoscaling_paused"] == rolled["autoscaling_resumed"] == ["vllm"]
    check_paused_around_the_rollout(recorder.states, rolled["revision"]["to"], "vllm", [])
    assert not set(kube.get("keda.sh/v1alpha1", "ScaledObject", namespace, "vllm")["metadata"].get(
        "annotations") or {}) & {PAUSED, MARK}

    # scale.yml would be undone by KEDA: refused.
    scale = sandbox_playbook(sandbox, "playbooks/scale.yml", namespace, vllm_serve_replicas=5)
    assert scale.rc != 0
    said = scale.task("Check that there is a deployment to scale, KEDA does not own its count, and no rollout is "
                      "under way")["msg"]
    assert "is scaled by KEDA (ScaledObject vllm" in said, said
    assert kube.get("apps/v1", "StatefulSet", namespace, "vllm")["spec"]["replicas"] == 3

    # Off again: the ScaledObject goes before the count is set, and vllm_serve_replicas is the count once more.
    off = site(sandbox, namespace, vllm_serve_replicas=2)
    assert off.rc == 0, off.failures()
    assert kube.list("keda.sh/v1alpha1", "ScaledObject", namespace) == []
    sts = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    assert sts["spec"]["replicas"] == 2
    assert json.loads(sts["metadata"]["annotations"][LAST_APPLIED])["spec"]["replicas"] == 2
    quiet = site(sandbox, namespace, vllm_serve_replicas=2)
    assert quiet.rc == 0 and quiet.changed() == 0, quiet.failures()

    # Teardown takes the ScaledObject down with the rest.
    assert site(sandbox, namespace, **autoscaling()).rc == 0
    assert len(kube.list("keda.sh/v1alpha1", "ScaledObject", namespace)) == 1
    down = sandbox_playbook(sandbox, "playbooks/teardown.yml", namespace, teardown_level="service")
    assert down.rc == 0, down.failures()
    assert kube.list("keda.sh/v1alpha1", "ScaledObject", namespace) == []
