# -*- coding: utf-8 -*-
# Copyright: inferops.vllm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One file's bytes hashed in order while its parts arrive in any order, so
that a download is one pass over the data: no file is read back to be
verified.

A file comes down in ranged parts, several at once. sha256 (and an S3
ETag or CRC) can only take the bytes in order, so the part at the hashing
frontier is hashed as its chunks arrive; a part ahead of it keeps its chunks
in memory until the frontier reaches it, within a budget shared by every
file in flight (``BufferBudget``). A part that finds the budget spent drops
what it kept and is read back from the partial file when its turn comes, as
are the parts an earlier, interrupted run left on disk: memory stays bounded
whatever the network does, and the only bytes read twice are those."""

from __future__ import annotations

import os
import threading

from ansible_collections.inferops.vllm.plugins.module_utils.model._fetch import HASH_CHUNK, FileSpec, StreamDigest


class BufferBudget:
    """Bytes that parts waiting for their turn to be hashed may hold in memory, all files together."""

    def __init__(self, limit: int):
        self.limit, self.used, self.peak = limit, 0, 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.limit:
                return False
            self.used += n
            self.peak = max(self.peak, self.used)
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


class InOrderHasher:
    """The digest of one file whose parts (``ranges``: (start, length) each,
    in file order) are written in any order. ``on_disk``: parts already in
    the partial file (a resumed download): they are read back when their
    turn comes. ``feed`` is called with each chunk of a part in order;
    ``part_done`` when a part is complete; it returns True once the whole
    file is hashed, and ``result()`` then gives (sha256, source value)."""

    def __init__(self, spec: FileSpec, partial: str, ranges: list[tuple[int, int]], on_disk: set[int],
                 budget: BufferBudget):
        self.spec, self.partial, self.ranges, self.budget = spec, partial, ranges, budget
        self.digest = StreamDigest(spec.source_checksum(), spec.size)
        self.frontier = 0
        self.complete = set(on_disk)
        self.from_disk = set(on_disk)  # parts whose bytes are read back: resumed, or over the budget
        self.buffers: dict[int, list[bytes]] = {}
        self.bytes_read_back = 0
        self._lock = threading.Lock()

    def feed(self, index: int, chunk: bytes) -> None:
        with self._lock:
            if index in self.from_disk:
                return
            if index == self.frontier:
                self.digest.update(chunk)
                return
            if self.budget.take(len(chunk)):
                # A copy: the caller reuses its buffer for the next chunk.
                self.buffers.setdefault(index, []).append(bytes(chunk))
                return
            # Over the budget: this part is read back from disk when its turn comes.
            self._drop(index)
            self.from_disk.add(index)

    def part_done(self, index: int) -> bool:
        with self._lock:
            self.complete.add(index)
            return self._advance()

    def start(self) -> bool:
        """Hash what is already on disk at the front; True if that is all of it."""
        with self._lock:
            return self._advance()

    def _advance(self) -> bool:
        while self.frontier < len(self.ranges) and self.frontier in self.complete:
            index = self.frontier
            if index in self.from_disk:
                self._read_back(index)
            else:
                self._flush(index)
            self.frontier += 1
            if self.frontier < len(self.ranges) and self.frontier not in self.from_disk:
                # The part now at the frontier may be half arrived: what it kept goes in now,
                # the rest is hashed as it arrives.
                self._flush(self.frontier)
        return self.frontier == len(self.ranges)

    def _flush(self, index: int) -> None:
        for chunk in self.buffers.pop(index, ()):
            self.digest.update(chunk)
            self.budget.give(len(chunk))

    def _drop(self, index: int) -> None:
        self.budget.give(sum(len(c) for c in self.buffers.pop(index, ())))

    def _read_back(self, index: int) -> None:
        start, length = self.ranges[index]
        fd = os.open(self.partial, os.O_RDONLY)
        try:
            offset, end = start, start + length
            while offset < end:
                chunk = os.pread(fd, min(HASH_CHUNK, end - offset), offset)
                if not chunk:
                    break  # shorter than recorded: the size check fails it
                self.digest.update(chunk)
                offset += len(chunk)
                self.bytes_read_back += len(chunk)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Give back what the parts kept (the download stopped)."""
        with self._lock:
            for index in list(self.buffers):
                self._drop(index)

    def result(self) -> tuple[str, str | None]:
        return self.digest.result()
