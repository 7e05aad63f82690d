"""Storage: a StorageClass whose claims bind to static hostPath volumes in
the state folder (bound by the real controller-manager), and the small real
models seeded into the S3 server for site.yml to fetch: tiny-chat, a tiny
generative model (hack/test_models.py), as vLLM would serve for chat, and
all-MiniLM-L6-v2, an embedding model, for the sandbox's fleet."""

from __future__ import annotations

from pathlib import Path

from sandboxctl import ROOT
from sandboxctl.nodes import SANDBOX_NODE_LABEL
from sandboxctl.state import create_objects, save_state

STORAGE_CLASS = "sandbox-local"
SANDBOX_VOLUMES = 96  # Retain: a released volume is not bound again, so keep plenty for a whole suite
SEED_MODEL = ROOT / ".cache" / "test-models" / "tiny-chat"
SEED_BUCKET, SEED_PREFIX = "models", "tiny-chat"
# The models seeded, by their prefix in SEED_BUCKET: tiny-chat (generative,
# hack/test_models.py), and all-MiniLM-L6-v2 (sentence-transformers: an
# embedding model as vLLM serves one; hack/setup-python unpacks it) for the
# sandbox's fleet (inventories/sandbox-fleet).
SEED_MODELS = {"tiny-chat": SEED_MODEL, "all-minilm-l6-v2": ROOT / ".cache" / "test-models" / "all-minilm-l6-v2"}


def create_storage(state: dict) -> None:
    """A StorageClass whose claims bind: static hostPath volumes in the state
    folder, bound by the real controller-manager's volume binder."""
    kubeconfig = Path(state["kubeconfig"])
    create_objects(kubeconfig, "/apis/storage.k8s.io/v1/storageclasses", [{
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": "kubernetes.io/no-provisioner",
        "volumeBindingMode": "Immediate",
        "reclaimPolicy": "Retain",
    }])
    volumes = []
    for i in range(SANDBOX_VOLUMES):
        # The folder is named after the volume: the sandbox inventory finds a
        # claim's folder from its volumeName alone.
        path = Path(state["state_dir"]) / "volumes" / f"sandbox-pv-{i}"
        path.mkdir(parents=True, exist_ok=True)
        volumes.append({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"sandbox-pv-{i}", "labels": {SANDBOX_NODE_LABEL: "volume"}},
            "spec": {"capacity": {"storage": "1Ti"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "storageClassName": STORAGE_CLASS, "persistentVolumeReclaimPolicy": "Retain",
                     "hostPath": {"path": str(path), "type": "DirectoryOrCreate"}},
        })
    create_objects(kubeconfig, "/api/v1/persistentvolumes", volumes)
    state["storage_class"] = STORAGE_CLASS
    save_state(state)


def seed_model(state: dict, creds: dict) -> None:
    """Put the sandbox's test models into the S3 server (each with a
    SHA256SUMS), so site.yml on the sandbox has models to fetch. The state
    names each (s3.seed_models) and, as before, tiny-chat (s3.seed_model)."""
    import hashlib

    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=state["s3"]["endpoint"], aws_access_key_id=creds["access_key"],
                      aws_secret_access_key=creds["secret_key"], region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}))
    seeded = {}
    for prefix, folder in SEED_MODELS.items():
        if not folder.is_dir():
            continue
        if not seeded:
            s3.create_bucket(Bucket=SEED_BUCKET)
        sums = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = path.relative_to(folder).as_posix()
            s3.upload_file(str(path), SEED_BUCKET, f"{prefix}/{rel}")
            sums.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n")
        s3.put_object(Bucket=SEED_BUCKET, Key=f"{prefix}/SHA256SUMS", Body="".join(sums).encode())
        seeded[prefix] = {"bucket": SEED_BUCKET, "prefix": prefix}
    if SEED_PREFIX in seeded:
        state["s3"]["seed_model"] = seeded[SEED_PREFIX]
    state["s3"]["seed_models"] = seeded
    save_state(state)
