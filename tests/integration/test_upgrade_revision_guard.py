"""playbooks/upgrade.yml refuses to fetch another model source or revision
into the folder the running pods read, whatever the download mode: it reads
the folder's own completion marker (a short-lived pod with the pods' volume,
on a node of theirs), not the download Jobs, which init_container mode has
none of. The refusal names the folder to use instead, and nothing is fetched
or changed; the folder it names is then accepted."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.ansible import ROOT, sandbox_playbook
from support.volumes import put_back_volumes

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REFUSE = "Refuse a new model revision into the folder the running pods read"
MARKER = ".inferops-model-complete.json"
# The GPU stage (which puts gpu=on on the nodes) does not run here: GPU feature discovery's label.
NODES = {"vllm_serve_node_selector": {"nvidia.com/gpu.present": "true"}, "vllm_serve_wait_timeout": 120}
INIT = {**NODES, "model_store_download": "init_container",
        "vllm_serve_init_containers": ["{{ model_store_fetch_container }}"],
        # The serving plan reads config.json on this machine; the claim's folder is filled below.
        "vllm_serve_model_dir": str(ROOT / ".cache" / "test-models" / "tiny-chat"),
        "vllm_serve_replicas": 2}


def model_folder(kube, namespace: str) -> Path:
    volume = kube.get("v1", "PersistentVolumeClaim", namespace, "models-tiny-chat")["spec"]["volumeName"]
    return Path(kube.get("v1", "PersistentVolume", None, volume)["spec"]["hostPath"]["path"]) / "tiny-chat"


def run_init_container(kube, namespace: str) -> None:
    """What a vLLM pod's init container does before vLLM starts (the sandbox
    runs no container of a vLLM pod): its own command, arguments and
    credentials Secret, the claim's folder in place of /models."""
    sts = kube.get("apps/v1", "StatefulSet", namespace, "vllm")
    [init] = sts["spec"]["template"]["spec"]["initContainers"]
    root = str(model_folder(kube, namespace).parent)
    argv = [sys.executable if a == "python3" else a for a in init["command"]] + [
        root + a[len("/models"):] if a.startswith("/models/") else a for a in init["args"]]
    [source] = init["envFrom"]
    secret = kube.get("v1", "Secret", namespace, source["secretRef"]["name"])
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           **{k: base64.b64decode(v).decode() for k, v in secret["data"].items()}}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def refused(result) -> str:
    assert result.rc != 0
    return result.task(REFUSE)["msg"]


def unchanged(kube, namespace, version: str, folder: Path, marker: str) -> None:
    assert kube.get("apps/v1", "StatefulSet", namespace, "vllm")["metadata"]["resourceVersion"] == version
    assert kube.list("batch/v1", "Job", namespace) == []  # no download, and the read pods' Jobs are gone
    assert (folder / MARKER).read_text() == marker


def test_init_container_mode_refuses_a_new_revision_into_the_running_folder(sandbox, kube, namespace):
    try:
        init_container_mode(sandbox, kube, namespace)
    finally:
        put_back_volumes(kube, namespace)


def test_job_mode_still_refuses_another_source_into_the_running_folder(sandbox, kube, namespace):
    try:
        job_mode(sandbox, kube, namespace)
    finally:
        put_back_volumes(kube, namespace)


def init_container_mode(sandbox, kube, namespace):
    site = sandbox_playbook(sandbox, "site.yml", namespace, ["--tags", "model,serve"], **INIT)
    assert site.rc == 0, site.failures()
    assert kube.list("batch/v1", "Job", namespace) == []  # init_container: no download Job to look at
    run_init_container(kube, namespace)
    folder = model_folder(kube, namespace)
    marker = (folder / MARKER).read_text()
    version = kube.get("apps/v1", "StatefulSet", namespace, "vllm")["metadata"]["resourceVersion"]

    # Another S3 prefix (an S3 model's new revision) into the folder vllm-0 and vllm-1 read.
    other = sandbox_playbook(sandbox, "playbooks/upgrade.yml", namespace, **INIT, model_store_s3_prefix="tiny-chat-v2")
    message = refused(other)
    assert "would be fetched into /models/tiny-chat, which holds s3://models/tiny-chat" in message, message
    assert "vllm-0" in message and "vllm-1" in message
    assert "model_store_subpath and vllm_serve_model_subpath both set to" in message
    unchanged(kube, namespace, version, folder, marker)

    # A revision: S3 has none, so the fetcher would keep the old files; refused too, saying so.
    revision = sandbox_playbook(sandbox, "playbooks/upgrade.yml", namespace, **INIT, model_store_revision="v2")
    message = refused(revision)
    assert "model_store_revision v2 would be fetched into /models/tiny-chat" in message
    assert "tiny-chat@v2" in message and "model_store_s3_prefix" in message
    unchanged(kube, namespace, version, folder, marker)

    # The folder the refusal names: accepted. Asked to, the previous folder is removed once no pod reads it.
    beside = sandbox_playbook(sandbox, "playbooks/upgrade.yml", namespace, **INIT, model_store_revision="v2",
                              model_store_subpath="tiny-chat@v2", vllm_serve_model_subpath="tiny-chat@v2",
                              model_store_remove_previous_revision=True)
    assert beside.rc == 0, beside.failures()
    assert beside.task(REFUSE).get("failed") is not True
    pods = kube.list("v1", "Pod", namespace, label_selector="app.kubernetes.io/instance=vllm")
    assert {p["spec"]["containers"][0]["args"][0] for p in pods} == {"/models/tiny-chat@v2"}
    said = beside.task("inferops.vllm.model_store : Say what was removed, and what was kept and why")["msg"]
    assert said == "The previous folder tiny-chat: models-tiny-chat: removed.", said
    assert not folder.exists() and folder.parent.is_dir()
    assert kube.list("batch/v1", "Job", namespace) == []


def job_mode(sandbox, kube, namespace):
    site = sandbox_playbook(sandbox, "site.yml", namespace, ["--tags", "model,serve"], **NODES)
    assert site.rc == 0, site.failures()
    folder = model_folder(kube, namespace)
    marker = (folder / MARKER).read_text()  # the download Job's
    version = kube.get("apps/v1", "StatefulSet", namespace, "vllm")["metadata"]["resourceVersion"]
    jobs = kube.list("batch/v1", "Job", namespace)

    other = sandbox_playbook(sandbox, "playbooks/upgrade.yml", namespace, **NODES, model_store_s3_prefix="tiny-chat-v2")
    message = refused(other)
    assert "would be fetched into /models/tiny-chat, which holds s3://models/tiny-chat" in message, message
    assert kube.get("apps/v1", "StatefulSet", namespace, "vllm")["metadata"]["resourceVersion"] == version
    assert kube.list("batch/v1", "Job", namespace) == jobs
    assert (folder / MARKER).read_text() == marker

    # The same source again (an upgrade of the serving arguments only) passes the guard.
    same = sandbox_playbook(sandbox, "playbooks/upgrade.yml", namespace, **NODES, vllm_serve_max_model_len=256)
    assert same.rc == 0, same.failures()
    assert same.task(REFUSE).get("failed") is not True
