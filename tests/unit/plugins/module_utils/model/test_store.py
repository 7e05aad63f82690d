"""What the model_store role decides from its variables alone
(plugins/module_utils/model/_store.py): what it refuses before anything
changes, the download's container and volume, the Job's name after its pod
template (the same name the role gave it when it computed the hash in Jinja,
so an upgrade of the collection does not replace a Job), the annotations on
the Job, and the fact the serving role reads."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ansible_collections.inferops.vllm.plugins.module_utils.model._store import (
    REVISION_ANNOTATION, SUBPATH_ANNOTATION, fetch_args, plan, refusals, remove_revision_refusals, teardown_refusals)

ROOT = Path(__file__).parents[5]
DEFAULTS = yaml.safe_load((ROOT / "roles" / "model_store" / "defaults" / "main.yml").read_text())

# The sandbox inventory's model (inventories/sandbox/group_vars/all.yml) with an allow pattern.
SANDBOX = {
    "namespace": "ai-serving", "name": "tiny-chat", "storage": "claim", "hostpath": "/var/lib/inferops/models",
    "download": "job", "claim_name": "models-tiny-chat", "storage_class": "", "size": "10Gi", "subpath": "tiny-chat",
    "source": "s3", "model_id": "", "revision": "", "endpoint_url": "http://127.0.0.1:9000", "s3_bucket": "models",
    "s3_prefix": "tiny-chat", "local_path": "", "allow_patterns": ["*.json"], "ignore_patterns": [],
    "credentials_secret": "tiny-chat-fetch-credentials", "fetch_image": "registry.invalid/inferops-model-fetch:0.1.0",
    "job_name": "fetch-tiny-chat", "wait_timeout": 7200, "teardown_delete_data": False,
    "teardown_statefulset": "vllm", "teardown_timeout": 600, "guard_namespace": "ai-serving",
    "guard_statefulset": "vllm", "previous_subpath": "",
}


def settings(**changes) -> dict:
    return {**copy.deepcopy(SANDBOX), **changes}


def test_the_job_keeps_the_name_the_role_gave_it_before():
    # ([container, volume, wait_timeout] | to_json | hash('sha256'))[:10], computed by
    # ansible-core 2.21 with these settings before the hash moved into Python.
    planned = plan(settings())
    assert planned["job_hash"] == "8b7e821fec"
    assert planned["job_name"] == "fetch-tiny-chat-8b7e821fec"


def test_another_template_is_another_job_name():
    base = plan(settings())["job_name"]
    assert plan(settings(subpath="tiny-chat@v2"))["job_name"] != base
    assert plan(settings(fetch_image="registry.invalid/other:1"))["job_name"] != base
    assert plan(settings(wait_timeout=300))["job_name"] != base
    # Not part of the pod template: the same Job.
    assert plan(settings(namespace="other"))["job_name"] == base


def test_the_download_arguments_hold_no_secret_and_follow_the_source():
    assert fetch_args(settings()) == [
        "--source", "s3", "--dest", "/models/tiny-chat", "--endpoint-url", "http://127.0.0.1:9000",
        "--bucket", "models", "--prefix", "tiny-chat", "--allow-pattern=*.json"]
    hub = fetch_args(settings(source="huggingface", model_id="Qwen/Qwen3-8B", revision="abc123", endpoint_url="",
                              allow_patterns=[], ignore_patterns=["*.bin"]))
    assert hub == ["--source", "huggingface", "--dest", "/models/tiny-chat", "--model-id", "Qwen/Qwen3-8B",
                   "--revision", "abc123", "--ignore-pattern=*.bin"]
    local = fetch_args(settings(source="local", local_path="/srv/models/q", endpoint_url="", allow_patterns=[]))
    assert local[-2:] == ["--local-path", "/srv/models/q"]


def test_fetch_concurrency_is_passed_only_when_set_so_existing_jobs_keep_their_names():
    assert "--max-concurrency" not in fetch_args(settings(fetch_concurrency=0))
    assert plan(settings(fetch_concurrency=0))["job_name"] == plan(settings())["job_name"]
    args = fetch_args(settings(fetch_concurrency=32))
    assert args[args.index("--max-concurrency") + 1] == "32"
    assert DEFAULTS["model_store_fetch_concurrency"] == 0


def test_the_job_says_where_the_model_goes_and_which_revision():
    planned = plan(settings(subpath="qwen@abc123", source="huggingface", model_id="Qwen/Qwen3-8B",
                            revision="abc123"))
    assert planned["annotations"] == {SUBPATH_ANNOTATION: "qwen@abc123", REVISION_ANNOTATION: "abc123"}
    assert planned["published"] == {"namespace": "ai-serving", "storage": "claim", "claim": "models-tiny-chat",
                                    "subpath": "qwen@abc123", "revision": "abc123", "volume": ""}
    # No revision (an S3 source has none): said as empty, not left out.
    assert plan(settings())["annotations"][REVISION_ANNOTATION] == ""


def test_volume_and_claim_template_per_storage():
    shared = plan(settings())
    assert shared["volume"] == {"name": "models", "persistentVolumeClaim": {"claimName": "models-tiny-chat"}}
    assert shared["claim_template"] == {}
    host = plan(settings(storage="hostpath", download="init_container"))
    assert host["volume"] == {"name": "models", "hostPath": {"path": "/var/lib/inferops/models",
                                                             "type": "DirectoryOrCreate"}}
    assert host["published"]["claim"] == ""
    replica = plan(settings(storage="per_replica", download="init_container", storage_class="fast"))
    assert replica["volume"] == {}
    assert replica["claim_template"] == {"metadata": {"name": "models"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}, "storageClassName": "fast"}}


def test_the_container_reads_the_credentials_from_the_secret_only():
    container = plan(settings())["fetch_container"]
    assert container["envFrom"] == [{"secretRef": {"name": "tiny-chat-fetch-credentials"}}]
    assert "env" not in container and container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_defaults_are_refused_for_what_they_lack_only():
    base = {k.removeprefix("model_store_"): v for k, v in DEFAULTS.items()}
    # The defaults template the names from model_store_name: as the role would see them.
    base.update(claim_name="models-model", subpath="model", credentials_secret="model-fetch-credentials",
                job_name="fetch-model")
    said = refusals(base)
    assert [s.split(":")[0] for s in said] == ["model_store", "model_store_fetch_image"]
    assert "needs model_store_s3_bucket" in said[0]


@pytest.mark.parametrize("change, named", [
    ({"namespace": "AI_Serving"}, "model_store_namespace"),
    ({"name": "x" * 64}, "model_store_name"),
    ({"size": "lots"}, "model_store_size"),
    ({"source": "s3", "s3_bucket": ""}, "model_store_s3_bucket"),
    ({"source": "huggingface", "model_id": ""}, "model_store_model_id"),
    ({"source": "local", "local_path": ""}, "model_store_local_path"),
    ({"fetch_image": ""}, "model_store_fetch_image"),
    ({"storage": "per_replica", "download": "job"}, "model_store_download: init_container"),
    ({"fetch_concurrency": -2}, "model_store_fetch_concurrency"),
    ({"fetch_concurrency": "many"}, "model_store_fetch_concurrency"),
])
def test_each_refusal_names_the_variable(change, named):
    said = refusals(settings(**change))
    assert len(said) == 1 and named in said[0], said


def test_a_size_that_is_a_number_passes():
    assert refusals(settings(size=100)) == []


def test_teardown_refusals():
    assert teardown_refusals(settings()) == []
    assert "model_store_teardown_statefulset" in teardown_refusals(settings(teardown_statefulset="x" * 53))[0]
    assert "model_store_teardown_timeout" in teardown_refusals(settings(teardown_timeout=0))[0]
    assert "more than 0 seconds" in teardown_refusals(settings(teardown_timeout="soon"))[0]
    wipe = {"teardown_delete_data": True}
    assert "storage hostpath" in teardown_refusals(settings(storage="hostpath", **wipe))[0]
    assert "model_store_fetch_image" in teardown_refusals(settings(fetch_image="", **wipe))[0]
    assert "not a folder inside" in teardown_refusals(settings(subpath="../etc", **wipe))[0]
    assert teardown_refusals(settings(subpath="../etc")) == []  # nothing is deleted from it


def test_remove_revision_refusals():
    assert remove_revision_refusals(settings(previous_subpath="tiny-chat@v1")) == []
    for previous in ("", "/abs", "a/../../b", "tiny-chat/", ".."):
        [said] = remove_revision_refusals(settings(previous_subpath=previous))
        assert "is not another folder inside the volume. Nothing was removed." in said, previous
    [said] = remove_revision_refusals(settings(storage="hostpath", previous_subpath="x"))
    assert "remove x there yourself" in said
    [said] = remove_revision_refusals(settings(fetch_image="", previous_subpath="x"))
    assert "model_store_fetch_image" in said
