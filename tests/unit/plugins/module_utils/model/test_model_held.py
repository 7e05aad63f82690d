"""What a model folder holds (its completion marker, read by the script the
upgrade's read pod runs) against what a run would fetch into it, and which
running pods read which copy of the folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import write_marker
from ansible_collections.inferops.vllm.plugins.module_utils.model._held import folder_readers, held_conflict
from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import build_source

ROOT = Path(__file__).parents[5]
# The scripts the role's short-lived pods run (roles/model_store/vars/main.yml).
SCRIPTS = yaml.safe_load((ROOT / "roles" / "model_store" / "vars" / "main.yml").read_text())
S3 = {"source": "s3", "bucket": "models", "prefix": "qwen", "endpoint_url": "http://s3.example:9000"}
HUB = {"source": "huggingface", "model_id": "Qwen/Qwen3-8B"}


def run(code: str, *args: str) -> dict:
    """The script's answer, as the kubelet reads it: its termination-message
    file (the last argument), the same as its last line of output."""
    # As in the download image: the collection on the path.
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    with tempfile.TemporaryDirectory() as tmp:
        message = Path(tmp) / "termination-log"
        out = subprocess.run([sys.executable, "-c", code, *args, str(message)], capture_output=True, text=True,
                             check=True, env=env).stdout
        answer = json.loads(message.read_text())
    assert json.loads(out.strip().splitlines()[-1]) == answer
    return answer


def read(folder: Path) -> dict:
    return run(SCRIPTS["model_store_read_script"], str(folder))


def prune(root: Path, sub: str) -> dict:
    return run(SCRIPTS["model_store_prune_script"], str(root), sub)


def test_the_previous_folder_is_removed_only_with_the_collections_marker(tmp_path):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "weights.bin").write_text("x")
    assert prune(tmp_path, "theirs") == {"reason": "theirs holds no completion marker of the collection",
                                         "removed": False}
    assert (tmp_path / "theirs" / "weights.bin").is_file()
    (tmp_path / "link").symlink_to(tmp_path / "theirs")
    assert prune(tmp_path, "link")["removed"] is False and (tmp_path / "theirs").is_dir()
    assert prune(tmp_path, "../x")["removed"] is False
    assert prune(tmp_path, "gone") == {"reason": "gone is not there", "removed": False}
    (tmp_path / "qwen@v1").mkdir()
    write_marker(str(tmp_path / "qwen@v1"), identity(HUB), [])
    assert prune(tmp_path, "qwen@v1") == {"removed": True}
    assert not (tmp_path / "qwen@v1").exists() and (tmp_path / "theirs").is_dir()


def identity(params: dict) -> dict:
    return build_source({"dest": "/models", **params}).identity()


def test_the_read_script_answers_from_the_fetchers_own_marker(tmp_path):
    files = [{"path": "config.json", "size": 2, "sha256": "0" * 64, "mtime_ns": 1}]
    write_marker(str(tmp_path), identity({**HUB, "revision": "v1"}), files)
    answer = read(tmp_path)
    assert answer["marker"] is True and answer["source"]["revision"] == "v1" and answer["completed_at"]
    assert "files" not in answer  # a termination message is short
    assert held_conflict(answer, {**HUB, "revision": "v1"}) == ""
    assert held_conflict(answer, {**HUB, "revision": "v2"}) == "huggingface Qwen/Qwen3-8B revision v1"
    # No marker: no complete model, nothing a pod could serve from.
    empty = read(tmp_path / "nothing")
    assert empty == {"folder": False, "marker": False} and held_conflict(empty, HUB) == ""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ".inferops-model-complete.json").write_text("{half")
    assert "could not be read" in held_conflict(read(tmp_path / "bad"), HUB)


def test_the_default_revision_is_the_hubs_default():
    held = {"marker": True, "source": identity(HUB)}  # fetched without a revision: main
    assert held_conflict(held, {**HUB, "revision": "main"}) == ""
    assert held_conflict(held, {**HUB, "revision": ""}) == ""
    assert held_conflict(held, {**HUB, "model_id": "Qwen/Qwen3-14B"}) == "huggingface Qwen/Qwen3-8B revision main"


def test_s3_another_prefix_or_a_revision_it_cannot_have():
    held = {"marker": True, "source": identity(S3)}
    assert held_conflict(held, S3) == ""
    # Other patterns select other files of the same source: the files there stay as they are.
    assert held_conflict({"marker": True, "source": identity({**S3, "allow_patterns": ["*.json"]})}, S3) == ""
    assert held_conflict(held, {**S3, "prefix": "qwen-v2"}) == "s3://models/qwen at http://s3.example:9000"
    refused = held_conflict(held, {**S3, "revision": "v2"})
    assert refused.startswith("s3://models/qwen") and "model_store_s3_prefix" in refused


def test_an_error_is_a_conflict():
    assert "the read pod did not finish" in held_conflict({"error": "the read pod did not finish: x"}, S3)


def pod(name, node, volume, args0="/models/qwen", phase="Running", mount="/models", deleting=False, tolerations=None):
    meta = {"name": name, **({"deletionTimestamp": "now"} if deleting else {})}
    return {"metadata": meta, "status": {"phase": phase},
            "spec": {"nodeName": node, "tolerations": tolerations or [], "volumes": [{"name": "models", **volume}],
                     "containers": [{"name": "vllm", "args": [args0, "--port", "8000"],
                                     "volumeMounts": [{"name": "models", "mountPath": mount}]}]}}


def test_readers_one_entry_a_copy_of_the_folder():
    shared = {"persistentVolumeClaim": {"claimName": "models-qwen"}}
    pods = [pod("vllm-0", "n1", shared, tolerations=[{"key": "gpu"}]), pod("vllm-1", "n2", shared),
            pod("vllm-2", "n3", shared, args0="/models/qwen@v2"),  # another folder
            pod("vllm-3", "n3", {"persistentVolumeClaim": {"claimName": "other"}}),  # another claim
            pod("vllm-4", "n4", shared, deleting=True), pod("vllm-5", "n4", shared, phase="Succeeded")]
    [copy] = folder_readers(pods, "claim", "models-qwen", "/var/lib/inferops/models", "qwen")
    assert copy["pods"] == ["vllm-0", "vllm-1"] and copy["node"] == "n1" and copy["tolerations"] == [{"key": "gpu"}]
    assert copy["volume"] == {"name": "models", **shared}

    # A claim per replica (every rank of a group too): each its own copy.
    mine = [pod("vllm-0", "n1", {"persistentVolumeClaim": {"claimName": "models-vllm-0"}}),
            pod("vllm-rank1-0", "n2", {"persistentVolumeClaim": {"claimName": "models-vllm-rank1-0"}})]
    assert [c["pods"] for c in folder_readers(mine, "per_replica", "", "", "qwen")] == [["vllm-0"], ["vllm-rank1-0"]]

    # A node's hostPath folder: one copy a node.
    host = {"hostPath": {"path": "/var/lib/inferops/models/", "type": "DirectoryOrCreate"}}
    nodes = [pod("vllm-0", "n1", host), pod("vllm-1", "n1", host), pod("vllm-2", "n2", host)]
    copies = folder_readers(nodes, "hostpath", "", "/var/lib/inferops/models", "qwen")
    assert [(c["node"], c["pods"]) for c in copies] == [("n1", ["vllm-0", "vllm-1"]), ("n2", ["vllm-2"])]
    assert folder_readers(nodes, "claim", "models-qwen", "", "qwen") == []


@pytest.mark.parametrize("mount", ["/models", "/models/"])
def test_the_model_path_is_read_under_the_pods_mount(mount):
    p = pod("vllm-0", "n1", {"persistentVolumeClaim": {"claimName": "c"}}, args0="/models/qwen/", mount=mount)
    assert len(folder_readers([p], "claim", "c", "", "qwen")) == 1
