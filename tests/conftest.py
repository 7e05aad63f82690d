"""Shared fixtures: the sandbox cluster (once per session), a fresh namespace
per test, and the Kubernetes API as plain dicts."""

from __future__ import annotations

import os
import re
import uuid

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
