"""Stage 1: decide which metadata rows go on to ROI parsing, with one reason per dropped row.

Kept: 2D rows (with or without ROIs), C-view rows when filter.cview_as_2d, and 3D
rows declaring ROIs (rois.parse.declares_rois, the rule ROI validation uses too: a
num_ROI other than 0, or a non-empty ROI_coords or ROI_frames, so that a count or
frame list that does not match the boxes is reported by ROI validation instead of
vanishing here). The checks run in CHECK_ORDER and a dropped row gets the first that fails.
The last, duplicate_path, spans the whole table: of the rows passing every other
check, only the first with a given dicom_path is kept (the stages after key images
by their path; two rows for one image would give its ROIs twice).
Values are compared exactly, except Manufacturer: on its first word, case-insensitive
(the real table spells them "HOLOGIC, Inc.", "GE MEDICAL SYSTEMS", ...: HOLOGIC or
Hologic in the config matches the first, GE the second).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from embedpatch.filter.clinical import ClinicalFindings, attach_clinical, load_clinical
from embedpatch.io import object_store
from embedpatch.io.atomic import atomic_output, write_json
from embedpatch.io.paths import inside_root, rewrite_paths
from embedpatch.io.tables import (
    TableError,
    batch_share,
    column_names,
    coords_column,
    open_batches,
    require_columns,
)
from embedpatch.logs import Progress
from embedpatch.reasons import FilterReason
from embedpatch.rois.parse import declares_rois
from embedpatch.vocab import (
    CLINICAL_PREFIX,
    COORDS_COLUMN,
    CVIEW,
    DBT,
    DICOM_PATH,
    IDENTIFIERS,
    IMAGE_TYPE,
    IMAGE_TYPES,
    LATERALITY,
    ROI_COORDS,
    ROI_COUNT,
    ROI_FRAMES,
    VIEW,
)

log = logging.getLogger(__name__)

ROW_GROUP_ROWS = 65_536

# What the image is, then which images the config asks for, then whether its file
# can be located and the row identified: a row failing several checks is reported
# under the first. The order is FilterReason's own.
CHECK_ORDER = tuple(FilterReason)
DROPPED_SCHEMA = pa.schema(
    [
        *zip(IDENTIFIERS, [pa.int64(), pa.int64(), pa.string(), pa.string()], strict=True),
        ("reason", pa.string()),
    ]
)


@dataclass(frozen=True)
class FilterOptions:
    """The `filter` config section; value sets are None when every value is kept."""

    cview_as_2d: bool
    keep_spot_mag: bool
    view_positions: frozenset[str] | None
    lateralities: frozenset[str] | None
    manufacturers: frozenset[str] | None  # upper case
    join_clinical: bool

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> FilterOptions:
        """Options from a validated `filter` section (validate_config fills its defaults)."""

        def values(key: str, normalize: Callable[[str], str] = str) -> frozenset[str] | None:
            return None if section[key] is None else frozenset(map(normalize, section[key]))

        return cls(
            cview_as_2d=section["cview_as_2d"],
            keep_spot_mag=section["keep_spot_mag"],
            view_positions=values("view_positions"),
            lateralities=values("lateralities"),
            manufacturers=values("manufacturers", _first_word),
            join_clinical=section["join_clinical"],
        )


@dataclass(frozen=True)
class PathMapping:
    """Where the images are: the local root and the table's prefix rewrites."""

    dicom_root: str
    path_rewrite: tuple[tuple[str, str], ...] = ()


def _first_word(name: str) -> str:
    return re.split(r"[\s,]+", name.strip().upper(), maxsplit=1)[0]


def manufacturer_key(column: pa.Array) -> pa.Array:
    """Upper-cased first word of each Manufacturer: 'HOLOGIC, Inc.' -> 'HOLOGIC'."""
    upper = pc.utf8_upper(pc.utf8_trim_whitespace(column.cast(pa.string())))
    return pc.replace_substring_regex(upper, pattern=r"[\s,].*$", replacement="")


def required_columns(options: FilterOptions, with_clinical: bool) -> list[str]:
    """Metadata columns the filter needs under these options."""
    needed = {
        "spot_mag": not options.keep_spot_mag,
        VIEW: options.view_positions is not None,
        LATERALITY: options.lateralities is not None or with_clinical,
        "Manufacturer": options.manufacturers is not None,
    }
    return [
        *IDENTIFIERS,
        ROI_COUNT,
        ROI_COORDS,
        *(name for name, wanted in needed.items() if wanted),
    ]


def _flags(mask: pa.Array, missing: bool = False) -> np.ndarray:
    return pc.fill_null(mask, missing).to_numpy(zero_copy_only=False)


def _not_in(column: pa.Array, allowed: Iterable[str]) -> np.ndarray:
    return ~_flags(pc.is_in(column.cast(pa.string()), value_set=pa.array(sorted(allowed))))


def _has_roi(batch: pa.RecordBatch) -> np.ndarray:
    """Rows declaring ROIs (ROI_frames only when the table has it: it is not required)."""
    frames = batch[ROI_FRAMES] if ROI_FRAMES in batch.schema.names else None
    return declares_rois(batch[ROI_COUNT], batch[ROI_COORDS], frames)


def _invalid_ids(batch: pa.RecordBatch) -> np.ndarray:
    """Rows whose empi_anon or acc_anon is missing or negative (no exam to file them under)."""
    return ~(
        _flags(pc.greater_equal(batch["empi_anon"], 0))
        & _flags(pc.greater_equal(batch["acc_anon"], 0))
    )


def _failures(
    batch: pa.RecordBatch, options: FilterOptions, dicom_path: pa.Array, dicom_root: str
) -> dict[FilterReason, np.ndarray | None]:
    """Per check, where it fails (None: the check is off under these options, or, for
    duplicate_path, decided by `decide` once the others have run)."""
    image_type = batch[IMAGE_TYPE].cast(pa.string())
    raw_path = batch["anon_dicom_path"].cast(pa.string())
    return {
        FilterReason.IMAGE_TYPE: _not_in(image_type, IMAGE_TYPES),
        FilterReason.CVIEW_EXCLUDED: (
            None if options.cview_as_2d else _flags(pc.equal(image_type, CVIEW))
        ),
        FilterReason.DBT_WITHOUT_ROI: _flags(pc.equal(image_type, DBT)) & ~_has_roi(batch),
        FilterReason.SPOT_MAG: (
            None if options.keep_spot_mag else _flags(pc.equal(batch["spot_mag"], 1))
        ),
        FilterReason.VIEW_POSITION: (
            None if options.view_positions is None else _not_in(batch[VIEW], options.view_positions)
        ),
        FilterReason.LATERALITY: (
            None
            if options.lateralities is None
            else _not_in(batch[LATERALITY], options.lateralities)
        ),
        FilterReason.MANUFACTURER: (
            None
            if options.manufacturers is None
            else _not_in(manufacturer_key(batch["Manufacturer"]), options.manufacturers)
        ),
        FilterReason.PATH_MISSING: _flags(pc.equal(pc.utf8_trim_whitespace(raw_path), ""), True),
        FilterReason.PATH_OUTSIDE_ROOT: ~_flags(inside_root(dicom_path, dicom_root)),
        FilterReason.ID_INVALID: _invalid_ids(batch),
        FilterReason.DUPLICATE_PATH: None,
    }


@dataclass(frozen=True)
class Decision:
    """Per row of a batch: why it is dropped (null: kept) and its local DICOM path."""

    reasons: pa.Array
    dicom_path: pa.Array

    @property
    def kept(self) -> pa.Array:
        """True for the rows kept."""
        return pc.is_null(self.reasons)


def _repeated(dicom_path: pa.Array, candidates: np.ndarray, seen: set[str]) -> np.ndarray:
    """Which `candidates` rows repeat a path in `seen` or an earlier candidate's (seen updated)."""
    repeated = np.zeros(len(dicom_path), dtype=bool)
    positions = np.flatnonzero(candidates)
    for position, path in zip(positions, dicom_path.take(positions).to_pylist(), strict=True):
        repeated[position] = path in seen
        seen.add(path)
    return repeated


def decide(
    batch: pa.RecordBatch,
    options: FilterOptions,
    mapping: PathMapping,
    seen: set[str] | None = None,
) -> Decision:
    """Keep or drop each row of a metadata batch, with the first failing check's reason.

    `seen`: dicom_paths kept from earlier batches (updated with this batch's); a row
    passing every other check whose path is there, or on an earlier row of the batch,
    is dropped as duplicate_path.
    """
    dicom_path = rewrite_paths(batch["anon_dicom_path"], mapping.dicom_root, mapping.path_rewrite)
    failures = _failures(batch, options, dicom_path, mapping.dicom_root)
    codes = np.full(batch.num_rows, -1, dtype=np.int64)
    for index, reason in enumerate(CHECK_ORDER):
        failing = failures[reason]
        if reason is FilterReason.DUPLICATE_PATH:
            failing = _repeated(dicom_path, codes < 0, set() if seen is None else seen)
        if failing is not None:
            codes[(codes < 0) & failing] = index
    names = pa.array([reason.value for reason in CHECK_ORDER], pa.string())
    return Decision(reasons=names.take(pa.array(codes, mask=codes < 0)), dicom_path=dicom_path)


def _kept_rows(
    batch: pa.RecordBatch, decision: Decision, findings: ClinicalFindings | None, coords: str
) -> pa.Table:
    kept = pa.Table.from_batches([batch.filter(decision.kept)])
    kept = kept.append_column(DICOM_PATH, decision.dicom_path.filter(decision.kept))
    kept = kept.append_column(COORDS_COLUMN, pa.array([coords] * kept.num_rows, pa.string()))
    return kept if findings is None else attach_clinical(kept, findings)


def _dropped_rows(batch: pa.RecordBatch, decision: Decision) -> pa.Table:
    dropped = pc.invert(decision.kept)
    columns = [batch[name].filter(dropped) for name in DROPPED_SCHEMA.names[:-1]]
    return pa.Table.from_arrays(
        [*columns, decision.reasons.filter(dropped)], names=DROPPED_SCHEMA.names
    ).cast(DROPPED_SCHEMA)


class _RowGroupWriter:
    """A ParquetWriter that gathers small tables into row groups of ROW_GROUP_ROWS rows.

    Large row groups compress far better than one per input batch.
    """

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(path, schema)
        self._pending: list[pa.Table] = []
        self._rows = 0

    def write(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.concat_tables(self._pending), ROW_GROUP_ROWS)
        self._pending, self._rows = [], 0

    def __enter__(self) -> _RowGroupWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is None:
            self._flush()
        self._writer.close()


@dataclass
class _Tally:
    """Counts over the batches, for the summary."""

    rows_in: int = 0
    dropped: Counter = field(default_factory=Counter)
    kept_types: Counter = field(default_factory=Counter)
    kept_3d_coords_only: int = 0
    with_findings: int = 0

    def add(self, kept: pa.Table, dropped: pa.Table) -> None:
        self.rows_in += kept.num_rows + dropped.num_rows
        self.dropped.update(_value_counts(dropped["reason"]))
        self.kept_types.update(_value_counts(kept[IMAGE_TYPE]))
        declared = pc.fill_null(pc.greater(kept[ROI_COUNT], 0), False)
        coords_only = pc.and_not(pc.equal(kept[IMAGE_TYPE], DBT), declared)
        self.kept_3d_coords_only += pc.sum(coords_only).as_py() or 0
        if "clin_n_findings" in kept.column_names:
            self.with_findings += pc.sum(pc.greater(kept["clin_n_findings"], 0)).as_py() or 0


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column.cast(pa.string())).to_pylist()
    return {entry["values"]: entry["counts"] for entry in counts}


def _summary(
    tally: _Tally, metadata: str, clinical: str | None, findings: ClinicalFindings | None
) -> dict[str, Any]:
    rows_dropped = sum(tally.dropped.values())
    clinical_stats: dict[str, Any] = {"joined": findings is not None, "table": clinical}
    if findings is not None:
        clinical_stats |= {
            "clinical_rows": findings.rows,
            "clinical_exams": findings.exams,
            "kept_images_with_findings": tally.with_findings,
            "kept_images_without_findings": tally.rows_in - rows_dropped - tally.with_findings,
        }
    return {
        "metadata": metadata,
        "rows_in": tally.rows_in,
        "rows_kept": tally.rows_in - rows_dropped,
        "rows_dropped": rows_dropped,
        "dropped_by_reason": {reason.value: tally.dropped[reason.value] for reason in CHECK_ORDER},
        "kept_by_image_type": {kind: tally.kept_types[kind] for kind in IMAGE_TYPES},
        "kept_3d_without_num_roi": tally.kept_3d_coords_only,
        "clinical": clinical_stats,
    }


def _refuse_output_names(metadata: str, with_clinical: bool) -> None:
    names = column_names(metadata)
    clashes = [
        name
        for name in names
        if name in (DICOM_PATH, COORDS_COLUMN)
        or (with_clinical and name.startswith(CLINICAL_PREFIX))
    ]
    if clashes:
        raise TableError(
            f"{metadata}: column(s) {', '.join(clashes)} would be overwritten by the filter"
        )


def filter_metadata(
    metadata: str | Path,
    filtered_out: str | Path,
    dropped_out: str | Path,
    summary_out: str | Path,
    *,
    filter_config: Mapping[str, Any],
    dicom_root: str,
    path_rewrite: Sequence[Sequence[str]] = (),
    clinical: str | Path | None = None,
) -> dict[str, Any]:
    """Filter the metadata table, streaming it in batches; return the summary written.

    Writes the kept rows (all columns, plus dicom_path and, when joined, clin_*) to
    `filtered_out`, one row per dropped row with its reason to `dropped_out` (both
    Parquet, in input order) and the counts to `summary_out` (JSON). The clinical
    table is joined only when given and filter.join_clinical is true.
    """
    started = time.perf_counter()
    metadata, clinical = str(metadata), None if clinical is None else str(clinical)
    options = FilterOptions.from_config(filter_config)
    mapping = PathMapping(dicom_root, tuple((str(a), str(b)) for a, b in path_rewrite))
    joining = options.join_clinical and clinical is not None
    require_columns(metadata, required_columns(options, joining))
    _refuse_output_names(metadata, joining)
    findings = load_clinical(clinical) if joining else None
    coords = coords_column(metadata)
    schema, batches = open_batches(metadata)
    share, progress = batch_share(metadata), Progress("stage 1, metadata filter", "rows")
    empty = pa.RecordBatch.from_pylist([], schema=schema)
    kept_schema = _kept_rows(empty, decide(empty, options, mapping), findings, coords).schema
    tally = _Tally()
    kept_paths: set[str] = set()
    with (
        atomic_output(filtered_out) as filtered_tmp,
        atomic_output(dropped_out) as dropped_tmp,
        _RowGroupWriter(filtered_tmp, kept_schema) as kept_writer,
        _RowGroupWriter(dropped_tmp, DROPPED_SCHEMA) as dropped_writer,
    ):
        for number, batch in enumerate(batches, start=1):
            decision = decide(batch, options, mapping, kept_paths)
            kept = _kept_rows(batch, decision, findings, coords)
            dropped = _dropped_rows(batch, decision)
            kept_writer.write(kept)
            dropped_writer.write(dropped)
            tally.add(kept, dropped)
            progress.update(tally.rows_in, share=None if share is None else number * share)
    summary = _summary(tally, metadata, clinical, findings)
    summary["coords_column"] = coords
    summary["object_store"] = object_store.TRANSFER.as_dict()
    write_json(summary_out, summary)
    log.info(
        "%d rows in, %d kept, %d dropped %s in %.1f s",
        summary["rows_in"],
        summary["rows_kept"],
        summary["rows_dropped"],
        {reason: n for reason, n in summary["dropped_by_reason"].items() if n},
        time.perf_counter() - started,
    )
    return summary
