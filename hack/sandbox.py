"""The local sandbox cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok on 127.0.0.1, plus a MinIO S3 server.

Everything it starts is recorded in STATE_DIR/state.json (pids, ports,
versions) so that `down` stops exactly what `up` started. Run it through
`hack/sandbox`, which picks the project's virtualenv.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The collection's own module_utils (its API client and informer), as the
# modules use them; hack/setup-python puts the checkout there.
sys.path.insert(0, str(ROOT / ".cache" / "collections"))
from ansible_collections.inferops.vllm.plugins.module_utils._errors import ClusterError  # noqa: E402
from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _client as k8s_client  # noqa: E402
from ansible_collections.inferops.vllm.plugins.module_utils.k8s import _informer as informer  # noqa: E402
STATE_DIR = Path(os.environ.get("SANDBOX_DIR", ROOT / ".sandbox"))
BIN_CACHE = os.environ.get("SANDBOX_BIN_CACHE", str(ROOT / ".cache" / "sandbox-bin"))
STAGES_DIR = ROOT / "hack" / "cluster" / "stages"
LOOPBACK = "127.0.0.1"

# Shape of the simulated GPU nodes (overridable per `up`).
DEFAULT_GPU_NODES = 4
DEFAULT_GPUS_PER_NODE = 8
DEFAULT_GPU_MEMORY_MIB = 81559  # what NVML reports for an H100 80GB HBM3
DEFAULT_GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
DEFAULT_CPU_NODES = 1
ZONES = ("sandbox-a", "sandbox-b")
# kwok only manages nodes carrying this annotation.
KWOK_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
SANDBOX_NODE_LABEL = "inferops.io/sandbox-node"


class SandboxError(Exception):
    pass


# --------------------------------------------------------------------------
# helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def load_state() -> dict | None:
    try:
        return json.loads((STATE_DIR / "state.json").read_text())
    except FileNotFoundError:
        return None


def save_state(state: dict) -> None:
    tmp = STATE_DIR / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(STATE_DIR / "state.json")


def process_alive(pid: int, marker: str) -> bool:
    """True if pid runs and its command line mentions marker (our state dir),
    so a recycled pid is never mistaken for one of ours."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    if stat.split(")")[-1].split()[0] == "Z":
        return False
    return marker.encode() in cmdline


def wait_exit(pid: int, timeout: float) -> bool:
    """Block until pid exits (pidfd, no polling loop) or timeout passes."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready = select.select([fd], [], [], timeout)[0]
        return bool(ready)
    finally:
        os.close(fd)


def terminate(pid: int) -> None:
    """SIGTERM, wait for the exit, SIGKILL after 20 s."""
    os.kill(pid, signal.SIGTERM)
    if not wait_exit(pid, 20):
        os.kill(pid, signal.SIGKILL)
        wait_exit(pid, 5)


def build_binaries() -> dict[str, Path]:
    out = subprocess.run(
        [str(ROOT / "hack" / "build-sandbox-bins")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SANDBOX_BIN_CACHE": BIN_CACHE},
    ).stdout
    dirs = dict(line.split("=", 1) for line in out.split())
    return {
        "etcd": Path(dirs["etcd"]) / "etcd",
        "kube-apiserver": Path(dirs["kubernetes"]) / "kube-apiserver",
        "kube-controller-manager": Path(dirs["kubernetes"]) / "kube-controller-manager",
        "kube-scheduler": Path(dirs["kubernetes"]) / "kube-scheduler",
        "kwok": Path(dirs["kwok"]) / "kwok",
        "helm": Path(dirs["helm"]) / "helm",
        "minio": Path(dirs["s3"]) / "minio",
    }


def go_module_dir(module_dir: Path, module: str) -> Path:
    out = subprocess.run(
        ["go", "list", "-m", "-f", "{{.Dir}}", module],
        cwd=module_dir,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    ).stdout.strip()
    return Path(out)


# --------------------------------------------------------------------------
# certificates


def make_pki(pki: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress

    pki.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid_to = now + datetime.timedelta(days=30)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(name: str, data: bytes, private: bool = False) -> None:
        path = pki / name
        path.write_bytes(data)
        if private:
            path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "inferops-sandbox-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(valid_to)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write("ca.crt", ca.public_bytes(serialization.Encoding.PEM))
    write("ca.key", key_pem(ca_key), private=True)

    def leaf(name: str, cn: str, orgs: list[str], server: bool) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(valid_to)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                    if server
                    else [ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                        x509.DNSName("kubernetes.default.svc.cluster.local"),
                        x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))
        write(f"{name}.key", key_pem(key), private=True)

    leaf("apiserver", "kube-apiserver", [], server=True)
    leaf("kwok", "kwok", [], server=True)
    leaf("admin", "sandbox-admin", ["system:masters"], server=False)
    # Service-account token signing key pair (RSA: what the apiserver expects).
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write("sa.key", key_pem(sa), private=True)
    write(
        "sa.pub",
        sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def write_kubeconfig(path: Path, pki: Path, port: int) -> None:
    import yaml

    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "sandbox",
                "cluster": {
                    "server": f"https://{LOOPBACK}:{port}",
                    "certificate-authority": str(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": "sandbox-admin",
                "user": {
                    "client-certificate": str(pki / "admin.crt"),
                    "client-key": str(pki / "admin.key"),
                },
            }
        ],
        "contexts": [
            {"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox-admin"}}
        ],
        "current-context": "sandbox",
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)


# --------------------------------------------------------------------------
# processes


class Launcher:
    def __init__(self, state: dict):
        self.state = state
        self.logs = STATE_DIR / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=STATE_DIR,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # survives this script; `down` stops it by pid
        )
        log.close()
        entry = {"name": name, "pid": proc.pid, "argv": argv, "env_keys": sorted(env or {})}
        # A restarted component keeps its place: `down` stops in reverse start
        # order, clients before the API server (which otherwise waits 20 s on them).
        names = [p["name"] for p in self.state["processes"]]
        if name in names:
            self.state["processes"][names.index(name)] = entry
        else:
            self.state["processes"].append(entry)
        save_state(self.state)
        return proc

    def wait_ready(self, name: str, proc: subprocess.Popen, check, timeout: float) -> None:
        """Wait for a component's health endpoint. Nothing can be watched
        before the API exists, so this asks the endpoint with a capped
        backoff, and gives up at once if the process exits."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        last_error = "no answer yet"
        while True:
            if proc.poll() is not None:
                raise SandboxError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            try:
                if check():
                    return
            except Exception as exc:  # noqa: BLE001 - any failure means not ready yet
                last_error = str(exc)
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"{name} not healthy after {timeout:.0f}s ({last_error}):\n{self.tail(name)}"
                )
            # Wake early if the process dies rather than sleeping blindly.
            wait_exit(proc.pid, delay)
            delay = min(delay * 2, 1.0)

    def tail(self, name: str, lines: int = 25) -> str:
        try:
            return "\n".join((self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def https_ok(url: str, pki: Path, verify: bool = True) -> bool:
    """GET url with the admin client certificate. The controller-manager and
    scheduler serve self-signed certificates of their own, hence verify."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
        return resp.status == 200


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status == 200


def health_checks(ports: dict, pki: Path) -> dict:
    """How to tell each component is up, by name."""
    return {
        "etcd": lambda: http_ok(f"http://{LOOPBACK}:{ports['etcd_client']}/health"),
        "kube-apiserver": lambda: https_ok(f"https://{LOOPBACK}:{ports['apiserver']}/readyz", pki),
        "kube-controller-manager": lambda: https_ok(
            f"https://{LOOPBACK}:{ports['controller_manager']}/healthz", pki, verify=False),
        "kube-scheduler": lambda: https_ok(f"https://{LOOPBACK}:{ports['scheduler']}/healthz", pki, verify=False),
        "kwok": lambda: tcp_listening(ports["kwok"]),
        "minio": lambda: http_ok(f"http://{LOOPBACK}:{ports['s3']}/minio/health/ready"),
        "vllm-standin": lambda: tcp_listening(ports["vllm_standin"]),
    }


def minio_env(creds: dict) -> dict:
    # Credentials go through the environment, never the command line.
    return {
        "MINIO_ROOT_USER": creds["access_key"],
        "MINIO_ROOT_PASSWORD": creds["secret_key"],
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        "MINIO_CI_CD": "1",
    }


# --------------------------------------------------------------------------
# nodes


def gpu_register_annotation(node: str, gpus: int, mem_mib: int, product: str) -> str:
    """The device list HAMi's device plugin writes on a registered node
    (hami.io/node-nvidia-register, JSON since HAMi 2.5)."""
    devices = [
        {
            "id": f"GPU-{node}-{i:02d}",
            "index": i,
            "count": 10,
            "devmem": mem_mib,
            "devcore": 100,
            "type": product,
            "numa": 0 if i < gpus // 2 or gpus == 1 else 1,
            "mode": "hami-core",
            "health": True,
        }
        for i in range(gpus)
    ]
    return json.dumps(devices, separators=(",", ":"))


def gpu_node_manifest(name: str, zone: str, gpus: int, mem_mib: int, product: str) -> dict:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {
                KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1],
                "hami.io/node-nvidia-register": gpu_register_annotation(name, gpus, mem_mib, product),
                "hami.io/node-handshake": f"Reported {now}",
            },
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                SANDBOX_NODE_LABEL: "gpu",
                "topology.kubernetes.io/region": "sandbox",
                "topology.kubernetes.io/zone": zone,
                "node.kubernetes.io/instance-type": f"sandbox-{gpus}x-{product.lower()}",
                # What NVIDIA's GPU feature discovery puts on real GPU nodes.
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": product,
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": str(mem_mib),
            },
        },
        "spec": {},
        "status": {
            "capacity": gpu_resources(gpus, mem_mib),
            "allocatable": gpu_resources(gpus, mem_mib),
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def gpu_resources(gpus: int, mem_mib: int) -> dict:
    # The default scheduler only sums extended resources per node, so the
    # HAMi resources are given as node totals (per-GPU fit is HAMi's own
    # scheduler's job, and serving_plan's check before deploying).
    res = {"cpu": "192", "memory": "2Ti", "pods": "110", "ephemeral-storage": "4Ti"}
    if gpus:
        res |= {
            "nvidia.com/gpu": str(gpus),
            "nvidia.com/gpumem": str(gpus * mem_mib),
            "nvidia.com/gpucores": str(gpus * 100),
        }
    return res


def cpu_node_manifest(name: str, zone: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION[0]: KWOK_ANNOTATION[1]},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                SANDBOX_NODE_LABEL: "cpu",
                "topology.kubernetes.io/region": "sandbox",
                "topology.kubernetes.io/zone": zone,
            },
        },
        "spec": {},
        "status": {
            "capacity": gpu_resources(0, 0),
            "allocatable": gpu_resources(0, 0),
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux"},
        },
    }


def api_client(kubeconfig: Path):
    """The collection's own API connection (kubernetes.core's client factory,
    kubernetes.dynamic requests): the sandbox talks to its cluster the way
    the modules do."""
    return k8s_client.connect({"kubeconfig": str(kubeconfig)})


def create_objects(kubeconfig: Path, collection: str, manifests: list[dict]) -> None:
    """POST each manifest to the collection's path, in parallel; one that
    already exists is fine."""
    from concurrent.futures import ThreadPoolExecutor

    api = api_client(kubeconfig)

    def create(m: dict) -> None:
        try:
            k8s_client.request_json(api, "POST", collection, body=m, action=f"creating {m['metadata']['name']}")
        except ClusterError as exc:
            if exc.details.get("status") != 409:
                raise

    with ThreadPoolExecutor(max_workers=min(16, k8s_client.pool_size(api))) as pool:
        list(pool.map(create, manifests))


def create_nodes(kubeconfig: Path, manifests: list[dict]) -> None:
    create_objects(kubeconfig, "/api/v1/nodes", manifests)


def node_ready(node: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def wait_nodes_ready(kubeconfig: Path, names: set[str], timeout: float) -> None:
    """Watch nodes until every named node reports Ready=True."""
    def done(nodes: list[dict]) -> bool:
        return names <= {n["metadata"]["name"] for n in nodes if node_ready(n)}

    try:
        informer.wait_until(api_client(kubeconfig), "/api/v1/nodes", done, timeout,
                            query=[("labelSelector", SANDBOX_NODE_LABEL)])
    except TimeoutError as exc:
        raise SandboxError(f"nodes not Ready after {timeout:.0f}s ({exc})") from None


def wait_default_service_account(kubeconfig: Path, timeout: float) -> None:
    """Pods are refused until the controller-manager creates the default
    ServiceAccount; watch for it."""
    try:
        informer.wait_until(api_client(kubeconfig), "/api/v1/namespaces/default/serviceaccounts", bool, timeout,
                            query=[("fieldSelector", "metadata.name=default")])
    except TimeoutError:
        raise SandboxError("the default ServiceAccount did not appear: is kube-controller-manager running?") from None


# --------------------------------------------------------------------------
# verbs


def up(args: argparse.Namespace) -> int:
    state = load_state()
    if state and state["processes"] and all(process_alive(p["pid"], str(STATE_DIR)) for p in state["processes"]):
        print(f"sandbox already running; kubeconfig: {state['kubeconfig']}")
        return 0
    if state:
        print("sandbox state found but some processes are gone; restarting it", file=sys.stderr)
        stop(state, keep_data=False)

    started = time.monotonic()
    bins = build_binaries()
    built = time.monotonic()

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    pki = STATE_DIR / "pki"
    make_pki(pki)
    kubeconfig = STATE_DIR / "kubeconfig"
    ports = {
        k: free_port()
        for k in ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok", "s3", "s3_console",
                  "standin", "vllm_standin")
    }
    s3_creds = {"access_key": "sandbox-" + secrets.token_hex(4), "secret_key": secrets.token_urlsafe(24)}
    creds_file = STATE_DIR / "s3-credentials.json"
    creds_file.write_text(json.dumps(s3_creds))
    creds_file.chmod(0o600)
    write_kubeconfig(kubeconfig, pki, ports["apiserver"])

    state = {
        "state_dir": str(STATE_DIR),
        "kubeconfig": str(kubeconfig),
        "api_server": f"https://{LOOPBACK}:{ports['apiserver']}",
        "ports": ports,
        "binaries": {k: str(v) for k, v in bins.items()},
        "s3": {"endpoint": f"http://{LOOPBACK}:{ports['s3']}", "credentials_file": str(creds_file)},
        "gpu_nodes": [],
        "cpu_nodes": [],
        "processes": [],
    }
    save_state(state)
    run = Launcher(state)
    healthy = health_checks(ports, pki)
    etcd_dir = STATE_DIR / "etcd"
    try:
        etcd = run.start(
            "etcd",
            [
                str(bins["etcd"]),
                "--name=sandbox",
                f"--data-dir={etcd_dir}",
                f"--listen-client-urls=http://{LOOPBACK}:{ports['etcd_client']}",
                f"--advertise-client-urls=http://{LOOPBACK}:{ports['etcd_client']}",
                f"--listen-peer-urls=http://{LOOPBACK}:{ports['etcd_peer']}",
                f"--initial-advertise-peer-urls=http://{LOOPBACK}:{ports['etcd_peer']}",
                f"--initial-cluster=sandbox=http://{LOOPBACK}:{ports['etcd_peer']}",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=4294967296",
                # Test data is disposable: skip fsync so 2 cores are not spent on disk waits.
                "--unsafe-no-fsync",
            ],
        )
        run.wait_ready("etcd", etcd, healthy["etcd"], 60)

        apiserver = run.start(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers=http://{LOOPBACK}:{ports['etcd_client']}",
                f"--bind-address={LOOPBACK}",
                f"--advertise-address={LOOPBACK}",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # No kubelet runs, so nothing would keep the kubernetes Service's
                # endpoints current; don't try.
                "--endpoint-reconciler-type=none",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
            ],
        )
        run.wait_ready("kube-apiserver", apiserver, healthy["kube-apiserver"], 180)

        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            "--leader-elect=false",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        ]
        kcm = run.start(
            "kube-controller-manager",
            [
                str(bins["kube-controller-manager"]),
                *common,
                f"--secure-port={ports['controller_manager']}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=false",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--cluster-name=sandbox",
            ],
        )
        scheduler = run.start(
            "kube-scheduler",
            [str(bins["kube-scheduler"]), *common, f"--secure-port={ports['scheduler']}"],
        )
        stages = [
            STAGES_DIR / "crashloop.yaml",
            STAGES_DIR / "readiness-failure.yaml",
            STAGES_DIR / "image-pull-failure.yaml",
        ]
        kwok_src = go_module_dir(ROOT / "hack" / "cluster" / "kwok", "sigs.k8s.io/kwok") / "kustomize" / "stage"
        stages += [
            kwok_src / "node" / "fast" / "node-initialize.yaml",
            kwok_src / "node" / "heartbeat" / "node-heartbeat.yaml",
            kwok_src / "pod" / "fast" / "pod-ready.yaml",
            kwok_src / "pod" / "fast" / "pod-complete.yaml",
            kwok_src / "pod" / "fast" / "pod-delete.yaml",
            kwok_src / "pod" / "chaos" / "pod-container-running-failed.yaml",
        ]
        kwok_config = STATE_DIR / "kwok-config.yaml"
        documents = [p.read_text() for p in stages] + kwok_extras(ports["standin"], ports["vllm_standin"])
        kwok_config.write_text("\n---\n".join(documents))
        kwok = run.start(
            "kwok",
            [
                str(bins["kwok"]),
                f"--kubeconfig={kubeconfig}",
                f"--config={kwok_config}",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION[0]}={KWOK_ANNOTATION[1]}",
                f"--node-ip={LOOPBACK}",
                f"--node-port={ports['kwok']}",
                f"--server-address={LOOPBACK}:{ports['kwok']}",
                f"--tls-cert-file={pki / 'kwok.crt'}",
                f"--tls-private-key-file={pki / 'kwok.key'}",
                "--cidr=10.244.0.1/16",
            ],
        )
        minio = run.start(
            "minio",
            [
                str(bins["minio"]),
                "server",
                "--quiet",
                f"--address={LOOPBACK}:{ports['s3']}",
                f"--console-address={LOOPBACK}:{ports['s3_console']}",
                str(STATE_DIR / "s3-data"),
            ],
            env=minio_env(s3_creds),
        )
        standin = run.start(
            "vllm-standin",
            [sys.executable, str(ROOT / "hack" / "openai_standin.py"), f"--kubeconfig={kubeconfig}",
             f"--port={ports['vllm_standin']}", *[f"--pod={p}" for p in VLLM_PODS]],
        )
        for name, proc in (("kube-controller-manager", kcm), ("kube-scheduler", scheduler), ("kwok", kwok),
                           ("minio", minio), ("vllm-standin", standin)):
            run.wait_ready(name, proc, healthy[name], 120)

        add_nodes(state, args.gpu_nodes, args.gpus_per_node, args.gpu_memory_mib, args.gpu_product, args.cpu_nodes)
        create_storage(state)
        seed_model(state, s3_creds)
        wait_default_service_account(kubeconfig, 120)
    except BaseException:
        stop(state, keep_data=False, quiet=True)
        raise
    state["timings"] = {"build_s": round(built - started, 1), "start_s": round(time.monotonic() - built, 1)}
    save_state(state)
    print(
        f"sandbox up in {time.monotonic() - started:.1f}s (build/check {built - started:.1f}s, start {time.monotonic() - built:.1f}s): "
        f"{len(state['gpu_nodes'])} GPU nodes, {len(state['cpu_nodes'])} CPU nodes\n"
        f"kubeconfig: {kubeconfig}"
    )
    return 0


# Pods with these names get kubelet-like extras from kwok (its selectors
# match names, not labels): a port-forward to a local OpenAI-compatible
# stand-in on the reserved "standin" port, and container logs to read.
FORWARDED_PODS = ("standin-0", "standin-1")  # tests start their own stand-in on the "standin" port
# The vllm_serve role's pods in the sandbox inventory go to the sandbox's own
# stand-in, which configures itself from their pod spec (hack/openai_standin.py).
VLLM_PODS = ("vllm-0", "vllm-1")
LOGGED_PODS = ("crasher-0",)
# kwok reads container logs in the CRI log format: time, stream, tag, line.
CRASH_LOG_PREVIOUS = """\
2026-01-01T10:00:01.000000000Z stdout F INFO api_server.py: vLLM API server starting
2026-01-01T10:00:09.000000000Z stdout F INFO model_runner.py: Loading model weights took 14.2 GiB
2026-01-01T10:00:12.000000000Z stderr F ERROR engine.py: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
"""
CRASH_LOG_CURRENT = "2026-01-01T10:02:40.000000000Z stdout F INFO api_server.py: vLLM API server starting\n"


def kwok_extras(standin_port: int, vllm_standin_port: int) -> list[str]:
    import yaml

    previous, current = STATE_DIR / "crasher-previous.log", STATE_DIR / "crasher-current.log"
    previous.write_text(CRASH_LOG_PREVIOUS)
    current.write_text(CRASH_LOG_CURRENT)
    docs = [
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": "standin"},
         "spec": {"selector": {"matchNames": list(FORWARDED_PODS)},
                  "forwards": [{"target": {"port": standin_port, "address": LOOPBACK}}]}},
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterPortForward", "metadata": {"name": "vllm"},
         "spec": {"selector": {"matchNames": list(VLLM_PODS)},
                  "forwards": [{"target": {"port": vllm_standin_port, "address": LOOPBACK}}]}},
        {"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "ClusterLogs", "metadata": {"name": "crasher"},
         "spec": {"selector": {"matchNames": list(LOGGED_PODS)},
                  "logs": [{"logsFile": str(current), "previousLogsFile": str(previous), "follow": False}]}},
    ]
    return [yaml.safe_dump(d, sort_keys=False) for d in docs]


STORAGE_CLASS = "sandbox-local"
SANDBOX_VOLUMES = 32  # Retain: a released volume is not bound again, so keep plenty
SEED_MODEL = ROOT / ".cache" / "test-models" / "all-minilm-l6-v2"
SEED_BUCKET, SEED_PREFIX = "models", "all-minilm-l6-v2"


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
        path = STATE_DIR / "volumes" / f"pv-{i}"
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
    """Put the small real test model into the S3 server (with a SHA256SUMS),
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


def tcp_listening(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=2):
        return True


def add_nodes(state: dict, gpu_nodes: int, gpus: int, mem_mib: int, product: str, cpu_nodes: int) -> None:
    kubeconfig = Path(state["kubeconfig"])
    start = len(state["gpu_nodes"])
    gpu_names = [f"gpu-node-{i}" for i in range(start, start + gpu_nodes)]
    cpu_start = len(state["cpu_nodes"])
    cpu_names = [f"cpu-node-{i}" for i in range(cpu_start, cpu_start + cpu_nodes)]
    manifests = [
        gpu_node_manifest(n, ZONES[(start + i) % len(ZONES)], gpus, mem_mib, product)
        for i, n in enumerate(gpu_names)
    ] + [cpu_node_manifest(n, ZONES[(cpu_start + i) % len(ZONES)]) for i, n in enumerate(cpu_names)]
    for m in manifests:
        # Registered with its addresses and kubelet port, as a kubelet
        # registers its node: the API server finds a node's kubelet (logs,
        # port-forward) by them. kwok's node-initialize stage would add them
        # too, but a loaded machine once left a node without them ("no
        # preferred addresses found"); kwok keeps what is there.
        m["status"]["addresses"] = [{"type": "InternalIP", "address": LOOPBACK},
                                    {"type": "Hostname", "address": m["metadata"]["name"]}]
        m["status"]["daemonEndpoints"] = {"kubeletEndpoint": {"Port": state["ports"]["kwok"]}}
    create_nodes(kubeconfig, manifests)
    wait_nodes_ready(kubeconfig, set(gpu_names) | set(cpu_names), timeout=120 + len(manifests))
    state["gpu_nodes"] += gpu_names
    state["cpu_nodes"] += cpu_names
    save_state(state)


def stop(state: dict, keep_data: bool, quiet: bool = False) -> None:
    marker = state["state_dir"]
    for proc in reversed(state["processes"]):
        pid = proc["pid"]
        if not process_alive(pid, marker):
            continue
        terminate(pid)
        if not quiet:
            print(f"stopped {proc['name']} (pid {pid})")
    state["processes"] = []
    save_state(state)
    if not keep_data:
        import shutil

        shutil.rmtree(state["state_dir"], ignore_errors=True)


def _component(state: dict | None, name: str) -> dict:
    if not state:
        raise SandboxError("sandbox is not running: run `hack/sandbox up`")
    entry = next((p for p in state["processes"] if p["name"] == name), None)
    if entry is None:
        raise SandboxError(f"no component {name!r}; the sandbox runs {[p['name'] for p in state['processes']]}")
    if "argv" not in entry:
        raise SandboxError("this sandbox was started by an older hack/sandbox that did not record command lines; "
                           "run `hack/sandbox down` and `hack/sandbox up`")
    return entry


def stop_component(args: argparse.Namespace) -> int:
    """Stop one component, leaving the rest running (to test what clients do
    when, say, the S3 server dies mid-download)."""
    state = load_state()
    entry = _component(state, args.component)
    if process_alive(entry["pid"], state["state_dir"]):
        terminate(entry["pid"])
    print(f"stopped {entry['name']}")
    return 0


def start_component(args: argparse.Namespace) -> int:
    """Start a stopped component again with its recorded command line."""
    state = load_state()
    entry = _component(state, args.component)
    if process_alive(entry["pid"], state["state_dir"]):
        print(f"{entry['name']} already runs (pid {entry['pid']})")
        return 0
    env = minio_env(json.loads(Path(state["s3"]["credentials_file"]).read_text())) if entry["env_keys"] else None
    run = Launcher(state)
    proc = run.start(entry["name"], entry["argv"], env)
    run.wait_ready(entry["name"], proc, health_checks(state["ports"], STATE_DIR / "pki")[entry["name"]], 180)
    print(f"started {entry['name']} (pid {proc.pid})")
    return 0


def restart(args: argparse.Namespace) -> int:
    stop_component(args)
    return start_component(args)


def down(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("no sandbox state; nothing to stop")
        return 0
    stop(state, keep_data=args.keep)
    print("sandbox down" + (f"; state kept in {STATE_DIR}" if args.keep else ""))
    return 0


def status(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("sandbox: not running")
        return 3
    alive = {p["name"]: process_alive(p["pid"], state["state_dir"]) for p in state["processes"]}
    for p in state["processes"]:
        print(f"{p['name']:<24} pid {p['pid']:<8} {'running' if alive[p['name']] else 'STOPPED'}")
    print(f"api server: {state['api_server']}")
    print(f"s3 endpoint: {state['s3']['endpoint']}")
    print(f"nodes: {len(state['gpu_nodes'])} GPU, {len(state['cpu_nodes'])} CPU")
    print(f"kubeconfig: {state['kubeconfig']}")
    if args.json:
        print(json.dumps(state))
    return 0 if alive and all(alive.values()) else 1


def kubeconfig(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("sandbox is not running: run `hack/sandbox up`", file=sys.stderr)
        return 1
    print(state["kubeconfig"])
    return 0


def nodes(args: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("sandbox is not running: run `hack/sandbox up`", file=sys.stderr)
        return 1
    add_nodes(state, args.gpu_nodes, args.gpus_per_node, args.gpu_memory_mib, args.gpu_product, args.cpu_nodes)
    print(f"nodes: {len(state['gpu_nodes'])} GPU, {len(state['cpu_nodes'])} CPU")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True)

    def shape(p: argparse.ArgumentParser, gpu_default: int, cpu_default: int) -> None:
        env = os.environ.get
        p.add_argument("--gpu-nodes", type=int, default=int(env("SANDBOX_GPU_NODES", gpu_default)))
        p.add_argument("--gpus-per-node", type=int, default=int(env("SANDBOX_GPUS_PER_NODE", DEFAULT_GPUS_PER_NODE)))
        p.add_argument("--gpu-memory-mib", type=int, default=int(env("SANDBOX_GPU_MEMORY_MIB", DEFAULT_GPU_MEMORY_MIB)))
        p.add_argument("--gpu-product", default=env("SANDBOX_GPU_PRODUCT", DEFAULT_GPU_PRODUCT))
        p.add_argument("--cpu-nodes", type=int, default=int(env("SANDBOX_CPU_NODES", cpu_default)))

    p_up = sub.add_parser("up", help="build if needed, start, wait until nodes are Ready")
    shape(p_up, DEFAULT_GPU_NODES, DEFAULT_CPU_NODES)
    p_up.set_defaults(func=up)
    p_down = sub.add_parser("down", help="stop every process `up` started and remove its state")
    p_down.add_argument("--keep", action="store_true", help="keep the state folder (logs, etcd data)")
    p_down.set_defaults(func=down)
    p_status = sub.add_parser("status", help="say what runs")
    p_status.add_argument("--json", action="store_true")
    p_status.set_defaults(func=status)
    sub.add_parser("kubeconfig", help="print the kubeconfig path").set_defaults(func=kubeconfig)
    for verb, func, text in (("stop", stop_component, "stop one component"),
                             ("start", start_component, "start a stopped component again"),
                             ("restart", restart, "stop one component and start it again")):
        p_comp = sub.add_parser(verb, help=text)
        p_comp.add_argument("component", help="etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok or minio")
        p_comp.set_defaults(func=func)
    p_nodes = sub.add_parser("nodes", help="add simulated nodes to the running sandbox")
    shape(p_nodes, 0, 0)
    p_nodes.set_defaults(func=nodes)

    args = parser.parse_args(argv)
    if getattr(args, "gpu_nodes", 0) and not 0 < args.gpus_per_node <= 64:
        parser.error("--gpus-per-node must be between 1 and 64")
    try:
        return args.func(args)
    except SandboxError as exc:
        print(f"sandbox: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
