"""A fleet on the sandbox (inventories/sandbox-fleet): three models - tiny-chat
on two whole GPUs, the same files in HAMi slices (two replicas), an
embedding model in a smaller slice - planned together and deployed by one
site.yml, each endpoint asked; the rerun changes nothing; a fleet that does
not fit is refused with nothing changed and the smallest change named;
scale and teardown of one model leave the others' objects as they were."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.ansible import ROOT, run_playbook
from support.k8s import changed_between, cluster_state

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("site_put_back")]
INVENTORY = ROOT / "inventories" / "sandbox-fleet"
NAMESPACE = "ai-fleet"
MODELS = ("chat-large", "chat-small", "embed")


def run(sandbox, playbook: str, *extra: str):
    return run_playbook(ROOT / playbook, inventory=INVENTORY, env={"SANDBOX_DIR": str(sandbox.state_dir)},
                        extra_args=list(extra))


def member(model: str) -> str:
    return f"{model}@sandbox-controller"


def objects_of(kube, model: str) -> dict:
    """resourceVersion of each object of one model (its StatefulSet, pods,
    Service, PDB, key Secret), by the labels the role puts on them."""
    selector = f"app.kubernetes.io/instance={model}"
    found = {}
    for api, kind in (("apps/v1", "StatefulSet"), ("v1", "Pod"), ("v1", "Service"),
                      ("policy/v1", "PodDisruptionBudget")):
        for obj in kube.list(api, kind, NAMESPACE, label_selector=selector):
            found[(kind, obj["metadata"]["name"])] = obj["metadata"]["resourceVersion"]
    secret = kube.get("v1", "Secret", NAMESPACE, f"{model}-api-key")
    found[("Secret", secret["metadata"]["name"])] = secret["metadata"]["resourceVersion"]
    return found


def limits_of(kube, model: str) -> dict:
    sts = kube.get("apps/v1", "StatefulSet", NAMESPACE, model)
    return sts["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_a_fleet_of_three_models(sandbox, kube, tmp_path):
    first = run(sandbox, "site.yml")
    assert first.rc == 0 and first.failed() == 0, first.failures()

    # Planned before anything was fetched: every replica placed, and the table shows the slices sharing GPUs.
    plan = first.task("Place the fleet by HAMi's rules (stops here, naming what does not fit and the smallest change, "
                      "before anything changes)")
    assert plan["fits"] is True and not plan["unplaced"] and not plan["not_placed"]
    placed = {p["pod"]: p for p in plan["placements"]}
    assert sorted(placed) == ["chat-large-0", "chat-small-0", "chat-small-1", "embed-0"]
    assert len(placed["chat-large-0"]["gpus"]) == 2
    # HAMi's binpack GPU policy (the inventory's) puts the slices on one GPU, beside none of chat-large's whole GPUs.
    slices = {(placed[p]["node"], placed[p]["gpus"][0]["id"]) for p in ("chat-small-0", "chat-small-1", "embed-0")}
    assert len(slices) == 1
    whole = {(placed["chat-large-0"]["node"], g["id"]) for g in placed["chat-large-0"]["gpus"]}
    assert not slices & whole
    shown = "\n".join(first.task("Show where each replica goes")["msg"])
    assert "chat-small-0 (8192 MiB, 30%)" in shown and "embed-0 (4096 MiB, 20%)" in shown, shown

    # The pods ask HAMi for what the plan placed.
    assert limits_of(kube, "chat-large") == {"nvidia.com/gpu": "2"}
    assert limits_of(kube, "chat-small") == {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "8192",
                                             "nvidia.com/gpucores": "30"}
    assert limits_of(kube, "embed") == {"nvidia.com/gpu": "1", "nvidia.com/gpumem": "4096",
                                        "nvidia.com/gpucores": "20"}

    # tiny-chat fetched once, for both of its models; all-minilm-l6-v2 once.
    jobs = sorted(j["metadata"]["name"] for j in kube.list("batch/v1", "Job", NAMESPACE))
    assert len(jobs) == 2 and all(j.startswith(("fetch-tiny-chat", "fetch-all-minilm-l6-v2")) for j in jobs), jobs
    claims = sorted(c["metadata"]["name"] for c in kube.list("v1", "PersistentVolumeClaim", NAMESPACE))
    assert claims == ["models-all-minilm-l6-v2", "models-tiny-chat"]
    for claim, folder, weights in (("models-tiny-chat", "tiny-chat", "model.safetensors"),
                                   ("models-all-minilm-l6-v2", "all-minilm-l6-v2", "model.safetensors")):
        volume = kube.get("v1", "PersistentVolume", None,
                          kube.get("v1", "PersistentVolumeClaim", NAMESPACE, claim)["spec"]["volumeName"])
        marker = json.loads((Path(volume["spec"]["hostPath"]["path"]) / folder
                             / ".inferops-model-complete.json").read_text())
        assert weights in {f["path"] for f in marker["files"]}
    for model in ("chat-large", "chat-small"):
        mounts = kube.get("apps/v1", "StatefulSet", NAMESPACE, model)["spec"]["template"]["spec"]["volumes"]
        assert "models-tiny-chat" in [v.get("persistentVolumeClaim", {}).get("claimName") for v in mounts]

    # Every endpoint asked as a client would, by its own served name.
    for model in ("chat-large", "chat-small"):
        answer = first.task("inferops.vllm.vllm_serve : Ask the server, as a client would", member(model))
        assert answer["models"]["ids"] == [model] and answer["chat"]["reply"] == "ready", answer
        assert answer["stream"]["chunks"] > 0
    embedded = first.task("inferops.vllm.vllm_serve : Ask the server, as a client would", member("embed"))
    assert embedded["models"]["ids"] == ["embed"] and embedded["embeddings"]["dimensions"] > 0, embedded
    for model, ready in (("chat-large", 1), ("chat-small", 2), ("embed", 1)):
        assert kube.get("apps/v1", "StatefulSet", NAMESPACE, model)["status"].get("readyReplicas") == ready

    # Again: nothing changes.
    before = cluster_state(kube)
    second = run(sandbox, "site.yml")
    assert second.rc == 0 and second.failed() == 0, second.failures()
    assert second.changed() == 0, [t["task"]["name"] for t in second.tasks()
                                   if any(h.get("changed") for h in t["hosts"].values())]
    # The rerun planned from each model's serving plan (its config.json is downloaded now).
    again = second.task("Place the fleet by HAMi's rules (stops here, naming what does not fit and the smallest "
                        "change, before anything changes)")
    assert again["fits"] is True and all(p["existing"] for p in again["placements"])
    assert changed_between(before, cluster_state(kube)) == []

    # A fleet that does not fit: refused by the plan, nothing changed, the replicas and the smallest change named.
    too_many = tmp_path / "too-many.json"
    entries = json.loads(json.dumps(second.task("List the models and their downloads")["ansible_facts"]
                                    ["inferops_fleet"]["members"]))
    fleet = [{"name": m["name"], **{k: v for k, v in m["vars"].items() if k in (
        "model_store_s3_prefix", "vllm_serve_tensor_parallel_size", "vllm_serve_replicas",
        "vllm_serve_gpu_memory_request_mib", "vllm_serve_gpu_cores_percent")}} for m in entries]
    fleet[1]["vllm_serve_replicas"] = 120
    too_many.write_text(json.dumps({"inferops_models": fleet}))
    before = cluster_state(kube)
    refused = run(sandbox, "site.yml", "-e", f"@{too_many}")
    assert refused.rc != 0
    failure = refused.failures()
    assert "Place the fleet by HAMi's rules" in failure and "chat-small" in failure
    suggestion = refused.task("Place the fleet by HAMi's rules (stops here, naming what does not fit and the smallest "
                              "change, before anything changes)")
    assert suggestion["fits"] is False and {u["workload"] for u in suggestion["unplaced"]} == {"chat-small"}
    fewer = [s for s in suggestion["suggestions"] if s["workload"] == "chat-small" and s["change"] == "replicas"]
    assert fewer and 2 <= fewer[0]["to"] < 120, suggestion["suggestions"]
    assert changed_between(before, cluster_state(kube)) == []
    assert kube.get("apps/v1", "StatefulSet", NAMESPACE, "chat-small")["spec"]["replicas"] == 2

    # Scale one model: the others' objects stay as they were (resourceVersions).
    others = {m: objects_of(kube, m) for m in ("chat-large", "embed")}
    scaled = run(sandbox, "playbooks/scale.yml", "-e", "inferops_model=chat-small", "-e", "vllm_serve_replicas=3")
    assert scaled.rc == 0 and scaled.failed() == 0, scaled.failures()
    assert kube.get("apps/v1", "StatefulSet", NAMESPACE, "chat-small")["status"].get("readyReplicas") == 3
    assert {m: objects_of(kube, m) for m in others} == others

    # Upgrade one model (new serving arguments, rolled pod by pod): the others' objects stay as they were.
    others = {m: objects_of(kube, m) for m in ("chat-large", "chat-small")}
    upgraded = run(sandbox, "playbooks/upgrade.yml", "-e", "inferops_model=embed", "-e", "vllm_serve_max_model_len=128")
    assert upgraded.rc == 0 and upgraded.failed() == 0, upgraded.failures()
    args = kube.get("apps/v1", "StatefulSet", NAMESPACE, "embed")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--max-model-len") + 1] == "128"
    assert {m: objects_of(kube, m) for m in others} == others

    # Tear one model down: its objects and its own download go; the others stay as they were.
    others = {m: objects_of(kube, m) for m in ("chat-large", "chat-small")}
    gone = run(sandbox, "playbooks/teardown.yml", "-e", "inferops_model=embed", "-e", "teardown_level=model")
    assert gone.rc == 0 and gone.failed() == 0, gone.failures()
    assert not kube.list("apps/v1", "StatefulSet", NAMESPACE, label_selector="app.kubernetes.io/instance=embed")
    claims = sorted(c["metadata"]["name"] for c in kube.list("v1", "PersistentVolumeClaim", NAMESPACE))
    assert claims == ["models-tiny-chat"]
    assert {m: objects_of(kube, m) for m in others} == others
    # A download another model still serves stays when one of its models goes.
    kept = run(sandbox, "playbooks/teardown.yml", "-e", "inferops_model=chat-small", "-e", "teardown_level=model")
    assert kept.rc == 0 and kept.failed() == 0, kept.failures()
    said = kept.task("Say which download stays, shared with a model that stays", member("chat-small"))
    assert said["msg"] == "Download tiny-chat kept: chat-large still serves it."
    assert kube.get("v1", "PersistentVolumeClaim", NAMESPACE, "models-tiny-chat")["status"]["phase"] == "Bound"
    assert kube.get("apps/v1", "StatefulSet", NAMESPACE, "chat-large")["status"].get("readyReplicas") == 1
