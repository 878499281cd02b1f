"""Collect the per-exam shards: the manifest of every patch, and every rejection in one table.

The manifest has one row per patch: where it is (`shard`, relative to the results
folder, and `index`, its row in that shard's `patches`), what it shows (identifiers,
box, frame, window, padding, label), its `dtype` (that of its shard's `patches`,
e.g. "uint16") and, when the filter joined the clinical table, the image's `clin_*`
labels. Rejections from ROI validation and from extraction
(images that could not be read or decoded) are gathered with a `stage` column.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from embedpatch.io.atomic import atomic_output, write_json
from embedpatch.patches.batches import RECORD_DIR, STATE_DIR
from embedpatch.patches.shards import (
    INFO_COLUMNS,
    INFO_INT_COLUMNS,
    patches_dtype,
    read_shard_tables,
    typed_table,
)
from embedpatch.vocab import CLINICAL_PREFIX

log = logging.getLogger(__name__)

SHARD_NAME = re.compile(r"^(\d+)\.h5$")


def no_patches() -> pd.DataFrame:
    """A manifest (or batch table) without rows, with the columns and types of one."""
    return typed_table([], ["shard", *INFO_COLUMNS], INFO_INT_COLUMNS)


def read_shards(shard_paths: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The info rows of these shards, in the order given, each with its `shard` path as
    given, and the shards' rejections (a table without columns when there is no shard)."""
    parts = []
    for path in shard_paths:
        info, rejections, _ = read_shard_tables(path)
        info.insert(0, "shard", str(path))
        parts.append((info, rejections))
    if not parts:
        parts = [(no_patches(), pd.DataFrame())]
    return (
        pd.concat([info for info, _ in parts], ignore_index=True),
        pd.concat([rejected for _, rejected in parts], ignore_index=True),
    )


def _relative_shards(manifest: pd.DataFrame, results: str) -> pd.DataFrame:
    """`shard` made relative to the results folder, rows sorted by (shard, index)."""
    relative = {
        path: Path(path).relative_to(results).as_posix() for path in manifest["shard"].unique()
    }
    manifest["shard"] = manifest["shard"].map(relative)
    return manifest.sort_values(["shard", "index"], kind="stable", ignore_index=True)


def _with_clinical_labels(manifest: pd.DataFrame, filtered_path: str) -> pd.DataFrame:
    labels = _clinical_labels(filtered_path)
    if labels is None:
        return manifest
    return manifest.merge(labels, on="anon_dicom_path", how="left", validate="many_to_one")


def _clinical_labels(filtered_path: str) -> pd.DataFrame | None:
    clinical = [
        name for name in pq.read_schema(filtered_path).names if name.startswith(CLINICAL_PREFIX)
    ]
    if not clinical:
        return None
    return pd.read_parquet(
        filtered_path, columns=["anon_dicom_path", *clinical], dtype_backend="numpy_nullable"
    )


def all_rejections(validation: pd.DataFrame, extraction: pd.DataFrame) -> pd.DataFrame:
    """Validation and extraction rejections in one table, with the stage that refused each.

    An empty extraction table adds nothing (its columns may be missing: no shard).
    """
    parts = [validation.assign(stage="validate")]
    if len(extraction):
        parts.append(extraction.assign(stage="extract"))
    return pd.concat(parts, ignore_index=True)


def _counts(column: pd.Series) -> dict[str, int]:
    """How often each value occurs, most frequent first (ties in order of appearance).
    Counted on the column's numpy values: iterating an Arrow-backed column one value at a
    time took 0.8 s for the 220,000 patches of 50,000 exams."""
    return dict(Counter(column.to_numpy(dtype=object)).most_common())


def summarize(manifest: pd.DataFrame, rejected: pd.DataFrame, n_shards: int) -> dict:
    """Counts of patches and rejections, for the summary file and the report."""
    return {
        "shards": n_shards,
        "patches": len(manifest),
        "patches_by_label": _counts(manifest["label"]),
        "patches_by_padding": _counts(manifest["padding"]),
        "patches_by_image_type": _counts(manifest["FinalImageType"]),
        "rejections_by_stage": _counts(rejected["stage"]),
        "rois_rejected_by_extraction": int(
            rejected.loc[rejected["stage"] == "extract", "n_rois"].sum()
        ),
    }


def _batch_records(record_paths: Sequence[str]) -> tuple[pd.DataFrame, set[str], Counter]:
    """The extraction rejections the batch records list, in acc_anon order whatever the
    batches (a table without columns when there is none), the exams with a shard, and the
    object store requests and bytes of the batches' last runs."""
    rejections, exams, transfer = [], set(), Counter(requests=0, bytes=0)
    for path in record_paths:
        record = json.loads(Path(path).read_text())
        rejections.extend(record["rejections"])
        exams.update(record["exams"])
        transfer.update(record.get("object_store", {}))
    rejections.sort(key=lambda row: str(row["acc_anon"]))
    return pd.DataFrame(rejections), exams, transfer


def remove_departed_shards(shard_dir: str | Path, exams: set[str]) -> list[str]:
    """Delete the shards of `shard_dir` (`<acc_anon>.h5`) of exams not in `exams`, those
    of no batch any more (the exam left the cohort or has no work left); their acc_anon."""
    removed = []
    try:
        with os.scandir(shard_dir) as entries:  # a tenth of Path.glob's time at 10,000 shards
            names = sorted(entry.name for entry in entries if entry.name.endswith(".h5"))
    except FileNotFoundError:
        return removed
    for name in names:
        match = SHARD_NAME.match(name)
        if match and match[1] not in exams:
            Path(shard_dir, name).unlink(missing_ok=True)
            removed.append(match[1])
    return removed


def remove_departed_batches(shard_dir: str | Path, batches: set[str]) -> list[str]:
    """Delete the records, tables and states (`batches/` and `state/` of `shard_dir`) of
    batches not in `batches`, those the layout no longer has; their names. Left in place,
    a record would make a batch that comes back with the same exams look done although
    its shards were deleted."""
    removed = set()
    for folder in (RECORD_DIR, STATE_DIR):
        for path in Path(shard_dir, folder).glob("b*.*"):
            if path.suffix in (".json", ".parquet") and path.stem not in batches:
                path.unlink(missing_ok=True)
                removed.add(path.stem)
    return sorted(removed)


def _with_dtypes(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with every row's patch `dtype`: rows of batch tables written before that
    column existed get it from their shard's `patches` (one file open per such shard)."""
    present = table["dtype"] if "dtype" in table else pd.Series(None, index=table.index)
    missing = present.isna()
    if not missing.any():
        return table
    shards = table.loc[missing, "shard"].unique()
    stored = table["shard"].map({shard: patches_dtype(shard) for shard in shards})
    log.info("patch dtypes read from %d shards (batch tables without them)", len(shards))
    return table.assign(dtype=present.where(~missing, stored).astype("str"))


def _batch_tables(table_paths: Sequence[str]) -> pd.DataFrame:
    """The batches' tables of patches as one, each row with its patch `dtype`. Joined as
    Arrow tables and converted once: converting each of 256 batch tables to pandas took
    0.45 s, this 0.26 s; each read as one file, not through pq.read_table's datasets,
    another 0.1 s less at 258 batches."""
    if not table_paths:
        return no_patches()
    tables = [pq.ParquetFile(path).read() for path in table_paths]
    joined = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return _with_dtypes(joined.reset_index(drop=True))


def manifest_from_batch_tables(
    table_paths: Sequence[str], results: str, filtered_path: str
) -> pd.DataFrame:
    """The manifest of the extraction batches' tables of patches (batch_job.extract_batch
    writes one per batch): `shard` made relative to `results`, rows sorted by (shard,
    index), each image's clin_* labels from the filtered table when it has them."""
    manifest = _relative_shards(_batch_tables(table_paths), results)
    return _with_clinical_labels(manifest, filtered_path)


def collect_patches(
    record_paths: Sequence[str],
    table_paths: Sequence[str],
    filtered_path: str,
    validation_rejected_path: str,
    manifest_path: str,
    rejected_path: str,
    rejected_csv_path: str,
    summary_path: str,
    shard_dir: str,
) -> dict:
    """Write the manifest, the combined rejection tables and the patch summary, from the
    extraction batches' records and tables (embedpatch.patches.batch_job.extract_batch),
    and delete what belongs to no batch in `shard_dir` (`remove_departed_shards`,
    `remove_departed_batches`).

    The manifest's folder is the results folder its `shard` paths are made relative to;
    its rows are sorted by (shard, index).
    """
    manifest = manifest_from_batch_tables(
        table_paths, str(Path(manifest_path).parent), filtered_path
    )
    extraction, exams, transfer = _batch_records(record_paths)
    removed = remove_departed_shards(shard_dir, exams)
    gone = remove_departed_batches(shard_dir, {Path(path).stem for path in record_paths})
    validation = pd.read_parquet(validation_rejected_path, dtype_backend="numpy_nullable")
    rejected = all_rejections(validation, extraction)
    summary = summarize(manifest, rejected, len(exams)) | {"object_store": dict(transfer)}
    with atomic_output(manifest_path) as temporary:
        manifest.to_parquet(temporary, index=False)
    with atomic_output(rejected_path) as temporary:
        rejected.to_parquet(temporary, index=False)
    with atomic_output(rejected_csv_path) as temporary:
        rejected.to_csv(temporary, index=False)
    write_json(summary_path, summary)
    log.info("removed: %d shards of departed exams, batches %s", len(removed), gone)
    log.info("collected %s", json.dumps(summary))
    return summary
