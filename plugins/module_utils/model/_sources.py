# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where a model comes from: a local directory, S3 (or any S3-compatible
store), Hugging Face or ModelScope. Each source lists its files (with size
and checksums where it knows them) and fetches a list of them into the
destination; model_fetch does the rest."""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.inferops.vllm.plugins.module_utils._errors import (
    EndpointError, InferopsError, MissingDependency, ParameterError,
)
from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import (
    MARKER, PRIVATE_DIRS, FileSpec, StreamDigest, UnsafePath, VerifyFailed, check_digest, check_relative_path, check_size,
    match_patterns,
    s3_checksum_supported, target_path, verify_file,
)
from ansible_collections.inferops.vllm.plugins.module_utils.model._inorder import BufferBudget, InOrderHasher
from ansible_collections.inferops.vllm.plugins.module_utils.model._lock import LOCK

# How a download is tuned, in one place: the module's defaults, the command's
# and the sources' own come from here.
FETCH_DEFAULTS = {
    "part_size": 16 * 1024 * 1024,  # bytes per ranged S3 request
    # Transfers in flight, all files together: S3 ranged GETs (a large file's parts and small
    # files alike), the hubs' download workers, local files placed. AWS's S3 performance design
    # patterns scale throughput by concurrent connections and byte-range fetches of 8 or 16 MB;
    # memory for S3 is up to about twice this times part_size.
    "max_concurrency": 16,
    "connect_timeout": 10.0,  # seconds to connect, per try
    "read_timeout": 60.0,  # seconds without a byte before a try fails
    "max_attempts": 5,  # tries of each request, with backoff
}
SOURCES = ("modelscope", "huggingface", "s3", "local")
CHECKSUM_MANIFEST = "SHA256SUMS"  # "<sha256>  <path>" per line, as sha256sum writes it
PARTIAL_DIR = ".inferops-partial"


def parse_manifest(text: str) -> dict[str, str]:
    sums = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*").lstrip("./")] = parts[0].lower()
    return sums


def backoff(attempt: int, base: float = 0.5, cap: float = 10.0) -> float:
    return min(cap, base * 2 ** attempt)


COPY_CHUNK = 8 * 1024 * 1024  # bytes per read when a file is copied through this process


def _place(src: str, dst: str, hardlink: bool, spec: FileSpec) -> tuple[str, str]:
    """Put src at dst atomically (through a temporary name in the
    destination's own folder, then rename) and check it against spec:
    its sha256, or VerifyFailed.

    Cheapest first: a hard link (no bytes move); on the same filesystem,
    copy_file_range(2), which lets the filesystem copy without the bytes
    passing through this process (a reflink on XFS or Btrfs, a server-side
    copy on NFS 4.2), then one read to hash; across filesystems, one pass
    that hashes what it reads as it writes it."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    # Hub caches hold symlinks into their blob store: link the blob itself.
    src = os.path.realpath(src)
    tmp = f"{dst}.inferops-tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    how = "copied"
    if hardlink:
        try:
            os.link(src, tmp)
            how = "linked"
        except OSError:
            pass  # another filesystem, or links not allowed: copy
    if how == "copied" and os.stat(src).st_dev == os.stat(os.path.dirname(dst)).st_dev and _copy_range(src, tmp):
        how = "range-copied"
    if how == "copied":
        digest = _copy_hashing(src, tmp, spec)
    else:
        try:
            digest = verify_file(tmp, spec)
        except VerifyFailed:
            os.unlink(tmp)
            raise
    os.replace(tmp, dst)
    return digest, how


def _copy_range(src: str, dst: str) -> bool:
    """copy_file_range(2) from src to a new dst; False (and no dst) where
    the kernel or the filesystem does not offer it."""
    if not hasattr(os, "copy_file_range"):
        return False
    size = os.path.getsize(src)
    fd_in = os.open(src, os.O_RDONLY)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            done = 0
            while done < size:
                n = os.copy_file_range(fd_in, fd_out, size - done, done, done)
                if n == 0:
                    break
                done += n
        except OSError:
            done = -1
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    if done != size:
        os.unlink(dst)
        return False
    return True


def _copy_hashing(src: str, tmp: str, spec: FileSpec) -> str:
    """Copy src to tmp in one pass, hashing the bytes as they go through."""
    digest = StreamDigest(spec.source_checksum(), spec.size)
    buf = bytearray(COPY_CHUNK)
    view = memoryview(buf)
    size = 0
    try:
        with open(src, "rb", buffering=0) as fin, open(tmp, "wb", buffering=0) as fout:
            while n := fin.readinto(buf):
                digest.update(view[:n])
                write_at(fout.fileno(), view[:n], size)
                size += n
        check_size(spec, size)
        return check_digest(spec, *digest.result())
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise


class DirectorySource:
    """Files from a directory on this machine (a mounted volume, or a hub
    library's snapshot folder). Checksums come from a SHA256SUMS file when
    the directory has one."""

    kind = "local"

    def __init__(self, path: str, allow: list[str] | None = None, ignore: list[str] | None = None,
                 hardlink: bool = True, workers: int = FETCH_DEFAULTS["max_concurrency"]):
        self.path, self.allow, self.ignore, self.hardlink, self.workers = path, allow, ignore, hardlink, workers
        self.stats: dict = {}

    def identity(self) -> dict:
        return {"type": self.kind, "path": self.path, "allow_patterns": self.allow, "ignore_patterns": self.ignore}

    def describe(self) -> str:
        return f"directory {self.path}"

    def prepare(self, check_mode: bool = False) -> None:
        if not os.path.isdir(self.path):
            raise ParameterError(f"local_path: {self.path} is not a directory")

    def root(self) -> str:
        return self.path

    def list_files(self) -> list[FileSpec]:
        root = self.root()
        sums = {}
        manifest = os.path.join(root, CHECKSUM_MANIFEST)
        if os.path.isfile(manifest):
            with open(manifest, encoding="utf-8") as f:
                sums = parse_manifest(f.read())
        specs = []
        for folder, dirs, names in os.walk(root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not (folder == root and (d in PRIVATE_DIRS or d.startswith("."))))
            for name in sorted(names):
                full = os.path.join(folder, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                if rel in (MARKER, CHECKSUM_MANIFEST) or name.startswith("."):
                    continue
                if not match_patterns(rel, self.allow, self.ignore):
                    continue
                specs.append(FileSpec(rel, os.path.getsize(full), sums.get(rel)))
        return specs

    def fetch(self, specs: list[FileSpec], dest: str, progress) -> dict[str, str]:
        """Place and check every file, ``workers`` at a time (hashing is
        most of the work, and hashlib lets other threads run meanwhile)."""
        root = self.root()
        placed = {"linked": 0, "range-copied": 0, "copied": 0}

        digests = {}
        stop = threading.Event()

        def one(spec: FileSpec) -> tuple[str, str]:
            if stop.is_set():
                raise _Stopped()
            try:
                target = target_path(dest, spec.path)
                progress.guard()
                digest, how = _place(os.path.join(root, spec.path), target, self.hardlink, spec)
            except BaseException:
                stop.set()  # the first file that fails stops the rest
                raise
            progress.add(spec.size or 0)
            progress.file_done()
            return digest, how

        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(specs) or 1))) as pool:
            futures = [pool.submit(one, spec) for spec in specs]
        failed = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        if failed:  # the error that stopped the others, not a _Stopped
            raise next((e for e in failed if not isinstance(e, _Stopped)), failed[0])
        for spec, future in zip(specs, futures):
            digest, how = future.result()
            digests[spec.path] = digest
            placed[how] += 1
        self.stats = {"files_" + how.replace("-", "_"): n for how, n in placed.items()}
        return digests


HEX64, HEX40 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{40}")
HUB_NAME = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$")


class HubSource(DirectorySource):
    """A hub (Hugging Face or ModelScope) through its own library: the library
    downloads into its cache (resuming partial files, checking hashes), then
    the files are hard-linked into the destination."""

    def __init__(self, kind: str, repo_id: str, revision: str | None, cache_dir: str, token: str | None = None,
                 endpoint: str | None = None, allow: list[str] | None = None, ignore: list[str] | None = None,
                 offline: bool = False, max_attempts: int = FETCH_DEFAULTS["max_attempts"],
                 timeout: float = FETCH_DEFAULTS["read_timeout"], max_workers: int = FETCH_DEFAULTS["max_concurrency"]):
        super().__init__(path="", allow=allow, ignore=ignore, hardlink=True, workers=max_workers)
        if kind not in ("huggingface", "modelscope"):
            raise ParameterError(f"source: {kind!r} is not a hub")
        # The hubs' own rule (huggingface_hub validate_repo_id): owner/name of
        # letters, digits, '-', '_' and '.', no '--' or '..', not starting or ending with '-' or '.'.
        parts = (repo_id or "").split("/")
        if len(parts) != 2 or not all(HUB_NAME.match(x) and "--" not in x and ".." not in x for x in parts):
            raise ParameterError(f"model_id: {repo_id!r} must be 'owner/name' of letters, digits, '-', '_' and '.', "
                                 "e.g. Qwen/Qwen2.5-7B-Instruct")
        self.kind, self.repo_id, self.revision = kind, repo_id, revision
        self.cache_dir, self.token, self.endpoint, self.offline = cache_dir, token, endpoint, offline
        self.max_attempts, self.timeout, self.max_workers = max_attempts, timeout, max_workers
        self.snapshot = None

    def identity(self) -> dict:
        return {"type": self.kind, "model_id": self.repo_id, "revision": self.revision or self.default_revision(),
                "allow_patterns": self.allow, "ignore_patterns": self.ignore}

    def default_revision(self) -> str:
        return "main" if self.kind == "huggingface" else "master"

    def hub_name(self) -> str:
        return "Hugging Face" if self.kind == "huggingface" else "ModelScope"

    def describe(self) -> str:
        return f"{self.hub_name()} model {self.repo_id}@{self.revision or self.default_revision()}"

    def root(self) -> str:
        return self.snapshot

    def list_files(self) -> list[FileSpec]:
        specs = super().list_files()
        if self.kind == "huggingface":
            # huggingface_hub stores each file as blobs/<etag> (file_download.py: blob_path = blobs/<etag>),
            # the etag being the hub's X-Linked-Etag: the sha256 of an LFS file (entry.lfs_sha256 for Xet
            # files), else git's blob id (sha1). The snapshot's symlink names the hub's own hash.
            for spec in specs:
                if spec.sha256:
                    continue
                blob = os.path.basename(os.path.realpath(os.path.join(self.root(), spec.path)))
                if HEX64.fullmatch(blob):
                    spec.sha256 = blob
                elif HEX40.fullmatch(blob):
                    spec.checksum = {"algorithm": "git-sha1", "value": blob}
        return specs

    def _download(self, local_only: bool) -> str:
        if self.kind == "huggingface":
            try:
                from huggingface_hub import constants, snapshot_download
            except ImportError as exc:
                raise MissingDependency(f"source huggingface needs the huggingface_hub library: {exc}") from exc
            # A stalled transfer must end: the library's own read timeout.
            constants.HF_HUB_DOWNLOAD_TIMEOUT = self.timeout
            constants.HF_HUB_ETAG_TIMEOUT = self.timeout
            return snapshot_download(self.repo_id, revision=self.revision, cache_dir=self.cache_dir,
                                     token=self.token or None, endpoint=self.endpoint,
                                     local_files_only=local_only, allow_patterns=self.allow,
                                     ignore_patterns=self.ignore, max_workers=self.max_workers)
        try:
            from modelscope import snapshot_download as ms_snapshot_download
        except ImportError as exc:
            raise MissingDependency(f"source modelscope needs the modelscope library: {exc}") from exc
        return ms_snapshot_download(model_id=self.repo_id, revision=self.revision, cache_dir=self.cache_dir,
                                    token=self.token or None, endpoint=self.endpoint, local_files_only=local_only,
                                    allow_patterns=self.allow, ignore_patterns=self.ignore,
                                    max_workers=self.max_workers)

    def prepare(self, check_mode: bool = False) -> None:
        # Check mode may not download: it reads what the cache already holds.
        local_only = self.offline or check_mode
        last = None
        for attempt in range(self.max_attempts):
            try:
                self.snapshot = self._download(local_only)
                return
            except (MissingDependency, ParameterError):
                raise
            except Exception as exc:  # noqa: BLE001 - the libraries raise many kinds; all are reported
                last = exc
                if local_only or not _retryable(exc):
                    break
                time.sleep(backoff(attempt))  # the library resumes partial files on the next try
        where = self.endpoint or ("the Hugging Face hub" if self.kind == "huggingface" else "the ModelScope hub")
        if local_only:
            raise EndpointError(
                f"{self.describe()} is not in the local cache {self.cache_dir} and downloads are off "
                f"({'check mode' if check_mode and not self.offline else 'offline: true'}): {_short(last)}. "
                "Fill the cache first, or turn offline off where the hub is reachable") from last
        raise EndpointError(
            f"cannot download {self.describe()} from {where} after {self.max_attempts} tries: {_short(last)}. "
            "Check the network or proxy, or give endpoint: a reachable mirror; for an air-gapped site pre-fill "
            "cache_dir and set offline: true", reachable=False) from last


def _short(exc) -> str:
    text = f"{exc.__class__.__name__}: {exc}" if exc else "no error recorded"
    return text.splitlines()[0][:400]


def _retryable(exc: Exception) -> bool:
    """Network trouble is retried; a missing repository or a refused token is not."""
    name = exc.__class__.__name__
    if name in ("RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError", "EntryNotFoundError",
                "NotExistError", "InvalidParameter", "CacheNotFound", "LocalEntryNotFoundError"):
        return False
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status is None or status >= 500 or status == 429


class S3Source:
    """An S3 bucket and prefix. Listing gives sizes and ETags (an MD5 for
    single-part uploads); a SHA256SUMS object under the prefix gives sha256.
    Large files come down in ranged parts, in parallel, into a partial file
    whose finished parts are recorded, so an interrupted download resumes."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str | None = None, region: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None, session_token: str | None = None,
                 allow: list[str] | None = None, ignore: list[str] | None = None,
                 part_size: int = FETCH_DEFAULTS["part_size"], max_concurrency: int = FETCH_DEFAULTS["max_concurrency"],
                 connect_timeout: float = FETCH_DEFAULTS["connect_timeout"],
                 read_timeout: float = FETCH_DEFAULTS["read_timeout"], max_attempts: int = FETCH_DEFAULTS["max_attempts"],
                 on_part_done=None):
        if not bucket:
            raise ParameterError("bucket: the S3 bucket is required")
        if part_size < 5 * 1024 * 1024:
            raise ParameterError(f"part_size: {part_size} is below 5 MiB; use at least 5242880")
        if bool(access_key) != bool(secret_key):
            raise ParameterError("access_key and secret_key: give both, or neither (then the usual AWS "
                                 "environment variables or instance credentials are used)")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url, self.region = endpoint_url, region
        self._credentials = (access_key, secret_key, session_token)
        self.allow, self.ignore = allow, ignore
        self.part_size, self.max_concurrency = part_size, max_concurrency
        self.connect_timeout, self.read_timeout, self.max_attempts = connect_timeout, read_timeout, max_attempts
        self.on_part_done = on_part_done
        self.stopping = threading.Event()
        self.stats: dict = {}
        self._client = None
        self._local = threading.local()

    def identity(self) -> dict:
        return {"type": "s3", "endpoint": self.endpoint_url, "bucket": self.bucket, "prefix": self.prefix,
                "allow_patterns": self.allow, "ignore_patterns": self.ignore}

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" + (f" at {self.endpoint_url}" if self.endpoint_url else "")

    def client(self):
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise MissingDependency(f"source s3 needs boto3: {exc}") from exc
        access, secret, token = self._credentials
        session = boto3.session.Session(aws_access_key_id=access or None, aws_secret_access_key=secret or None,
                                        aws_session_token=token or None, region_name=self.region or "us-east-1")
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(
            connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"}, max_pool_connections=max(10, self.max_concurrency * 2)))

    def prepare(self, check_mode: bool = False) -> None:
        self._client = self.client()

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - botocore's errors, reported with what was being done
            raise _s3_error(what, self, exc) from exc

    def list_files(self) -> list[FileSpec]:
        prefix = f"{self.prefix}/" if self.prefix else ""
        paginator = self._client.get_paginator("list_objects_v2")
        objects = []
        pages = self._call("listing", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix)))
        for page in pages:
            objects += page.get("Contents", [])
        sums = {}
        if any(o["Key"] == prefix + CHECKSUM_MANIFEST for o in objects):
            body = self._call("reading SHA256SUMS", self._client.get_object, Bucket=self.bucket,
                              Key=prefix + CHECKSUM_MANIFEST)["Body"].read().decode()
            sums = parse_manifest(body)
        specs = []
        for o in objects:
            rel = o["Key"][len(prefix):]
            if not rel or rel.endswith("/") or rel in (CHECKSUM_MANIFEST, MARKER, LOCK) \
                    or rel.startswith(LOCK + ".") or rel.split("/", 1)[0] in PRIVATE_DIRS:
                continue  # a copy of a fetched folder carries our bookkeeping: not the model's
            if not match_patterns(rel, self.allow, self.ignore):
                continue
            specs.append(FileSpec(rel, o["Size"], sums.get(rel)))
        self._etags = {o["Key"][len(prefix):]: o.get("ETag", "") for o in objects}
        for spec in specs:  # a hostile name is refused before any request about it
            check_relative_path(spec.path, self.describe())
        # The object's own checksum, for each file SHA256SUMS does not cover (HEAD each, in parallel).
        need = [spec for spec in specs if not spec.sha256]
        if need:
            with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
                for spec, checksum in zip(need, pool.map(self._object_checksum, need)):
                    spec.checksum = checksum
        return specs

    def _key(self, path: str) -> str:
        return f"{self.prefix}/{path}" if self.prefix else path

    def _object_checksum(self, spec: FileSpec) -> dict | None:
        """What S3 publishes about this object's content, strongest first:
        an additional checksum (x-amz-checksum-sha256/-sha1, asked for with
        ChecksumMode=ENABLED), else the ETag, else a CRC checksum. The ETag
        is the content's MD5 for a single-part upload and the MD5 of the
        parts' MD5s with '-N' for a multipart one (AWS and MinIO alike,
        MinIO cmd/object-api-utils.go getCompleteMultipartMD5), except under
        SSE-C or SSE-KMS, where it is not derived from the content (the
        AWS S3 API reference, Object.ETag)."""
        key = self._key(spec.path)
        head = self._call(f"reading the checksum of {spec.path}", self._client.head_object, Bucket=self.bucket,
                          Key=key, ChecksumMode="ENABLED")
        etag = head.get("ETag", "").strip('"').lower()
        encrypted = bool(head.get("SSECustomerAlgorithm")) or str(head.get("ServerSideEncryption", "")).startswith("aws:kms")

        def additional(name: str) -> dict | None:
            value = head.get(f"Checksum{name}")
            if not value or not s3_checksum_supported(name):
                return None
            kind = head.get("ChecksumType") or ("COMPOSITE" if "-" in value else "FULL_OBJECT")
            checksum = {"algorithm": f"s3-{name}", "value": value, "type": kind}
            return self._with_parts(spec, checksum, value) if kind == "COMPOSITE" else checksum

        for name in ("SHA256", "SHA1"):
            if found := additional(name):
                return found
        if etag and not encrypted:
            if re.fullmatch(r"[0-9a-f]{32}", etag):
                return {"algorithm": "md5", "value": etag}
            if re.fullmatch(r"[0-9a-f]{32}-[0-9]+", etag):
                return self._with_parts(spec, {"algorithm": "s3-etag", "value": etag}, etag)
        for name in ("CRC64NVME", "CRC32C", "CRC32"):
            if found := additional(name):
                return found
        return None  # nothing published: size only (say so in the docs)

    def _with_parts(self, spec: FileSpec, checksum: dict, value: str) -> dict:
        """Add the part sizes a multipart checksum is made over. HEAD with
        partNumber answers one part's length and the object's part count
        (x-amz-mp-parts-count): from the first and the last part the sizes
        are those of a uploader with one part size (boto3, the AWS CLI,
        mc, s5cmd); a file that then does not match is asked part by part
        before it is called corrupt (part_sizes_exact)."""
        count = int(value.rsplit("-", 1)[1])
        key = self._key(spec.path)
        first = self._call(f"reading the parts of {spec.path}", self._client.head_object, Bucket=self.bucket,
                           Key=key, PartNumber=1)
        size_1, total = first["ContentLength"], spec.size or 0
        last = total - size_1 * (count - 1)
        if count == 1 or 0 < last <= size_1:
            sizes = [size_1] * (count - 1) + [last if count > 1 else total]
            return {**checksum, "part_sizes": sizes, "part_sizes_exact": count == 1}
        return {**checksum, "part_sizes": self.part_sizes(spec.path, count), "part_sizes_exact": True}

    def part_sizes(self, path: str, count: int) -> list[int]:
        key = self._key(path)
        return [self._call(f"reading part {n} of {path}", self._client.head_object, Bucket=self.bucket, Key=key,
                           PartNumber=n)["ContentLength"] for n in range(1, count + 1)]

    def _verify(self, transfer: "_Transfer") -> str:
        """The file's sha256 once its streamed digest matches the source's
        checksum; raises VerifyFailed otherwise."""
        spec = transfer.spec
        check_size(spec, os.path.getsize(transfer.partial))
        try:
            return check_digest(spec, *transfer.hasher.result())
        except VerifyFailed:
            checksum = spec.checksum or {}
            if "part_sizes" not in checksum or checksum.get("part_sizes_exact"):
                raise
            # The part sizes were inferred: ask for each before calling the file corrupt.
            exact = self.part_sizes(spec.path, len(checksum["part_sizes"]))
            spec.checksum = {**checksum, "part_sizes": exact, "part_sizes_exact": True}
            if exact == checksum["part_sizes"]:
                raise
            return verify_file(transfer.partial, spec)  # the one case that reads a file back

    def fetch(self, specs: list[FileSpec], dest: str, progress) -> dict[str, str]:
        """Download (or resume) every file: ``max_concurrency`` ranged GETs in
        flight at once, over all files together (a large file's parts and
        small files alike), each file hashed in order as its bytes arrive
        (_inorder.py) and checked against the source's checksum once its
        last part is in. Returns {path: sha256}."""
        partial_dir = os.path.join(dest, PARTIAL_DIR)
        os.makedirs(partial_dir, exist_ok=True)
        if os.path.islink(partial_dir):
            raise UnsafePath(f"{partial_dir} is a symbolic link; the partial files must stay inside the "
                             "destination: remove the link")
        self.budget = BufferBudget(self.max_concurrency * self.part_size)
        self.stopping = threading.Event()
        queue = _PartQueue(self, specs, dest, progress)
        workers = [threading.Thread(target=queue.work, name=f"s3-fetch-{n}", daemon=True)
                   for n in range(min(self.max_concurrency, max(1, queue.parts_left())))]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if queue.error is not None:
            raise queue.error
        # Bytes hashed from the partial files rather than as they arrived: parts an
        # earlier run left, and parts that found the memory budget spent.
        self.stats = {"bytes_hashed_from_disk": queue.bytes_read_back, "buffer_peak_bytes": self.budget.peak}
        return queue.digests

    def part_count(self, size: int) -> int:
        """Ranged GETs for a file of size bytes (one, for an empty file)."""
        return max(1, -(-size // self.part_size))

    def _open(self, spec: FileSpec, dest: str, progress, fresh: bool) -> "_Transfer":
        """The partial file of spec and what of it an earlier run finished
        (its state file records the parts done; they count only while the
        object's ETag, size and part size are the same). ``fresh``: start
        from nothing (a copy that did not verify)."""
        partial_dir = os.path.join(dest, PARTIAL_DIR)
        safe = spec.path.replace("/", "__")
        partial, state_path = os.path.join(partial_dir, safe), os.path.join(partial_dir, safe + ".json")
        etag = self._etags.get(spec.path, "")
        size = spec.size or 0
        count = self.part_count(size)
        ranges = [(i * self.part_size, min(self.part_size, size - i * self.part_size) if size else 0)
                  for i in range(count)]
        state = {"etag": etag, "size": size, "part_size": self.part_size, "done": []}
        if not fresh:
            try:
                with open(state_path, encoding="utf-8") as f:
                    saved = json.load(f)
                if (saved.get("etag"), saved.get("size"), saved.get("part_size")) == (etag, size, self.part_size) \
                        and os.path.exists(partial):
                    state = saved
            except (OSError, ValueError):
                pass
        done = {i for i in state["done"] if 0 <= i < count}
        if not done:
            progress.guard()
            with open(partial, "wb") as f:
                f.truncate(size)
        resumed_bytes = sum(ranges[i][1] for i in done)
        progress.skip(resumed_bytes)
        hasher = InOrderHasher(spec, partial, ranges, done, self.budget)
        return _Transfer(spec, partial, state_path, etag, ranges, done, state, hasher, resumed_bytes)

    def _get_part(self, t: "_Transfer", index: int, progress) -> None:
        """One ranged GET into its place in the partial file, each chunk
        hashed or kept as it arrives. A try that breaks off mid-body is
        continued from the byte it reached (the object may not change
        meanwhile: If-Match), so no byte is fetched or hashed twice."""
        key = self._key(t.spec.path)
        start, length = t.ranges[index]
        size = t.spec.size or 0
        received, last = 0, None
        fd = os.open(t.partial, os.O_WRONLY)
        try:
            for attempt in range(self.max_attempts):
                if self.stopping.is_set():
                    raise _Stopped()  # another part failed: the run is over
                if size and received == length:
                    return  # the body broke off after its last byte
                try:
                    kwargs = {"Bucket": self.bucket, "Key": key}
                    if size:
                        kwargs["Range"] = f"bytes={start + received}-{start + length - 1}"
                    if t.etag:
                        kwargs["IfMatch"] = t.etag  # the object must not change under a resumed download
                    body = self._client.get_object(**kwargs)["Body"]
                    for chunk in body_chunks(body, self._buffer()):
                        progress.guard()  # stop at once if another fetcher took the folder over
                        if size and received + len(chunk) > length:
                            raise OSError(f"part {index}: more than the {length} bytes asked for")
                        try:
                            with t.write_lock:  # one writer per file: threads queue here rather than spin on the inode
                                write_at(fd, chunk, start + received)
                            t.hasher.feed(index, chunk)
                            progress.add(len(chunk))
                        except OSError as exc:  # the disk, not the network: not retried
                            raise LocalWriteFailed(f"writing {t.spec.path} into {t.partial}: {exc}",
                                                   file=t.spec.path) from exc
                        received += len(chunk)
                    if size and received != length:
                        raise OSError(f"part {index}: the body ended at {received} of {length} bytes")
                    return
                except InferopsError:
                    raise  # the lock was lost: not a network error
                except Exception as exc:  # noqa: BLE001 - network errors mid-body are retried here
                    last = exc
                    if _s3_status(exc) in (403, 404, 412):
                        raise _s3_error(f"downloading {t.spec.path}", self, exc) from exc
                    time.sleep(backoff(attempt))
            raise _s3_error(f"downloading {t.spec.path} (part {index + 1} of {len(t.ranges)}, "
                            f"{self.max_attempts} tries)", self, last)
        finally:
            os.close(fd)

    def _buffer(self) -> bytearray:
        """This worker thread's read buffer, reused for every part it fetches."""
        buf = getattr(self._local, "buffer", None)
        if buf is None:
            buf = self._local.buffer = bytearray(READ_CHUNK)
        return buf

    def _part_done(self, t: "_Transfer", index: int, progress) -> bool:
        """Record a finished part (so a later run resumes after it); True
        once the whole file is in and hashed."""
        with t.lock:
            t.done.add(index)
            progress.guard()
            tmp = t.state_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({**t.state, "done": sorted(t.done)}, f)
            os.replace(tmp, t.state_path)
            count = len(t.done)
        if self.on_part_done:
            self.on_part_done(t.spec.path, index, count, len(t.ranges))
        return t.hasher.part_done(index)

    def _finish(self, t: "_Transfer", dest: str, progress) -> str | None:
        """Check the whole file and move it into place: its sha256, or None
        when it did not match and is to be fetched once more (raises on
        the second mismatch)."""
        try:
            digest = self._verify(t)
        except VerifyFailed as exc:
            progress.guard()
            for path in (t.partial, t.state_path):
                if os.path.exists(path):
                    os.unlink(path)
            if t.attempt == 2:
                raise VerifyFailed(f"{exc.msg}. Fetched twice from {self.describe()} and the copy differed "
                                   "both times: it was removed and the folder is not marked complete. Check "
                                   "the network path (a proxy that rewrites bodies) or the object itself",
                                   file=t.spec.path) from exc
            progress.problems.append(f"{exc.msg} ({'resumed download' if t.resumed else 'download'}): "
                                     "removed and fetched again")
            return None
        progress.guard()
        target = target_path(dest, t.spec.path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(t.partial, target)
        os.unlink(t.state_path)
        progress.file_done()
        return digest


READ_CHUNK = 1024 * 1024  # bytes per read of a response body


def body_chunks(body, buf: bytearray):
    """The bytes of a GetObject response body, as views of ``buf``, which
    is reused: each view is valid until the next one is asked for.

    botocore's StreamingBody.read() goes through urllib3 and http.client,
    which allocate and copy every chunk twice; with the data read straight
    from the connection into one buffer per worker, a download saves a copy
    and an allocation of every chunk (docs/model_fetch.md), which counts
    when hashing shares the cores. That takes the two libraries' inner objects
    (StreamingBody._raw_stream, urllib3's HTTPResponse._fp, http.client's
    HTTPResponse), whose public readinto() then reads without a copy;
    botocore hands urllib3 decode_content=False, so the bytes are the same
    either way. Where they are not there (another botocore or urllib3 than
    the pinned ones, or a checksum-validating body), read() is used."""
    raw = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    if type(body).__name__ != "StreamingBody" or not isinstance(fp, http.client.HTTPResponse):
        while chunk := body.read(len(buf)):
            yield chunk
        return
    view = memoryview(buf)
    try:
        while n := fp.readinto(buf):
            yield view[:n]
    except BaseException:
        raw.close()  # broken off: this connection is not reused
        raise
    raw.release_conn()  # read to its end: the connection goes back to the pool


def write_at(fd: int, data, offset: int) -> None:
    """pwrite all of data (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


class _Stopped(Exception):
    """A worker stopped because another one failed first."""


class LocalWriteFailed(InferopsError):
    """Writing into the destination failed (a full disk, a read-only volume): not retried as a network error."""


class _Transfer:
    """One file on its way down: its partial file, its parts and their state, its digest."""

    def __init__(self, spec, partial, state_path, etag, ranges, done, state, hasher, resumed_bytes):
        self.spec, self.partial, self.state_path, self.etag = spec, partial, state_path, etag
        self.ranges, self.done, self.state, self.hasher = ranges, done, state, hasher
        self.resumed, self.resumed_bytes = bool(done), resumed_bytes  # parts an earlier run left
        self.todo = [i for i in range(len(ranges)) if i not in done]
        self.attempt = 1
        self.lock = threading.Lock()
        self.write_lock = threading.Lock()


class _PartQueue:
    """Who fetches which part. Each worker takes a file of its own and
    fetches its parts in order, so that each part arrives at its file's
    hashing frontier and nothing waits in memory; with more workers than
    files left, a worker without a file helps the file with the most parts
    left, taking its next part (which then waits its turn, within the
    budget). A file is opened when its first part is taken; one that did not
    verify goes back to the front to be fetched once more, by every worker
    that has nothing else to do (they wait for that until the last file is
    closed). The first error stops every worker before its next part."""

    def __init__(self, source: S3Source, specs: list[FileSpec], dest: str, progress):
        self.source, self.dest, self.progress = source, dest, progress
        self.specs = list(specs)
        self.again: list[FileSpec] = []
        self.digests: dict[str, str] = {}
        self.error: BaseException | None = None
        self.bytes_read_back = 0
        self.open_transfers: list[_Transfer] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def parts_left(self) -> int:
        return sum(self.source.part_count(s.size or 0) for s in self.specs)

    def _next(self, mine: "_Transfer | None"):
        """("part", transfer, index, opened), ("finish", transfer, None,
        True) for a file an earlier run left whole on disk, or None when
        there is no more. ``opened``: the file was opened for this part."""
        with self._lock:
            while self.error is None:
                if mine is not None and mine.todo:
                    return "part", mine, mine.todo.pop(0), False
                if self.again:
                    spec, fresh = self.again.pop(0), True
                elif self.specs:
                    spec, fresh = self.specs.pop(0), False
                else:
                    busiest = max(self.open_transfers, key=lambda t: len(t.todo), default=None)
                    if busiest is not None and busiest.todo:
                        return "part", busiest, busiest.todo.pop(0), False
                    if not self.open_transfers:
                        return None
                    # Files are still coming down: one of them may not verify and be fetched again.
                    self._changed.wait()
                    mine = None
                    continue
                mine = self.source._open(spec, self.dest, self.progress, fresh)
                mine.attempt = 2 if fresh else 1
                self.open_transfers.append(mine)
                if not mine.todo:
                    return "finish", mine, None, True
                return "part", mine, mine.todo.pop(0), True
            return None

    def work(self) -> None:
        mine = None
        try:
            while (item := self._next(mine)) is not None:
                kind, transfer, index, opened = item
                mine = transfer
                # Parts an earlier run left at the front are hashed from disk first, so
                # that this worker's parts arrive at the frontier rather than wait in memory.
                whole = transfer.hasher.start() if opened else False
                if kind == "part":
                    self.source._get_part(transfer, index, self.progress)
                    whole = self.source._part_done(transfer, index, self.progress)
                if whole:
                    self._close(transfer)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
            with self._lock:
                if self.error is None:
                    self.error = exc
                self.source.stopping.set()
                for transfer in self.open_transfers:
                    transfer.hasher.release()
                self._changed.notify_all()

    def _close(self, transfer: _Transfer) -> None:
        digest = self.source._finish(transfer, self.dest, self.progress)
        with self._lock:
            self.bytes_read_back += transfer.hasher.bytes_read_back
            self.open_transfers.remove(transfer)
            if digest is None:
                self.again.append(transfer.spec)
                self.progress.grow(transfer.spec.size or 0)
                self.progress.forget_resumed(transfer.resumed_bytes)
            else:
                self.digests[transfer.spec.path] = digest
            self._changed.notify_all()


def _s3_status(exc) -> int | None:
    return (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")


def _s3_error(what: str, source: S3Source, exc) -> EndpointError:
    code = ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code")
    status = _s3_status(exc)
    hint = ""
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied") or status == 403:
        hint = " (the credentials were refused: check access_key/secret_key or the Secret they come from)"
    elif code == "NoSuchBucket":
        hint = f" (bucket {source.bucket!r} does not exist)"
    elif code == "PreconditionFailed" or status == 412:
        hint = " (the object changed while it was being downloaded: run again to fetch the new version)"
    elif status is None:
        hint = " (is the endpoint reachable? connect_timeout/read_timeout bound each try)"
    return EndpointError(f"S3 {what} of {source.describe()} failed: {_short(exc)}{hint}", status=status, code=code)


def fetch_setting(p: dict, name: str):
    """A tuning value from the parameters, or its default; zero or less is
    refused (it would mean no progress at all), not silently replaced."""
    value = p.get(name)
    if value is None:
        return FETCH_DEFAULTS[name]
    if value <= 0:
        raise ParameterError(f"{name}: {value} must be more than 0 (default {FETCH_DEFAULTS[name]})")
    return value


def build_source(p: dict, on_part_done=None):
    """A source from the model_fetch module's parameters (the CLI builds the
    same dict from its flags and environment)."""
    kind = p["source"]
    allow, ignore = p.get("allow_patterns") or None, p.get("ignore_patterns") or None
    tuning = {name: fetch_setting(p, name) for name in FETCH_DEFAULTS}
    if kind == "local":
        if not p.get("local_path"):
            raise ParameterError("local_path: required with source: local")
        return DirectorySource(p["local_path"], allow, ignore, hardlink=p.get("hardlink", True),
                               workers=tuning["max_concurrency"])
    if kind == "s3":
        if not p.get("bucket"):
            raise ParameterError("bucket: required with source: s3")
        return S3Source(p["bucket"], p.get("prefix") or "", p.get("endpoint_url"), p.get("region"),
                        p.get("access_key"), p.get("secret_key"), p.get("session_token"), allow, ignore,
                        on_part_done=on_part_done, **tuning)
    if kind in ("huggingface", "modelscope"):
        if not p.get("model_id"):
            raise ParameterError(f"model_id: required with source: {kind}")
        cache_dir = p.get("cache_dir") or os.path.join(p["dest"], ".cache", kind)
        return HubSource(kind, p["model_id"], p.get("revision"), cache_dir, p.get("token"), p.get("endpoint_url"),
                         allow, ignore, offline=p.get("offline", False), max_attempts=tuning["max_attempts"],
                         timeout=tuning["read_timeout"], max_workers=tuning["max_concurrency"])
    raise ParameterError(f"source: {kind!r} is not one of {', '.join(SOURCES)}")
