# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_fetch as a command, for a Kubernetes Job or initContainer:

    python -m ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli \\
        --source s3 --bucket models --prefix qwen3 --dest /models/qwen3

Secrets come only from the environment (a Secret mounted as env), never
from flags: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
HF_TOKEN, MODELSCOPE_API_TOKEN. Prints progress to stderr and the result as
one JSON line on stdout; exits 0 when the model is complete, 1 on failure,
2 on bad arguments. Needs no Ansible."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import fetch_model, progress_line
from ansible_collections.inferops.vllm.plugins.module_utils.model._lock import LOCK_DEFAULTS
from ansible_collections.inferops.vllm.plugins.module_utils.model._sources import SOURCES, build_source


PRINT_EVERY = 10.0  # seconds between progress lines on stderr (the progress file is kept current every second)


def parse(argv: list[str] | None) -> dict:
    ap = argparse.ArgumentParser(prog="model_fetch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, choices=SOURCES)
    ap.add_argument("--dest", required=True)
    ap.add_argument("--model-id")
    ap.add_argument("--revision")
    ap.add_argument("--local-path")
    ap.add_argument("--bucket")
    ap.add_argument("--prefix", default="")
    ap.add_argument("--endpoint-url")
    ap.add_argument("--region")
    ap.add_argument("--cache-dir")
    ap.add_argument("--allow-pattern", action="append", dest="allow_patterns")
    ap.add_argument("--ignore-pattern", action="append", dest="ignore_patterns")
    ap.add_argument("--offline", action="store_true")
    ap.add_argument("--verify", choices=["quick", "full"], default="quick")
    ap.add_argument("--part-size", type=int)
    ap.add_argument("--max-concurrency", type=int)
    ap.add_argument("--connect-timeout", type=float)
    ap.add_argument("--read-timeout", type=float)
    ap.add_argument("--max-attempts", type=int)
    ap.add_argument("--no-hardlink", action="store_false", dest="hardlink")
    ap.add_argument("--progress-file")
    ap.add_argument("--lock-timeout", type=float, default=LOCK_DEFAULTS["lock_timeout"],
                    help="seconds to wait for another fetcher that holds the folder (default %(default)g)")
    args = vars(ap.parse_args(argv))
    env = os.environ.get
    args.update(access_key=env("AWS_ACCESS_KEY_ID"), secret_key=env("AWS_SECRET_ACCESS_KEY"),
                session_token=env("AWS_SESSION_TOKEN"),
                token=env("HF_TOKEN") if args["source"] == "huggingface" else env("MODELSCOPE_API_TOKEN"))
    return args


def main(argv: list[str] | None = None) -> int:
    params = parse(argv)

    shown = {"at": float("-inf"), "what": None}

    def show(snap: dict) -> None:
        # A line every PRINT_EVERY seconds and the last one (once): a long download's log stays readable.
        now, what = time.monotonic(), (snap["bytes_done"], snap["files_done"])
        if what == shown["what"] or (now - shown["at"] < PRINT_EVERY and snap["bytes_done"] < snap["bytes_total"]):
            return
        shown.update(at=now, what=what)
        sys.stderr.write(f"progress {progress_line(snap)}\n")
        sys.stderr.flush()

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        source = build_source(params)
        result = fetch_model(source, os.path.abspath(params["dest"]), verify=params["verify"],
                             progress_file=params.get("progress_file"), progress_callback=show,
                             lock_timeout=params["lock_timeout"], on_wait=say)
    except ParameterError as exc:
        emit({"failed": True, "msg": exc.msg})
        return 2
    except InferopsError as exc:
        emit({"failed": True, "msg": exc.msg, **exc.details})
        return 1
    emit(result)
    return 0


def emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
