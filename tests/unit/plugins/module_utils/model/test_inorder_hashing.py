"""A file whose parts arrive in any order is hashed in order as they
arrive, in one pass: the digest equals the file's sha256 and the source's
multipart ETag whatever the order, memory stays within the budget (a part
over it is read back from disk when its turn comes), and parts an earlier run
left on disk are read back, not fetched. Real files; the parts are
delivered in shuffled order, chunk by chunk, as the S3 workers deliver them."""

from __future__ import annotations

import hashlib
import os
import random
import threading

import pytest

from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import (
    FileSpec, Progress, StreamDigest, progress_line, source_digest,
)
from ansible_collections.inferops.vllm.plugins.module_utils.model._inorder import BufferBudget, InOrderHasher

MIB = 1024 * 1024
PART = 2 * MIB
CHUNK = 256 * 1024


def multipart_etag(data: bytes, part: int) -> str:
    parts = [data[i:i + part] for i in range(0, len(data), part)]
    return hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest() + f"-{len(parts)}"  # noqa: S324


@pytest.fixture(scope="module")
def data():
    return os.urandom(9 * PART + 12345)


def ranges_of(size: int) -> list[tuple[int, int]]:
    return [(start, min(PART, size - start)) for start in range(0, size, PART)]


def spec_for(data: bytes) -> FileSpec:
    # Uploaded in 5 MiB parts: the ETag's parts are not the download's parts.
    sizes = [5 * MIB] * (len(data) // (5 * MIB)) + [len(data) % (5 * MIB)]
    checksum = {"algorithm": "s3-etag", "value": multipart_etag(data, 5 * MIB), "part_sizes": sizes}
    return FileSpec("w.safetensors", len(data), checksum=checksum)


def deliver(hasher: InOrderHasher, path, data: bytes, order: list[int], threads: int = 1) -> bool:
    """Write and feed the parts in ``order`` (``threads`` workers taking
    the next part as they go); True if the hasher said the file is whole."""
    ranges = hasher.ranges
    whole = []
    todo = list(order)
    lock = threading.Lock()
    fd = os.open(path, os.O_WRONLY)

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                index = todo.pop(0)
            start, length = ranges[index]
            for offset in range(start, start + length, CHUNK):
                chunk = data[offset:min(offset + CHUNK, start + length)]
                os.pwrite(fd, chunk, offset)
                hasher.feed(index, chunk)
            if hasher.part_done(index):
                whole.append(index)

    workers = [threading.Thread(target=worker) for _n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    os.close(fd)
    return len(whole) == 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_order_gives_the_files_sha256_and_multipart_etag_without_reading_back(tmp_path, data, seed):
    path = tmp_path / "partial"
    path.write_bytes(b"\0" * len(data))
    spec = spec_for(data)
    budget = BufferBudget(64 * MIB)
    hasher = InOrderHasher(spec, str(path), ranges_of(len(data)), set(), budget)
    order = list(range(len(hasher.ranges)))
    random.Random(seed).shuffle(order)
    assert deliver(hasher, path, data, order, threads=4)
    sha, value = hasher.result()
    assert sha == hashlib.sha256(data).hexdigest()
    assert value == spec.checksum["value"]
    assert hasher.bytes_read_back == 0  # one pass: nothing read back
    assert budget.used == 0 and budget.peak > 0


def test_parts_over_the_budget_are_read_back_and_memory_stays_within_it(tmp_path, data):
    path = tmp_path / "partial"
    path.write_bytes(b"\0" * len(data))
    spec = spec_for(data)
    budget = BufferBudget(3 * PART)
    hasher = InOrderHasher(spec, str(path), ranges_of(len(data)), set(), budget)
    order = list(range(len(hasher.ranges)))[::-1]  # the worst order: the frontier arrives last
    assert deliver(hasher, path, data, order)
    assert hasher.result() == (hashlib.sha256(data).hexdigest(), spec.checksum["value"])
    assert budget.peak <= 3 * PART and budget.used == 0
    assert 0 < hasher.bytes_read_back < len(data)


def test_parts_of_an_earlier_run_are_read_back_not_fetched(tmp_path, data):
    path = tmp_path / "partial"
    ranges = ranges_of(len(data))
    on_disk = {0, 1, 5, len(ranges) - 1}
    content = bytearray(len(data))
    for i in on_disk:
        start, length = ranges[i]
        content[start:start + length] = data[start:start + length]
    path.write_bytes(bytes(content))
    hasher = InOrderHasher(spec_for(data), str(path), ranges, on_disk, BufferBudget(64 * MIB))
    assert hasher.start() is False  # parts 0 and 1 hashed; 2 missing
    assert hasher.frontier == 2
    assert deliver(hasher, path, data, [i for i in range(len(ranges)) if i not in on_disk][::-1])
    assert hasher.result()[0] == hashlib.sha256(data).hexdigest()
    assert hasher.bytes_read_back == sum(ranges[i][1] for i in on_disk)


def test_a_damaged_byte_changes_the_digest(tmp_path, data):
    path = tmp_path / "partial"
    path.write_bytes(b"\0" * len(data))
    spec = spec_for(data)
    hasher = InOrderHasher(spec, str(path), ranges_of(len(data)), set(), BufferBudget(64 * MIB))
    bad = bytearray(data)
    bad[7 * PART + 3] ^= 1
    assert deliver(hasher, path, bytes(bad), list(range(len(hasher.ranges))))
    assert hasher.result()[1] != spec.checksum["value"]


def test_stream_digest_equals_reading_the_file(tmp_path, data):
    path = tmp_path / "f"
    path.write_bytes(data)
    for checksum in ({"algorithm": "md5", "value": ""}, {"algorithm": "git-sha1", "value": ""},
                     {"algorithm": "s3-CRC32", "type": "FULL_OBJECT", "value": ""}, spec_for(data).checksum):
        stream = StreamDigest(checksum, len(data))
        for offset in range(0, len(data), 777_777):  # chunks that straddle every boundary
            stream.update(data[offset:offset + 777_777])
        assert stream.result() == source_digest(str(path), checksum)


def test_progress_line_and_time_left():
    now = [0.0]
    seen = []
    progress = Progress(1000 * MIB, callback=seen.append, clock=lambda: now[0], files=4, name="Qwen/Qwen3-8B")
    progress.skip(200 * MIB)  # resumed from an earlier run: off the total
    for _step in range(4):
        now[0] += 2.0
        progress.add(100 * MIB)
    snap = progress.snapshot()
    assert snap["bytes_total"] == 800 * MIB and snap["bytes_done"] == 400 * MIB
    assert snap["recent_rate_bytes_s"] == 50 * MIB and snap["eta_s"] == 8.0
    assert progress_line(snap) == ("Qwen/Qwen3-8B: 400.0 MiB of 800.0 MiB (50.0%), 50.0 MiB/s, 8s left, 0 of 4 files "
                                   "(200.0 MiB resumed from an earlier run)")
    # The rate shown is the last WINDOW seconds': a stall shows, and the time left grows.
    now[0] += 30.0
    progress.add(1 * MIB)
    assert progress.snapshot()["recent_rate_bytes_s"] < 2 * MIB
    assert progress.snapshot()["eta_s"] > 100
    assert seen  # the callback got the lines
