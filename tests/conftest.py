"""Shared fixtures: the sandbox cluster (once per session), a fresh namespace
per test, and the Kubernetes API as plain dicts."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from support import sandbox as sandbox_support


@pytest.fixture(scope="session")
def sandbox(request):
    sb, started = sandbox_support.start()
    yield sb
    if request.session.testsfailed:
        # What the sandbox's processes said, kept before `down` removes it.
        SANDBOX_REPORT.extend(sandbox_support.keep_logs())
    # SANDBOX_KEEP=1 leaves a sandbox this session started running, for the
    # next run (local development); CI always stops it.
    if started and os.environ.get("SANDBOX_KEEP") != "1":
        sandbox_support.stop()


SANDBOX_REPORT: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist's controller: a worker's sandbox report comes back with
    it (its session fixtures are torn down before pytest_sessionfinish)."""
    report = getattr(node, "workeroutput", {}).get("sandbox_report") or []
    if report:
        SANDBOX_REPORT.extend([f"[{node.gateway.id}]"] + report)


def pytest_terminal_summary(terminalreporter):
    if SANDBOX_REPORT:
        terminalreporter.section("sandbox logs (tests failed)")
        for line in SANDBOX_REPORT:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def kube(sandbox):
    """The sandbox's API server through the collection's own client, answered
    as plain dicts (tests/support/k8s.py)."""
    from support.k8s import Kube

    return Kube(sandbox.kubeconfig)


@pytest.fixture
def namespace(request, kube):
    """A namespace for one test, deleted afterwards (deletion is not awaited:
    the namespace controller finishes it in the background)."""
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"t-{base}-{uuid.uuid4().hex[:5]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": name, "labels": {"inferops.io/test": "true"}}})
    yield name
    kube.delete("v1", "Namespace", None, name, propagation="Background")


# Longest files first: `make test` runs the files on pytest-xdist's workers
# (--dist loadfile, a file to a worker), which take them in this order, so
# the slowest file starts at once instead of keeping one worker busy at the
# end while the other waits. The seconds are one file's setup, calls and
# teardown in a full run (tests/file-durations.json; every run writes its own
# to .cache/test-file-durations.json, to copy over it when files change much;
# test_sandbox_oldest_k8s's entry is its time on a fresh machine, where it
# first builds Kubernetes 1.35).
# A file not listed counts as FILE_SECONDS_UNKNOWN: long enough to start early.
FILE_DURATIONS = Path(__file__).with_name("file-durations.json")
FILE_SECONDS_UNKNOWN = 60.0
_RUN_FILE_SECONDS: dict[str, float] = defaultdict(float)


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(session, config, items):
    seconds = json.loads(FILE_DURATIONS.read_text()) if FILE_DURATIONS.exists() else {}
    # A stable sort: the tests of one file keep their order.
    items.sort(key=lambda item: -seconds.get(_file_of(item.nodeid), FILE_SECONDS_UNKNOWN))


def pytest_runtest_logreport(report):
    _RUN_FILE_SECONDS[_file_of(report.nodeid)] += report.duration


def pytest_sessionfinish(session):
    if hasattr(session.config, "workeroutput"):  # an xdist worker: hand the report to the controller
        session.config.workeroutput["sandbox_report"] = SANDBOX_REPORT
        return
    # Only the process that saw every file's reports (not a worker), and only for a whole run.
    if len(_RUN_FILE_SECONDS) < 10:
        return
    out = Path(__file__).resolve().parents[1] / ".cache" / "test-file-durations.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({k: round(v, 1) for k, v in sorted(_RUN_FILE_SECONDS.items(),
                                                                 key=lambda kv: -kv[1])}, indent=1) + "\n")
