"""Turns what `hack/device-vllm serve` brought back from the GPU machine
(the files of each call's $OUT: CASE.log, summary.json, host.txt, and from
the recording call http.json and endpoint_check.json) into the test data
under tests/data/real-vllm/:

  logs/CASE-GPU.log     vLLM's output (progress bars left out; the machine's
                        home and interpreter paths shortened)
  runs.json             per case: the machine, time to ready, memory in use
                        while serving, the chat that was answered
  http/NAME.json        one recorded exchange each (/metrics: the metric
                        names and types only)
  endpoint_check.json   what the collection's endpoint_check returned

    python3 hack/device-vllm-record.py RESULT_DIR...
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data/real-vllm"
PROGRESS = re.compile(r"Capturing CUDA graphs|^\s*$")


def clean(line: str) -> str:
    line = re.sub(r"/root/", "~/", line)
    return re.sub(r"\S*/bin/python3(\.\d+)?", "python3", line)


def main() -> None:
    runs = json.loads((DATA / "runs.json").read_text()) if (DATA / "runs.json").is_file() else {}
    (DATA / "logs").mkdir(parents=True, exist_ok=True)
    for folder in map(Path, sys.argv[1:]):
        summary = json.loads((folder / "summary.json").read_text())
        host = (folder / "host.txt").read_text().splitlines() if (folder / "host.txt").is_file() else []
        for case, entry in summary["cases"].items():
            name = f"{case}-{summary['suffix']}"
            text = (folder / f"{case}.log").read_text(errors="replace")
            kept = [clean(line) for line in text.splitlines() if not PROGRESS.search(line)]
            (DATA / "logs" / f"{name}.log").write_text("\n".join(kept) + "\n")
            runs[name] = {
                "machine": {"gpus": [{k: g[k] for k in ("name", "memory_total_mib", "driver")}
                                     for g in summary["gpus"]],
                            "software": [line for line in host if line.startswith(("vllm ", "Python"))]},
                "gpus_used": entry["gpus"],
                "ready_s": entry["ready_s"],
                "memory_used_mib_serving": [g["memory_used_mib"] for g in entry.get("nvidia_smi_serving", [])
                                            if g["index"] in entry["gpus"]],
                "chat": entry.get("chat"),
                "http": entry.get("http"),
                "endpoint_check_rc": entry.get("endpoint_check_rc"),
                "rc": entry["rc"],
            }
            if "shm" in entry:
                runs[name]["shm"] = entry["shm"]
        # The first recordings (dense-eager-tp1, embed-tp1) are http/NAME.json, the stand-in's contract;
        # a later case's go to http/CASE-GPU/ beside them.
        checked_as = {}
        for recorded in ("http.json", "http-pooling.json"):
            if not (folder / recorded).is_file():
                continue
            exchanges = json.loads((folder / recorded).read_text())
            case = exchanges[0]["case"] if exchanges else None
            target = DATA / "http"
            if case not in ("dense-eager-tp1", "embed-tp1", None):
                target = target / f"{case}-{summary['suffix']}"
                checked_as[recorded.replace("http", "endpoint_check")] = f"endpoint_check-{case}-{summary['suffix']}.json"
            target.mkdir(parents=True, exist_ok=True)
            for ex in exchanges:
                ex.pop("seconds", None)
                if "metric_types" in ex:
                    types = ex.pop("metric_types")
                    ex["vllm_metric_types"] = {k: v for k, v in sorted(types.items()) if k.startswith("vllm:")}
                    ex["other_metric_names"] = sorted(k for k in types if not k.startswith("vllm:"))
                    ex["headers"] = [h for h in ex["headers"] if h[0] != "content-length"]
                (target / f"{ex['name']}.json").write_text(json.dumps(ex, indent=1) + "\n")
        for checked in ("endpoint_check.json", "endpoint_check-pooling.json"):
            if (folder / checked).is_file():
                check = json.loads((folder / checked).read_text())
                out = {"rc": check["rc"], "result": check.get("result")}
                (DATA / checked_as.get(checked, checked)).write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    (DATA / "runs.json").write_text(json.dumps(runs, indent=1, sort_keys=True) + "\n")
    print(f"recorded: {', '.join(sorted(runs))}")


if __name__ == "__main__":
    main()
