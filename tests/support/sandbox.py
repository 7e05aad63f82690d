"""Access to the sandbox cluster from tests: start it once per session, and
read its state (kubeconfig, ports, S3 endpoint and credentials)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Tests use a sandbox of their own so they never touch one a user started
# with `make sandbox`.
TEST_SANDBOX_DIR = Path(os.environ.get("TEST_SANDBOX_DIR", ROOT / ".cache" / "test-sandbox"))
# What tests need beyond `make sandbox`: the stand-in's port and its
# port-forward, kwok's crash logs (hack/sandbox up --fixtures).
FIXTURES = ROOT / "tests" / "fixtures" / "sandbox.yml"


@dataclass
class Sandbox:
    state_dir: Path
    state: dict

    @property
    def kubeconfig(self) -> str:
        return self.state["kubeconfig"]

    @property
    def gpu_nodes(self) -> list[str]:
        return list(self.state["gpu_nodes"])

    @property
    def cpu_nodes(self) -> list[str]:
        return list(self.state["cpu_nodes"])

    @property
    def helm(self) -> str:
        return self.state["binaries"]["helm"]

    @property
    def kubernetes_version(self) -> str:
        """The version the sandbox's API server runs ("v1.37.2")."""
        return self.state["kubernetes"]["version"]

    @property
    def s3_endpoint(self) -> str:
        return self.state["s3"]["endpoint"]

    def s3_credentials(self) -> dict:
        return json.loads(Path(self.state["s3"]["credentials_file"]).read_text())


def sandbox_cmd(*args: str, check: bool = True, state_dir: Path = TEST_SANDBOX_DIR,
                env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "SANDBOX_DIR": str(state_dir), **(env or {})}
    return subprocess.run(
        [str(ROOT / "hack" / "sandbox"), *args], env=env, check=check, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def start() -> tuple[Sandbox, bool]:
    """Start the test sandbox unless it already runs; returns it and whether
    this call started it."""
    running = sandbox_cmd("status", check=False).returncode == 0
    if not running:
        out = sandbox_cmd("up", "--fixtures", str(FIXTURES), check=False)
        if out.returncode != 0:
            raise RuntimeError(f"hack/sandbox up failed:\n{out.stdout}")
    state = json.loads((TEST_SANDBOX_DIR / "state.json").read_text())
    if state.get("fixtures") != str(FIXTURES):
        raise RuntimeError(f"the sandbox in {TEST_SANDBOX_DIR} runs without the test fixtures ({FIXTURES}): "
                           f"stop it (SANDBOX_DIR={TEST_SANDBOX_DIR} hack/sandbox down) and run the tests again")
    return Sandbox(TEST_SANDBOX_DIR, state), not running


def keep_logs(lines: int = 5) -> list[str]:
    """Copy the sandbox's process logs to .cache/test-logs (the state folder
    goes with `down`) and return a short report (CI shows only the end of its
    output): stopped processes, the stand-in's last lines, kwok's errors."""
    import shutil

    kept = ROOT / ".cache" / "test-logs"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(TEST_SANDBOX_DIR / "logs", kept, dirs_exist_ok=True)
    status = sandbox_cmd("status", check=False).stdout.splitlines()
    stopped = [line for line in status if "STOPPED" in line]
    report = stopped or ["every sandbox process still runs"]
    report.append(f"full logs: {kept.relative_to(ROOT)}/")
    for name, keep in (("vllm-standin", lambda line: True), ("job-runner", lambda line: True),
                       ("kwok", lambda line: '"level":"ERROR"' in line or "panic" in line)):
        log = kept / f"{name}.log"
        tail = [line[:240] for line in log.read_text(errors="replace").splitlines() if keep(line)][-lines:] \
            if log.exists() else []
        report += [f"{name}.log, last {len(tail)} lines" + (":" if tail else " (empty)")] + ["  " + t for t in tail]
    return report


def stop() -> None:
    sandbox_cmd("down", check=False)


class Outage:
    """A fault injected into a playbook run: ``component`` stopped when the
    run's output reaches a line starting with ``at``, started again
    ``seconds`` later (the outage is the fault, so it is timed), and always
    started by the end of the ``with`` block."""

    def __init__(self, component: str, seconds: float, at: str):
        self.component, self.seconds, self.at = component, seconds, at
        self.stopped = self.started = self.back_at = self.thread = None

    def on_line(self, line: str) -> None:
        if line.startswith(self.at) and self.stopped is None:
            self.stopped = sandbox_cmd("stop", self.component, check=False)
            self.thread = threading.Thread(target=self._restore)
            self.thread.start()

    def _restore(self) -> None:
        threading.Event().wait(self.seconds)  # the outage itself
        self.started = sandbox_cmd("start", self.component, check=False)
        self.back_at = time.monotonic()

    def __enter__(self) -> "Outage":
        return self

    def __exit__(self, *exc) -> None:
        if self.thread is not None:
            self.thread.join(60)
        else:
            sandbox_cmd("start", self.component, check=False)

    @property
    def happened(self) -> bool:
        return self.stopped is not None and self.stopped.returncode == 0 \
            and self.started is not None and self.started.returncode == 0
