"""Laterality-aware clinical join: the maintainers' matching rule, one row per image."""

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from embedpatch.filter.clinical import (
    ASSES_ORDER,
    aggregate_findings,
    attach_clinical,
    load_clinical,
)
from embedpatch.io.tables import TableError

EXAM = 1_234_567_890_123_457
OTHER = 9_876_543_210_987_653


CLINICAL_SCHEMA = pa.schema(
    [
        ("acc_anon", pa.int64()),
        ("side", pa.string()),
        ("asses", pa.string()),
        ("path_severity", pa.int64()),
        ("tissueden", pa.int64()),
        ("desc", pa.string()),
        ("massshape", pa.string()),
        ("calcfind", pa.string()),
        ("age_at_study", pa.float64()),
    ]
)


def findings_table(rows):
    """Built without pandas: a NaN in acc_anon would make it float64 and lose digits."""
    rows = [(*row, "calc", 61.5) for row in rows]
    return pa.Table.from_pylist(
        [dict(zip(CLINICAL_SCHEMA.names, row, strict=True)) for row in rows], CLINICAL_SCHEMA
    )


def images_table(keys):
    acc, laterality = zip(*keys, strict=True)
    return pa.table(
        {
            "acc_anon": pa.array(acc, pa.int64()),
            "ImageLateralityFinal": pa.array(laterality, pa.string()),
            "other": [f"image {i}" for i in range(len(keys))],
        }
    )


FINDINGS = [
    (EXAM, "L", "N", None, None, "left only", "oval"),
    (EXAM, "R", "A", 4, 3, "right one", "round"),
    (EXAM, "R", "S", 2, 3, "right two", None),
    (EXAM, "B", "B", None, 3, "both sides", "irregular"),
    (OTHER, None, "M", 0, 2, "side unknown", "spiculated"),
    (None, "L", "K", 0, 1, "no exam id", "x"),
]


@pytest.fixture
def joined():
    images = images_table(
        [(EXAM, "L"), (EXAM, "R"), (EXAM, None), (OTHER, "L"), (OTHER, "R"), (42, "L"), (None, "L")]
    )
    return attach_clinical(images, aggregate_findings(findings_table(FINDINGS))).to_pydict()


def test_one_row_per_image_in_order(joined):
    assert list(joined["other"]) == [f"image {i}" for i in range(7)]


def test_side_matches_laterality_or_both_or_missing(joined):
    # L image: L + B; R image: R, R + B; no laterality: only B; other exam: side NaN.
    assert list(joined["clin_n_findings"]) == [2, 3, 1, 1, 1, 0, 0]


def test_worst_assessment_and_lowest_path_severity(joined):
    assert list(joined["clin_asses_worst"]) == ["B", "S", "B", "M", "M", None, None]
    assert list(joined["clin_path_severity_min"]) == [None, 2, None, 0, 0, None, None]


def test_single_finding_fields_only_when_exactly_one_matches(joined):
    assert list(joined["clin_desc"]) == [
        None,
        None,
        "both sides",
        "side unknown",
        "side unknown",
        None,
        None,
    ]
    assert list(joined["clin_massshape"])[2:5] == ["irregular", "spiculated", "spiculated"]
    assert list(joined["clin_calcfind"])[:3] == [None, None, "calc"]


def test_exam_level_fields_come_from_any_row_of_the_exam(joined):
    assert list(joined["clin_tissueden"]) == [3, 3, 3, 2, 2, None, None]
    assert list(joined["clin_age_at_study"]) == [61.5] * 5 + [None, None]


def test_assessment_order_is_documented():
    assert "".join(ASSES_ORDER) == "NBPASMK"


def test_empty_clinical_table_gives_zero_findings():
    images = images_table([(EXAM, "L")])
    joined = attach_clinical(images, aggregate_findings(findings_table([])))
    assert joined["clin_n_findings"].to_pylist() == [0]
    assert joined["clin_asses_worst"].to_pylist() == [None]


def test_counts_match_the_maintainers_pandas_merge():
    rng = np.random.default_rng(7)
    n_findings, n_images = 400, 300
    exams = [EXAM + 97 * i for i in range(40)]
    sides = np.array(["L", "R", "B", None], dtype=object)
    findings = findings_table(
        [
            (int(rng.choice(exams)), rng.choice(sides), rng.choice(list("NBPASMK")), 1, 2, "d", "m")
            for _ in range(n_findings)
        ]
    )
    keys = [
        (int(rng.choice([*exams, 1])), rng.choice(np.array(["L", "R", None], dtype=object)))
        for _ in range(n_images)
    ]
    images = images_table(keys)
    joined = attach_clinical(images, aggregate_findings(findings)).to_pandas()

    frame = images.to_pandas().reset_index()
    merged = frame.merge(findings.to_pandas(), on="acc_anon")
    kept = merged[
        (merged["side"] == merged["ImageLateralityFinal"])
        | (merged["side"] == "B")
        | merged["side"].isna()
    ]
    expected = kept.groupby("index").size().reindex(frame["index"], fill_value=0)
    assert list(joined["clin_n_findings"]) == list(expected)


def test_load_clinical_reads_the_csv_and_names_missing_columns(tmp_path):
    path = tmp_path / "clinical.csv"
    pacsv.write_csv(findings_table(FINDINGS[:2]), path)
    findings = load_clinical(path)
    assert (findings.rows, findings.exams) == (2, 1)
    pacsv.write_csv(findings_table(FINDINGS[:2]).drop_columns(["asses", "desc"]), path)
    with pytest.raises(TableError, match=r"missing required column.*asses, desc"):
        load_clinical(path)
