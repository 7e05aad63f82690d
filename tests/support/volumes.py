"""The sandbox's volume pool, put back after a test whose claims took some
of its volumes: its StorageClass binds claims to static hostPath volumes
that stay Released (Retain) when their claim goes and are not bound again
(hack/sandboxctl/storage.py), so a test that leaves them so changes what the
next file starts from (tests/integration/conftest.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError

from support.k8s import status_of


def put_back_volumes(kube, namespace) -> None:
    """The sandbox's volumes this test's claims took, put back in its pool as
    they were (no claim, no binder's annotation, Retain, empty): the claims
    left are deleted first, then each volume is made Available again."""
    used = [pv for pv in kube.list("v1", "PersistentVolume")
            if (pv["spec"].get("claimRef") or {}).get("namespace") == namespace]
    for sts in kube.list("apps/v1", "StatefulSet", namespace):  # a failed run's: its pods hold the claims
        kube.delete("apps/v1", "StatefulSet", namespace, sts["metadata"]["name"], propagation="Foreground")
    for pod in kube.list("v1", "Pod", namespace):  # a claim in use is not released (pvc-protection)
        try:
            kube.request("DELETE", kube.path("v1", "Pod", namespace, pod["metadata"]["name"]),
                         [("gracePeriodSeconds", "0")])
        except ClusterError as exc:
            if status_of(exc) != 404:
                raise
    for claim in kube.list("v1", "PersistentVolumeClaim", namespace):
        kube.delete("v1", "PersistentVolumeClaim", namespace, claim["metadata"]["name"], missing_ok=True)
    for pv in used:
        name = pv["metadata"]["name"]
        kube.wait_for(("v1", "PersistentVolume", None),
                      lambda v: v["metadata"]["name"] == name and v["status"].get("phase") != "Bound", 180)
        for entry in Path(kube.get("v1", "PersistentVolume", None, name)["spec"]["hostPath"]["path"]).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        kube.patch("v1", "PersistentVolume", None, name, body={
            "metadata": {"annotations": {"pv.kubernetes.io/bound-by-controller": None}},
            "spec": {"claimRef": None, "persistentVolumeReclaimPolicy": "Retain"}})
