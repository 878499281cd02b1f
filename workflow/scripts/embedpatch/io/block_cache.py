"""A local, size-bounded cache of object store bytes, shared by processes and jobs.

Objects are cached in aligned blocks of `block_size` bytes, one file per block, named
by a hash of the object's URL, its identity (ETag, size, last-modified: a replaced
object never serves old bytes) and the block's index. A block is written under a
temporary name in its final folder and renamed, so readers on the same machine or on
a shared cluster file system see whole blocks or none, whatever runs at once. Reads
touch a block's modification time; when the cache grows past `max_bytes`, the least
recently used blocks are deleted until it is back under 90 % of it.

With a cache, every read fetches whole blocks: the stage-2 header and wrong-side reads
then serve stage 3's windows, and reruns read nothing twice.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

Range = tuple[int, int]
Fetch = Callable[[Sequence[Range]], list[bytes]]

EVICT_EVERY_BYTES = 256 << 20
"""Bytes written between two scans of the cache's size."""


class BlockCache:
    """Blocks of objects in a folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike, max_bytes: int, block_size: int = 1 << 20):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.block_size = block_size
        self._written = 0
        self._lock = threading.Lock()

    def _path(self, url: str, identity: str, block: int) -> Path:
        key = hashlib.sha256(f"{url}\n{identity}\n{self.block_size}\n{block}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key[2:]}.block"

    def _get(self, path: Path) -> bytes | None:
        try:
            data = path.read_bytes()
            os.utime(path)
        except OSError:  # absent, or evicted by another process meanwhile
            return None
        return data

    def _put(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)
        with self._lock:
            self._written += len(data)
            evict = self._written >= EVICT_EVERY_BYTES
            if evict:
                self._written = 0
        if evict:
            self.evict()

    def read_ranges(
        self, url: str, identity: str, size: int, ranges: Sequence[Range], fetch: Fetch
    ) -> list[bytes]:
        """Each range's bytes, from cached blocks, fetching (with `fetch`) and storing the
        missing blocks first; `size` is the object's size."""
        step = self.block_size
        wanted = sorted(
            {
                b
                for offset, length in ranges
                for b in range(offset // step, -(-(offset + length) // step))
            }
        )
        blocks = {b: self._get(self._path(url, identity, b)) for b in wanted}
        missing = [b for b, data in blocks.items() if data is None]
        spans = [(b * step, min(step, size - b * step)) for b in missing]
        for block, data in zip(missing, fetch(spans) if spans else [], strict=True):
            blocks[block] = data
            self._put(self._path(url, identity, block), data)
        return [self._cut(blocks, offset, length) for offset, length in ranges]

    def _cut(self, blocks: dict[int, bytes | None], offset: int, length: int) -> bytes:
        step = self.block_size
        first, last = offset // step, -(-(offset + length) // step)
        joined = b"".join(blocks[b] or b"" for b in range(first, last))
        start = offset - first * step
        return joined[start : start + length]

    def evict(self) -> int:
        """Delete least recently used blocks until under 90 % of max_bytes; bytes freed."""
        entries = []
        for path in self.folder.glob("*/*.block"):
            try:
                info = path.stat()
            except OSError:
                continue
            entries.append((info.st_mtime_ns, info.st_size, path))
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in sorted(entries):
            if total - freed <= 0.9 * self.max_bytes:
                break
            path.unlink(missing_ok=True)
            freed += size
        return freed
