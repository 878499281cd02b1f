"""Where an image's bytes come from: a `ByteSource` reads exact byte ranges of one file.

The reader never holds a whole file: it asks its source for the header's prefix,
the item headers of encapsulated Pixel Data, and the rows or fragments a frame or
window needs. `LocalFile` serves a local file with `os.pread`; object stores
(s3:// and other fsspec URLs) are served by `embedpatch.io.object_store`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from embedpatch.io.errors import ImageMissing, ImageOutsideRoot, ImageUnreadable, one_line

Range = tuple[int, int]
"""(offset, length) of a byte range."""


@runtime_checkable
class ByteSource(Protocol):
    """Random access to the bytes of one file; `name` says which in messages."""

    name: str
    size: int
    gap: int
    """Ranges closer than this are fetched as one (0: each range alone, as for local files)."""

    def read(self, offset: int, length: int) -> bytes:
        """Exactly `length` bytes at `offset`; ImageUnreadable if the file has fewer."""
        ...

    def read_ranges(self, ranges: Sequence[Range]) -> list[bytes]:
        """Each range's bytes, in the order given (a source may fetch them together)."""
        ...

    def close(self) -> None:
        """Release the file; the source cannot be used afterwards."""
        ...


def check_range(source: ByteSource, offset: int, length: int) -> None:
    """Refuse a range that does not lie inside the file (before anything is read)."""
    if offset < 0 or length < 0 or offset + length > source.size:
        raise ImageUnreadable(
            f"{source.name}: bytes [{offset}, {offset + length}) requested, "
            f"the file has {source.size} (truncated or corrupt)"
        )


def resolved_inside(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """The real path of `path`, if it lies strictly below the real path of `root`."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if real == real_root or os.path.commonpath([real, real_root]) != real_root:
        raise ImageOutsideRoot(f"{path}: resolves to {real}, outside the DICOM root {real_root}")
    return real


class LocalFile:
    """A local file read with `os.pread`; with `root`, refused unless its real path is below it."""

    gap = 0

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
        self.name = str(path)
        target = path if root is None else resolved_inside(path, root)
        try:
            self._fd = os.open(target, os.O_RDONLY)
        except FileNotFoundError:
            raise ImageMissing(f"{path}: no such file") from None
        except OSError as error:
            raise ImageUnreadable(f"{path}: cannot open ({one_line(error)})") from error
        info = os.fstat(self._fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(self._fd)
            raise ImageUnreadable(f"{path}: cannot open (not a regular file)")
        self.size = info.st_size

    def read(self, offset: int, length: int) -> bytes:
        check_range(self, offset, length)
        try:
            data = os.pread(self._fd, length, offset)
        except OSError as error:
            raise ImageUnreadable(f"{self.name}: read failed ({one_line(error)})") from error
        if len(data) != length:  # the file shrank since it was opened
            raise ImageUnreadable(f"{self.name}: {len(data)} of {length} bytes at {offset}")
        return data

    def read_ranges(self, ranges: Sequence[Range]) -> list[bytes]:
        return [self.read(offset, length) for offset, length in ranges]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class PrefixedSource:
    """A source whose first bytes are already in memory (the header's prefix): reads that
    lie inside them cost no I/O (the Basic Offset Table, the first item headers)."""

    def __init__(self, source: ByteSource, prefix: bytes) -> None:
        self._source = source
        self._prefix = prefix
        self.name = source.name
        self.size = source.size
        self.gap = source.gap

    def _inside(self, offset: int, length: int) -> bool:
        return offset + length <= len(self._prefix)

    def read(self, offset: int, length: int) -> bytes:
        check_range(self, offset, length)
        if self._inside(offset, length):
            return self._prefix[offset : offset + length]
        return self._source.read(offset, length)

    def read_ranges(self, ranges: Sequence[Range]) -> list[bytes]:
        outside = [r for r in ranges if not self._inside(*r)]
        fetched = iter(self._source.read_ranges(outside) if outside else [])
        return [self.read(*r) if self._inside(*r) else next(fetched) for r in ranges]

    def close(self) -> None:
        self._source.close()
