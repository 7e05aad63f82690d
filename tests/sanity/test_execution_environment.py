"""The execution environment's definition is sound: ansible-builder makes its
build context (no image registry is reachable here to build the image), the
context carries this collection, and the collection declares the Python
libraries its modules import, where ansible-builder's introspection finds
them."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_ansible_builder_creates_the_context():
    proc = subprocess.run(["make", "-s", "ee-context"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    context = ROOT / ".cache" / "ee-context"
    containerfile = (context / "Containerfile").read_text()
    assert 'ANSIBLE_INSTALL_REFS="ansible-core==2.21.5 ansible-runner==' in containerfile
    assert "introspect.py introspect" in containerfile  # the collections' own requirements are collected
    galaxy = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    names = [c["name"] for c in galaxy["collections"]]
    assert "kubernetes.core" in names and "/build/collections/inferops-vllm.tar.gz" in names
    with tarfile.open(context / "_build" / "collections" / "inferops-vllm.tar.gz") as tar:
        members = set(tar.getnames())
        declared = yaml.safe_load(tar.extractfile("meta/execution-environment.yml").read())
        python_file = declared["dependencies"]["python"]
        assert python_file in members
        requirements = tar.extractfile(python_file).read().decode()
    for library in ("kubernetes", "boto3", "huggingface_hub", "modelscope", "nvidia-ml-py"):
        assert any(line.startswith(library) for line in requirements.splitlines()), library
    # Nothing of the development checkout travels in the collection.
    assert not any(m.startswith((".cache/", ".venv/", ".sandbox/", "hack/", "tests/output/")) for m in members)
    assert "plugins/modules/model_fetch.py" in members
