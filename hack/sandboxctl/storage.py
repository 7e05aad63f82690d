"""Storage: a StorageClass whose claims bind to static hostPath volumes in
the state folder (bound by the real controller-manager), and the small real
model seeded into the S3 server for site.yml to fetch: tiny-chat, a tiny
generative model (hack/test_models.py), as vLLM would serve for chat."""

from __future__ import annotations

from pathlib import Path

from sandboxctl import ROOT
from sandboxctl.nodes import SANDBOX_NODE_LABEL
from sandboxctl.state import create_objects, save_state

STORAGE_CLASS = "sandbox-local"
SANDBOX_VOLUMES = 96  # Retain: a released volume is not bound again, so keep plenty for a whole suite
SEED_MODEL = ROOT / ".cache" / "test-models" / "tiny-chat"
SEED_BUCKET, SEED_PREFIX = "models", "tiny-chat"


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
    """Put the sandbox's test model into the S3 server (with a SHA256SUMS),
    so site.yml on the sandbox has a model to fetch."""
    if not SEED_MODEL.is_dir():
        return
    import hashlib

    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=state["s3"]["endpoint"], aws_access_key_id=creds["access_key"],
                      aws_secret_access_key=creds["secret_key"], region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}))
    s3.create_bucket(Bucket=SEED_BUCKET)
    sums = []
    for path in sorted(p for p in SEED_MODEL.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(SEED_MODEL).as_posix()
        s3.upload_file(str(path), SEED_BUCKET, f"{SEED_PREFIX}/{rel}")
        sums.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n")
    s3.put_object(Bucket=SEED_BUCKET, Key=f"{SEED_PREFIX}/SHA256SUMS", Body="".join(sums).encode())
    state["s3"]["seed_model"] = {"bucket": SEED_BUCKET, "prefix": SEED_PREFIX}
    save_state(state)
