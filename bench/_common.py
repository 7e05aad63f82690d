"""What every benchmark shares: a sandbox of its own, playbook runs with
per-task times, a row of the results table.

A row compares our tool (``ours``) with the baseline a user would otherwise
run (``baseline``) in the same run on the same sandbox; ``ratio`` is
baseline / ours, so above 1 means ours is faster (or sends fewer bytes).
No benchmark asserts a wall-clock time: these machines are noisy, and the
ratio is what carries over to another machine."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / ".cache" / "collections"))

from tests.support.ansible import PlaybookResult, run_playbook  # noqa: E402
from tests.support.k8s import Kube  # noqa: E402
from tests.support.sandbox import Sandbox as TestSandbox  # noqa: E402

BENCH_DIR = ROOT / ".cache" / "bench"


@dataclass
class Row:
    benchmark: str
    case: str
    unit: str
    ours: float | None
    baseline: float | None = None
    ours_label: str = ""
    baseline_label: str = ""
    note: str = ""
    samples: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.ours in (None, 0) or self.baseline is None:
            return None
        return self.baseline / self.ours

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": None if self.ratio is None else round(self.ratio, 2)}


def median(values) -> float:
    return statistics.median(values)


def p95(values) -> float:
    """The nearest-rank 95th percentile (of 20 samples: the 19th)."""
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


class Sandbox(TestSandbox):
    """The tests' view of a sandbox, plus what a benchmark runs against it."""

    @property
    def env(self) -> dict:
        """What a playbook run against this sandbox needs in its environment."""
        return {"K8S_AUTH_KUBECONFIG": self.kubeconfig, "SANDBOX_DIR": str(self.state_dir)}

    def kube(self) -> Kube:
        return Kube(self.kubeconfig)

    def cmd(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([str(ROOT / "hack" / "sandbox"), *args], env={**os.environ, **self.env},
                              check=check, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def sandbox(name: str, gpu_nodes: int, cpu_nodes: int = 1, extra: list[str] | None = None):
    """A sandbox of the benchmark's own (never a user's or the tests'),
    stopped and removed at the end."""
    state_dir = BENCH_DIR / f"sandbox-{name}"
    env = {**os.environ, "SANDBOX_DIR": str(state_dir)}
    hack = str(ROOT / "hack" / "sandbox")
    subprocess.run([hack, "down"], env=env, check=False, capture_output=True)
    up = subprocess.run([hack, "up", "--gpu-nodes", str(gpu_nodes), "--cpu-nodes", str(cpu_nodes), *(extra or [])],
                        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    if up.returncode != 0:
        raise RuntimeError(f"hack/sandbox up failed for benchmark {name}:\n{up.stdout[-3000:]}")
    try:
        yield Sandbox(state_dir, json.loads((state_dir / "state.json").read_text()))
    finally:
        subprocess.run([hack, "down"], env=env, check=False, capture_output=True)
        shutil.rmtree(state_dir, ignore_errors=True)


def playbook(path: str | Path, box: Sandbox | None, inventory: str | Path | None = None, extra_vars: dict | None = None,
             env: dict | None = None, must_pass: bool = True) -> tuple[float, PlaybookResult]:
    """Run a playbook against the sandbox; returns its wall time and result.
    A benchmark of a run that failed would measure the wrong thing: fail."""
    start = time.perf_counter()
    result = run_playbook(path, inventory=inventory, extra_vars=extra_vars, env={**(box.env if box else {}), **(env or {})})
    seconds = time.perf_counter() - start
    if must_pass and (result.rc != 0 or result.failed()):
        raise RuntimeError(f"{path} failed (rc {result.rc}):\n{result.failures()}")
    return seconds, result


def write_playbook(text: str) -> Path:
    folder = BENCH_DIR / "playbooks"
    folder.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", suffix=".yml", dir=folder, delete=False)
    handle.write(text)
    handle.close()
    return Path(handle.name)


def iso_time(text: str) -> float:
    """An ISO-8601 time (the json callback's, the API's) as a Unix time."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def task_seconds(task: dict) -> float:
    """One task's duration from the ansible.posix.json callback."""
    duration = task["task"]["duration"]
    return iso_time(duration["end"]) - iso_time(duration["start"])
