"""One HDF5 file over all shards: an index of every patch, read through verified shards.

Layout of `patches_combined.h5` (written beside the manifest; attribute `layout` =
"index", version 2; version 1 was an HDF5 virtual dataset, see below):
- group "manifest": one dataset per manifest column (attribute "columns" keeps their
  order), rows sorted by (shard, index): row i describes patch i. int64, UTF-8 text (""
  for missing), and float64 for numbers with missing values (NaN), e.g.
  clin_path_severity_min.
- group "shards": one row per shard, in that order: `name` (relative to the file's
  folder, so the results folder can be moved or copied whole), `start` (its first row),
  `count`, `dtype` (as stored) and `patches_sha256` (the shard's identity).
- attributes n_patches, n_shards, patch_size, dtype: the lossless common dtype of the
  shards' (`shards.common_dtype`: all uint16 stays uint16; uint8 + uint16 gives uint16;
  any of them with int16 gives int32), in which `open_combined(...)["patches"]` serves
  every row, exactly; `.astype(the row's stored dtype)` skips the conversion.
No pixel is copied, and no shard is opened to build it: shapes, dtypes and digests come
from the manifest, which the batch jobs built from what they wrote. Every shard must
exist, and a seeded sample of SAMPLE_SHARDS of them is opened and compared with the
manifest, so a manifest that no longer describes its shards is refused.

Why not a virtual dataset: HDF5 fills the region of a source file that is missing, or
that cannot be opened (out of file descriptors), with zeros, without an error, and a
shard replaced after the file was built is read as if it were the old one. Reading
through `open_combined` instead opens each shard itself (`ShardPool`: verified against
its recorded `patches_sha256`, a small per-process cache of open files, no chunk cache),
so a missing or replaced shard is an error naming it, never made-up pixels; open and
read costs of both ways are measured in docs/training.md.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from embedpatch.io.atomic import atomic_output
from embedpatch.patches.shards import (
    column_data,
    common_dtype,
    dtype_name,
    open_shard,
    patches_dtype,
)
from embedpatch.training.shard_pool import DEFAULT_CACHE_SIZE, REBUILD, Locking, ShardPool

log = logging.getLogger(__name__)

ORDER = ["shard", "index"]
SAMPLE_SHARDS = 64
"""Shards `combine_shards` opens to check them against the manifest (all, when fewer)."""
LAYOUT_VERSION = 2


def _column(values: pd.Series) -> tuple[np.ndarray, Any]:
    """A manifest column as (array, HDF5 dtype), numbers with missing values as float64."""
    numeric = pd.api.types.is_numeric_dtype(values.dtype)
    if numeric and (values.hasnans or pd.api.types.is_float_dtype(values.dtype)):
        return values.to_numpy(np.float64, na_value=np.nan), np.float64
    return column_data(values)


@dataclass(frozen=True)
class _Source:
    """One shard's whole `patches`, as the manifest describes it."""

    shard: str  # as the manifest names it: relative to the results folder
    path: str
    shape: tuple[int, int, int]
    dtype: np.dtype
    digest: str


def _described_sources(manifest: pd.DataFrame, results: Path) -> list[_Source]:
    """Each shard of the sorted manifest with the shape and dtype its rows give it (no
    file opened), after checking it lists each of its patches once, in order, in one
    dtype. A manifest without the `dtype` column (older runs) gets it from the shards."""
    if "dtype" not in manifest:
        stored = {shard: patches_dtype(results / shard) for shard in manifest["shard"].unique()}
        manifest = manifest.assign(dtype=manifest["shard"].map(stored))
    shards = manifest["shard"].to_numpy(dtype=object)
    boundary = np.r_[True, shards[1:] != shards[:-1]] if len(shards) else np.zeros(0, bool)
    starts = np.flatnonzero(boundary)
    counts = np.diff(np.r_[starts, len(shards)])
    first = np.repeat(starts, counts)
    index = manifest["index"].to_numpy(np.int64)
    dtypes = manifest["dtype"].to_numpy(dtype=object)
    if "patches_sha256" not in manifest:
        raise ValueError(f"{results}: a manifest without patches_sha256 (older); {REBUILD}")
    digests = manifest["patches_sha256"].to_numpy(dtype=object)
    differ = (dtypes != dtypes[first]) | (digests != digests[first])
    wrong = np.flatnonzero((index != np.arange(len(index)) - first) | differ)
    if len(wrong):
        where = results / shards[wrong[0]]
        raise ValueError(
            f"{where}: manifest rows are not its patches 0..n-1, of one dtype and digest"
        )
    sizes = manifest["patch_size"].to_numpy(np.int64)
    return [
        _Source(
            shards[start],
            os.path.join(results, shards[start]),  # noqa: PTH118 (a Path per shard: 0.8 s)
            (int(count), int(sizes[start]), int(sizes[start])),
            np.dtype(dtypes[start]),
            digests[start],
        )
        for start, count in zip(starts, counts, strict=True)
    ]


def _check_sources(sources: list[_Source], sample: int, seed: int) -> None:
    """That every shard exists, and that a seeded sample of them, opened, holds `patches`
    of the shape, dtype and digest the manifest gives (the batch jobs checked each shard
    they wrote or kept; this catches a manifest or folder that no longer matches them)."""
    missing = [s.path for s in sources if not os.path.isfile(s.path)]  # noqa: PTH113 (as above)
    if missing:
        raise FileNotFoundError(f"{len(missing)} shards missing, e.g. {missing[0]}")
    chosen = np.random.default_rng(seed).permutation(len(sources))[:sample]
    for source in (sources[int(position)] for position in sorted(chosen)):
        with open_shard(source.path) as file:
            patches = file["patches"]
            shape, dtype = patches.shape, patches.dtype
            digest = file.attrs.get("patches_sha256")
        if shape != source.shape:
            raise ValueError(
                f"{source.path}: patches of shape {shape}, the manifest says {source.shape} "
                "(manifest rows are not its patches)"
            )
        if dtype_name(dtype) != dtype_name(source.dtype):
            raise ValueError(
                f"{source.path}: patches of dtype {dtype}, the manifest says {source.dtype}"
            )
        if digest != source.digest:
            raise ValueError(f"{source.path}: not the shard the manifest lists; {REBUILD}")


def _shard_table(sources: list[_Source], results: Path, folder: Path) -> dict[str, np.ndarray]:
    """The "shards" group's columns: names relative to `folder`, first rows, counts, ..."""
    prefix = Path(os.path.relpath(results, folder)).as_posix()  # "." beside the manifest
    counts = np.array([source.shape[0] for source in sources], np.int64)
    return {
        "name": np.array(
            [s.shard if prefix == "." else f"{prefix}/{s.shard}" for s in sources], object
        ),
        "start": np.cumsum(np.r_[0, counts[:-1]]).astype(np.int64) if len(sources) else counts,
        "count": counts,
        "dtype": np.array([dtype_name(source.dtype) for source in sources], object),
        "patches_sha256": np.array([source.digest for source in sources], object),
    }


def _write_group(file: h5py.File, name: str, table: pd.DataFrame) -> None:
    group = file.create_group(name)
    group.attrs["columns"] = json.dumps(list(table.columns))
    for column in table.columns:
        data, dtype = _column(table[column])
        group.create_dataset(column, data=data, dtype=dtype)


def combine_shards(
    manifest_path: str, combined_path: str, sample: int = SAMPLE_SHARDS
) -> dict[str, int]:
    """Write the combined file of the manifest's shards (names relative to its folder),
    opening only a seeded sample of `sample` shards (module docstring)."""
    results, combined = Path(manifest_path).parent, Path(combined_path)
    manifest = pd.read_parquet(manifest_path, dtype_backend="numpy_nullable")
    manifest = manifest.sort_values(ORDER, kind="stable", ignore_index=True)
    sources = _described_sources(manifest, results)
    sizes = {source.shape[1] for source in sources}
    if len(sizes) > 1:
        raise ValueError(f"shards of different patch sizes: {sorted(sizes)}")
    dtype = common_dtype(s.dtype for s in sources) if sources else np.dtype(np.uint16)
    _check_sources(sources, sample, seed=len(sources))
    shards = pd.DataFrame(_shard_table(sources, results, combined.parent))
    shards = shards.astype({"name": "str", "dtype": "str", "patches_sha256": "str"})
    summary = {"n_patches": len(manifest), "n_shards": len(sources)}
    with atomic_output(combined) as temporary, h5py.File(temporary, "w", locking=False) as file:
        _write_group(file, "manifest", manifest)
        _write_group(file, "shards", shards)
        file.attrs.update(summary)
        file.attrs.update(
            layout="index",
            layout_version=LAYOUT_VERSION,
            patch_size=sizes.pop() if sizes else 0,
            dtype=dtype_name(dtype),
        )
    log.info("combined %d patches of %d shards into %s", *summary.values(), combined)
    return summary


class CombinedPatches:
    """The combined file's patches, (N, size, size), read from their verified shards.

    Indexed like a NumPy array by an int, a slice or a sequence of rows; `astype(dtype)`
    gives the same rows cast to `dtype` (a row's stored dtype: no conversion).
    """

    def __init__(self, combined: CombinedFile, dtype: np.dtype) -> None:
        self._combined = combined
        self.dtype = dtype
        self.shape = combined.shape

    def __len__(self) -> int:
        return self.shape[0]

    def astype(self, dtype: Any) -> CombinedPatches:
        return CombinedPatches(self._combined, np.dtype(dtype))

    def __getitem__(self, key: int | slice | Any) -> np.ndarray:
        if isinstance(key, int | np.integer):
            position = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= position < len(self):
                raise IndexError(f"row {key} of {len(self)}")
            return self._combined.read_rows(np.array([position]), self.dtype)[0]
        if key is Ellipsis or (isinstance(key, tuple) and not key):
            key = slice(None)
        rows = np.arange(len(self))[key]
        return self._combined.read_rows(np.asarray(rows, np.int64), self.dtype)


class CombinedFile:
    """`patches_combined.h5` open for reading (`open_combined`): `file["patches"]` is a
    `CombinedPatches`; any other name is the HDF5 object (e.g. `file["manifest/label"]`).
    A context manager; picklable (a DataLoader worker reopens it)."""

    def __init__(
        self,
        path: str | Path,
        *,
        cache_size: int = DEFAULT_CACHE_SIZE,
        locking: Locking = None,
    ) -> None:
        self.path = Path(path)
        self._options = {"cache_size": cache_size, "locking": locking}
        self._open()

    def _open(self) -> None:
        self.file = h5py.File(self.path, "r", locking=self._options["locking"])
        attrs = self.file.attrs
        if attrs.get("layout") != "index":
            self.file.close()
            raise ValueError(f"{self.path}: a combined file of an older layout; {REBUILD}")
        shards = self.file["shards"]
        folder = self.path.parent
        names = shards["name"].asstr()[()]
        self.starts = shards["start"][()]
        self.counts = shards["count"][()]
        self.shards = ShardPool(
            [str(folder / name) for name in names],
            list(shards["patches_sha256"].asstr()[()]),
            **self._options,
        )
        size = int(attrs["patch_size"])
        self.shape = (int(attrs["n_patches"]), size, size)
        self.dtype = np.dtype(str(attrs["dtype"]))

    def __getitem__(self, name: str) -> Any:
        return CombinedPatches(self, self.dtype) if name == "patches" else self.file[name]

    def _runs(self, rows: np.ndarray) -> Iterator[tuple[int, int, int, int]]:
        """(output start, shard code, first local index, length) of each run of rows that
        are consecutive in one shard."""
        codes = np.searchsorted(self.starts, rows, side="right") - 1
        local = rows - self.starts[codes]
        breaks = np.flatnonzero((np.diff(codes) != 0) | (np.diff(local) != 1)) + 1
        for begin, end in zip(np.r_[0, breaks], np.r_[breaks, len(rows)], strict=True):
            yield int(begin), int(codes[begin]), int(local[begin]), int(end - begin)

    def read_rows(self, rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Patches of `rows` (each in 0..N-1), cast to `dtype`."""
        out = np.empty((len(rows), *self.shape[1:]), dtype)
        for begin, code, first, length in self._runs(rows):
            patches = self.shards.patches(code)
            out[begin : begin + length] = patches[first : first + length]
        return out

    def close(self) -> None:
        self.shards.close()
        self.file.close()

    def __enter__(self) -> CombinedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()


def missing_shards(combined_path: str | Path) -> list[str]:
    """The shards the combined file lists that do not exist (reading their rows fails)."""
    with h5py.File(combined_path, "r") as file:
        names = file["shards/name"].asstr()[()]
    folder = Path(combined_path).parent
    return [name for name in names if not (folder / name).is_file()]


def open_combined(
    combined_path: str | Path, *, cache_size: int = DEFAULT_CACHE_SIZE, locking: Locking = None
) -> CombinedFile:
    """The combined file for reading (`CombinedFile`); `cache_size` shards kept open per
    process, `locking` as embedpatch.training.shard_pool.Locking. A row of a shard that
    is missing or replaced raises MissingShardError or StaleShardError."""
    return CombinedFile(combined_path, cache_size=cache_size, locking=locking)
