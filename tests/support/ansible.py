"""Run playbooks and single module calls against the sandbox and get their
results as JSON (ansible.posix.json callback)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
# Where the suite's playbook time goes (docs/test-suite-timing.md): a line a
# run, one file a pytest-xdist worker; hack/test-timing-report.py sums them.
TIMING_DIR = ROOT / ".cache" / "test-timing"


def _utc(stamp: str) -> float:
    return datetime.fromisoformat(stamp.rstrip("Z")).replace(tzinfo=timezone.utc).timestamp()


def record_timing(playbook, started: float, ended: float, data: dict | None) -> None:
    """Wall time, Ansible's start-up (process start to the first task),
    its shutdown (last task's end to exit), and each task's seconds by its
    module: what a run spends starting against what it spends in tasks."""
    entry: dict = {"test": (os.environ.get("PYTEST_CURRENT_TEST") or "").rsplit(" ", 1)[0],
                   "playbook": Path(str(playbook)).name, "wall": round(ended - started, 3)}
    tasks = [t for play in (data or {}).get("plays", []) for t in play["tasks"]]
    if tasks:
        # Each task's start and end (a task cut short has no end: its start).
        spans = [(_utc(d["start"]), _utc(d.get("end") or d["start"])) for d in (t["task"]["duration"] for t in tasks)]
        entry["startup"] = round(spans[0][0] - started, 3)
        entry["shutdown"] = round(ended - max(end for _start, end in spans), 3)
        entry["tasks"] = [[next((r.get("action") for r in t["hosts"].values()), None) or "(skipped)",
                           round(end - start, 3)] for t, (start, end) in zip(tasks, spans)]
    TIMING_DIR.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER") or "main"
    with open(TIMING_DIR / f"{worker}.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


class PlaybookResult:
    def __init__(self, data: dict, rc: int, stderr: str):
        self.data = data
        self.rc = rc
        self.stderr = stderr

    @property
    def stats(self) -> dict:
        return self.data.get("stats", {})

    def changed(self, host: str | None = None) -> int:
        return sum(s.get("changed", 0) for h, s in self.stats.items() if host in (None, h))

    def failed(self) -> int:
        return sum(s.get("failures", 0) + s.get("unreachable", 0) for s in self.stats.values())

    def failures(self) -> str:
        """Each failed task with its host and message, for assertion messages:
        the stats alone do not say what broke."""
        lines = []
        for t in self.tasks():
            for host, r in t["hosts"].items():
                if r.get("failed") or r.get("unreachable"):
                    detail = {k: r[k] for k in ("msg", "diagnosis", "stderr", "module_stderr") if r.get(k)}
                    # A loop's own message says only that an item failed: add the items'.
                    items = [i.get("msg") for i in r.get("results") or [] if i.get("failed")]
                    if items:
                        detail["items"] = items
                    lines.append(f"{t['task']['name']} [{host}]: {json.dumps(detail)[:4000]}")
        return "\n".join(lines) + "\n" + self.stderr[-1500:] + json.dumps(self.stats)

    def tasks(self) -> list[dict]:
        return [t for play in self.data.get("plays", []) for t in play["tasks"]]

    def task(self, name: str, host: str | None = None) -> dict:
        """The result of the first task of this name; a role's task is
        named "<role> : <name>" in the results, and found by either."""
        for t in self.tasks():
            if t["task"]["name"] == name or t["task"]["name"].endswith(f" : {name}"):
                hosts = t["hosts"]
                return hosts[host] if host else next(iter(hosts.values()))
        raise KeyError(f"no task named {name!r}; tasks: {[t['task']['name'] for t in self.tasks()]}")


def run_playbook(
    playbook: str | Path,
    inventory: str | Path | None = None,
    extra_vars: dict | None = None,
    check: bool = False,
    diff: bool = False,
    env: dict | None = None,
    extra_args: list[str] | None = None,
) -> PlaybookResult:
    cmd = [str(ANSIBLE_PLAYBOOK), str(playbook)]
    if inventory:
        cmd += ["-i", str(inventory)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    vars_file = None
    if extra_vars:
        vars_file = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
        json.dump(extra_vars, vars_file)
        vars_file.close()
        cmd += ["-e", f"@{vars_file.name}"]
    cmd += extra_args or []
    run_env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_NOCOLOR": "1",
        **(env or {}),
    }
    started = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=run_env, text=True, capture_output=True, timeout=1200, check=False)
    finally:
        if vars_file:
            os.unlink(vars_file.name)
    ended = time.time()
    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        record_timing(playbook, started, ended, None)
        raise AssertionError(f"ansible-playbook printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
    record_timing(playbook, started, ended, data)
    return PlaybookResult(data, proc.returncode, proc.stderr)


def sandbox_playbook(sandbox, name: str, namespace: str, extra_args: list[str] | None = None,
                     **extra) -> PlaybookResult:
    """A playbook of the project (``name`` from its root) with the sandbox
    inventory, the model and the service both in ``namespace``."""
    return run_playbook(ROOT / name, inventory=ROOT / "inventories" / "sandbox",
                        extra_vars={"model_store_namespace": namespace, "vllm_serve_namespace": namespace, **extra},
                        env={"SANDBOX_DIR": str(sandbox.state_dir)}, extra_args=extra_args)


class TextRun:
    """A playbook run with Ansible's default output, as an operator sees it."""

    def __init__(self, proc: subprocess.CompletedProcess):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        totals = {"ok": 0, "changed": 0, "unreachable": 0, "failed": 0}
        for line in self.output.splitlines():
            if " : ok=" in line:  # a PLAY RECAP line, one a host
                for key in totals:
                    totals[key] += int(re.search(rf"\b{key}=(\d+)", line).group(1))
        self.recap = totals
        task, self.changed_tasks = None, []
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                task = line[6:line.rfind("]")]
            elif line.startswith("changed: ") and task not in self.changed_tasks:
                self.changed_tasks.append(task)


def run_playbook_text(playbook: str | Path, inventory: str | Path, *extra_args: str, env: dict | None = None) -> TextRun:
    run_env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **(env or {})}
    run_env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    started = time.time()
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(playbook), *extra_args], cwd=ROOT,
                          env=run_env, text=True, capture_output=True, timeout=1200, check=False)
    record_timing(playbook, started, time.time(), None)
    return TextRun(proc)


def run_module(
    module: str,
    args: dict,
    kubeconfig: str | None = None,
    check: bool = False,
    diff: bool = False,
    env: dict | None = None,
    python: str | None = None,
) -> dict:
    """Run one module on localhost in a one-task play; return its result.
    ``python``: the interpreter the module runs with (default: the tests')."""
    play = [
        {
            "name": "module under test",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": [{"name": "call", module: args}],
        }
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", dir=ROOT / "tests", prefix=".tmp-play-", delete=False) as f:
        yaml.safe_dump(play, f)
    run_env = dict(env or {})
    if kubeconfig:
        run_env["K8S_AUTH_KUBECONFIG"] = kubeconfig
    try:
        result = run_playbook(
            f.name,
            inventory="localhost,",
            check=check,
            diff=diff,
            env=run_env,
            extra_args=["-e", f"ansible_python_interpreter={python or sys.executable}", "-c", "local"],
        )
    finally:
        os.unlink(f.name)
    return result.task("call")


def run_playbook_streaming(playbook: str | Path, on_line=None, extra_args: list[str] | None = None) -> tuple[int, str]:
    """ansible-playbook on localhost with the default output, handing each
    line to ``on_line`` as it is printed (a test injects a fault at a task);
    returns the exit code and the whole output."""
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    proc = subprocess.Popen([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-c", "local", "-e",
                             f"ansible_python_interpreter={sys.executable}", *(extra_args or []), str(playbook)],
                            cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started, lines = time.time(), []
    for line in proc.stdout:
        lines.append(line)
        if on_line:
            on_line(line)
    rc = proc.wait(600)
    record_timing(playbook, started, time.time(), None)
    return rc, "".join(lines)


def recap_of(output: str) -> dict:
    """The PLAY RECAP counts of one host's run (ok, changed, failed, ...)."""
    line = next(x for x in output.splitlines() if " : ok=" in x)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
