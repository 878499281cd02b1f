"""Attach laterality-matched clinical findings to image rows, keeping one row per image.

The dataset maintainers' join: on acc_anon, keeping the clinical rows (one per
finding) whose `side` equals the image's ImageLateralityFinal, or is "B" (both),
or is missing. Values are compared exactly, as that join does. The matching
findings are aggregated into `clin_*` columns:

- clin_n_findings: how many findings match (0 when none, or the exam is absent);
- clin_asses_worst: the worst BI-RADS assessment letter, in the order of
  ASSES_ORDER (N < B < P < A < S < M < K); unknown letters are ignored;
- clin_path_severity_min: the lowest path_severity (0 is invasive cancer: lower is worse);
- clin_desc, clin_massshape, clin_calcfind: the finding's own values, only when
  exactly one finding matches (an ROI can only be tied to a finding when its
  side has exactly one), else null;
- clin_tissueden, clin_age_at_study: exam-level, the first non-null value over all
  the exam's rows, whatever their side (null only when the exam is absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedpatch.io.tables import read_table

CLINICAL_COLUMNS = (
    "acc_anon",
    "side",
    "asses",
    "path_severity",
    "tissueden",
    "desc",
    "massshape",
    "calcfind",
    "age_at_study",
)
ASSES_ORDER = ("N", "B", "P", "A", "S", "M", "K")  # least to most suspicious
SINGLE_FINDING_COLUMNS = ("desc", "massshape", "calcfind")
EXAM_COLUMNS = ("tissueden", "age_at_study")
IMAGE_LATERALITY = "ImageLateralityFinal"
# Findings are grouped per exam and image laterality: key = acc_anon * 4 + code, where
# code is 1 + the position in _LATERALITIES, or 0 for a missing (or other) laterality.
_LATERALITIES = ("L", "R")


@dataclass(frozen=True)
class ClinicalFindings:
    """Findings aggregated per (exam, image laterality) and per exam, sorted by key."""

    side_keys: np.ndarray
    by_side: pa.Table
    exam_keys: np.ndarray
    by_exam: pa.Table
    rows: int

    @property
    def exams(self) -> int:
        """Number of distinct exams in the clinical table."""
        return len(self.exam_keys)


def load_clinical(path: str | Path) -> ClinicalFindings:
    """Read the clinical columns the join needs and aggregate them."""
    return aggregate_findings(read_table(path, CLINICAL_COLUMNS))


def _laterality_key(acc_anon: pa.Array, laterality: pa.Array | int) -> pa.Array:
    return pc.add(pc.multiply(acc_anon, 4), laterality)


def aggregate_findings(findings: pa.Table) -> ClinicalFindings:
    """Aggregate a clinical table (CLINICAL_COLUMNS) for attach_clinical."""
    rows = findings.num_rows
    findings = findings.filter(pc.is_valid(findings["acc_anon"]))
    side = findings["side"].cast(pa.string())
    any_side = pc.fill_null(pc.equal(side, "B"), True)
    ranked = findings.select(["acc_anon", "path_severity", *SINGLE_FINDING_COLUMNS]).append_column(
        "rank", pc.index_in(findings["asses"].cast(pa.string()), value_set=pa.array(ASSES_ORDER))
    )
    parts = []
    for code, laterality in enumerate((None, *_LATERALITIES)):
        matches = (
            any_side if laterality is None else pc.or_kleene(any_side, pc.equal(side, laterality))
        )
        part = ranked.filter(pc.fill_null(matches, False))
        parts.append(part.append_column("key", _laterality_key(part["acc_anon"], code)))
    grouped = (
        pa.concat_tables(parts)
        .group_by("key", use_threads=False)
        .aggregate(
            [
                ("key", "count"),
                ("rank", "max"),
                ("path_severity", "min"),
                *((name, "first") for name in SINGLE_FINDING_COLUMNS),
            ]
        )
        .sort_by("key")
    )
    single = pc.equal(grouped["key_count"], 1)
    by_side = pa.table(
        {
            "clin_n_findings": grouped["key_count"],
            "clin_asses_worst": pa.array(ASSES_ORDER).take(grouped["rank_max"]),
            "clin_path_severity_min": grouped["path_severity_min"],
            **{
                f"clin_{name}": pc.if_else(
                    single, grouped[f"{name}_first"].cast(pa.string()), pa.scalar(None, pa.string())
                )
                for name in SINGLE_FINDING_COLUMNS
            },
        }
    )
    exams = (
        findings.group_by("acc_anon", use_threads=False)
        .aggregate([(name, "first") for name in EXAM_COLUMNS])
        .sort_by("acc_anon")
    )
    by_exam = pa.table({f"clin_{name}": exams[f"{name}_first"] for name in EXAM_COLUMNS})
    return ClinicalFindings(
        side_keys=grouped["key"].to_numpy(),
        by_side=by_side,
        exam_keys=exams["acc_anon"].to_numpy(),
        by_exam=by_exam,
        rows=rows,
    )


def _positions(sorted_keys: np.ndarray, keys: pa.Array) -> pa.Array:
    """Index of each key in sorted_keys, null where absent (or the key is null)."""
    if not len(sorted_keys):
        return pa.nulls(len(keys), pa.int64())
    values = pc.fill_null(keys, 0).to_numpy(zero_copy_only=False)
    found_at = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    found = pc.is_valid(keys).to_numpy(zero_copy_only=False) & (sorted_keys[found_at] == values)
    return pa.array(found_at, pa.int64(), mask=~found)


def attach_clinical(images: pa.Table, findings: ClinicalFindings) -> pa.Table:
    """`images` (acc_anon, ImageLateralityFinal, ...) with the clin_* columns appended."""
    position = pc.index_in(
        images[IMAGE_LATERALITY].cast(pa.string()), value_set=pa.array(_LATERALITIES)
    )
    side_key = _laterality_key(images["acc_anon"], pc.fill_null(pc.add(position, 1), 0))
    by_side = findings.by_side.take(_positions(findings.side_keys, side_key))
    by_exam = findings.by_exam.take(_positions(findings.exam_keys, images["acc_anon"]))
    columns = {
        "clin_n_findings": pc.fill_null(by_side["clin_n_findings"], 0),
        "clin_asses_worst": by_side["clin_asses_worst"],
        "clin_path_severity_min": by_side["clin_path_severity_min"],
        **{name: by_exam[name] for name in by_exam.column_names},
        **{f"clin_{name}": by_side[f"clin_{name}"] for name in SINGLE_FINDING_COLUMNS},
    }
    for name, column in columns.items():
        images = images.append_column(name, column)
    return images
