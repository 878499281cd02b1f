"""One HDF5 shard per exam: its patches, one info row per patch, the images refused, provenance.

Layout (SCHEMA_VERSION 4):
- dataset "patches": (N, size, size), one patch per chunk (1, size, size), maxshape
  (None, size, size) so N = 0 is a valid empty dataset; filters from COMPRESSIONS.
  Its dtype is the exam's (`common_dtype` of its images' dtypes, native byte order).
- datasets "info" and "rejected": one table each, a 1-D compound dataset with one
  field per column in table order, int64 or UTF-8 variable-length strings; a missing
  string is stored as "" and read back as missing (no column uses "" as a value).
  info's `dtype` column names the dtype of `patches` on every row ("uint16"), so
  that the manifest, built from the info rows, has it without opening the shards;
  its `patches_sha256` column, likewise, holds the shard's `patches_digest` (version 4).
  Version 2 kept each table as a group of one dataset per column (its attribute
  "columns" giving their order), 27 HDF5 objects per shard against 2: one image's
  extraction took 8.1 ms of CPU then, 5.3-6.6 ms now (bench/bench_batch_cpu.py). Version 2
  and 3 shards are still read; new shards are written as version 4, and extraction
  rewrites older ones (their patches have no digest).
- file attributes: schema_version, config_hash, config (JSON), compression,
  package_versions (JSON), acc_anon, empi_anon, n_patches, n_roi_patches,
  n_negative_patches, n_rejected_images, patches_sha256, and last "complete" = True.
`patches_sha256` identifies the shard's pixels: the manifest and the combined file record
it, and the training readers refuse a shard whose attribute differs (a shard replaced
or rewritten after them), rather than serve other pixels.
No timestamps anywhere (track_times=False): the same exam gives a byte-identical
file. The file is written under a temporary name beside the final one and moved
into place only once closed (`atomic.atomic_output`), so a reader never sees half a
shard; `shard_is_complete`, `read_shard` and `read_shard_tables` (no patches read)
also refuse truncated or unfinished files.
Shards are written with HDF5 file locking off (a temporary file, one writer) and read
with HDF5's default flags, those of a plain `h5py.File(path)`: HDF5 refuses a second
open of a file in one process with other flags, so a user's own opens of a shard work
beside the package's readers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import hdf5plugin  # registers the Blosc and Bitshuffle filters for readers and writers
import numpy as np
import pandas as pd

from embedpatch.io.atomic import atomic_output
from embedpatch.vocab import BOX_COLUMNS

SCHEMA_VERSION = 4
READABLE_VERSIONS = frozenset({2, 3, SCHEMA_VERSION})
_BLOSC = hdf5plugin.Blosc
COMPRESSIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "gzip": {"compression": "gzip", "compression_opts": 4, "shuffle": True},
    "lzf": {"compression": "lzf", "shuffle": True},
    "blosc-zstd": dict(_BLOSC(cname="zstd", clevel=5, shuffle=_BLOSC.SHUFFLE)),
    "blosc-zstd-bitshuffle": dict(_BLOSC(cname="zstd", clevel=2, shuffle=_BLOSC.BITSHUFFLE)),
    "blosc-lz4": dict(_BLOSC(cname="lz4", clevel=5, shuffle=_BLOSC.SHUFFLE)),
    "bitshuffle-lz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
}
"""Compression name -> h5py create_dataset keyword arguments; every codec but "none" runs
after a byte or bit shuffle (12-bit values in 16-bit words compress far better shuffled)."""
DEFAULT_COMPRESSION = "blosc-zstd-bitshuffle"
"""Chosen by bench/bench_shards.py: the best ratio of the fast codecs (see the report)."""
PLUGIN_COMPRESSIONS = frozenset(
    name for name, filters in COMPRESSIONS.items() if isinstance(filters.get("compression"), int)
)
"""Names whose filter (a registered filter id) a reader needs `import hdf5plugin` for."""

RESERVED_ATTRS = frozenset(
    {
        "schema_version",
        "compression",
        "package_versions",
        "acc_anon",
        "empi_anon",
        "n_patches",
        "n_roi_patches",
        "n_negative_patches",
        "n_rejected_images",
        "patches_sha256",
        "complete",
    }
)
_JSON_ATTRS = ("config", "package_versions")
_VERSIONED = (
    "embedpatch",
    "numpy",
    "pydicom",
    "h5py",
    "hdf5plugin",
    "pylibjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    "pyjpegls",
)
_STRINGS = h5py.string_dtype("utf-8")


# The info table: one row per patch (the manifest has these columns after `shard`).
INFO_COLUMNS = [
    "index",
    "empi_anon",
    "acc_anon",
    "anon_dicom_path",
    "FinalImageType",
    "ImageLateralityFinal",
    "ViewPosition",
    "roi_index",
    "frame",
    *BOX_COLUMNS,
    "patch_y0",
    "patch_x0",
    "patch_size",
    "padding",
    "label",
    "dtype",
    "patches_sha256",
]
INFO_STRING_COLUMNS = {
    "anon_dicom_path",
    "FinalImageType",
    "ImageLateralityFinal",
    "ViewPosition",
    "padding",
    "label",
    "dtype",
    "patches_sha256",
}
INFO_INT_COLUMNS = [name for name in INFO_COLUMNS if name not in INFO_STRING_COLUMNS]


def typed_table(
    records: list[dict[str, Any]], columns: Sequence[str], int_columns: Sequence[str]
) -> pd.DataFrame:
    """A table of `records` with exactly `columns`: int64 where listed, strings elsewhere.

    Missing strings (None) become the string dtype's missing value. Built column by column
    from plain lists (a pandas `astype` per column costs about 15 times as much, per exam).
    """
    ints = set(int_columns)
    data = {}
    for name in columns:
        values = [record.get(name) for record in records]
        data[name] = np.array(values, np.int64) if name in ints else pd.array(values, dtype="str")
    return pd.DataFrame(data, columns=list(columns))


class LossyCastError(ValueError):
    """Patches of these dtypes have no common dtype holding all their values."""


def casts_losslessly(source: Any, target: Any) -> bool:
    """Whether every value of dtype `source` is exactly a value of dtype `target`."""
    source, target = np.dtype(source), np.dtype(target)
    if not np.can_cast(source, target, "safe"):
        return False
    if source.kind in "iu" and target.kind == "f":  # numpy calls int64 -> float64 safe
        magnitude_bits = source.itemsize * 8 - (source.kind == "i")
        return magnitude_bits <= np.finfo(target).nmant + 1
    return True


def common_dtype(dtypes: Iterable[Any]) -> np.dtype:
    """The dtype patches of all `dtypes` are stored or served in: numpy's result type, in
    native byte order (uint8 + uint16 -> uint16, uint16 + int16 -> int32, >u2 -> uint16).

    LossyCastError if it cannot hold every value of each (uint64 + int64 -> float64).
    """
    kinds = {np.dtype(dtype) for dtype in dtypes}
    if not kinds:
        raise ValueError("no dtype to combine")
    common = np.result_type(*kinds).newbyteorder("=")
    lossy = sorted(str(dtype) for dtype in kinds if not casts_losslessly(dtype, common))
    if lossy:
        raise LossyCastError(f"{common} cannot hold every value of {lossy}")
    return common


def dtype_name(dtype: Any) -> str:
    """A dtype as the info and manifest `dtype` column name it: "uint16" (no byte order)."""
    return np.dtype(dtype).name


def patches_digest(patches: np.ndarray) -> str:
    """Hex SHA-256 of a shard's patches: their dtype name, shape and bytes (C order)."""
    digest = hashlib.sha256(f"{dtype_name(patches.dtype)} {patches.shape}".encode())
    digest.update(np.ascontiguousarray(patches).data)
    return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class ExamPatches:
    """One exam's patches (N, size, size), one info row per patch, one row per image refused.

    The info's `dtype` and `patches_sha256` columns are set here from `patches`
    (whatever the caller put there); `digest` is their `patches_digest`, computed once.
    """

    acc_anon: int
    empi_anon: int
    patches: np.ndarray
    info: pd.DataFrame  # INFO_COLUMNS; row i describes patches[i]
    rejections: pd.DataFrame  # extract.REJECTION_COLUMNS
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        def column(value: str) -> pd.Series:
            return pd.Series(value, index=self.info.index, dtype="str")

        object.__setattr__(self, "digest", patches_digest(self.patches))
        info = self.info.assign(
            dtype=column(dtype_name(self.patches.dtype)),
            patches_sha256=column(self.digest),
        )
        object.__setattr__(self, "info", info)


class ShardError(ValueError):
    """A shard that is missing, truncated, unfinished or of another schema version."""


class ShardTables(NamedTuple):
    """A shard's tables and attributes, as `read_shard_tables` returns them."""

    info: pd.DataFrame
    rejections: pd.DataFrame
    attrs: dict[str, Any]


class Shard(NamedTuple):
    """A shard's contents, as `read_shard` returns them."""

    patches: np.ndarray
    info: pd.DataFrame
    rejections: pd.DataFrame
    attrs: dict[str, Any]


@cache
def package_versions() -> dict[str, str]:
    """Versions of everything that decides the patches' values or the file's encoding."""
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {**versions, "hdf5": h5py.version.hdf5_version}


# ---- writing ----------------------------------------------------------------------------


def column_data(values: pd.Series) -> tuple[np.ndarray, Any]:
    """A column as (array, HDF5 dtype): int64 or UTF-8 strings with "" for missing."""
    if pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(np.int64), np.int64
    if pd.api.types.is_string_dtype(values.dtype):
        missing = values.isna().to_numpy()
        text = values.to_numpy(dtype=object, na_value="")
        if (text[~missing] == "").any():
            raise ValueError(f"column {values.name!r}: '' is reserved for missing strings")
        return text, _STRINGS
    raise TypeError(f"column {values.name!r} has dtype {values.dtype}: only ints and strings")


def table_records(table: pd.DataFrame) -> np.ndarray:
    """A table as a structured array: one int64 or UTF-8 string field per column."""
    columns = {str(name): column_data(table[name]) for name in table.columns}
    records = np.empty(len(table), [(name, kind) for name, (_, kind) in columns.items()])
    for name, (data, _) in columns.items():
        records[name] = data
    return records


def _write_table(file: h5py.File, name: str, table: pd.DataFrame) -> None:
    file.create_dataset(name, data=table_records(table), track_times=False)


def _check_exam(exam: ExamPatches) -> int:
    """The patch size, after checking the patches and their info agree."""
    patches = exam.patches
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2] or patches.shape[1] < 1:
        raise ValueError(f"patches must be (N, size, size), got {patches.shape}")
    if len(exam.info) != len(patches):
        raise ValueError(f"{len(patches)} patches but {len(exam.info)} info rows")
    return patches.shape[1]


def _file_attrs(exam: ExamPatches, attrs: Mapping[str, Any], compression: str) -> dict:
    clashes = sorted(RESERVED_ATTRS & set(attrs))
    if clashes or not {"config_hash", "config"} <= set(attrs):
        raise ValueError(f"attrs need config_hash and config, and none of {clashes}")
    config = attrs["config"]
    labels = exam.info["label"]
    return {
        "schema_version": SCHEMA_VERSION,
        **attrs,
        "config": config if isinstance(config, str) else json.dumps(config, sort_keys=True),
        "compression": compression,
        "package_versions": json.dumps(package_versions(), sort_keys=True),
        "acc_anon": np.int64(exam.acc_anon),
        "empi_anon": np.int64(exam.empi_anon),
        "n_patches": np.int64(len(exam.patches)),
        "n_roi_patches": np.int64((labels == "roi").sum()),
        "n_negative_patches": np.int64((labels == "negative").sum()),
        "n_rejected_images": np.int64(len(exam.rejections)),
        "patches_sha256": exam.digest,
    }


def write_shard(
    path: str | Path,
    exam: ExamPatches,
    attrs: Mapping[str, Any],
    compression: str = DEFAULT_COMPRESSION,
) -> None:
    """Write `exam` to the shard at `path` atomically (an existing shard is replaced).

    `attrs` must hold config_hash (str) and config (mapping, or its JSON string);
    other keys are stored as given, except the attributes this function writes.
    """
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}, not one of {list(COMPRESSIONS)}")
    size = _check_exam(exam)
    file_attrs = _file_attrs(exam, attrs, compression)
    filters = COMPRESSIONS[compression]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary, h5py.File(temporary, "w", locking=False) as file:
        file.create_dataset(
            "patches",
            data=exam.patches,
            chunks=(1, size, size),
            maxshape=(None, size, size),
            track_times=False,
            **filters,
        )
        _write_table(file, "info", exam.info)
        _write_table(file, "rejected", exam.rejections)
        file.attrs.update(file_attrs)
        file.attrs["complete"] = True


# ---- reading ----------------------------------------------------------------------------


def _layout_problem(file: h5py.File) -> str | None:
    """Why an open file is not a complete shard of this schema, or None if it is."""
    if not file.attrs.get("complete", False):
        return "not marked complete"
    version = file.attrs.get("schema_version")
    if version not in READABLE_VERSIONS:
        return f"schema version {version}, expected one of {sorted(READABLE_VERSIONS)}"
    count = file.attrs["n_patches"]
    info = file["info"]
    columns = info.values() if isinstance(info, h5py.Group) else [info]
    lengths = {file["patches"].shape[0], *(len(column) for column in columns)}
    if lengths != {count}:
        return f"n_patches {count} but datasets of lengths {sorted(lengths)}"
    return None


def _problem(file: h5py.File) -> str | None:
    """Why an open file is not a complete shard of this schema (damage included), or None."""
    try:
        return _layout_problem(file)
    except (OSError, KeyError) as error:
        return f"unreadable shard ({error})"


def open_shard(path: str | Path) -> h5py.File:
    """A shard (any HDF5 file) open for reading, HDF5's default locking; ShardError if it
    cannot be opened. Nothing is checked: `read_shard` and `complete_shard_attrs` check."""
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError) as error:  # missing, truncated or not HDF5
        raise ShardError(f"{path}: cannot open as HDF5 ({error})") from None


def patches_dtype(path: str | Path) -> str:
    """The dtype name of a shard's `patches` (any schema version; no patch read)."""
    with open_shard(path) as file:
        return dtype_name(file["patches"].dtype)


def shard_is_complete(path: str | Path) -> bool:
    """Whether `path` is a finished, untruncated shard of this schema version."""
    try:
        with open_shard(path) as file:
            return _problem(file) is None
    except ShardError:
        return False


def complete_shard_attrs(path: str | Path) -> dict[str, Any] | None:
    """A complete shard's attributes (as `read_shard_tables` gives them), None for a missing,
    unfinished or damaged file: the cheap check of whether a shard must be rewritten."""
    try:
        with _complete(path) as file:
            return _python_attrs(file)
    except ShardError:
        return None


def _strings(values: np.ndarray) -> pd.Series:
    """Stored strings (UTF-8 bytes or str, "" for missing) as a string column."""
    text = pd.Series([v.decode() if isinstance(v, bytes) else v for v in values], dtype=object)
    return text.where(text != "", None).astype("str")


def _read_column(dataset: h5py.Dataset) -> np.ndarray | pd.Series:
    if h5py.check_string_dtype(dataset.dtype) is None:
        return dataset[()]
    return _strings(dataset[()])


def read_column_group(group: h5py.Group) -> pd.DataFrame:
    """A table stored as a group of one dataset per column (`info`, `rejected`, the combined
    file's `manifest`), in the order of its `columns` attribute."""
    columns = json.loads(group.attrs["columns"])
    return pd.DataFrame({name: _read_column(group[name]) for name in columns}, columns=columns)


def _python_attrs(file: h5py.File) -> dict[str, Any]:
    """File attributes as Python values, the JSON ones (config, package_versions) decoded."""
    attrs = {
        name: value.item() if isinstance(value, np.generic) else value
        for name, value in file.attrs.items()
    }
    return attrs | {name: json.loads(attrs[name]) for name in _JSON_ATTRS}


@contextmanager
def _complete(path: str | Path) -> Iterator[h5py.File]:
    """The open shard, if complete; ShardError otherwise, also for damage found while reading."""
    with open_shard(path) as file:
        problem = _problem(file)
        if problem:
            raise ShardError(f"{path}: {problem}")
        try:
            yield file
        except (OSError, KeyError) as error:  # damaged past the header
            raise ShardError(f"{path}: unreadable shard ({error})") from None


def read_table(stored: h5py.Dataset | h5py.Group) -> pd.DataFrame:
    """A shard's table: a compound dataset (version 3) or a group of columns (version 2)."""
    if isinstance(stored, h5py.Group):
        return read_column_group(stored)
    records = stored[()]
    names = list(records.dtype.names)
    return pd.DataFrame(
        {
            name: records[name] if records.dtype[name].kind != "O" else _strings(records[name])
            for name in names
        },
        columns=names,
    )


def _tables(file: h5py.File) -> ShardTables:
    return ShardTables(read_table(file["info"]), read_table(file["rejected"]), _python_attrs(file))


def read_shard_tables(path: str | Path) -> ShardTables:
    """A shard's info and rejection tables and attributes, without reading its patches."""
    with _complete(path) as file:
        return _tables(file)


def read_shard(path: str | Path) -> Shard:
    """All of a shard in memory; ShardError if it is not a complete shard of this schema."""
    with _complete(path) as file:
        return Shard(file["patches"][()], *_tables(file))
