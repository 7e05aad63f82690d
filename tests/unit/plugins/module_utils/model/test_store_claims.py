"""Which claims the model_store teardown and the removal of a previous
revision take, which pods stop them, and what the teardown says about the
volumes (plugins/module_utils/model/_store_claims.py); and what the
role's short-lived pods answered (plugins/module_utils/model/_store_answers.py)."""

from __future__ import annotations

from ansible_collections.inferops.vllm.plugins.module_utils.model._store_answers import (
    guard_held, pod_answer, prune_report)
from ansible_collections.inferops.vllm.plugins.module_utils.model._store_claims import (
    model_claims, prune_targets, teardown_plan, teardown_report)

OURS = {"app.kubernetes.io/managed-by": "inferops.vllm"}
SET = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "vllm"}
SETTINGS = {"namespace": "ai", "name": "qwen", "storage": "claim", "claim_name": "models-qwen", "hostpath": "/h",
            "subpath": "qwen", "teardown_statefulset": "vllm", "teardown_delete_data": False,
            "guard_namespace": "ai", "guard_statefulset": "vllm", "previous_subpath": "qwen@v1"}


def claim(name, labels=None, volume=None, uid=None):
    return {"metadata": {"name": name, "uid": uid or f"uid-{name}", "labels": labels or {}},
            "spec": {"volumeName": volume} if volume else {}}


def pod(name, claims=(), labels=None, phase="Running", node="n1", deleting=False, args0="/models/qwen"):
    meta = {"name": name, "labels": labels or {}, **({"deletionTimestamp": "now"} if deleting else {})}
    return {"metadata": meta, "status": {"phase": phase},
            "spec": {"nodeName": node, "tolerations": [{"key": "gpu"}],
                     "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": c}} for c in claims],
                     "containers": [{"name": "vllm", "args": [args0],
                                     "volumeMounts": [{"name": "models", "mountPath": "/models"}]}]}}


def job(name, kind_label, instance="qwen"):
    return {"metadata": {"name": name, "uid": f"uid-{name}",
                         "labels": {"app.kubernetes.io/name": kind_label, "app.kubernetes.io/instance": instance}}}


def pv(name, claim_name, uid, policy="Retain", phase="Released", namespace="ai", **source):
    return {"metadata": {"name": name}, "status": {"phase": phase},
            "spec": {"claimRef": {"name": claim_name, "namespace": namespace, "uid": uid},
                     "persistentVolumeReclaimPolicy": policy, **source}}


def found(claims=(), jobs=(), pods=(), volumes=()):
    """The teardown's one loop of reads, as Ansible registers it."""
    return [{"item": {"kind": kind}, "resources": list(items)} for kind, items in
            (("PersistentVolumeClaim", claims), ("Job", jobs), ("Pod", pods), ("PersistentVolume", volumes))]


def test_the_shared_claim_is_ours_by_name_and_label_only():
    claims = [claim("models-qwen", OURS), claim("models-qwen-2", OURS), claim("other", OURS)]
    assert [c["metadata"]["name"] for c in model_claims(claims, "claim", "models-qwen", "vllm")] == ["models-qwen"]
    assert model_claims([claim("models-qwen")], "claim", "models-qwen", "vllm") == []  # someone else's
    assert model_claims(claims, "hostpath", "models-qwen", "vllm") == []


def test_per_replica_claims_are_every_ranks_by_their_labels():
    claims = [claim("models-vllm-0", SET), claim("models-vllm-rank1-0", {**SET, "inferops.io/node-rank": "1"}),
              claim("models-vllm-1"), claim("models-other-0", {**SET, "app.kubernetes.io/instance": "other"})]
    taken = model_claims(claims, "per_replica", "", "vllm")
    assert [c["metadata"]["name"] for c in taken] == ["models-vllm-0", "models-vllm-rank1-0"]


def test_teardown_plan_jobs_users_and_volumes_to_retain():
    shared = claim("models-qwen", OURS, volume="pv-1")
    pending = claim("models-qwen-x", OURS)
    jobs = [job("fetch-qwen-abc", "model-fetch"), job("fetch-qwen-wipe-0", "model-wipe"),
            job("fetch-qwen-read-0", "model-read"), job("fetch-other", "model-fetch", instance="other")]
    pods = [pod("fetch-qwen-abc-x", ["models-qwen"], {"app.kubernetes.io/name": "model-fetch"}),
            pod("notebook", ["models-qwen"]), pod("leaving", ["models-qwen"], deleting=True),
            pod("vllm-0", ["models-qwen"], {"app.kubernetes.io/instance": "vllm"}), pod("web", ["other"])]
    planned = teardown_plan(found([shared, pending], jobs, pods, [pv("pv-1", "models-qwen", "uid-models-qwen",
                                                                     policy="Delete")]), SETTINGS)
    assert planned["claim_names"] == ["models-qwen"]
    assert [j["metadata"]["name"] for j in planned["jobs"]] == ["fetch-qwen-abc", "fetch-qwen-wipe-0"]
    assert planned["users"] == ["notebook (claim models-qwen)", "vllm-0 (claim models-qwen)"]
    assert "notebook (claim models-qwen), vllm-0 (claim models-qwen)" in planned["refusal"]
    assert "nothing of the model was deleted" in planned["refusal"]
    assert [c["metadata"]["name"] for c in planned["retain"]] == ["models-qwen"]
    # In check mode the vLLM pods are still there (their teardown only pretended).
    checked = teardown_plan(found([shared], jobs, pods), SETTINGS, check_mode=True)
    assert checked["users"] == ["notebook (claim models-qwen)"]
    # A volume already Retain is not asked again (the deployer's account may not patch volumes),
    # and none is when the files are to be deleted.
    assert teardown_plan(found([shared], volumes=[pv("pv-1", "models-qwen", "u")]), SETTINGS)["retain"] == []
    wipe = teardown_plan(found([shared]), {**SETTINGS, "teardown_delete_data": True})
    assert wipe["retain"] == [] and wipe["refusal"] == ""


def test_teardown_report_names_only_the_models_volumes():
    gone = {"claims": [claim("models-qwen", OURS, volume="pv-1", uid="u1")], "live_claims": []}
    volumes = [pv("pv-1", "models-qwen", "u1", hostPath={"path": "/srv/pv-1"}),
               pv("pv-2", "theirs", "u2", phase="Bound"),
               pv("pv-3", "models-qwen", "old", nfs={"server": "nas", "path": "/export/m"})]
    said = teardown_report(volumes, gone, SETTINGS)
    assert said == ("Volume pv-1 (claim models-qwen, Released, reclaim policy Retain, /srv/pv-1): it keeps the model, "
                    "in qwen. Volume pv-3 (claim models-qwen, Released, reclaim policy Retain, nas:/export/m): it "
                    "keeps the model, in qwen.")
    assert "the model was deleted from it" in teardown_report(volumes, gone, {**SETTINGS, "teardown_delete_data": True})
    assert teardown_report([], gone, SETTINGS) == "No volume holds a claim of the model (ai/models-qwen)."
    assert teardown_report(volumes, gone, {**SETTINGS, "storage": "hostpath"}) == \
        "The model's files stay in /h/qwen on each GPU node that fetched them."


def test_prune_targets_claims_hosts_and_readers():
    claims = [claim("models-qwen", OURS), claim("models-qwen-theirs")]
    reading_new = pod("vllm-0", ["models-qwen"], {"app.kubernetes.io/name": "vllm"}, node="gpu-1",
                      args0="/models/qwen@v2")
    planned = prune_targets([reading_new], claims, SETTINGS)
    assert planned == {"claims": [{"name": "models-qwen", "node": "gpu-1", "tolerations": [{"key": "gpu"}]}],
                       "readers": [], "kept": ""}
    # A vLLM pod still on the previous folder, and a pod that is not the collection's: readers.
    old = pod("vllm-1", ["models-qwen"], {"app.kubernetes.io/name": "vllm"}, args0="/models/qwen@v1")
    planned = prune_targets([reading_new, old, pod("notebook", ["models-qwen"])], claims, SETTINGS)
    assert planned["readers"] == ["vllm-1", "notebook"]
    assert planned["kept"] == "qwen@v1 kept: running pods may read it: vllm-1, notebook."
    # No pod has the claim: the removal goes wherever the scheduler puts it.
    assert prune_targets([], claims, SETTINGS)["claims"] == [{"name": "models-qwen", "node": "", "tolerations": []}]
    assert prune_targets([], [], SETTINGS)["kept"] == "qwen@v1 kept: no claim of the model is left in ai."


def answered(job_name, message, phase="Succeeded"):
    return {"metadata": {"name": f"{job_name}-x", "labels": {"batch.kubernetes.io/job-name": job_name}},
            "status": {"phase": phase, "containerStatuses": [{"state": {"terminated": {"message": message}}}]}}


def test_a_pods_answer_is_its_last_json_line():
    pods = [answered("read-0", 'starting\n{"marker": false, "folder": true}\n'), answered("read-1", "not json"),
            answered("read-2", '{"half":'), answered("read-3", '{"x": 1}', phase="Failed")]
    assert pod_answer(pods, "read-0") == {"marker": False, "folder": True}
    assert pod_answer(pods, "read-1") is None and pod_answer(pods, "read-2") is None
    assert pod_answer(pods, "read-3") is None and pod_answer(pods, "read-9") is None


def test_guard_what_each_copy_holds():
    copies = [{"pods": ["vllm-0"], "node": "n1"}, {"pods": ["vllm-1"], "node": "n2"}, {"pods": ["vllm-2"], "node": "n3"}]
    marker = '{"marker": true, "source": {"type": "s3", "bucket": "models", "prefix": "qwen"}}'
    pods = [answered("fetch-qwen-read-0", marker)]
    waited = [{"rolled_out": True}, {"rolled_out": True}, {"rolled_out": False, "msg": "timed out after 300s"}]
    params = {"source": "s3", "bucket": "models", "prefix": "qwen"}
    held = guard_held(copies, pods, waited, params, "fetch-qwen-read")
    assert held[0]["held"] == "" and held[0]["marker"]["marker"] is True
    assert held[1]["marker"] == {"error": "the read pod gave no answer"} and "could not be read" in held[1]["held"]
    assert held[2]["marker"] == {"error": "the read pod did not finish: timed out after 300s"}
    moved = guard_held(copies[:1], pods, waited, {**params, "prefix": "qwen-v2"}, "fetch-qwen-read")
    assert moved[0]["held"] == "s3://models/qwen"


def test_prune_report_per_claim():
    claims = [{"name": "models-vllm-0"}, {"name": "models-vllm-1"}, {"name": "models-vllm-2"}]
    pods = [answered("p-0", '{"removed": true}'), answered("p-1", '{"removed": false, "reason": "x is not there"}')]
    report = prune_report(pods, claims, "p", "qwen@v1")
    assert report["removed"] is True
    assert report["msg"] == ("The previous folder qwen@v1: models-vllm-0: removed; models-vllm-1: kept, x is not "
                             "there; models-vllm-2: kept, its pod gave no answer.")
    assert prune_report(pods[1:], claims[1:2], "p", "x")["removed"] is False
