"""playbooks/teardown.yml on the sandbox, level by level, after site.yml
deployed everything with variables of the test's own: after each level,
every object of every namespaced kind in the namespaces it touched is listed
(discovery, as `kubectl api-resources --namespaced --verbs=list` and a `get`
of each) and nothing of ours may be left; the model's files stay on their
volume (set to Retain first), or are gone when asked; a rerun changes
nothing; check mode and an invalid level change nothing.

Cluster-wide state that other tests rely on is never touched: the HAMi
release is the test's own (another name, in a namespace of the test's own),
and the GPU node label and taint are the test's own too (gpu_node_labels,
gpu_node_taints), so kube-system's HAMi and the nodes' gpu=on stay as they
are. A finally takes off whatever a failed run left."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from support.ansible import ROOT, run_playbook
from support.k8s import changed_between, cluster_state
from support.volumes import put_back_volumes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LABEL = "teardown-test.inferops.io/gpu"
TAINT = {"key": LABEL, "value": "present", "effect": "PreferNoSchedule"}  # no pod of another test is kept off
# What Kubernetes puts into every namespace, and stays while the namespace does.
KUBERNETES_OWN = {"ServiceAccount/default", "ConfigMap/kube-root-ca.crt"}


def inventory(namespace: str, hami_namespace: str) -> dict:
    """The test's inventory on top of the sandbox's: one set of variables
    for the deployment and the teardown, as a user keeps it."""
    return {
        "model_store_namespace": namespace, "vllm_serve_namespace": namespace,
        # Every optional object of vllm_serve, so that the teardown must find each.
        "vllm_serve_ingress_enabled": True, "vllm_serve_ingress_host": "vllm.teardown.test",
        "vllm_serve_network_policy_enabled": True, "vllm_serve_network_policy_from": [{"namespace": "clients"}],
        "vllm_serve_wait_timeout": 120,
        "hami_release_name": "hami-td", "hami_namespace": hami_namespace, "hami_wait_timeout": 120,
        "vllm_serve_hami_release": "hami-td", "vllm_serve_hami_namespace": hami_namespace,
        "gpu_node_labels": {LABEL: "on"}, "gpu_node_taints": [TAINT],
    }


def playbook(sandbox, name: str, variables: dict, check: bool = False, **extra):
    return run_playbook(ROOT / name, inventory=ROOT / "inventories" / "sandbox", extra_vars={**variables, **extra},
                        check=check, env={"SANDBOX_DIR": str(sandbox.state_dir)})


def teardown(sandbox, variables: dict, level, check: bool = False, **extra):
    more = {} if level is None else {"teardown_level": level}
    return playbook(sandbox, "playbooks/teardown.yml", variables, check=check, **more, **extra)


def in_namespace(kube, namespace: str) -> list[tuple[str, str, dict]]:
    """(kind, name, object) of every object of every namespaced kind that can
    be listed, in the namespace: discovery of every group's preferred
    version, then a list of each kind there."""
    found = []
    bases = ["/api/v1"] + [f"/apis/{g['preferredVersion']['groupVersion']}"
                           for g in kube.request("GET", "/apis")["groups"]]
    for base in bases:
        for res in kube.request("GET", base)["resources"]:
            if "/" in res["name"] or not res["namespaced"] or "list" not in res.get("verbs", []):
                continue
            for obj in kube.request("GET", f"{base}/namespaces/{namespace}/{res['name']}").get("items", []):
                found.append((res["kind"], obj["metadata"]["name"], obj))
    return found


def left_in(kube, namespace: str) -> set[str]:
    """Kind/name of what is in the namespace, but events and what Kubernetes
    keeps in every namespace."""
    return {f"{kind}/{name}" for kind, name, _obj in in_namespace(kube, namespace)
            if kind != "Event" and f"{kind}/{name}" not in KUBERNETES_OWN}


def exists(kube, *ref) -> bool:
    return bool(kube.list(*ref[:-1], field_selector=f"metadata.name={ref[-1]}"))


def messages(result) -> str:
    return json.dumps([h.get("msg") for t in result.tasks() for h in t["hosts"].values()])


def model_volume(kube, namespace: str, claim: str = "models-tiny-chat") -> tuple[str, Path]:
    """The volume bound to the claim, and the model's folder in it (the
    sandbox's volumes are hostPath folders on this machine)."""
    name = kube.get("v1", "PersistentVolumeClaim", namespace, claim)["spec"]["volumeName"]
    return name, Path(kube.get("v1", "PersistentVolume", None, name)["spec"]["hostPath"]["path"]) / "tiny-chat"


def model_files_in(folder: Path) -> bool:
    marker = folder / ".inferops-model-complete.json"
    return marker.is_file() and "model.safetensors" in {f["path"] for f in json.loads(marker.read_text())["files"]} \
        and (folder / "model.safetensors").stat().st_size > 0


def clean_up(kube, sandbox, *namespaces: str) -> None:
    for name in namespaces:
        put_back_volumes(kube, name)  # the sandbox's volumes the test's claims took, back in its pool
        kube.delete("v1", "Namespace", None, name, propagation="Background", missing_ok=True)
    for node in sandbox.gpu_nodes:
        live = kube.get(f"/api/v1/nodes/{node}")
        taints = [t for t in live["spec"].get("taints") or [] if t["key"] != LABEL]
        if LABEL in live["metadata"].get("labels", {}) or taints != (live["spec"].get("taints") or []):
            kube.patch(f"/api/v1/nodes/{node}", body={"metadata": {"labels": {LABEL: None}},
                                                      "spec": {"taints": taints or None}})


def test_teardown_level_by_level(sandbox, kube):
    suffix = uuid.uuid4().hex[:5]
    namespace, hami_namespace = f"t-teardown-{suffix}", f"t-teardown-hami-{suffix}"
    variables = inventory(namespace, hami_namespace)
    kube.create({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": hami_namespace, "labels": {"inferops.io/test": "true"}}})
    # The HAMi-shaped chart's device plugin selects gpu=on whatever else it is
    # given (Helm merges the chart's map): what site.yml's gpu_nodes stage puts
    # on the GPU nodes by default. Taken off again at the end where this test put it.
    put_on = [n for n in sandbox.gpu_nodes if kube.get(f"/api/v1/nodes/{n}")["metadata"]["labels"].get("gpu") != "on"]
    for node in sandbox.gpu_nodes:
        kube.patch(f"/api/v1/nodes/{node}", body={"metadata": {"labels": {"gpu": "on"}}})
    try:
        deployed = playbook(sandbox, "site.yml", variables)
        assert deployed.rc == 0, deployed.failures()
        everything = left_in(kube, namespace)
        for made in ("StatefulSet/vllm", "Service/vllm", "PodDisruptionBudget/vllm", "Ingress/vllm",
                     "NetworkPolicy/vllm", "Secret/vllm-api-key", "Pod/vllm-0", "PersistentVolumeClaim/models-tiny-chat",
                     "Secret/tiny-chat-fetch-credentials"):
            assert made in everything, (made, everything)
        assert any(o.startswith("Job/fetch-tiny-chat-") for o in everything), everything
        assert any(o.startswith("ControllerRevision/vllm-") for o in everything), everything
        assert {o for o in left_in(kube, hami_namespace) if not o.startswith("Pod/")} >= {
            "DaemonSet/hami-td-device-plugin", "Deployment/hami-td-scheduler"}
        node = kube.get(f"/api/v1/nodes/{sandbox.gpu_nodes[0]}")
        assert node["metadata"]["labels"][LABEL] == "on" and TAINT in node["spec"]["taints"]
        # A volume whose claim's deletion would delete it (as most provisioners make them):
        # the teardown must set it to Retain before the claim goes.
        volume, model_dir = model_volume(kube, namespace)
        kube.patch("v1", "PersistentVolume", None, volume, body={"spec": {"persistentVolumeReclaimPolicy": "Delete"}})
        assert model_files_in(model_dir)
        # Something of the user's in the namespace, which the teardown must not take with it.
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "user-notes", "namespace": namespace},
                     "data": {"owner": "a team"}})

        # Nothing is deleted when the level is missing or not one of the four (checked first, by name).
        before = cluster_state(kube)
        for level in (None, "everything"):
            refused = teardown(sandbox, variables, level)
            assert refused.rc != 0
            message = refused.failures()
            assert "teardown_level" in message and all(x in message for x in ("service", "model", "hami", "gpu_nodes"))
            assert "Nothing was deleted" in message
        # Check mode at the deepest level changes nothing either.
        dry = teardown(sandbox, variables, "gpu_nodes", check=True)
        assert dry.rc == 0 and dry.failed() == 0, dry.failures()
        assert dry.changed() > 0  # it says what it would do
        assert changed_between(before, cluster_state(kube)) == []

        # service: every object of vllm_serve, and its pods, gone when it returns.
        service = teardown(sandbox, variables, "service")
        assert service.rc == 0, service.failures()
        left = left_in(kube, namespace)
        model_objects = {"PersistentVolumeClaim/models-tiny-chat", "Secret/tiny-chat-fetch-credentials",
                         "ConfigMap/user-notes"}
        downloads = {o for o in left if o.startswith(("Job/fetch-tiny-chat-", "Pod/fetch-tiny-chat-"))}
        assert left == model_objects | downloads, left - model_objects - downloads
        assert not exists(kube, "v1", "Pod", namespace, "vllm-0")
        again = teardown(sandbox, variables, "service")
        assert again.rc == 0 and again.changed() == 0, again.failures()

        # model: the claim, download and credentials gone; the files kept on a
        # volume now Retain, which the run names; the namespace kept for the ConfigMap.
        model = teardown(sandbox, variables, "model")
        assert model.rc == 0, model.failures()
        assert left_in(kube, namespace) == {"ConfigMap/user-notes"}
        said = messages(model)
        assert f"Volume {volume}" in said and "keeps the model" in said
        assert f"Namespace {namespace} kept: it holds ConfigMap/user-notes" in said
        pv = kube.get("v1", "PersistentVolume", None, volume)
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["status"]["phase"] == "Released"
        assert pv["spec"]["claimRef"]["name"] == "models-tiny-chat"  # where it came from, for whoever looks
        assert model_files_in(model_dir)
        # Once the user's ConfigMap is gone, the namespace goes too; then nothing changes.
        kube.delete("v1", "ConfigMap", namespace, "user-notes")
        model = teardown(sandbox, variables, "model")
        assert model.rc == 0 and model.changed() > 0, model.failures()
        assert not exists(kube, "v1", "Namespace", None, namespace)
        again = teardown(sandbox, variables, "model")
        assert again.rc == 0 and again.changed() == 0, again.failures()
        assert f"Volume {volume}" in messages(again)  # still named, for whoever reruns it later

        # hami: the test's own release uninstalled, and everything of it gone.
        hami = teardown(sandbox, variables, "hami")
        assert hami.rc == 0 and hami.changed() > 0, hami.failures()
        assert left_in(kube, hami_namespace) == set()  # no workload, pod, or Helm release Secret

        # gpu_nodes: the label and taint gpu_node put on the nodes gone; gpu=on,
        # not in this inventory's gpu_node_labels, stays.
        nodes = teardown(sandbox, variables, "gpu_nodes")
        assert nodes.rc == 0 and nodes.changed() > 0, nodes.failures()
        for name in sandbox.gpu_nodes:
            node = kube.get(f"/api/v1/nodes/{name}")
            assert LABEL not in node["metadata"]["labels"] and node["metadata"]["labels"]["gpu"] == "on"
            assert all(t["key"] != LABEL for t in node["spec"].get("taints") or [])
        again = teardown(sandbox, variables, "gpu_nodes")
        assert again.rc == 0 and again.changed() == 0, again.failures()
        assert model_files_in(model_dir)  # through every level
    finally:
        clean_up(kube, sandbox, namespace, hami_namespace)
        for node in put_on:
            kube.patch(f"/api/v1/nodes/{node}", body={"metadata": {"labels": {"gpu": None}}})


def test_teardown_deletes_the_model_files_when_asked(sandbox, kube):
    namespace = f"t-teardown-data-{uuid.uuid4().hex[:5]}"
    variables = {"model_store_namespace": namespace, "vllm_serve_namespace": namespace}
    try:
        deployed = playbook(sandbox, "playbooks/model.yml", variables)
        assert deployed.rc == 0, deployed.failures()
        volume, model_dir = model_volume(kube, namespace)
        assert model_files_in(model_dir)
        # A Secret of the name vllm_serve's would have, but not made by it: left, and so is the namespace.
        kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vllm-api-key", "namespace": namespace},
                     "stringData": {"api-key": "someone else's"}})

        model = teardown(sandbox, variables, "model", teardown_delete_model_data=True)
        assert model.rc == 0, model.failures()
        assert not model_dir.exists() and list(model_dir.parent.iterdir()) == []
        assert left_in(kube, namespace) == {"Secret/vllm-api-key"}  # no claim, Job, wipe Job, pod or credentials
        said = messages(model)
        assert f"Volume {volume}" in said and "the model was deleted from it" in said
        assert f"Namespace {namespace} kept: it holds Secret/vllm-api-key" in said
        again = teardown(sandbox, variables, "model", teardown_delete_model_data=True)
        assert again.rc == 0 and again.changed() == 0, again.failures()
    finally:
        clean_up(kube, sandbox, namespace)


def test_teardown_takes_the_per_replica_claims_and_keeps_their_volumes(sandbox, kube):
    """Storage per_replica: the StatefulSet's claims (models-vllm-<ordinal>),
    which deleting the StatefulSet leaves, go at the model level, their
    volumes set to Retain first."""
    namespace = f"t-teardown-replica-{uuid.uuid4().hex[:5]}"
    variables = {"model_store_namespace": namespace, "vllm_serve_namespace": namespace,
                 "model_store_storage": "per_replica", "model_store_download": "init_container",
                 "vllm_serve_model_claim_template": "{{ model_store_claim_template }}",
                 "vllm_serve_init_containers": ["{{ model_store_fetch_container }}"],
                 "vllm_serve_model_dir": str(ROOT / ".cache" / "test-models" / "tiny-chat"),
                 # The GPU stage (which puts gpu=on on the nodes) does not run here: GPU feature
                 # discovery's label, so that the pods are placed on a fresh sandbox too.
                 "vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"},
                 "vllm_serve_wait_timeout": 120}
    try:
        deployed = run_playbook(ROOT / "site.yml", inventory=ROOT / "inventories" / "sandbox", extra_vars=variables,
                                env={"SANDBOX_DIR": str(sandbox.state_dir)}, extra_args=["--tags", "model,serve"])
        assert deployed.rc == 0, deployed.failures()
        volume = kube.get("v1", "PersistentVolumeClaim", namespace, "models-vllm-0")["spec"]["volumeName"]
        kube.patch("v1", "PersistentVolume", None, volume, body={"spec": {"persistentVolumeReclaimPolicy": "Delete"}})

        service = teardown(sandbox, variables, "service")
        assert service.rc == 0, service.failures()
        assert left_in(kube, namespace) == {"PersistentVolumeClaim/models-vllm-0",
                                            "Secret/tiny-chat-fetch-credentials"}
        model = teardown(sandbox, variables, "model")
        assert model.rc == 0, model.failures()
        assert not exists(kube, "v1", "Namespace", None, namespace)
        pv = kube.get("v1", "PersistentVolume", None, volume)
        assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["status"]["phase"] == "Released"
        assert pv["spec"]["claimRef"]["name"] == "models-vllm-0" and f"Volume {volume}" in messages(model)
        again = teardown(sandbox, variables, "model")
        assert again.rc == 0 and again.changed() == 0, again.failures()
    finally:
        clean_up(kube, sandbox, namespace)
