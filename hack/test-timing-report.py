"""Where the test suite's playbook time went: reads what tests/support/ansible.py
recorded for each ansible-playbook run of the last test run
(.cache/test-timing/*.jsonl) and prints the totals: Ansible's start-up and
shutdown against the time in tasks, and the tasks by module (count, total,
median). Clear the folder before a run to measure that run alone.

    .venv/bin/python hack/test-timing-report.py [--top 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=20, help="how many modules to list")
    parser.add_argument("--dir", type=Path, default=ROOT / ".cache" / "test-timing")
    args = parser.parse_args()
    runs = [json.loads(line) for f in sorted(args.dir.glob("*.jsonl")) for line in f.read_text().splitlines() if line]
    if not runs:
        print(f"no playbook runs recorded in {args.dir}")
        return 1
    wall = sum(r["wall"] for r in runs)
    timed = [r for r in runs if "tasks" in r]
    by_action: dict[str, list[float]] = defaultdict(list)
    for run in timed:
        for action, seconds in run["tasks"]:
            by_action[action].append(seconds)
    startup = sum(r["startup"] for r in timed)
    shutdown = sum(r["shutdown"] for r in timed)
    in_tasks = sum(s for v in by_action.values() for s in v)
    print(f"{len(runs)} ansible-playbook runs, {wall:.0f} s in all ({len(timed)} with per-task times, "
          f"{sum(r['wall'] for r in timed):.0f} s of it)")
    print(f"  start-up (process start to the first task): {startup:.0f} s, median {statistics.median(r['startup'] for r in timed):.2f} s a run")
    print(f"  shutdown (last task to exit): {shutdown:.0f} s")
    print(f"  in tasks: {in_tasks:.0f} s over {sum(len(v) for v in by_action.values())} tasks")
    print(f"{'module':<44} {'tasks':>6} {'total s':>8} {'median s':>9}")
    for action, seconds in sorted(by_action.items(), key=lambda kv: -sum(kv[1]))[:args.top]:
        print(f"{action:<44} {len(seconds):>6} {sum(seconds):>8.0f} {statistics.median(seconds):>9.2f}")
    per_test: dict[str, float] = defaultdict(float)
    for run in runs:
        per_test[run["test"].split("::", 1)[0]] += run["wall"]
    print(f"{'file':<60} {'playbook s':>10}")
    for name, seconds in sorted(per_test.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"{name:<60} {seconds:>10.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
