# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Download a model into a directory, whatever the source, with the same
guarantees: files already complete and correct are not fetched again, every
file is verified, config.json must parse, and completion is marked last and
atomically (a marker file), so a half download is never taken for a model.

Sources are in _sources; this module is the orchestration and the
marker. It runs inside the model_fetch module and, as
``python -m ansible_collections.inferops.vllm.plugins.module_utils.model.fetch_cli``,
inside a Kubernetes Job."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field

from ansible_collections.inferops.vllm.plugins.module_utils._errors import InferopsError, ParameterError
from ansible_collections.inferops.vllm.plugins.module_utils.model._lock import LOCK, LOCK_DEFAULTS, FolderLock

MARKER = ".inferops-model-complete.json"
# 2: each file also records the source's own checksum (source_checksum), and
# verify: full checks against it. A version-1 marker is not trusted: its
# files are checked against the source once and a version-2 marker written.
MARKER_VERSION = 2
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
    # The source's own checksum when it is not a plain sha256 (see source_digest):
    # {"algorithm": ..., "value": ..., "part_sizes": [...] for a multipart S3 object}.
    checksum: dict | None = field(default=None)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def source_checksum(self) -> dict | None:
        """The checksum the source publishes for this file, strongest first."""
        if self.sha256:
            return {"algorithm": "sha256", "value": self.sha256.lower()}
        if self.checksum:
            return self.checksum
        if self.md5:
            return {"algorithm": "md5", "value": self.md5.lower()}
        return None


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
        elif segments[0] in PRIVATE_DIRS or name in (MARKER, LOCK) or name.startswith((MARKER + ".", LOCK + ".")):
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


class _Crc32:
    """zlib's CRC-32 (the one S3 calls CRC32) behind hashlib's interface."""

    def __init__(self):
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(4, "big")


class _Crt:
    """CRC32C / CRC64NVME through awscrt, when it is installed (botocore uses the same)."""

    def __init__(self, name: str):
        from awscrt import checksums  # noqa: PLC0415 - optional

        self.fn, self.width, self.value = getattr(checksums, name), 8 if name == "crc64nvme" else 4, 0

    def update(self, data: bytes) -> None:
        self.value = self.fn(data, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.width, "big")


# S3's additional checksums (x-amz-checksum-*), by the name HeadObject gives them.
S3_CHECKSUMS = {
    "SHA256": hashlib.sha256, "SHA1": hashlib.sha1, "CRC32": _Crc32,
    "CRC32C": lambda: _Crt("crc32c"), "CRC64NVME": lambda: _Crt("crc64nvme"),
}


def s3_checksum_supported(name: str) -> bool:
    try:
        S3_CHECKSUMS[name]()
    except (KeyError, ImportError):
        return False
    return True


class StreamDigest:
    """The sha256 of a file and its value in the source's own checksum,
    computed in one pass over bytes given in order (``update``), so that a
    download is hashed as it is written rather than read back.

    Algorithms: sha256, md5 (an S3 single-part ETag), git-sha1 (a hub's
    non-LFS file: git's blob id, which needs the size first), s3-etag (a
    multipart ETag: the MD5 of the parts' MD5s, '-N'), s3-<NAME> (an S3
    additional checksum, base64; a COMPOSITE one is the checksum of the
    parts' checksums, '-N')."""

    def __init__(self, checksum: dict | None, size: int | None = None):
        self.checksum = checksum
        self.whole = hashlib.sha256()
        self.other, self.part_new, self.boundaries = None, None, []
        self.offset, self.index, self.part = 0, 0, None
        if not checksum:
            return
        algo = checksum["algorithm"]
        if algo == "sha256":
            pass
        elif algo == "md5":
            self.other = hashlib.md5()  # noqa: S324 - S3's ETag, not security
        elif algo == "git-sha1":
            if size is None:
                raise ValueError("git-sha1: git's blob id needs the size first")
            self.other = hashlib.sha1(b"blob %d\0" % size)  # noqa: S324 - git's id
        elif algo == "s3-etag":
            self.other, self.part_new = hashlib.md5(), hashlib.md5  # noqa: S324
        elif algo.startswith("s3-") and algo[3:] in S3_CHECKSUMS:
            factory = S3_CHECKSUMS[algo[3:]]
            self.other = factory()
            if checksum.get("type") == "COMPOSITE":
                self.part_new = factory
        else:
            raise ValueError(f"unknown checksum algorithm {algo!r}")
        if self.part_new is not None:
            if not checksum.get("part_sizes"):
                raise ValueError(f"{algo}: a multipart checksum needs the part sizes")
            end = 0
            for part_size in checksum["part_sizes"]:
                end += part_size
                self.boundaries.append(end)
            self.part = self.part_new()

    def update(self, chunk) -> None:
        self.whole.update(chunk)
        if self.part_new is None:
            if self.other is not None:
                self.other.update(chunk)
            return
        view, boundaries = memoryview(chunk), self.boundaries
        while view:
            room = boundaries[self.index] - self.offset if self.index < len(boundaries) else len(view)
            take = view[:room]
            self.part.update(take)
            self.offset += len(take)
            view = view[len(take):]
            if self.index < len(boundaries) and self.offset == boundaries[self.index]:
                self.other.update(self.part.digest())
                self.index, self.part = self.index + 1, self.part_new()

    def result(self) -> tuple[str, str | None]:
        """(sha256 hex, the value in the source's checksum; None without one)."""
        sha = self.whole.hexdigest()
        if not self.checksum:
            return sha, None
        algo = self.checksum["algorithm"]
        if self.part_new is not None:
            if self.offset != self.boundaries[-1]:
                self.other.update(self.part.digest())  # more bytes than the parts: the value will not match
            return sha, _encode(algo, self.other.digest()) + f"-{len(self.boundaries)}"
        if algo == "sha256":
            return sha, sha
        return sha, _encode(algo, self.other.digest())


def source_digest(path: str, checksum: dict) -> tuple[str, str]:
    """Read path once; return (its sha256, its value in the source's own
    checksum ``checksum``), so that the two can be compared."""
    digest = StreamDigest(checksum, os.path.getsize(path))
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.result()


def _encode(algo: str, raw: bytes) -> str:
    # ETags and git ids are hex; S3's additional checksums are base64.
    return base64.b64encode(raw).decode() if algo.startswith("s3-") and algo != "s3-etag" else raw.hex()


CHECKSUM_NAMES = {"sha256": "sha256", "md5": "MD5 (ETag)", "s3-etag": "multipart ETag", "git-sha1": "git blob id"}


def checksum_name(checksum: dict) -> str:
    algo = checksum["algorithm"]
    return CHECKSUM_NAMES.get(algo) or f"S3 checksum {algo[3:]}"


def verify_file(path: str, spec: FileSpec) -> str:
    """Check size and the source's own checksum, if it publishes one;
    return the file's sha256. Raises VerifyFailed naming what differs."""
    check_size(spec, os.path.getsize(path))
    checksum = spec.source_checksum()
    if not checksum:
        return sha256_file(path)
    return check_digest(spec, *source_digest(path, checksum))


def check_size(spec: FileSpec, size: int) -> None:
    """Raise VerifyFailed when a copy of ``size`` bytes is not the source's size."""
    if spec.size is not None and size != spec.size:
        raise VerifyFailed(f"{spec.path}: size {size} bytes, the source says {spec.size}", file=spec.path)


def check_digest(spec: FileSpec, sha256: str, value: str | None) -> str:
    """Compare what a StreamDigest gave with the source's checksum; return
    the sha256, or raise VerifyFailed naming what differs."""
    checksum = spec.source_checksum()
    if checksum and value != checksum["value"]:
        raise VerifyFailed(f"{spec.path}: its content does not match the source's {checksum_name(checksum)} "
                           f"{checksum['value']} (the copy gives {value})", file=spec.path)
    return sha256


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
        elif full and entry.get("source_checksum"):
            # Against the source's own checksum, as recorded from the source: not a hash of the disk.
            checksum = entry["source_checksum"]
            try:
                value = source_digest(path, checksum)[1]
            except ValueError:
                value = None
            if value != checksum.get("value"):
                problems.append(f"{entry['path']}: content differs from the source's {checksum_name(checksum)}")
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
    """Bytes done out of total, the rate and the time left; written to a
    JSON file (for a long task polled with async) and/or handed to a
    callback (the CLI prints a line a person can read). Sources call it
    from many threads at once. It also carries what a source reports on
    the way (``problems``) and the check that this run still holds the
    folder (``guard``, called before each write).

    ``bytes_total`` is what this run has to download: parts a resumed
    download already holds are taken off it (``resumed``), so that a resume
    still ends at 100%."""

    WINDOW = 10.0  # seconds of history behind the rate shown and the time left

    def __init__(self, total: int, path: str | None = None, callback=None, clock=time.monotonic, every: float = 1.0,
                 guard=None, files: int = 0, name: str = ""):
        self.total, self.done, self.path, self.callback = total, 0, path, callback
        self.files_total, self.files_done, self.resumed, self.name = files, 0, 0, name
        self.problems: list[str] = []
        self.guard = guard or (lambda: None)
        self.clock, self.every = clock, every
        self.started = self.clock()
        self.last = 0.0
        self._history: list[tuple[float, int]] = [(self.started, 0)]
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            self._tick()

    def skip(self, n: int) -> None:
        """n bytes of the total were on disk already (resumed parts)."""
        with self._lock:
            self.total -= n
            self.resumed += n

    def forget_resumed(self, n: int) -> None:
        """n resumed bytes were thrown away (their file did not verify)."""
        with self._lock:
            self.resumed -= n

    def grow(self, n: int) -> None:
        """n more bytes to download (a file fetched once more)."""
        with self._lock:
            self.total += n

    def file_done(self) -> None:
        with self._lock:
            self.files_done += 1
            self._tick()

    def _tick(self) -> None:
        now = self.clock()
        if now - self.last >= self.every or (self.done >= self.total and self.files_done >= self.files_total):
            self.last = now
            self._history.append((now, self.done))
            while len(self._history) > 2 and now - self._history[1][0] >= self.WINDOW:
                self._history.pop(0)
            self._report()

    def snapshot(self) -> dict:
        now = self.clock()
        elapsed = max(now - self.started, 1e-9)
        then, done_then = self._history[0]
        recent = (self.done - done_then) / (now - then) if now - then > 1e-9 else 0.0
        left = max(self.total - self.done, 0)
        eta = round(left / recent, 1) if recent > 0 else (0.0 if not left else None)
        return {"bytes_done": self.done, "bytes_total": self.total, "rate_bytes_s": round(self.done / elapsed),
                "recent_rate_bytes_s": round(recent), "eta_s": eta, "elapsed_s": round(elapsed, 3),
                "files_done": self.files_done, "files_total": self.files_total, "bytes_resumed": self.resumed,
                "model": self.name}

    def report(self) -> None:
        with self._lock:
            self._report()

    def _report(self) -> None:
        snap = self.snapshot()
        if self.path:
            tmp = self.path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(snap, f)
            os.replace(tmp, self.path)
        if self.callback:
            self.callback(snap)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_seconds(s: float | None) -> str:
    if s is None:
        return "unknown"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(snap: dict) -> str:
    """One progress line a person can read on a long download, e.g.
    ``qwen3: 118.2 GiB of 438.1 GiB (27.0%), 912.4 MiB/s, 6m00s left, 31 of 118 files``."""
    total = snap["bytes_total"]
    percent = 100.0 * snap["bytes_done"] / total if total else 100.0
    line = (f"{snap['model'] + ': ' if snap.get('model') else ''}{human_bytes(snap['bytes_done'])} of "
            f"{human_bytes(total)} ({percent:.1f}%), {human_bytes(snap['recent_rate_bytes_s'])}/s, "
            f"{human_seconds(snap['eta_s'])} left, {snap['files_done']} of {snap['files_total']} files")
    if snap.get("bytes_resumed"):
        line += f" ({human_bytes(snap['bytes_resumed'])} resumed from an earlier run)"
    return line


def _unchanged(dest: str, identity: dict, verify: str, refresh: bool, started: float) -> tuple[dict | None, dict | None, list]:
    """(the no-change result, the marker, problems): the result when the
    folder's marker is for this source and still true."""
    marker = read_marker(dest)
    if not marker or marker.get("source") != identity or refresh:
        return None, marker, []
    problems = marker_still_true(dest, marker, full=verify == "full")
    if problems:
        return None, marker, problems
    return ({"changed": False, "dest": dest, "complete": True, "reason": "marker present and valid",
             "files": [f["path"] for f in marker["files"]], "bytes_downloaded": 0,
             "elapsed_s": round(time.monotonic() - started, 3), "source": identity}, marker, [])


def _same_checksum(spec: FileSpec, rec: dict) -> bool:
    ours, recorded = spec.source_checksum(), rec.get("source_checksum")
    if not ours:
        return True
    return bool(recorded) and (ours["algorithm"], ours["value"]) == (recorded["algorithm"], recorded["value"])


def _entry(dest: str, spec: FileSpec, digest: str) -> dict:
    st = os.stat(os.path.join(dest, spec.path))
    entry = {"path": spec.path, "size": st.st_size, "sha256": digest, "mtime_ns": st.st_mtime_ns}
    checksum = spec.source_checksum()
    if checksum:
        entry["source_checksum"] = checksum
    return entry


def fetch_model(source, dest: str, verify: str = "quick", check_mode: bool = False, refresh: bool = False,
                require_config: bool = True, progress_file: str | None = None, progress_callback=None,
                lock_timeout: float = LOCK_DEFAULTS["lock_timeout"], on_wait=None, lock_options: dict | None = None) -> dict:
    """Make ``dest`` hold the complete, verified model from ``source``.
    Returns the result dict of the model_fetch module.

    One writer per folder: everything that writes runs under the folder's
    lock (model/_lock.py). A second fetcher waits for it (up to
    ``lock_timeout`` seconds), then finds the model complete."""
    if not os.path.isabs(dest):
        raise ParameterError(f"dest: {dest!r} must be an absolute path")
    if verify not in ("quick", "full"):
        raise ParameterError(f"verify: {verify!r} is not one of quick, full")
    if lock_timeout is None or lock_timeout < 0:
        raise ParameterError(f"lock_timeout: {lock_timeout} must be 0 or more seconds "
                             f"(default {LOCK_DEFAULTS['lock_timeout']:g})")
    started = time.monotonic()
    identity = source.identity()
    done, marker, problems = _unchanged(dest, identity, verify, refresh, started)
    if done:
        return done
    if check_mode:
        return _plan(source, dest, identity, verify, marker, problems, started)[0]
    made = _first_missing(dest)
    try:
        with FolderLock(dest, lock_timeout=lock_timeout, on_wait=on_wait, **(lock_options or {})) as lock:
            # Another fetcher may have completed the folder while this one waited.
            done, marker, problems = _unchanged(dest, identity, verify, refresh, started)
            if done:
                return done
            return _download(source, dest, identity, verify, marker, problems, started, lock, require_config,
                             progress_file, progress_callback)
    except BaseException:
        if made:
            _remove_empty(made)  # bad input or an unreachable source leaves no folder behind
        raise


def _model_name(identity: dict) -> str:
    """How the progress line names the model: the hub id, or the last folder of the prefix or path."""
    name = identity.get("model_id") or identity.get("prefix") or identity.get("path") or identity.get("bucket") or ""
    return name if identity.get("model_id") else os.path.basename(str(name).rstrip("/")) or str(name)


def _first_missing(path: str) -> str | None:
    """The top-most folder of path that does not exist yet (None: all do)."""
    missing = None
    while not os.path.exists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def _remove_empty(top: str) -> None:
    for folder, _dirs, _names in os.walk(top, topdown=False):
        try:
            os.rmdir(folder)
        except OSError:
            return  # something is in it: keep it


def _plan(source, dest, identity, verify, marker, problems, started, check_mode=True):
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
                    and _same_checksum(spec, rec):
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
    return ({"changed": True, "complete": False, **would, "elapsed_s": round(time.monotonic() - started, 3)},
            todo, keep)


def _download(source, dest, identity, verify, marker, problems, started, lock, require_config, progress_file,
              progress_callback) -> dict:
    _would, todo, keep = _plan(source, dest, identity, verify, marker, problems, started, check_mode=False)
    # The marker goes first: from here until the new one is written the
    # directory must not count as a model.
    try:
        os.unlink(os.path.join(dest, MARKER))
    except FileNotFoundError:
        pass
    progress = Progress(sum(s.size or 0 for s in todo), progress_file, progress_callback, guard=lock.held,
                        files=len(todo), name=_model_name(identity))
    fetched = source.fetch(todo, dest, progress)
    problems.extend(progress.problems)
    files = [_entry(dest, spec, digest) for spec, digest in keep]
    for spec in todo:
        digest = fetched.get(spec.path) or verify_file(os.path.join(dest, spec.path), spec)
        files.append(_entry(dest, spec, digest))
    config = check_model_config(dest) if require_config else {}
    lock.held()  # never mark a folder another fetcher has taken over
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
        "transfer": dict(getattr(source, "stats", None) or {}),
    }
