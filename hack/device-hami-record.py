"""Turns what `hack/device-vllm hami` brought back (each call's $OUT:
hami-summary.json, hami-logs.tar.gz, hami-probe.json, hami-build.json) into
the test data under tests/data/real-vllm/:

  hami-runs.json        per case: outcome, vLLM's memory lines as numbers,
                        physical memory seen from outside the slice, the chat,
                        the decode load; plus the probe and the builds
  logs/hami/CASE.log    the lines of vLLM's log that say where memory went
                        (KV cache, profiling, CUDA graphs, HAMi-core, errors)

    python3 hack/device-hami-record.py RESULT_DIR...   (each lease's last call; a later one adds its cases)
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data/real-vllm"


def clean(line: str) -> str:
    line = re.sub(r"/root/", "~/", line)
    line = line.replace("/tmp/vllm-lib/", "site-packages/")
    line = re.sub(r"/tmp/hami-state/hooks/[^ ]+", "<hook>", line)
    return re.sub(r"\S*/bin/python3(\.\d+)?", "python3", line)


def main() -> None:
    folders = [Path(f) for f in sys.argv[1:]]
    summary = {"cases": {}, "order": []}
    for folder in folders:
        if (folder / "hami-summary.json").is_file():
            part = json.loads((folder / "hami-summary.json").read_text())
            summary["cases"].update(part["cases"])
            summary["order"] += [n for n in part["order"] if n not in summary["order"]]
    out = {"cases": {}, "probe": None, "builds": None}
    for folder in folders:
        for name, key in (("hami-probe.json", "probe"), ("hami-build.json", "builds")):
            if (folder / name).is_file() and out[key] is None:
                found = json.loads((folder / name).read_text())
                if key == "probe" or any("rc" in entry for entry in found.values()):  # a build, not a cache hit
                    out[key] = found
        if out["builds"]:
            for entry in out["builds"].values():
                entry.pop("tail", None)
                entry.pop("lib", None)
        logs = folder / "hami-logs.tar.gz"
        if logs.is_file():
            (DATA / "logs/hami").mkdir(parents=True, exist_ok=True)
            with tarfile.open(logs) as tf:
                for member in tf.getmembers():
                    if member.name.endswith(".kept.log"):
                        text = tf.extractfile(member).read().decode(errors="replace")
                        name = member.name.replace(".kept.log", ".log")
                        (DATA / "logs/hami" / name).write_text("\n".join(clean(x) for x in text.splitlines()) + "\n")
    for name, entry in summary["cases"].items():
        entry = dict(entry)
        entry.pop("hami_lines", None)
        entry["errors"] = [clean(x) for x in entry.get("errors", []) if re.search(r"HAMI|OOM|out of memory|"
                                                                                  r"No available memory|ValueError",
                                                                                  x)][-4:]
        out["cases"][name] = entry
    out["order"] = summary["order"]
    # Whether torch.compile's cache was cold, as a pod's is: the first lease's runs shared one, so a later
    # run of a shape compiled before found it warm (its torch peak shows no compile); each of those ran again
    # in the second lease with a cache of its own (NAME-cold).
    cases = {c["name"]: c for c in json.loads((DATA / "hami-cases.json").read_text())}
    for name, entry in out["cases"].items():
        if "--enforce-eager" in cases[name]["args"]:
            entry["compile_cache"] = "none: eager"
        elif f"{name}-cold" in out["cases"]:
            entry["compile_cache"] = (f"warm: an earlier run of the same compiled shape had filled the shared cache; "
                                      f"{name}-cold ran again with one of its own")
        elif name.endswith("-cold") or cases[name].get("holdout") or cases[name].get("rerun"):
            entry["compile_cache"] = "cold: a cache of its own"
        else:
            entry["compile_cache"] = "shared by the first lease's runs; this shape compiled here first"
    (DATA / "hami-runs.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"{len(out['cases'])} cases recorded")


if __name__ == "__main__":
    main()
