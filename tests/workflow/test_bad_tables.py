"""Bad metadata tables: stage 1 refuses or drops them cleanly, the workflow copes with the rest.

- Unusable tables (missing required columns, text where integers belong, not UTF-8,
  ragged rows) stop the run with one line naming the file and the problem, raised
  before any parsing library sees the rows.
- Usable oddities (extra or reordered columns, duplicate rows or image paths,
  non-ASCII text, a missing or negative identifier, no rows at all) run to the end:
  a row whose dicom_path an earlier kept row has is dropped as duplicate_path (the
  first is kept), a row without a valid empi_anon / acc_anon as id_invalid.
- The ROI cells are fuzzed through the whole parse-validate step on real images.
"""

from __future__ import annotations

import json
import re
import shutil
import traceback
from pathlib import Path

import h5py
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embedpatch.config import validate_config
from embedpatch.demo import SOURCE_PREFIX
from embedpatch.filter.stage import filter_metadata
from embedpatch.io.tables import TableError
from embedpatch.patches.manifest import collect_patches
from embedpatch.rois.columns import INPUT_COLUMNS
from embedpatch.rois.stage import RoiSettings, build_roi_tables, run_roi_stage
from helpers.user_mode import (
    check_outputs,
    clean_rows,
    copy_images,
    exams_with,
    has_rois,
    read_table,
    relative,
    set_up_run,
    snakemake,
)

NON_ASCII = "Befund: Verkalkung, naïve ØÆ 乳房 🩻"


def filter_table(table: pd.DataFrame | Path, out: Path, cohort: Path) -> dict:
    """Stage 1 on `table` (written as CSV when a DataFrame) with the demo's paths."""
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(table, pd.DataFrame):
        table.to_csv(out / "metadata.csv", index=False)
        table = out / "metadata.csv"
    return filter_metadata(
        table,
        out / "filtered.parquet",
        out / "dropped.parquet",
        out / "filter_summary.json",
        filter_config=validate_config({})["filter"],
        dicom_root=str(cohort / "images"),
        path_rewrite=[(SOURCE_PREFIX, f"{cohort / 'images'}/")],
    )


@pytest.fixture(scope="module")
def demo_table(demo_cohort) -> pd.DataFrame:
    return read_table(demo_cohort / "tables/metadata.csv")


# ---- tables the pipeline refuses, with one line ---------------------------------------


def refusal(table: pd.DataFrame | Path, tmp_path: Path, cohort: Path) -> str:
    """The one-line message stage 1 refuses `table` with, raised from our own code."""
    with pytest.raises(TableError) as raised:
        filter_table(table, tmp_path, cohort)
    message = str(raised.value)
    assert "\n" not in message
    frames = traceback.extract_tb(raised.value.__traceback__)
    assert not [frame for frame in frames if "site-packages" in frame.filename]
    return message


def test_missing_required_columns_are_all_named(demo_table, demo_cohort, tmp_path):
    message = refusal(demo_table.drop(columns=["acc_anon", "ROI_coords"]), tmp_path, demo_cohort)
    assert message.endswith("missing required column(s): acc_anon, ROI_coords")


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("Rows", "3328 px", "column 'Rows' has 1 non-integer value(s), e.g. '3328 px'"),
        ("acc_anon", "A1234", "column 'acc_anon' has 1 non-integer value(s), e.g. 'A1234'"),
        ("acc_anon", "12.5", "column 'acc_anon' has 1 non-integer value(s), e.g. '12.5'"),
        ("num_ROI", "one", "column 'num_ROI' has 1 non-integer value(s), e.g. 'one'"),
        ("spot_mag", "yes", "column 'spot_mag' is not numeric"),
    ],
)
def test_text_where_numbers_belong(demo_table, demo_cohort, tmp_path, column, value, expected):
    table = demo_table.copy()
    table.loc[3, column] = value
    assert expected in refusal(table, tmp_path, demo_cohort)


def test_a_table_that_is_not_utf8(demo_table, demo_cohort, tmp_path):
    table = demo_table.copy()
    table.loc[0, "SeriesDescription"] = "Mammographie gauche é"
    path = tmp_path / "latin1.csv"
    table.to_csv(path, index=False, encoding="latin-1")
    assert "unreadable table (UnicodeDecodeError" in refusal(path, tmp_path / "out", demo_cohort)


def test_a_ragged_csv_row(demo_cohort, tmp_path):
    path = tmp_path / "ragged.csv"
    lines = (demo_cohort / "tables/metadata.csv").read_text().splitlines()
    lines[-1] += ",one cell too many"
    path.write_text("\n".join(lines) + "\n")
    assert "unreadable table (ArrowInvalid: CSV parse error" in refusal(
        path, tmp_path / "out", demo_cohort
    )


@pytest.mark.workflow
def test_the_run_stops_with_the_one_line_message(demo_table, demo_cohort, tmp_path):
    set_up_run(tmp_path, demo_table.drop(columns=["FinalImageType"]), demo_cohort / "images")
    result = snakemake(tmp_path, "results/manifest.parquet")
    assert result.returncode != 0
    log = (tmp_path / "results/logs/filter_metadata.log").read_text()
    expected = "TableError: metadata.csv: missing required column(s): FinalImageType"
    assert expected in log and expected in result.stderr
    assert "site-packages/pandas" not in log and "site-packages/pyarrow" not in log


# ---- tables that run: identifiers, column order, no rows ------------------------------


def test_missing_or_negative_identifiers_drop_the_row(demo_table, demo_cohort, tmp_path):
    table = demo_table.copy()
    table.loc[0, "acc_anon"] = ""
    table.loc[1, "empi_anon"] = "-7"
    summary = filter_table(table, tmp_path, demo_cohort)
    dropped = pd.read_parquet(tmp_path / "dropped.parquet")
    invalid = dropped[dropped["reason"] == "id_invalid"]
    assert list(invalid["anon_dicom_path"]) == list(table.loc[[0, 1], "anon_dicom_path"])
    assert summary["dropped_by_reason"]["id_invalid"] == 2


def test_extra_and_reordered_columns_change_nothing(demo_table, demo_cohort, tmp_path):
    shuffled = demo_table[demo_table.columns[::-1]].assign(extra_note=NON_ASCII, extra_n="7")
    outputs = {}
    for name, table in (("plain", demo_table), ("shuffled", shuffled)):
        filter_table(table, tmp_path / name, demo_cohort)
        run_roi_stage(
            str(tmp_path / name / "filtered.parquet"),
            str(tmp_path / name / "rois.parquet"),
            str(tmp_path / name / "rejected.parquet"),
            str(tmp_path / name / "roi_summary.json"),
            validate_config({})["rois"],
        )
        outputs[name] = [
            pd.read_parquet(tmp_path / name / file) for file in ("rois.parquet", "rejected.parquet")
        ]
        outputs[name].append(pd.read_parquet(tmp_path / name / "dropped.parquet"))
    for plain, shuffled_out in zip(outputs["plain"], outputs["shuffled"], strict=True):
        pd.testing.assert_frame_equal(plain, shuffled_out)
    filtered = pd.read_parquet(tmp_path / "shuffled/filtered.parquet")
    assert set(filtered["extra_note"]) == {NON_ASCII}


def test_a_zero_row_parquet_table_gives_empty_outputs(demo_table, demo_cohort, tmp_path):
    """Stages 1, 2 and the manifest in-process; the header-only CSV runs under Snakemake."""
    path = tmp_path / "metadata.parquet"
    pq.write_table(pa.Table.from_pandas(demo_table.iloc[0:0], preserve_index=False), path)
    assert filter_table(path, tmp_path, demo_cohort)["rows_in"] == 0
    stage2 = [str(tmp_path / name) for name in ("rois.parquet", "val.parquet", "roi.json")]
    run_roi_stage(str(tmp_path / "filtered.parquet"), *stage2, validate_config({})["rois"])
    outputs = [str(tmp_path / name) for name in ("m.parquet", "r.parquet", "r.csv", "p.json")]
    summary = collect_patches(
        [], [], str(tmp_path / "filtered.parquet"), stage2[1], *outputs, shard_dir=str(tmp_path)
    )
    assert summary["patches"] == 0
    manifest = pd.read_parquet(tmp_path / "m.parquet")
    assert manifest.empty and {"shard", "index", "acc_anon", "label"} <= set(manifest.columns)
    assert manifest["acc_anon"].dtype == "int64"


@pytest.mark.workflow
def test_a_header_only_table_runs_to_the_end(demo_table, demo_cohort, tmp_path):
    set_up_run(tmp_path, demo_table.iloc[0:0], demo_cohort / "images")
    result = snakemake(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    manifest, rejected = check_outputs(tmp_path)
    assert manifest.empty and rejected.empty
    assert not list((tmp_path / "results/patches").glob("*.h5"))
    summary = json.loads((tmp_path / "results/rois/roi_summary.json").read_text())
    assert summary["rows_in"] == summary["rois_declared"] == 0


# ---- a messy table through the workflow ------------------------------------------------


@pytest.fixture(scope="module")
def messy_run(demo_cohort, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A few exams whose table has reordered and extra columns, non-ASCII text and a
    non-ASCII file name, a row repeated verbatim, a second row for one image with another
    box, and a box written with a full-width digit. Returns the run and the rows' paths."""
    clean = clean_rows(demo_cohort)
    exam_a = exams_with(clean, "2D", "3D")[0]
    exams = [exam_a, *(acc for acc in exams_with(clean, "2D") if acc != exam_a)]

    def rows_of(count: int) -> pd.DataFrame:
        return clean[clean["acc_anon"].isin(exams[:count])].reset_index(drop=True)

    def roi_2d_rows(table: pd.DataFrame) -> int:
        return int((table["FinalImageType"].eq("2D") & has_rois(table)).sum())

    # The first exams (at least two) that hold three 2D rows with ROIs between them.
    table = next(rows_of(n) for n in range(2, len(exams) + 1) if roi_2d_rows(rows_of(n)) >= 3)
    root = tmp_path_factory.mktemp("messy_inputs") / "images"
    copy_images(table, demo_cohort, root)
    roi_2d = table.index[table["FinalImageType"].eq("2D") & has_rois(table)]
    roi_3d = table.index[table["FinalImageType"].eq("3D") & has_rois(table)][0]
    renamed, repeated, widened = roi_2d[0], roi_2d[1], roi_2d[2]
    old = root / relative(table.at[renamed, "anon_dicom_path"])
    new = old.with_name("naïve_乳房 é.dcm")
    shutil.move(old, new)
    table.at[renamed, "anon_dicom_path"] = SOURCE_PREFIX + str(new.relative_to(root))
    table.at[widened, "ROI_coords"] = re.sub(
        r"\d",
        lambda digit: chr(ord(digit.group()) + 0xFEE0),  # its full-width form
        table.at[widened, "ROI_coords"],
        count=1,
    )
    other_box = table.loc[[roi_3d]].assign(ROI_coords="[[1, 1, 9, 9]]")
    table = pd.concat([table, table.loc[[repeated]], other_box], ignore_index=True)
    table = table[table.columns[::-1]].assign(SeriesDescription=NON_ASCII, Notes=NON_ASCII)
    workdir = set_up_run(tmp_path_factory.mktemp("messy_run"), table, root)
    result = snakemake(workdir, "results/manifest.parquet")
    assert result.returncode == 0, result.stderr[-4000:]
    paths = {
        name: table.at[index, "anon_dicom_path"]
        for name, index in (
            ("renamed", renamed),
            ("repeated", repeated),
            ("widened", widened),
            ("other_box", roi_3d),
        )
    }
    return workdir, paths


@pytest.mark.workflow
def test_duplicates_are_dropped_keeping_the_first(messy_run):
    workdir, paths = messy_run
    dropped = pd.read_parquet(workdir / "results/metadata/dropped.parquet")
    duplicates = dropped[dropped["reason"] == "duplicate_path"]
    assert sorted(duplicates["anon_dicom_path"]) == sorted([paths["repeated"], paths["other_box"]])
    manifest, _ = check_outputs(workdir)
    for name in ("repeated", "other_box"):
        patches = manifest[manifest["anon_dicom_path"] == paths[name]]
        keys = patches[["roi_index", "frame", "padding"]]
        assert len(patches) and not keys.duplicated().any()
    rois = pd.read_parquet(workdir / "results/rois/rois.parquet")
    assert (rois.loc[rois["anon_dicom_path"] == paths["other_box"], "ymin"] != 1).all()


@pytest.mark.workflow
def test_non_ascii_text_and_paths_round_trip(messy_run):
    workdir, paths = messy_run
    manifest, rejected = check_outputs(workdir)
    assert paths["renamed"] in set(manifest["anon_dicom_path"])
    shard = manifest.loc[manifest["anon_dicom_path"] == paths["renamed"], "shard"].iloc[0]
    with h5py.File(workdir / "results" / shard, "r") as file:
        stored = {path.decode("utf-8") for path in file["info"]["anon_dicom_path"]}
        assert paths["renamed"] in stored
    filtered = pd.read_parquet(workdir / "results/metadata/filtered.parquet")
    assert set(filtered["Notes"]) == set(filtered["SeriesDescription"]) == {NON_ASCII}
    widened = rejected[rejected["anon_dicom_path"] == paths["widened"]]
    assert list(zip(widened["reason"], widened["roi_index"], strict=True)) == [("non_integer", 0)]
    assert re.search(r"'[\uff10-\uff19]", widened["detail"].iloc[0])
    csv = pd.read_csv(workdir / "results/rois/rejected.csv", dtype=str, encoding="utf-8")
    assert paths["widened"] in set(csv["anon_dicom_path"])


# ---- the ROI cells fuzzed through stage 2 ----------------------------------------------


def serialized(boxes: list[list[int]], tuples: bool) -> str:
    return repr(tuple(tuple(box) for box in boxes)) if tuples else repr(boxes)


def roi_text(values: st.SearchStrategy[int]) -> st.SearchStrategy[str | None]:
    """Well-formed lists, the same cut or spliced, and arbitrary text."""
    lists = st.lists(st.lists(values, max_size=6), max_size=4)
    well_formed = st.builds(serialized, lists, st.booleans())
    damaged = st.tuples(well_formed, st.integers(0, 40), st.text(max_size=3)).map(
        lambda args: args[0][: args[1]] + args[2]
    )
    return st.one_of(st.none(), well_formed, damaged, st.text(max_size=30))


CELL = st.one_of(
    st.none(),
    st.integers(-3, 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.booleans(),
)


@pytest.fixture(scope="module")
def images(demo_cohort) -> dict[str, tuple[str, int, int, int]]:
    """A plain 2D and a DBT demo image: local path, rows, columns, frames."""
    from embedpatch.dicom import read_header

    clean = clean_rows(demo_cohort)
    found = {}
    for kind in ("2D", "3D"):
        row = clean[clean["FinalImageType"].eq(kind) & has_rois(clean)].iloc[0]
        path = str(demo_cohort / "images" / relative(row["anon_dicom_path"]))
        header = read_header(path)
        found[kind] = (path, header.rows, header.columns, header.number_of_frames)
    return found


@st.composite
def roi_rows(draw: st.DrawFn, images: dict) -> dict:
    kind = draw(st.sampled_from(["2D", "cview", "3D"]))
    path, rows, columns, frames = images["3D" if kind == "3D" else "2D"]
    size = st.one_of(st.none(), st.just(rows), st.just(columns), st.just(frames), CELL)
    return {
        "empi_anon": 1,
        "acc_anon": 2,
        "anon_dicom_path": f"row{draw(st.integers(0, 10**6))}",
        "FinalImageType": kind,
        "ImageLateralityFinal": draw(st.sampled_from(["L", "R", None])),
        "ViewPosition": "CC",
        "dicom_path": draw(st.sampled_from([path, path, path + ".missing"])),
        "num_ROI": draw(st.one_of(st.integers(0, 5), CELL)),
        "ROI_coords": draw(roi_text(st.integers(-20, max(rows, columns) + 20))),
        "ROI_frames": draw(roi_text(st.integers(-2, frames + 2))),
        "Rows": draw(size),
        "Columns": draw(size),
        "ImagesInAcquisition": draw(size),
    }


@pytest.mark.slow
@given(data=st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzzed_roi_cells_never_break_the_accounting(images, data):
    records = data.draw(st.lists(roi_rows(images), min_size=1, max_size=4))
    table = pd.DataFrame(records, columns=INPUT_COLUMNS)
    tables = build_roi_tables(table, RoiSettings.from_config(validate_config({})["rois"]))
    summary, accepted, rejected = tables.summary, tables.accepted, tables.rejected
    assert (
        summary["rows_in"]
        == len(table)
        == (
            summary["rows_with_accepted_rois"]
            + summary["rows_all_rois_rejected"]
            + summary["rows_without_rois"]
        )
    )
    assert summary["rois_declared"] == len(accepted) + rejected["n_rois"].sum()
    assert (accepted["ymin"] < accepted["ymax"]).all() and (
        accepted["ymax"] <= accepted["rows"]
    ).all()
    assert (accepted["xmin"] < accepted["xmax"]).all()
    assert (accepted["xmax"] <= accepted["columns"]).all()
    frames = zip(accepted["frames"], accepted["n_frames"], strict=True)
    assert all(0 <= frame < n for listed, n in frames for frame in listed)
