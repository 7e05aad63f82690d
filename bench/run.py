"""Run the benchmarks (`make bench`), print one table, write the rows as JSON
under bench/results/ (gitignored).

    .venv/bin/python bench/run.py [--only NAME ...] [--quick]

Each benchmark is a module of this folder with ``run(quick) -> list[Row]``
(bench/_common.py): it starts a sandbox of its own, runs our tool and the
baseline a user would otherwise run in the same run, and returns rows.
--quick runs smaller sizes (a smoke run of the harness, not numbers to
keep)."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Row  # noqa: E402

# In the order they run: the playbook runs first (they read the roles as
# they are when they start), the long label loop over 1,000 nodes last.
BENCHMARKS = ("site_stages", "site_before_after", "site_scale", "serving_plan", "fleet_placement", "readiness", "model_download", "gpu_node_labels")
RESULTS = ROOT / "bench" / "results"


def machine() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    memory_gib = None
    try:
        kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))
        memory_gib = round(kib / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": memory_gib, "python": platform.python_version(),
            "system": platform.platform()}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value / 2**20:,.1f} MiB"
    if unit == "s" and value < 0.1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} {unit}" if unit else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    head = ("benchmark", "case", "ours", "baseline", "ratio", "note")
    lines = [head]
    for r in rows:
        ours = f"{fmt(r.ours, r.unit)}" + (f" ({r.ours_label})" if r.ours_label else "")
        base = f"{fmt(r.baseline, r.unit)}" + (f" ({r.baseline_label})" if r.baseline_label else "")
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append((r.benchmark, r.case, ours, base, ratio, r.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in lines]
    out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run of the harness")
    args = parser.parse_args()

    started = datetime.now(timezone.utc)
    rows: list[Row] = []
    failed: dict[str, str] = {}
    for name in [b for b in BENCHMARKS if b in args.only]:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            found = importlib.import_module(name).run(quick=args.quick)
        except Exception:  # one failed benchmark must not lose the others' rows
            failed[name] = traceback.format_exc()
            print(failed[name], file=sys.stderr, flush=True)
            continue
        rows += found
        print(table(found), flush=True)
        print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"started": started.isoformat(), "quick": args.quick, "machine": machine(),
                               "rows": [r.as_dict() for r in rows], "failed": failed}, indent=2))
    print("\n" + table(rows))
    print(f"\n{len(rows)} rows from {len(args.only) - len(failed)} benchmark(s), {len(failed)} failed"
          f"{': ' + ', '.join(failed) if failed else ''}; written to {out.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
