# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Download a model into a directory, whatever the source, with the same
guarantees: files already complete and correct are not fetched again, every
file is verified, config.json must parse, and completion is marked last and
atomically (a marker file), so a half download is never taken for a model.

Sources are in model_sources; this module is the orchestration and the
marker. It runs inside the model_fetch module and, as
``python -m ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli``,
inside a Kubernetes Job."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass

from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError, ParameterError

MARKER = ".inferops-model-complete.json"
MARKER_VERSION = 1
# Folders inside the destination that are ours or a hub library's, not the model's.
PRIVATE_DIRS = (".cache", ".inferops-partial")
HASH_CHUNK = 8 * 1024 * 1024


class ModelInvalid(InferopsError):
    """The downloaded directory is not a usable model."""


class VerifyFailed(InferopsError):
    """A file's content does not match its size or checksum."""


@dataclass
class FileSpec:
    path: str  # relative, '/'-separated
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None  # S3 single-part ETag

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


class UnsafePath(InferopsError):
    """A file name from the source would land outside the destination, or on
    one of the destination's own bookkeeping files."""


def check_relative_path(name: str, source: str = "the source") -> str:
    """A remote file name as a path inside the destination, or UnsafePath.

    A remote name never leaves the destination: no absolute path, no '..',
    and no '.' or empty segment either (those would map two remote names to
    one file). Our own bookkeeping (the marker, the partial folder, the hub
    caches) is not the source's to write."""
    if not isinstance(name, str) or not name:
        raise UnsafePath(f"{source} lists a file with an empty name", file=name)
    reason = None
    if "\0" in name:
        reason = "it contains a NUL byte"
    elif name.startswith("/"):
        reason = "it is an absolute path"
    else:
        segments = name.split("/")
        if ".." in segments:
            reason = "it contains '..'"
        elif "" in segments or "." in segments:
            reason = "it contains an empty or '.' path segment"
        elif segments[0] in PRIVATE_DIRS or name == MARKER or name.startswith(MARKER + "."):
            reason = "it names the destination's own bookkeeping files"
    if reason:
        raise UnsafePath(f"refusing {source}'s file {name!r}: {reason}, so it would be written outside the "
                         "destination or over its bookkeeping; nothing was downloaded. Fix the source's file "
                         "names (or exclude them with ignore_patterns)", file=name)
    return name


def target_path(dest: str, name: str) -> str:
    """Where a checked remote name lands in dest; refuses a folder that
    resolves outside dest (a symlink planted inside the destination)."""
    path = os.path.join(dest, check_relative_path(name))
    root = os.path.realpath(dest)
    parent = os.path.realpath(os.path.dirname(path))
    if parent != root and not parent.startswith(root + os.sep):
        raise UnsafePath(f"refusing to write {name!r}: its folder resolves to {parent}, outside the destination "
                         f"{root} (a symbolic link inside the destination); remove the link", file=name)
    return path


def match_patterns(path: str, allow: list[str] | None, ignore: list[str] | None) -> bool:
    if allow and not any(fnmatch.fnmatch(path, p) for p in allow):
        return False
    return not (ignore and any(fnmatch.fnmatch(path, p) for p in ignore))


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def md5_file(path: str) -> str:
    digest = hashlib.md5()  # noqa: S324 - compared with S3's ETag, not used for security
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: str, spec: FileSpec) -> str:
    """Check size and any known checksum; return the file's sha256.
    Raises VerifyFailed naming what differs."""
    size = os.path.getsize(path)
    if spec.size is not None and size != spec.size:
        raise VerifyFailed(f"{spec.path}: size {size} bytes, the source says {spec.size}", file=spec.path)
    digest = sha256_file(path)
    if spec.sha256 and digest != spec.sha256.lower():
        raise VerifyFailed(f"{spec.path}: sha256 {digest} differs from the source's {spec.sha256}", file=spec.path)
    if spec.md5 and not spec.sha256 and md5_file(path) != spec.md5.lower():
        raise VerifyFailed(f"{spec.path}: MD5 differs from the source's ETag {spec.md5}", file=spec.path)
    return digest


def read_marker(dest: str) -> dict | None:
    try:
        with open(os.path.join(dest, MARKER), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("version") == MARKER_VERSION else None


def marker_still_true(dest: str, marker: dict, full: bool) -> list[str]:
    """Files the marker lists that are no longer as recorded. Quick check:
    size and mtime (as rsync does); full: the sha256 of every file."""
    problems = []
    for entry in marker.get("files", []):
        try:
            path = target_path(dest, entry["path"])
        except UnsafePath:
            problems.append(f"{entry['path']!r}: not a path inside the destination")
            continue
        try:
            st = os.stat(path)
        except OSError:
            problems.append(f"{entry['path']}: missing")
            continue
        if st.st_size != entry["size"]:
            problems.append(f"{entry['path']}: size changed")
        elif full or st.st_mtime_ns != entry.get("mtime_ns"):
            if sha256_file(path) != entry["sha256"]:
                problems.append(f"{entry['path']}: content changed")
    return problems


def write_marker(dest: str, identity: dict, files: list[dict]) -> None:
    body = {
        "version": MARKER_VERSION,
        "source": identity,
        "files": sorted(files, key=lambda f: f["path"]),
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = os.path.join(dest, MARKER + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(body, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(dest, MARKER))  # atomic: the marker exists whole or not at all


def check_model_config(dest: str) -> dict:
    path = os.path.join(dest, "config.json")
    if not os.path.isfile(path):
        raise ModelInvalid(f"{dest} has no config.json: this is not a model directory vLLM can load "
                           "(check the model id, revision, prefix or allow_patterns)")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except ValueError as exc:
        raise ModelInvalid(f"{path} does not parse as JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelInvalid(f"{path} is not a JSON object")
    return config


class Progress:
    """Bytes done out of total, and the rate; written to a JSON file (for a
    long task polled with async) and/or handed to a callback (the CLI prints)."""

    def __init__(self, total: int, path: str | None = None, callback=None, clock=time.monotonic, every: float = 1.0):
        self.total, self.done, self.path, self.callback = total, 0, path, callback
        self.clock, self.every = clock, every
        self.started = self.clock()
        self.last = 0.0

    def add(self, n: int) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self.report()

    def snapshot(self) -> dict:
        elapsed = max(self.clock() - self.started, 1e-9)
        return {"bytes_done": self.done, "bytes_total": self.total, "rate_bytes_s": round(self.done / elapsed),
                "elapsed_s": round(elapsed, 3)}

    def report(self) -> None:
        snap = self.snapshot()
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(snap, f)
            os.replace(tmp, self.path)
        if self.callback:
            self.callback(snap)


def fetch_model(source, dest: str, verify: str = "quick", check_mode: bool = False, refresh: bool = False,
                require_config: bool = True, progress_file: str | None = None, progress_callback=None) -> dict:
    """Make ``dest`` hold the complete, verified model from ``source``.
    Returns the result dict of the model_fetch module."""
    if not os.path.isabs(dest):
        raise ParameterError(f"dest: {dest!r} must be an absolute path")
    if verify not in ("quick", "full"):
        raise ParameterError(f"verify: {verify!r} is not one of quick, full")
    started = time.monotonic()
    identity = source.identity()
    marker = read_marker(dest)
    if marker and marker.get("source") == identity and not refresh:
        problems = marker_still_true(dest, marker, full=verify == "full")
        if not problems:
            return {"changed": False, "dest": dest, "complete": True, "reason": "marker present and valid",
                    "files": [f["path"] for f in marker["files"]], "bytes_downloaded": 0,
                    "elapsed_s": round(time.monotonic() - started, 3), "source": identity}
    else:
        problems = []

    source.prepare(check_mode=check_mode)
    specs = source.list_files()
    if not specs:
        raise ModelInvalid(f"the source {source.describe()} lists no files (check the id, prefix and patterns)")
    for spec in specs:  # every name is checked before anything is read or written
        check_relative_path(spec.path, source.describe())
    todo, keep = [], []
    recorded = {f["path"]: f for f in (marker or {}).get("files", [])} if marker and marker.get("source") == identity else {}
    for spec in specs:
        path = target_path(dest, spec.path)
        if os.path.isfile(path) and (spec.size is None or os.path.getsize(path) == spec.size):
            rec = recorded.get(spec.path)
            st = os.stat(path)
            if rec and verify == "quick" and rec["size"] == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns \
                    and (not spec.sha256 or spec.sha256 == rec["sha256"]):
                keep.append((spec, rec["sha256"]))
                continue
            try:
                keep.append((spec, verify_file(path, spec)))
                continue
            except VerifyFailed as exc:
                problems.append(exc.msg)
        todo.append(spec)

    would = {"dest": dest, "source": identity, "to_download": [s.path for s in todo],
             "bytes_to_download": sum(s.size or 0 for s in todo), "problems": problems}
    if check_mode:
        return {"changed": True, "complete": False, **would,
                "elapsed_s": round(time.monotonic() - started, 3)}

    os.makedirs(dest, exist_ok=True)
    # The marker goes first: from here until the new one is written the
    # directory must not count as a model.
    try:
        os.unlink(os.path.join(dest, MARKER))
    except FileNotFoundError:
        pass
    progress = Progress(sum(s.size or 0 for s in todo), progress_file, progress_callback)
    fetched = source.fetch(todo, dest, progress)
    files = []
    for spec, digest in keep:
        st = os.stat(os.path.join(dest, spec.path))
        files.append({"path": spec.path, "size": st.st_size, "sha256": digest, "mtime_ns": st.st_mtime_ns})
    for spec in todo:
        path = os.path.join(dest, spec.path)
        digest = fetched.get(spec.path) or verify_file(path, spec)
        st = os.stat(path)
        files.append({"path": spec.path, "size": st.st_size, "sha256": digest, "mtime_ns": st.st_mtime_ns})
    config = check_model_config(dest) if require_config else {}
    write_marker(dest, identity, files)
    progress.report()
    elapsed = time.monotonic() - started
    return {
        "changed": bool(todo),
        "complete": True,
        "dest": dest,
        "source": identity,
        "files": sorted(f["path"] for f in files),
        "downloaded": [s.path for s in todo],
        "bytes_downloaded": progress.done,
        "bytes_total": sum(f["size"] for f in files),
        "problems": problems,
        "architectures": config.get("architectures", []),
        "elapsed_s": round(elapsed, 3),
        "rate_bytes_s": round(progress.done / elapsed) if elapsed > 0 else None,
    }
