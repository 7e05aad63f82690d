"""The sandbox's processes: the binaries they run (built by
hack/build-sandbox-bins), how each is started and told healthy, and how they
are stopped (by pid, checked against the command line, in reverse start
order)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

from sandboxctl import ROOT
from sandboxctl.settings import STANDIN_PODS, vllm_port_key
from sandboxctl.state import LOOPBACK, SandboxError, save_state

BIN_CACHE = os.environ.get("SANDBOX_BIN_CACHE", str(ROOT / ".cache" / "sandbox-bin"))


# --------------------------------------------------------------------------
# binaries


def build_binaries(kubernetes_line: str) -> dict[str, Path]:
    """Build what is missing for this Kubernetes line; the binaries' paths."""
    out = subprocess.run(
        [str(ROOT / "hack" / "build-sandbox-bins")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SANDBOX_BIN_CACHE": BIN_CACHE, "SANDBOX_KUBERNETES": kubernetes_line},
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


def kubernetes_version(apiserver: Path) -> str:
    """The version stamped into the binary ("v1.37.2"), as /version reports it."""
    out = subprocess.run([str(apiserver), "--version"], check=True, stdout=subprocess.PIPE, text=True).stdout
    return out.split()[-1]


def go_module_dir(module_dir: Path, module: str) -> Path:
    """The source folder of a module required by module_dir's go.mod.

    `go mod download -json` fetches it first when the module cache lacks it
    (a fresh machine): `go list -m -f {{.Dir}}` prints an empty Dir for a
    module not downloaded yet, which once sent the CRD and kwok stage
    look-ups to the working directory."""
    out = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=module_dir,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    ).stdout
    info = json.loads(out)
    folder = info.get("Dir") or ""
    if info.get("Error") or not folder or not Path(folder).is_dir():
        raise SandboxError(f"go module {module} (required in {module_dir}/go.mod): "
                           f"no source folder after go mod download: {info.get('Error') or folder!r}")
    return Path(folder)


# --------------------------------------------------------------------------
# pids


def process_alive(pid: int, marker: str) -> bool:
    """True if pid runs and its command line mentions marker (our state dir),
    so a recycled pid is never mistaken for one of ours."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
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
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_exit(pid, 20):
        os.kill(pid, signal.SIGKILL)
        wait_exit(pid, 5)


# --------------------------------------------------------------------------
# starting


class Launcher:
    def __init__(self, state: dict):
        self.state = state
        self.state_dir = Path(state["state_dir"])
        self.logs = self.state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.state_dir,
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

    def wait_ready(self, name: str, proc: subprocess.Popen, timeout: float) -> None:
        """Wait for a component's health endpoint. Nothing can be watched
        before the API exists (and the API is what the others serve), so this
        asks the endpoint with a capped backoff, and gives up at once if the
        process exits."""
        check = health_check(name, self.state, proc)
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


def tcp_listening(port: int) -> bool:
    with socket.create_connection((LOOPBACK, port), timeout=2):
        return True


def health_check(name: str, state: dict, proc: subprocess.Popen):
    """How to tell a component is up, as a function of no arguments."""
    from sandboxctl import jobs

    ports, pki = state["ports"], Path(state["state_dir"]) / "pki"
    checks = {
        "etcd": lambda: http_ok(f"http://{LOOPBACK}:{ports['etcd_client']}/health"),
        "kube-apiserver": lambda: https_ok(f"https://{LOOPBACK}:{ports['apiserver']}/readyz", pki),
        "kube-controller-manager": lambda: https_ok(
            f"https://{LOOPBACK}:{ports['controller_manager']}/healthz", pki, verify=False),
        "kube-scheduler": lambda: https_ok(f"https://{LOOPBACK}:{ports['scheduler']}/healthz", pki, verify=False),
        "kwok": lambda: tcp_listening(ports["kwok"]),
        "minio": lambda: http_ok(f"http://{LOOPBACK}:{ports['s3']}/minio/health/ready"),
        "vllm-standin": lambda: all(tcp_listening(ports[vllm_port_key(p)]) for p in STANDIN_PODS),
        # It says so once its watch of pods has listed them.
        "job-runner": lambda: jobs.ready(Path(state["state_dir"]), proc.pid),
    }
    return checks[name]


def minio_env(creds: dict) -> dict:
    # Credentials go through the environment, never the command line.
    return {
        "MINIO_ROOT_USER": creds["access_key"],
        "MINIO_ROOT_PASSWORD": creds["secret_key"],
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
        "MINIO_CI_CD": "1",
    }


def component_env(state: dict, name: str) -> dict | None:
    """The environment a component is (re)started with, beyond the sandbox's
    own: only MinIO has one, its root credentials, read again from the file."""
    if name == "minio":
        return minio_env(json.loads(Path(state["s3"]["credentials_file"]).read_text()))
    return None


def stop_all(state: dict, keep_data: bool, quiet: bool = False) -> None:
    """Stop every recorded process, last started first; remove the state
    folder unless keep_data."""
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
