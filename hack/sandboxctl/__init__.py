"""The local sandbox cluster behind `hack/sandbox`: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok on 127.0.0.1, a MinIO S3
server, the vLLM stand-in and a job runner.

Modules, one job each:

- ``state``     the state folder, state.json, errors, API helpers
- ``settings``  what `up` is told: Kubernetes line, images to run, fixtures
- ``pki``       the CA, certificates and the kubeconfig
- ``processes`` building binaries, starting, health-checking, stopping
- ``kwok``      kwok's configuration: stages, port-forwards, logs
- ``nodes``     the simulated GPU and CPU nodes
- ``storage``   the StorageClass, its hostPath volumes, the seeded S3 model
- ``jobs``      the job runner: runs pods of the given images as a kubelet would
- ``cli``       the verbs (up, down, status, kubeconfig, nodes, stop, start, restart)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The collection's own module_utils (its API client and informer), as the
# modules use them; hack/setup-python puts the checkout there.
COLLECTIONS = ROOT / ".cache" / "collections"
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))
