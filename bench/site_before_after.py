"""Benchmark: site.yml's first run and no-op rerun, this checkout against a
baseline revision of the collection, in the same benchmark run, each on a
fresh sandbox of `make sandbox`'s shape (4 GPU nodes).

The baseline is the collection as it was before the reconcile engine
(issue #25: one k8s_reconcile task per stage instead of a dry run, an apply
per object and the reads around them). It is taken from git (`git archive`),
laid out as its own ansible_collections/inferops/vllm beside the same
kubernetes.core, and run with its own site.yml and sandbox inventory. Each
side: one first run, then the rerun three times (once with --quick), the
median taken; the rerun must report changed=0 on both."""

from __future__ import annotations

import os
import shutil
import subprocess

from _common import BENCH_DIR, ROOT, Row, median, sandbox
from _site import run_site

# The last commit before the reconcile engine (83d130f's parent).
BASELINE_REV = os.environ.get("BENCH_BASELINE_REV", "84f6e39")


def baseline_checkout(rev: str):
    """The baseline revision's files, and a collections path that finds
    them as inferops.vllm (the other collections: this checkout's)."""
    base = BENCH_DIR / f"baseline-{rev}"
    src, collections = base / "src", base / "collections" / "ansible_collections"
    if not src.exists():
        shutil.rmtree(base, ignore_errors=True)
        src.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        (collections / "inferops").mkdir(parents=True)
        (collections / "inferops" / "vllm").symlink_to(src)
        for other in (ROOT / ".cache" / "collections" / "ansible_collections").iterdir():
            if other.is_dir() and other.name != "inferops":
                (collections / other.name).symlink_to(other)
    return src, collections.parent


def measure(name: str, quick: bool, root=None, collections=None) -> dict:
    env = {"ANSIBLE_COLLECTIONS_PATH": str(collections)} if collections else None
    with sandbox(name, gpu_nodes=4, cpu_nodes=1) as box:
        first = run_site(box, root=root, env=env)
        reruns = [run_site(box, root=root, env=env) for _rerun in range(1 if quick else 3)]
    for rerun in reruns:
        if rerun["changed"]:
            raise RuntimeError(f"{name}: a rerun of site.yml changed {rerun['changed']} task(s)")
    return {"first": first, "reruns": reruns}


def walls(runs: list[dict]) -> str:
    return ", ".join("%.1f" % r["wall_s"] for r in runs)


def run(quick: bool) -> list[Row]:
    src, collections = baseline_checkout(BASELINE_REV)
    before = measure("before-after-base", quick, root=src, collections=collections)
    after = measure("before-after-now", quick)
    rows = []
    for label, pick in (("first run", lambda m: [m["first"]]), ("no-op rerun", lambda m: m["reruns"])):
        ours, theirs = pick(after), pick(before)
        rows.append(Row("site_before_after", f"site.yml {label}, wall time", "s", median([r["wall_s"] for r in ours]),
                        median([r["wall_s"] for r in theirs]), ours_label="this checkout",
                        baseline_label=f"baseline {BASELINE_REV}",
                        note=f"tasks run {ours[0]['tasks_run']} (baseline {theirs[0]['tasks_run']}); "
                             f"walls {walls(ours)} s (baseline {walls(theirs)} s)",
                        samples={"ours": ours, "baseline": theirs}))
        for stage in ("Model", "Serve"):
            rows.append(Row("site_before_after", f"{stage}, {label}", "s", median([r["stages_s"][stage] for r in ours]),
                            median([r["stages_s"][stage] for r in theirs]), ours_label="this checkout",
                            baseline_label=f"baseline {BASELINE_REV}"))
    return rows
