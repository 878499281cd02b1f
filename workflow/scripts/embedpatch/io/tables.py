"""Read EMBED tables (CSV or Parquet) column-selectively or in batches, with deliberate types.

CSV values are read as strings, never inferred: identifiers such as the 16-digit
acc_anon would lose digits if they ever went through float64 (what pandas does to
an integer column holding a NaN). Known columns are then cast on purpose (see
INT_COLUMNS and FLOAT_COLUMNS); every other CSV column stays a string, and Parquet
columns keep their stored type. The legacy ROI count column `num_roi` is renamed
`num_ROI`, and the table's coordinate column (`DCM_ROI_coords`, `ROI_coords` or
`PNG_ROI_coords`: coordinate_space) is served as `ROI_coords`.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from embedpatch.io import object_store
from embedpatch.vocab import COORDS_COLUMNS, LEGACY_ROI_COUNT, ROI_COORDS, ROI_COUNT

if TYPE_CHECKING:
    import pandas as pd

# Integers, read exactly (a trailing ".0", as left by a float round trip, is accepted).
INT_COLUMNS = frozenset(
    {
        "empi_anon",
        "acc_anon",
        ROI_COUNT,
        "Rows",
        "Columns",
        "ImagesInAcquisition",
        "path_severity",
        "tissueden",
        "numfind",
        "total_L_find",
        "total_R_find",
    }
)
FLOAT_COLUMNS = frozenset({"spot_mag", "age_at_study"})

_INTEGER_TEXT = r"^\s*-?\d+(\.0*)?\s*$"
_MAX_EXACT_FLOAT = 2**53  # float64 holds every integer up to this, and not all beyond
CSV_BLOCK_BYTES = 4 << 20
HEADER_BLOCK_BYTES = 64 << 10
"""Reading a table's column names from an object store fetches this much, not a whole
streaming block (16 MiB: stage 1 and the path check read the names several times)."""
PARQUET_BATCH_ROWS = 32_768

Data = TypeVar("Data", pa.Table, pa.RecordBatch)


class TableError(ValueError):
    """A table the pipeline cannot use: missing or conflicting columns, or bad values."""


def is_parquet(path: str | Path) -> bool:
    """Whether the table at `path` is Parquet (by its suffix); anything else is CSV."""
    return Path(path).suffix.lower() in {".parquet", ".pq"}


@contextlib.contextmanager
def _readable(path: str | Path) -> Iterator[None]:
    """Turn the readers' errors on a malformed file (not UTF-8, ragged CSV rows, damaged
    Parquet) into a one-line TableError naming the file."""
    try:
        yield
    except (pa.ArrowInvalid, UnicodeDecodeError, csv.Error) as error:
        message = " ".join(str(error).split())
        raise TableError(f"{path}: unreadable table ({type(error).__name__}: {message})") from None


def _checked(
    batches: Iterator[Data], path: str | Path, opened: contextlib.ExitStack
) -> Iterator[Data]:
    """`batches`, with read errors raised as TableError (see `_readable`); `opened` (the
    table's file) is closed when the batches end."""
    with opened, _readable(path):
        yield from batches


@contextlib.contextmanager
def _opened(
    path: str | Path, block_size: int = object_store.TABLE_BLOCK_BYTES
) -> Iterator[str | Path | BinaryIO]:
    """A local table's path as it is, or an object store table opened for streaming
    (sequential blocks of `block_size`: one GET per block)."""
    if not object_store.is_url(path):
        yield path
        return
    try:
        with object_store.open_stream(str(path), block_size) as file:
            yield file
    except FileNotFoundError:
        raise TableError(f"{path}: no such object") from None
    except OSError as error:  # the store failing while the table is read, too
        raise TableError(f"{path}: cannot read from the object store ({error})") from None


def _raw_column_names(path: str | Path) -> list[str]:
    with _readable(path), _opened(path, HEADER_BLOCK_BYTES) as source:
        if is_parquet(path):
            return pq.read_schema(source).names
        local = isinstance(source, str | Path)
        stream = pa.input_stream(str(source), "detect") if local else pa.input_stream(source)
        with stream:
            text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
            return next(csv.reader(text), [])


def coords_source(names: Iterable[str]) -> str | None:
    """The coordinate column a table with these columns is read from
    (vocab.COORDS_COLUMNS order), None when it has none."""
    present = set(names)
    return next((name for name in COORDS_COLUMNS if name in present), None)


def _source_names(path: str | Path) -> dict[str, str]:
    """Column name used by the pipeline -> name in the file: legacy num_roi as num_ROI, the
    chosen coordinate column (coords_source) as ROI_coords; other coordinate columns are
    left out."""
    names = _raw_column_names(path)
    if ROI_COUNT in names and LEGACY_ROI_COUNT in names:
        raise TableError(
            f"{path}: has both '{ROI_COUNT}' and legacy '{LEGACY_ROI_COUNT}'; keep only one"
        )
    chosen = coords_source(names)
    source = {}
    for name in names:
        if name == chosen:
            source[ROI_COORDS] = name
        elif name not in COORDS_COLUMNS:
            source[ROI_COUNT if name == LEGACY_ROI_COUNT else name] = name
    return source


def coords_column(path: str | Path) -> str | None:
    """Which of the table's columns the pipeline reads as ROI_coords (coords_source)."""
    return coords_source(_raw_column_names(path))


def column_names(path: str | Path) -> list[str]:
    """The table's column names as the pipeline sees them (num_roi reported as num_ROI)."""
    return list(_source_names(path))


def require_columns(path: str | Path, required: Iterable[str]) -> None:
    """Raise TableError naming every required column the table lacks."""
    present = set(column_names(path))
    missing = [name for name in required if name not in present]
    if missing:
        raise TableError(f"{path}: missing required column(s): {', '.join(missing)}")


def _csv_convert_options(
    source: Iterable[str], include: Sequence[str] | None = None
) -> pacsv.ConvertOptions:
    return pacsv.ConvertOptions(
        column_types=dict.fromkeys(source, pa.string()),
        strings_can_be_null=True,
        include_columns=include,
    )


def read_table(path: str | Path, columns: Sequence[str]) -> pa.Table:
    """Only `columns` of the table (pipeline names), with the known columns cast."""
    require_columns(path, columns)
    source = _source_names(path)
    wanted = [source[name] for name in columns]
    with _readable(path), _opened(path) as opened:
        if is_parquet(path):
            table = pq.read_table(opened, columns=wanted)
        else:
            options = _csv_convert_options(source.values(), wanted)
            table = pacsv.read_csv(opened, convert_options=options)
    return cast_known_columns(table.rename_columns(list(columns)), str(path))


def read_csv_head(
    path: str | Path, columns: Sequence[str], max_bytes: int
) -> tuple[pa.Table, bool]:
    """`columns` of the rows within the first `max_bytes` of a CSV table (one ranged read,
    cut after the last whole line), and whether they are all its rows. A cut the parser
    cannot read (a quoted line break) reads the whole table instead."""
    source = _source_names(path)
    missing = [name for name in columns if name not in source]
    if missing:
        raise TableError(f"{path}: missing required column(s): {', '.join(missing)}")
    with _readable(path):
        if object_store.is_url(path):
            store = object_store.current_store()
            version = store.head(str(path))
            size = version.size
            (head,) = store.get_ranges(version, [(0, min(max_bytes, size))])
        else:
            size = Path(path).stat().st_size
            with open(path, "rb") as file:
                head = file.read(max_bytes)
    whole = len(head) >= size
    if not whole:
        head = head[: head.rfind(b"\n") + 1]
    options = _csv_convert_options(source.values(), [source[name] for name in columns])
    try:
        table = pacsv.read_csv(pa.BufferReader(head), convert_options=options)
    except pa.ArrowInvalid:
        return read_table(path, columns), True
    if not whole:  # its last line may end inside a quoted line break
        table = table.slice(0, max(table.num_rows - 1, 0))
    return cast_known_columns(table.rename_columns(list(columns)), str(path)), whole


def open_batches(path: str | Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The table's schema (after casting) and an iterator over all its rows in batches.

    Memory stays bounded by one batch (a CSV block of CSV_BLOCK_BYTES, or
    PARQUET_BATCH_ROWS rows), whatever the table's size.
    """
    source = _source_names(path)
    opened = contextlib.ExitStack()
    with _readable(path):
        table_file = opened.enter_context(_opened(path))
        if is_parquet(path):
            parquet = pq.ParquetFile(table_file)
            schema = parquet.schema_arrow
            batches = _checked(parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS), path, opened)
        else:
            reader = pacsv.open_csv(
                table_file,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                convert_options=_csv_convert_options(source.values()),
            )
            schema, batches = reader.schema, _checked(iter(reader), path, opened)
    pipeline_name = {file_name: name for name, file_name in source.items()}
    kept = [index for index, name in enumerate(schema.names) if name in pipeline_name]
    names = [pipeline_name[schema.names[index]] for index in kept]

    def as_pipeline(batch: pa.RecordBatch) -> pa.RecordBatch:
        return cast_known_columns(batch.select(kept).rename_columns(names), str(path))

    empty = pa.RecordBatch.from_pylist([], schema=schema)
    return as_pipeline(empty).schema, (as_pipeline(batch) for batch in batches)


def batch_share(path: str | Path) -> float | None:
    """About what share of the table one batch of `open_batches` is, for progress lines:
    a CSV block of its bytes, or PARQUET_BATCH_ROWS of its rows (None: an empty table)."""
    with _readable(path), _opened(path) as source:
        if is_parquet(path):
            rows = pq.read_metadata(source).num_rows
            return PARQUET_BATCH_ROWS / rows if rows else None
        if isinstance(source, str | Path):
            size = Path(source).stat().st_size
        else:
            size = object_store.current_store().head(str(path)).size
    return CSV_BLOCK_BYTES / size if size else None


def cast_known_columns(data: Data, source: str) -> Data:
    """Dictionary columns decoded, INT_COLUMNS as int64, FLOAT_COLUMNS as float64."""
    arrays = []
    for name, column in zip(data.column_names, data.columns, strict=True):
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if name in INT_COLUMNS:
            column = _to_int64(column, name, source)
        elif name in FLOAT_COLUMNS:
            column = _to_float64(column, name, source)
        arrays.append(column)
    return type(data).from_arrays(arrays, names=data.column_names)


def _bad_values(column: pa.Array, bad: pa.Array, name: str, source: str, what: str) -> None:
    count = pc.sum(pc.fill_null(bad, False)).as_py() or 0
    if count:
        example = column.filter(pc.fill_null(bad, False))[0].as_py()
        raise TableError(f"{source}: column '{name}' has {count} {what}, e.g. {example!r}")


def _to_int64(column: pa.Array, name: str, source: str) -> pa.Array:
    kind = column.type
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_floating(kind):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, kind), column)
        not_exact = pc.or_(
            pc.not_equal(pc.floor(column), column),
            pc.greater(pc.abs(column), _MAX_EXACT_FLOAT),
        )
        _bad_values(column, not_exact, name, source, "value(s) not exact integers in float")
        return column.cast(pa.int64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        not_integer = pc.invert(pc.match_substring_regex(column, _INTEGER_TEXT))
        _bad_values(column, not_integer, name, source, "non-integer value(s)")
        digits = pc.replace_substring_regex(pc.utf8_trim_whitespace(column), r"\.0*$", "")
        return digits.cast(pa.int64())
    raise TableError(f"{source}: column '{name}' has type {kind}, expected integers")


def _to_float64(column: pa.Array, name: str, source: str) -> pa.Array:
    try:
        return column.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
        raise TableError(f"{source}: column '{name}' is not numeric ({error})") from None


def frame_records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of `frame`'s `columns` as dicts of Python values, like DataFrame.to_dict
    ("records") but through Arrow: missing values (NaN, NA, None) are None, lists are
    lists, and it takes about 0.7 of the time (stage 2's 67,608 rows at 50,000 exams:
    0.48 s against 0.67 s). A column Arrow cannot type (cells of mixed kinds) gives its
    cells as they are."""
    names = list(columns)
    values = []
    for name in names:
        try:
            values.append(pa.array(frame[name], from_pandas=True).to_pylist())
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            values.append(frame[name].tolist())
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
