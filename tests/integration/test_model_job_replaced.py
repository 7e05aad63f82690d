"""A Job's pod template cannot change once created (the API server answers
422: spec.template is immutable). model_store names its download Job after
the template, so a rerun with another model, source or image makes a new Job
and removes the old one, instead of failing."""

from __future__ import annotations

import pytest

from support.ansible import ROOT, run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def model_stage(sandbox, namespace, **extra):
    return run_playbook(ROOT / "playbooks" / "model.yml", inventory=ROOT / "inventories" / "sandbox",
                        extra_vars={"model_store_namespace": namespace, **extra},
                        env={"SANDBOX_DIR": str(sandbox.state_dir)})


def fetch_jobs(kube, namespace):
    return kube.list("batch/v1", "Job", namespace, label_selector="app.kubernetes.io/name=model-fetch")


def test_another_source_replaces_the_download_job(sandbox, kube, namespace):
    first = model_stage(sandbox, namespace)
    assert first.rc == 0, first.failures()
    [old] = fetch_jobs(kube, namespace)
    assert old["status"].get("succeeded") == 1

    # The same model into another folder, fewer files: another pod template.
    second = model_stage(sandbox, namespace, model_store_subpath="tiny-chat-configs",
                         model_store_allow_patterns=["*.json"])
    assert second.rc == 0, second.failures()
    [new] = fetch_jobs(kube, namespace)
    assert new["metadata"]["name"] != old["metadata"]["name"]
    assert new["metadata"]["name"].startswith("fetch-tiny-chat-")
    assert new["status"].get("succeeded") == 1
    assert "--allow-pattern=*.json" in new["spec"]["template"]["spec"]["containers"][0]["args"]
    # The folder and the revision, on the Job itself: nothing reads them back from its arguments.
    assert new["metadata"]["annotations"]["inferops.io/model-subpath"] == "tiny-chat-configs"
    assert new["metadata"]["annotations"]["inferops.io/model-revision"] == ""
    # The Job of the first template was pruned, and gone, before the new one was applied.
    applied = second.task("inferops.vllm.model_store : The model's claim and download Job (the Jobs of another "
                          "template, another model, source or image, removed)")
    assert applied["changed"] is True and applied["pruned"] == [f"Job/{old['metadata']['name']}"]
    # What the serving stage reads: the claim, its volume and the new folder.
    published = second.task("inferops.vllm.model_store : Publish where the model is, for the later stages of the "
                            "run")["ansible_facts"]["model_store_published"]
    volume = kube.get("v1", "PersistentVolumeClaim", namespace, "models-tiny-chat")["spec"]["volumeName"]
    assert published == {"namespace": namespace, "storage": "claim", "claim": "models-tiny-chat", "volume": volume,
                         "subpath": "tiny-chat-configs", "revision": ""}

    # And back: the first template's Job again, nothing failing on the way.
    third = model_stage(sandbox, namespace)
    assert third.rc == 0, third.failures()
    [again] = [j for j in fetch_jobs(kube, namespace) if not j["metadata"].get("deletionTimestamp")]
    assert again["metadata"]["name"] == old["metadata"]["name"]
