"""A replica larger than a node, on the sandbox: vllm_serve deploys it as a
group of pods in vLLM's own multi-node mode (one StatefulSet a rank, a
headless Service naming the leaders), the pods land one a node, each rank
gets its command line, a rerun changes nothing, scaling adds whole groups,
and a group the nodes cannot hold is diagnosed. With a claim per replica,
the model teardown keeps (or wipes) and deletes every rank's claim, and
leaves a claim it did not make."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.ansible import sandbox_playbook
from support.pods import PodRecorder
from support.volumes import put_back_volumes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIGS = Path(__file__).parents[1] / "unit" / "plugins" / "module_utils" / "serving" / "model_configs"
RANK = "inferops.io/node-rank"
# Qwen2.5-7B's shape (15.2 GB of bf16 weights) on GPUs of 8 GiB, 2 a node: no
# tensor-parallel size within a node leaves room for a KV cache, so the plan
# takes TP 2 in each of 2 nodes and PP 2 across them.
GROUP = {"vllm_serve_model_config": json.loads((CONFIGS / "qwen2.5-7b-instruct.json").read_text()),
         "vllm_serve_model_dir": "", "vllm_serve_gpu_memory_mib": 8192, "vllm_serve_gpus_per_node": 2,
         "vllm_serve_gpu_memory_request_mib": 0, "vllm_serve_max_model_len": 4096,
         # The GPU stage (which puts gpu=on on the nodes) does not run here: GPU feature discovery's label.
         "vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"},
         "vllm_serve_network_policy_enabled": True,
         "vllm_serve_network_policy_from": [{"namespace": "ingress-nginx"}]}


def site(sandbox, namespace, **extra):
    return sandbox_playbook(sandbox, "site.yml", namespace, ["--tags", "model,serve"], **{**GROUP, **extra})


def pods_of(kube, namespace) -> dict:
    pods = kube.list("v1", "Pod", namespace, label_selector="app.kubernetes.io/instance=vllm")
    return {p["metadata"]["name"]: p for p in pods}


def test_a_replica_larger_than_a_node_is_a_group_of_pods_one_a_node(sandbox, kube, namespace):
    first = site(sandbox, namespace)
    assert first.rc == 0, first.failures()
    summary = "\n".join(first.task("inferops.vllm.vllm_serve : Show the plan")["msg"])
    assert "one replica is a group of 2 pods, one a node with its 2 GPUs: TP 2 within each, PP 2 across them" \
        in summary

    leader = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    worker = kube.get("apps/v1", "StatefulSet", namespace, "vllm-rank1")
    for sts, rank in ((leader, "0"), (worker, "1")):
        assert sts["spec"]["replicas"] == 1 and sts["status"]["readyReplicas"] == 1
        assert sts["spec"]["serviceName"] == "vllm-group"
        assert sts["spec"]["selector"]["matchLabels"][RANK] == rank
        assert sts["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}

    # Each rank's command line: the same model and parallelism, its rank, the leader by name; workers headless.
    lead_args = leader["spec"]["template"]["spec"]["containers"][0]["args"]
    work_args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    common = lead_args[:lead_args.index("--nnodes")]
    assert work_args[:len(common)] == common
    assert common[common.index("--tensor-parallel-size") + 1] == "2"
    assert common[common.index("--pipeline-parallel-size") + 1] == "2"
    assert lead_args[len(common):] == ["--nnodes", "2", "--node-rank", "0", "--master-addr",
                                       "$(INFEROPS_LEADER_ADDR)", "--master-port", "29501"]
    assert work_args[len(common):] == ["--nnodes", "2", "--node-rank", "1", "--master-addr",
                                       "$(INFEROPS_LEADER_ADDR)", "--master-port", "29501", "--headless"]
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["INFEROPS_GROUP_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["INFEROPS_LEADER_ADDR"]["value"] == f"vllm-$(INFEROPS_GROUP_INDEX).vllm-group.{namespace}.svc"
    assert env["VLLM_HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # A worker has no HTTP server: its probes ask its leader.
    probe = worker["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert "INFEROPS_LEADER_ADDR" in probe["exec"]["command"][-1]

    # The pods: one a node, on distinct GPU nodes, each pod's index its group; the leader's name resolves
    # through the headless Service before it is ready.
    pods = pods_of(kube, namespace)
    assert set(pods) == {"vllm-0", "vllm-rank1-0"}
    nodes = {p["spec"]["nodeName"] for p in pods.values()}
    assert len(nodes) == 2 and nodes <= set(sandbox.gpu_nodes)
    assert {p["metadata"]["labels"]["apps.kubernetes.io/pod-index"] for p in pods.values()} == {"0"}
    group = kube.get("v1", "Service", namespace, "vllm-group")
    assert group["spec"]["clusterIP"] == "None" and group["spec"]["publishNotReadyAddresses"] is True
    # <pod>.vllm-group.<namespace>.svc: each pod's hostname under the Service's subdomain, both pods its endpoints.
    assert all(p["spec"]["subdomain"] == "vllm-group" and p["spec"]["hostname"] == name for name, p in pods.items())
    group_slices = kube.list("discovery.k8s.io/v1", "EndpointSlice", namespace,
                             label_selector="kubernetes.io/service-name=vllm-group")
    assert {e["targetRef"]["name"] for s in group_slices for e in s.get("endpoints") or []} == set(pods)
    # Clients reach rank 0 only.
    assert kube.get("v1", "Service", namespace, "vllm")["spec"]["selector"][RANK] == "0"
    slices = kube.list("discovery.k8s.io/v1", "EndpointSlice", namespace,
                       label_selector="kubernetes.io/service-name=vllm")
    assert {e["targetRef"]["name"] for s in slices for e in s.get("endpoints") or []} == {"vllm-0"}
    # The group's pods may talk to each other on any port (vLLM and NCCL pick theirs at start).
    policy = kube.get("networking.k8s.io/v1", "NetworkPolicy", namespace, "vllm")
    assert {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "vllm",
                                                      "app.kubernetes.io/instance": "vllm"}}}]} \
        in policy["spec"]["ingress"]

    again = site(sandbox, namespace)
    assert again.rc == 0 and again.changed() == 0, [t["task"]["name"] for t in again.tasks()
                                                    if any(h.get("changed") for h in t["hosts"].values())]

    # One ScaledObject scales one StatefulSet, not a group: autoscaling is refused before anything changes.
    scaled = site(sandbox, namespace, vllm_serve_autoscaling=True,
                  vllm_serve_autoscaling_prometheus_url="http://prometheus-operated.monitoring.svc:9090")
    assert scaled.rc != 0
    assert "which one ScaledObject cannot scale together" in scaled.task(
        "inferops.vllm.vllm_serve : Check that autoscaling can work here")["msg"]

    # playbooks/scale.yml adds whole groups: pod 1 of every rank, the new leader asked as a client would.
    # A third group would need two more free nodes (the sandbox has 4 GPU nodes): refused before anything changes.
    refused = sandbox_playbook(sandbox, "playbooks/scale.yml", namespace, vllm_serve_replicas=3)
    assert refused.rc != 0
    capacity = refused.task("Check that the cluster has the GPUs for the new count, per node (refused with the "
                            "numbers when not)")
    assert capacity["msg"].startswith(f"scale {namespace}/vllm to 3 needs 2 more groups of 2 pods, one a node "
                                      "(4 pods) of 2 whole GPUs;"), capacity["msg"]
    assert "(0: holds one of its pods already, one a node)" in capacity["msg"]
    assert set(pods_of(kube, namespace)) == {"vllm-0", "vllm-rank1-0"}
    two = sandbox_playbook(sandbox, "playbooks/scale.yml", namespace, vllm_serve_replicas=2)
    assert two.rc == 0, two.failures()
    assert [r["pod"] for r in two.task("Ask each new replica, as a client would")["results"]] == ["vllm-1"]
    pods = pods_of(kube, namespace)
    assert set(pods) == {"vllm-0", "vllm-1", "vllm-rank1-0", "vllm-rank1-1"}
    assert len({p["spec"]["nodeName"] for p in pods.values()}) == 4
    assert all(p["status"]["phase"] == "Running" for p in pods.values())
    # site.yml with the same count sees nothing to change.
    same = site(sandbox, namespace, vllm_serve_replicas=2)
    assert same.rc == 0 and same.changed() == 0, same.failures()

    # A new template rolls group by group: pod i of every rank replaced together, highest group first, each
    # group Ready and its leader answering before the next group is touched.
    revisions = {n: kube.get("apps/v1", "StatefulSet", namespace, n)["status"]["currentRevision"]
                 for n in ("vllm", "vllm-rank1")}
    with PodRecorder(kube, namespace) as recorder:
        rolled = site(sandbox, namespace, vllm_serve_replicas=2, vllm_serve_max_model_len=2048)
    assert rolled.rc == 0, rolled.failures()
    steps = rolled.task("Lower the partition pod by pod, each gated by readiness and an endpoint check of that "
                        "pod")["replicas"]
    assert [s["group"] for s in steps] == [["vllm-1", "vllm-rank1-1"], ["vllm-0", "vllm-rank1-0"]]
    assert all(s["check"]["models"]["ids"] for s in steps)
    for name in ("vllm", "vllm-rank1"):
        status = kube.get("apps/v1", "StatefulSet", namespace, name)["status"]
        assert status["currentRevision"] == status["updateRevision"] != revisions[name]
    pods = pods_of(kube, namespace)
    assert all("2048" in p["spec"]["containers"][0]["args"] for p in pods.values())
    # Never two groups out of service at once; each group went out whole.
    out = [{name[-1] for name, s in state.items() if not s["ready"] or s["deleting"]} for state in recorder.states]
    assert recorder.states and max(len(groups) for groups in out) == 1, out
    assert list(dict.fromkeys(next(iter(groups)) for groups in out if groups)) == ["1", "0"], out

    # site.yml does not check capacity first: a third group's pods stay Pending, and the wait says why.
    three = site(sandbox, namespace, vllm_serve_replicas=3, vllm_serve_wait_timeout=20, vllm_serve_check=False,
                 vllm_serve_max_model_len=2048)
    assert three.rc != 0
    waited = three.task("inferops.vllm.vllm_serve : Wait for the rollout")
    message = json.dumps(waited)
    assert "vllm-2" in message or "vllm-rank1-2" in message, message
    assert "anti-affinity" in message, message

    # The same model on nodes of 1 GPU is a group of 4 (TP 1 x PP 4): two more ranks. Back on nodes of 2 GPUs, the
    # ranks the group no longer has are deleted with their pods (each would hold a node and dial the new leader).
    four = site(sandbox, namespace, vllm_serve_replicas=1, vllm_serve_gpus_per_node=1)
    assert four.rc == 0, four.failures()
    assert set(pods_of(kube, namespace)) == {"vllm-0", "vllm-rank1-0", "vllm-rank2-0", "vllm-rank3-0"}
    back = site(sandbox, namespace, vllm_serve_replicas=1)
    assert back.rc == 0, back.failures()
    assert {s["metadata"]["name"] for s in kube.list("apps/v1", "StatefulSet", namespace)} == {"vllm", "vllm-rank1"}
    assert set(pods_of(kube, namespace)) == {"vllm-0", "vllm-rank1-0"}

    # Teardown takes every rank and the group's Service.
    down = sandbox_playbook(sandbox, "playbooks/teardown.yml", namespace, teardown_level="service")
    assert down.rc == 0, down.failures()
    assert kube.list("apps/v1", "StatefulSet", namespace) == []
    assert {s["metadata"]["name"] for s in kube.list("v1", "Service", namespace)} == set()
    assert pods_of(kube, namespace) == {}


# --- teardown of a group with a claim per replica

RANK_CLAIMS = ["models-vllm-0", "models-vllm-rank1-0"]
DECOY = "models-vllm-1"  # the name the second group's leader would get
PER_REPLICA = {**GROUP, "model_store_storage": "per_replica", "model_store_download": "init_container",
               "vllm_serve_model_claim_template": "{{ model_store_claim_template }}",
               "vllm_serve_init_containers": ["{{ model_store_fetch_container }}"],
               "teardown_keep_namespace": True}


def said_by(result) -> str:
    return json.dumps([h.get("msg") for t in result.tasks() for h in t["hosts"].values()])


def folder(kube, volume: str) -> Path:
    return Path(kube.get("v1", "PersistentVolume", None, volume)["spec"]["hostPath"]["path"])


def deploy(sandbox, kube, namespace) -> dict[str, str]:
    """The group, each rank's claim bound; {claim: volume}. The model's files
    are put into each claim's folder as the init container would have (the
    sandbox runs no vLLM pod's containers)."""
    site = sandbox_playbook(sandbox, "site.yml", namespace, ["--tags", "model,serve"], **PER_REPLICA)
    assert site.rc == 0, site.failures()
    claims = {c["metadata"]["name"]: c for c in kube.list("v1", "PersistentVolumeClaim", namespace)}
    assert set(RANK_CLAIMS) <= set(claims), sorted(claims)
    volumes = {name: claims[name]["spec"]["volumeName"] for name in RANK_CLAIMS}
    for volume in volumes.values():
        model = folder(kube, volume) / "tiny-chat"
        model.mkdir(parents=True, exist_ok=True)
        (model / "config.json").write_text("{}")
    return volumes


def decoy(kube, namespace) -> dict:
    kube.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": DECOY},
                 "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "sandbox-local",
                          "resources": {"requests": {"storage": "1Gi"}}}}, namespace)
    return kube.wait_for(("v1", "PersistentVolumeClaim", namespace),
                         lambda c: c["metadata"]["name"] == DECOY and c["status"].get("phase") == "Bound", 60)


def test_teardown_keeps_then_wipes_every_rank_claim_and_leaves_a_claim_not_ours(sandbox, kube, namespace):
    try:
        teardown_every_rank(sandbox, kube, namespace)
    finally:
        put_back_volumes(kube, namespace)


def teardown_every_rank(sandbox, kube, namespace):
    volumes = deploy(sandbox, kube, namespace)
    theirs = decoy(kube, namespace)
    (folder(kube, theirs["spec"]["volumeName"]) / "theirs.txt").write_text("a user's data")

    service = sandbox_playbook(sandbox, "playbooks/teardown.yml", namespace, teardown_level="service", **PER_REPLICA)
    assert service.rc == 0, service.failures()
    assert kube.list("apps/v1", "StatefulSet", namespace) == []

    theirs = kube.get("v1", "PersistentVolumeClaim", namespace, DECOY)  # as the model level finds it
    # Retain (the default): every rank's volume set to Retain before its claim goes, and named.
    model = sandbox_playbook(sandbox, "playbooks/teardown.yml", namespace, teardown_level="model", **PER_REPLICA)
    assert model.rc == 0, model.failures()
    left = {c["metadata"]["name"]: c for c in kube.list("v1", "PersistentVolumeClaim", namespace)}
    assert set(left) == {DECOY}, sorted(left)
    said = said_by(model)
    for claim, volume in volumes.items():
        pv = kube.get("v1", "PersistentVolume", None, volume)
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["status"]["phase"] == "Released"
        assert pv["spec"]["claimRef"]["name"] == claim
        assert f"Volume {volume} (claim {claim}" in said, said
        assert (folder(kube, volume) / "tiny-chat" / "config.json").is_file()
    # Someone else's claim: untouched, its volume never named.
    assert left[DECOY]["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    assert theirs["spec"]["volumeName"] not in said and DECOY not in said
    again = sandbox_playbook(sandbox, "playbooks/teardown.yml", namespace, teardown_level="model", **PER_REPLICA)
    assert again.rc == 0 and again.changed() == 0, again.failures()
    assert all(f"Volume {v} (claim {c}" in said_by(again) for c, v in volumes.items())  # still named

    # Delete the data: a wipe Job on every rank's claim, then the claims go.
    volumes = deploy(sandbox, kube, namespace)
    for volume in volumes.values():  # kept after its claim, for the test to look into
        kube.patch("v1", "PersistentVolume", None, volume, body={"spec": {"persistentVolumeReclaimPolicy": "Retain"}})
    sandbox_playbook(sandbox, "playbooks/teardown.yml", namespace, teardown_level="service", **PER_REPLICA)
    wipe = sandbox_playbook(sandbox, "playbooks/teardown.yml", namespace, teardown_level="model",
                            teardown_delete_model_data=True, **PER_REPLICA)
    assert wipe.rc == 0, wipe.failures()
    said = said_by(wipe)
    for claim, volume in volumes.items():
        assert not (folder(kube, volume) / "tiny-chat").exists(), claim
        assert f"Volume {volume} (claim {claim}" in said and "the model was deleted from it" in said
    assert {c["metadata"]["name"] for c in kube.list("v1", "PersistentVolumeClaim", namespace)} == {DECOY}
    assert (folder(kube, theirs["spec"]["volumeName"]) / "theirs.txt").read_text() == "a user's data"
    assert kube.list("batch/v1", "Job", namespace) == []
