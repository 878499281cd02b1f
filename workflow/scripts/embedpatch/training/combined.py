"""One HDF5 file over all shards: every patch as one virtual dataset, plus the manifest.

Layout of `patches_combined.h5` (written beside the manifest):
- "patches": (N, size, size), a virtual dataset (HDF5 VDS) mapping each shard's whole
  `patches` dataset, in the manifest's order sorted by (shard, index), which is the
  order collect_patches writes. No pixel is copied: reads go to the shards, through
  their filters (Blosc: `import hdf5plugin` first).
- Its dtype is the lossless common dtype of the shards' (`shards.common_dtype`: all
  uint16 stays uint16; uint8 + uint16 gives uint16; any of them with int16 gives
  int32), so that row i of the manifest is patches[i] whatever the pixel types. HDF5
  converts each shard's values on read, exactly; the manifest's `dtype` column keeps
  every patch's stored dtype, to which it casts back exactly, and reading
  `patches.astype(that dtype)[i]` skips the conversion (it costs about as much as
  one VDS per dtype would save: measured in docs/training.md, "Pixel types").
- group "manifest": one dataset per manifest column (attribute "columns" keeps their
  order); row i describes patches[i]. int64, UTF-8 text ("" for missing), and float64
  for numbers with missing values (NaN), e.g. clin_path_severity_min.
- attributes n_patches, n_shards.
The shape and dtype of each shard's `patches` come from the manifest (its rows of that
shard, their `patch_size` and `dtype`), which the batch jobs built from what they wrote
and checked: no shard is opened for them. Every shard must exist, and a seeded sample
of SAMPLE_SHARDS of them is opened and compared with the manifest, so a manifest that
no longer describes its shards is refused; rebuilding the file at 50,000 shards takes
seconds rather than a minute of opening files.
Source files are named relative to the combined file's folder ("patches/<acc>.h5");
HDF5 resolves such names against the folder of the file holding the virtual dataset,
so the results folder can be moved or copied whole.

Reading pitfalls of HDF5 virtual datasets, which `open_combined` avoids: a source file
that is missing, or that cannot be opened because the process is out of file
descriptors (HDF5 keeps every source it read open until the file closes), reads as
zeros without any error; every source keeps its own chunk cache (8 MiB by default in
HDF5 2), so an epoch would keep every patch in memory; and a shard the process already
holds open with other file-locking flags makes reads fail (so every reader here opens
with HDF5's default flags, as plain h5py does).
"""

from __future__ import annotations

import json
import logging
import os
import resource
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

log = logging.getLogger(__name__)

ORDER = ["shard", "index"]
SAMPLE_SHARDS = 64
"""Shards `combine_shards` opens to check them against the manifest (all, when fewer)."""
SPARE_FILES = 64
"""File descriptors `open_combined` keeps free beside one per shard."""


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
    wrong = np.flatnonzero((index != np.arange(len(index)) - first) | (dtypes != dtypes[first]))
    if len(wrong):
        where = results / shards[wrong[0]]
        raise ValueError(f"{where}: manifest rows are not its patches 0..n-1, of one dtype")
    sizes = manifest["patch_size"].to_numpy(np.int64)
    return [
        _Source(
            shards[start],
            os.path.join(results, shards[start]),  # noqa: PTH118 (a Path per shard: 0.8 s)
            (int(count), int(sizes[start]), int(sizes[start])),
            np.dtype(dtypes[start]),
        )
        for start, count in zip(starts, counts, strict=True)
    ]


def _check_sources(sources: list[_Source], sample: int, seed: int) -> None:
    """That every shard exists, and that a seeded sample of them, opened, holds `patches`
    of the shape and dtype the manifest gives (the batch jobs checked each shard they
    wrote or kept; this catches a manifest or folder that no longer matches them)."""
    missing = [s.path for s in sources if not os.path.isfile(s.path)]  # noqa: PTH113 (as above)
    if missing:
        raise FileNotFoundError(f"{len(missing)} shards missing, e.g. {missing[0]}")
    chosen = np.random.default_rng(seed).permutation(len(sources))[:sample]
    for source in (sources[int(position)] for position in sorted(chosen)):
        with open_shard(source.path) as file:
            patches = file["patches"]
            shape, dtype = patches.shape, patches.dtype
        if shape != source.shape:
            raise ValueError(
                f"{source.path}: patches of shape {shape}, the manifest says {source.shape} "
                "(manifest rows are not its patches)"
            )
        if dtype_name(dtype) != dtype_name(source.dtype):
            raise ValueError(
                f"{source.path}: patches of dtype {dtype}, the manifest says {source.dtype}"
            )


def _layout(manifest: pd.DataFrame, results: Path, folder: Path, sample: int) -> h5py.VirtualLayout:
    """The virtual `patches` of the sorted manifest's shards, sources relative to `folder`,
    shapes and dtypes from the manifest (`_check_sources` opens a sample of the shards).

    No VirtualSource is kept while a file is open: closing a file makes h5py scan every
    open HDF5 object, so that would be quadratic (over 12 minutes for 50,000 shards).
    """
    sources = _described_sources(manifest, results)
    _check_sources(sources, sample, seed=len(sources))
    sizes = {source.shape[1:] for source in sources}
    if len(sizes) > 1:
        raise ValueError(f"shards of different patch sizes: {sorted(sizes)}")
    size = sizes.pop() if sizes else (0, 0)  # no patch at all
    dtype = common_dtype(s.dtype for s in sources) if sources else np.dtype(np.uint16)
    layout = h5py.VirtualLayout((len(manifest), *size), dtype)
    prefix = Path(os.path.relpath(results, folder)).as_posix()  # "." beside the manifest
    start = 0
    for source in sources:
        name = source.shard if prefix == "." else f"{prefix}/{source.shard}"
        layout[start : start + source.shape[0]] = h5py.VirtualSource(
            name, "patches", shape=source.shape, dtype=source.dtype
        )
        start += source.shape[0]
    return layout


def combine_shards(
    manifest_path: str, combined_path: str, sample: int = SAMPLE_SHARDS
) -> dict[str, int]:
    """Write the combined file of the manifest's shards (paths relative to its folder),
    opening only a seeded sample of `sample` shards (module docstring)."""
    results, combined = Path(manifest_path).parent, Path(combined_path)
    manifest = pd.read_parquet(manifest_path, dtype_backend="numpy_nullable")
    manifest = manifest.sort_values(ORDER, kind="stable", ignore_index=True)
    layout = _layout(manifest, results, combined.parent, sample)
    summary = {"n_patches": len(manifest), "n_shards": int(manifest["shard"].nunique())}
    with atomic_output(combined) as temporary, h5py.File(temporary, "w", locking=False) as file:
        file.create_virtual_dataset("patches", layout)
        group = file.create_group("manifest")
        group.attrs["columns"] = json.dumps(list(manifest.columns))
        for name in manifest.columns:
            data, dtype = _column(manifest[name])
            group.create_dataset(name, data=data, dtype=dtype)
        file.attrs.update(summary)
    log.info("combined %d patches of %d shards into %s", *summary.values(), combined)
    return summary


def _missing(file: h5py.File) -> tuple[set[str], list[str]]:
    """The source files of an open combined file, and those of them that do not exist."""
    folder = Path(file.filename).parent
    names = {source.file_name for source in file["patches"].virtual_sources()}
    return names, sorted(name for name in names if not (folder / name).is_file())


def missing_sources(combined_path: str | Path) -> list[str]:
    """The shards the combined file maps that do not exist (their patches would read as 0)."""
    with h5py.File(combined_path, "r") as file:
        return _missing(file)[1]


def _allow_open_files(count: int) -> None:
    """Raise this process's soft limit of open files to `count` if below (up to the hard
    limit); OSError if the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if count <= soft:
        return
    if hard != resource.RLIM_INFINITY and count > hard:
        raise OSError(
            f"reading the combined file needs {count} open files, the limit is {hard}: "
            "raise it (ulimit -n) or read the shards with PatchDataset"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))
    log.info("raised the soft limit of open files from %d to %d", soft, count)


def open_combined(combined_path: str | Path, locking: bool | str | None = None) -> h5py.File:
    """The combined file, open for reading without the VDS pitfalls (module docstring):
    every shard present, enough file descriptors, no chunk cache; `locking` as
    embedpatch.training.dataset.Locking (HDF5's default, as plain h5py and PatchDataset use)."""
    file = h5py.File(combined_path, "r", locking=locking, rdcc_nbytes=0)
    try:
        sources, missing = _missing(file)
        if missing:
            count = len(missing)
            raise FileNotFoundError(f"{combined_path}: {count} shards missing, e.g. {missing[0]}")
        _allow_open_files(len(sources) + SPARE_FILES)
    except OSError:
        file.close()
        raise
    return file
