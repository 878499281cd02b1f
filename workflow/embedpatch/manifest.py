"""Collect the per-exam shards: the manifest of every patch, and every rejection in one table.

The manifest has one row per patch: where it is (`shard`, relative to the results
folder, and `index`, its row in that shard's `patches`), what it shows (identifiers,
box, frame, window, padding, label) and, when the filter joined the clinical table,
the image's `clin_*` labels. Rejections from ROI validation and from extraction
(images that could not be read or decoded) are gathered with a `stage` column.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from embedpatch.shards import INFO_COLUMNS, INFO_INT_COLUMNS, read_shard_tables, typed_table
from embedpatch.tables import atomic_output

log = logging.getLogger(__name__)

CLINICAL_PREFIX = "clin_"


def _shard_rows(shard: Path, results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    info, rejections, _ = read_shard_tables(shard)
    info.insert(0, "shard", shard.relative_to(results).as_posix())
    return info, rejections


def _clinical_labels(filtered_path: str) -> pd.DataFrame | None:
    clinical = [
        name for name in pq.read_schema(filtered_path).names if name.startswith(CLINICAL_PREFIX)
    ]
    if not clinical:
        return None
    return pd.read_parquet(
        filtered_path, columns=["anon_dicom_path", *clinical], dtype_backend="numpy_nullable"
    )


def build_manifest(
    shard_paths: Sequence[str], results: str, filtered_path: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The manifest (one row per patch, `shard` relative to `results`) and the extraction
    rejections of all shards (a table without columns when there is no shard)."""
    results_dir = Path(results)
    parts = [_shard_rows(Path(path), results_dir) for path in sorted(shard_paths)]
    if not parts:  # no exam had work: an empty manifest with the columns and types of one
        parts = [(typed_table([], ["shard", *INFO_COLUMNS], INFO_INT_COLUMNS), pd.DataFrame())]
    manifest = pd.concat([info for info, _ in parts], ignore_index=True)
    rejections = pd.concat([rejected for _, rejected in parts], ignore_index=True)
    labels = _clinical_labels(filtered_path)
    if labels is not None:
        manifest = manifest.merge(labels, on="anon_dicom_path", how="left", validate="many_to_one")
    return manifest, rejections


def all_rejections(validation: pd.DataFrame, extraction: pd.DataFrame) -> pd.DataFrame:
    """Validation and extraction rejections in one table, with the stage that refused each.

    An empty extraction table adds nothing (its columns may be missing: no shard).
    """
    parts = [validation.assign(stage="validate")]
    if len(extraction):
        parts.append(extraction.assign(stage="extract"))
    return pd.concat(parts, ignore_index=True)


def summarize(manifest: pd.DataFrame, rejected: pd.DataFrame, n_shards: int) -> dict:
    """Counts of patches and rejections, for the summary file and the report."""
    return {
        "shards": n_shards,
        "patches": len(manifest),
        "patches_by_label": dict(Counter(manifest["label"]).most_common()),
        "patches_by_padding": dict(Counter(manifest["padding"]).most_common()),
        "patches_by_image_type": dict(Counter(manifest["FinalImageType"]).most_common()),
        "rejections_by_stage": dict(Counter(rejected["stage"]).most_common()),
        "rois_rejected_by_extraction": int(
            rejected.loc[rejected["stage"] == "extract", "n_rois"].sum()
        ),
    }


def shards_in_records(record_paths: Sequence[str]) -> list[str]:
    """The shard paths the extraction batches' records list, sorted."""
    shards = []
    for path in record_paths:
        exams = json.loads(Path(path).read_text())["exams"]
        shards.extend(entry["shard"] for entry in exams.values())
    return sorted(shards)


def collect_patches(
    record_paths: Sequence[str],
    filtered_path: str,
    validation_rejected_path: str,
    manifest_path: str,
    rejected_path: str,
    rejected_csv_path: str,
    summary_path: str,
) -> dict:
    """Write the manifest, the combined rejection tables and the patch summary, from the
    shards the batch records (embedpatch.exam_job.extract_batch) list.

    The manifest's folder is the results folder its `shard` paths are relative to.
    """
    results = str(Path(manifest_path).parent)
    shard_paths = shards_in_records(record_paths)
    manifest, extraction = build_manifest(shard_paths, results, filtered_path)
    validation = pd.read_parquet(validation_rejected_path, dtype_backend="numpy_nullable")
    rejected = all_rejections(validation, extraction)
    summary = summarize(manifest, rejected, len(shard_paths))
    with atomic_output(manifest_path) as temporary:
        manifest.to_parquet(temporary, index=False)
    with atomic_output(rejected_path) as temporary:
        rejected.to_parquet(temporary, index=False)
    with atomic_output(rejected_csv_path) as temporary:
        rejected.to_csv(temporary, index=False)
    with atomic_output(summary_path) as temporary:
        temporary.write_text(json.dumps(summary, indent=2) + "\n")
    log.info("collected %s", json.dumps(summary))
    return summary
