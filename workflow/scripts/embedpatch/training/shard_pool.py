"""The shards a training reader opens, each checked to be the one its index describes.

`PatchDataset` (over the manifest) and `open_combined` (over the combined file) read
patches from shards through a `ShardPool`: shards are opened on demand and kept open in
a small per-process LRU cache, each checked on opening against the `patches_sha256` its
index recorded (the shard's attribute of that name, `embedpatch.patches.shards`). A
shard that is missing, or that is not the one the index was built from (replaced,
rewritten with other patches, another exam's), is an error naming it, never other
pixels. An open shard stays valid: deleting or replacing its file does not change what
the open handle reads, and it is checked again when reopened.

The pool is safe to fork and to pickle: pickling drops the open files, and a process
that finds itself with files its parent opened (a fork: DataLoader workers,
multiprocessing) closes its copies and opens its own.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import h5py
import hdf5plugin  # noqa: F401 - registers the Blosc filter the shards are written with

DEFAULT_CACHE_SIZE = 64
"""Shards each process keeps open (a file descriptor and ~0.6 MB of HDF5 metadata cache each)."""

Locking = bool | str | None
"""h5py's `locking`. None, the default: HDF5's own (locks taken, and ignored where the
file system has them disabled), which is what a plain `h5py.File(path)` uses, so the
user's own opens of a shard work beside the readers (HDF5 refuses to open one file
twice in a process with other locking flags). Where locking fails on a network file
system, set HDF5_USE_FILE_LOCKING=FALSE: it applies to every open of the process."""

REBUILD = "rerun snakemake, which rewrites the shard and rebuilds the manifest and combined file"


class MissingShardError(FileNotFoundError):
    """A shard the index lists does not exist (deleted after the index was built)."""


class StaleShardError(ValueError):
    """A shard is not the one the index was built from (replaced or rewritten since)."""


class ShardPool:
    """Shards by number (their position in `paths`), opened on demand and verified.

    `digests[code]` is the `patches_sha256` shard `code` must carry; `cache_size` shards
    stay open per process; `locking` as `Locking`.
    """

    def __init__(
        self,
        paths: Sequence[str],
        digests: Sequence[str],
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        locking: Locking = None,
    ) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be at least 1, got {cache_size}")
        if len(paths) != len(digests):
            raise ValueError(f"{len(paths)} shards but {len(digests)} digests")
        self.paths = list(paths)
        self.digests = list(digests)
        self.cache_size = cache_size
        self.locking = locking
        self._new_cache()

    def _new_cache(self) -> None:
        """Start this process's cache of open shards (shard code -> its patches dataset)."""
        self._cache: OrderedDict[int, h5py.Dataset] = OrderedDict()
        self._pid = os.getpid()

    def patches(self, code: int) -> h5py.Dataset:
        """The `patches` dataset of shard `code`, opened and verified by this very process."""
        if self._pid != os.getpid():  # forked: the parent's handles are not ours to use
            self.close()
            self._new_cache()
        patches = self._cache.get(code)
        if patches is not None:
            self._cache.move_to_end(code)
            return patches
        patches = self._cache[code] = self._open(code)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)[1].file.close()
        return patches

    def _open(self, code: int) -> h5py.Dataset:
        """Shard `code`'s `patches`, read-only, without a chunk cache (a patch is one chunk
        read once an epoch; HDF5 2's default 8 MiB per open shard would keep every patch
        read), after checking it is the shard the index describes."""
        path = self.paths[code]
        try:
            file = h5py.File(path, "r", locking=self.locking, rdcc_nbytes=0)
        except FileNotFoundError:
            raise MissingShardError(f"{path}: shard missing; {REBUILD}") from None
        found = file.attrs.get("patches_sha256")
        if found != self.digests[code]:
            file.close()
            what = "has no patches_sha256 (an older shard)" if found is None else "other patches"
            raise StaleShardError(
                f"{path}: not the shard the index was built from ({what}); {REBUILD}"
            )
        return file["patches"]

    def close(self) -> None:
        """Close the shards this pool holds open (reading reopens them)."""
        while self._cache:
            self._cache.popitem()[1].file.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_cache"], state["_pid"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._new_cache()
