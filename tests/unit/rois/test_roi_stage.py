"""Stage 2 on real files: the demo cohort's odd rows land where its truth file says."""

import json
import os
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from embedpatch.config import validate_config
from embedpatch.demo import SOURCE_PREFIX
from embedpatch.filter.stage import filter_metadata
from embedpatch.geometry import Mirror
from embedpatch.rois.stage import run_roi_stage


def rois_config(**changes) -> dict:
    return {**validate_config({})["rois"], **changes}


def run_stage(filtered: Path, out: Path, cache: Path | None = None, **changes) -> dict:
    out.mkdir(exist_ok=True)
    summary = run_roi_stage(
        str(filtered),
        str(out / "rois.parquet"),
        str(out / "rejected.parquet"),
        str(out / "roi_summary.json"),
        rois_config=rois_config(**changes),
        cache_path=None if cache is None else str(cache),
    )
    return {
        "out": out,
        "summary": summary,
        "accepted": pd.read_parquet(out / "rois.parquet", dtype_backend="numpy_nullable"),
        "rejected": pd.read_parquet(out / "rejected.parquet", dtype_backend="numpy_nullable"),
    }


def filter_demo(cohort: Path, out: Path, table: str = "metadata.csv") -> Path:
    filtered = out / "filtered.parquet"
    filter_metadata(
        str(cohort / "tables" / table),
        str(filtered),
        str(out / "dropped.parquet"),
        str(out / "filter_summary.json"),
        filter_config=validate_config({})["filter"],
        dicom_root=str(cohort / "images"),
        path_rewrite=((SOURCE_PREFIX, f"{cohort / 'images'}/"),),
    )
    return filtered


@pytest.fixture(scope="module")
def filtered(demo_cohort, tmp_path_factory) -> Path:
    return filter_demo(demo_cohort, tmp_path_factory.mktemp("filtered"))


@pytest.fixture(scope="module")
def stage(filtered, tmp_path_factory) -> dict:
    return run_stage(filtered, tmp_path_factory.mktemp("rois"))


@pytest.fixture(scope="module")
def truth(demo_cohort) -> list[dict]:
    return json.loads((demo_cohort / "truth.json").read_text())


def records(truth: list[dict], kind: str) -> list[dict]:
    return [record for record in truth if record["kind"] == kind]


def test_every_bad_row_is_rejected_with_its_reason(stage, truth):
    rejected = stage["rejected"]
    found = set(
        zip(rejected["anon_dicom_path"], rejected["roi_index"], rejected["reason"], strict=True)
    )
    expected = {
        (r["anon_dicom_path"], r["roi_index"], r["reason"]) for r in records(truth, "reject")
    }
    assert expected <= found
    # Nothing else is refused: the demo's good rows all pass.
    assert found == expected


def accepted_roi(stage: dict, record: dict) -> pd.Series:
    accepted = stage["accepted"]
    match = accepted[
        (accepted["anon_dicom_path"] == record["anon_dicom_path"])
        & (accepted["roi_index"] == record["roi_index"])
    ]
    assert len(match) == 1, record
    return match.iloc[0]


def test_warnings_flag_the_right_rois(stage, truth):
    flagged = {
        "clipped": lambda roi: bool(roi["clipped"]),
        "near_duplicate": lambda roi: not pd.isna(roi["near_duplicate_of"]),
        "suspect_flip": lambda roi: bool(roi["suspect_flip"]),
        "suspect_axes_swapped": lambda roi: bool(roi["axes_swapped"]) and bool(roi["clipped"]),
        "frames_on_2d": lambda roi: bool(roi["frames_on_2d"]) and list(roi["frames"]) == [],
    }
    for record in records(truth, "warn"):
        assert flagged[record["reason"]](accepted_roi(stage, record)), record
        if record["reason"] == "suspect_flip":
            axis = record["note"].split("-mirror")[0].split()[-1]
            assert accepted_roi(stage, record)["mirror"] == axis, record
    accepted = stage["accepted"]
    clipping = ("clipped", "suspect_axes_swapped")  # a swapped box is kept clipped
    assert accepted["clipped"].sum() == len([r for r in truth if r["reason"] in clipping])
    assert accepted["suspect_flip"].sum() == len(
        [r for r in truth if r["reason"] == "suspect_flip"]
    )


def test_rois_at_chest_wall_and_skin_line_are_not_flagged(stage, truth):
    valid = records(truth, "valid")
    assert len(valid) >= 2
    for record in valid:
        roi = accepted_roi(stage, record)
        assert not roi["suspect_flip"], record
        assert roi["box_tissue"] > 0.25


def test_accounting_identities(stage, filtered):
    accepted, rejected, summary = stage["accepted"], stage["rejected"], stage["summary"]
    rows_in = len(pd.read_parquet(filtered, columns=["anon_dicom_path"]))
    with_accepted = set(accepted["anon_dicom_path"])
    all_rejected = set(rejected["anon_dicom_path"]) - with_accepted
    assert summary["rows_in"] == rows_in
    assert summary["rows_with_accepted_rois"] == len(with_accepted)
    assert summary["rows_all_rois_rejected"] == len(all_rejected)
    assert rows_in == len(with_accepted) + len(all_rejected) + summary["rows_without_rois"]
    assert summary["rois_accepted"] == len(accepted)
    assert summary["rois_rejected"] == rejected["n_rois"].sum()
    assert summary["rois_declared"] == len(accepted) + rejected["n_rois"].sum()


def test_accepted_boxes_lie_inside_their_images(stage):
    accepted = stage["accepted"]
    assert (accepted["ymin"] >= 0).all() and (accepted["xmin"] >= 0).all()
    assert (accepted["ymax"] <= accepted["rows"]).all()
    assert (accepted["xmax"] <= accepted["columns"]).all()
    assert (accepted["ymin"] < accepted["ymax"]).all() and (
        accepted["xmin"] < accepted["xmax"]
    ).all()
    for frames, n_frames, kind in zip(
        accepted["frames"], accepted["n_frames"], accepted["FinalImageType"], strict=True
    ):
        assert (len(frames) > 0) == (kind == "3D")
        assert all(0 <= f < n_frames for f in frames)


def test_bounds_come_from_the_image_header(stage, demo_cohort):
    first = stage["accepted"].iloc[0]
    header = pydicom.dcmread(first["dicom_path"], stop_before_pixels=True)
    assert (first["rows"], first["columns"]) == (header.Rows, header.Columns)


def test_flip_policy_fix_uses_the_mirrored_box(filtered, stage, tmp_path):
    fixed = run_stage(filtered, tmp_path, flip_check="fix")["accepted"]
    flagged = stage["accepted"][stage["accepted"]["suspect_flip"]]
    assert len(flagged) >= 1
    for _, roi in flagged.iterrows():
        same = fixed[
            (fixed["anon_dicom_path"] == roi["anon_dicom_path"])
            & (fixed["roi_index"] == roi["roi_index"])
        ].iloc[0]
        assert same["flip_fixed"]
        box = (roi["ymin"], roi["xmin"], roi["ymax"], roi["xmax"])
        mirrored = Mirror(roi["mirror"]).apply(box, roi["rows"], roi["columns"])
        assert (same["ymin"], same["xmin"], same["ymax"], same["xmax"]) == mirrored


def test_flip_policy_reject_refuses_the_roi(filtered, stage, tmp_path):
    result = run_stage(filtered, tmp_path, flip_check="reject")
    refused = result["rejected"][result["rejected"]["reason"] == "suspect_flip"]
    assert len(refused) == stage["accepted"]["suspect_flip"].sum()
    assert not result["accepted"]["suspect_flip"].any()


def test_border_policy_reject_refuses_instead_of_clipping(filtered, stage, tmp_path):
    result = run_stage(filtered, tmp_path, border="reject")
    assert not result["accepted"]["clipped"].any()
    refused = result["rejected"]["reason"].isin(["crosses_border", "suspect_axes_swapped"])
    assert refused.sum() == stage["accepted"]["clipped"].sum()


def test_near_duplicate_drop_policy_rejects_them(filtered, stage, tmp_path):
    result = run_stage(filtered, tmp_path, near_duplicate="drop")
    dropped = result["rejected"][result["rejected"]["reason"] == "near_duplicate"]
    assert len(dropped) == stage["accepted"]["near_duplicate_of"].notna().sum() >= 1


def test_image_problems_refuse_the_whole_row(filtered, tmp_path):
    table = pd.read_parquet(filtered, dtype_backend="numpy_nullable")
    with_roi = table[table["ROI_coords"].fillna("").str.startswith(("[[", "(("))]
    good = with_roi[with_roi["FinalImageType"] == "2D"].iloc[[0, 1]].copy()
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a DICOM file at all")
    good.loc[good.index[0], "dicom_path"] = str(tmp_path / "absent.dcm")
    good.loc[good.index[1], "dicom_path"] = str(broken)
    edited = tmp_path / "edited.parquet"
    good.to_parquet(edited)
    result = run_stage(edited, tmp_path / "out")
    assert result["accepted"].empty
    assert list(result["rejected"]["reason"]) == ["image_missing", "image_unreadable"]
    assert list(result["rejected"]["roi_index"]) == [-1, -1]
    assert result["summary"]["rows_all_rois_rejected"] == 2


def test_monochrome1_image_is_checked_with_tissue_bright(stage):
    accepted = stage["accepted"]
    for path in accepted["dicom_path"]:
        header = pydicom.dcmread(path, stop_before_pixels=True)
        if header.PhotometricInterpretation == "MONOCHROME1":
            rois = accepted[accepted["dicom_path"] == path]
            assert (rois["box_tissue"] > 0.5).all()
            assert not rois["suspect_flip"].any()
            return
    pytest.fail("the demo cohort has no MONOCHROME1 image with ROIs")


# ---- coordinate spaces: the older table lists boxes on the maintainers' PNGs ----------------

KEY = ["anon_dicom_path", "roi_index"]
BOX = ["ymin", "xmin", "ymax", "xmax"]


@pytest.fixture(scope="module")
def legacy_filtered(demo_cohort, tmp_path_factory) -> Path:
    return filter_demo(demo_cohort, tmp_path_factory.mktemp("legacy"), "metadata_legacy.csv")


def boxes_by_roi(accepted: pd.DataFrame) -> pd.DataFrame:
    return accepted.set_index(KEY)[BOX].sort_index()


def test_png_space_restores_every_box_of_the_older_table(legacy_filtered, stage, tmp_path):
    png = run_stage(legacy_filtered, tmp_path, coordinate_space="png")["accepted"]
    pd.testing.assert_frame_equal(boxes_by_roi(png), boxes_by_roi(stage["accepted"]))
    flat = png["FinalImageType"] != "3D"
    right = png["ViewPosition"].isin(["CC", "MLO"]) & (png["ImageLateralityFinal"] == "R")
    assert (png["flip_h"] == right).all() and not png["flip_v"].any()
    assert (png["coords_space"] == "png").all()
    assert png.loc[flat, "suspect_flip"].sum() == stage["accepted"]["suspect_flip"].sum()


def test_older_table_read_as_dicom_space_shows_the_wrong_side(legacy_filtered, tmp_path):
    as_dicom = run_stage(legacy_filtered, tmp_path)["accepted"]
    flipped = as_dicom[as_dicom["suspect_flip"]]
    assert len(flipped) > 2
    assert (flipped["mirror"] == "x").sum() >= len(flipped) - 2


def test_auto_space_finds_the_png_images_and_leaves_the_others(
    legacy_filtered, filtered, stage, tmp_path
):
    auto_legacy = run_stage(legacy_filtered, tmp_path / "legacy", coordinate_space="auto")
    auto_current = run_stage(filtered, tmp_path / "current", coordinate_space="auto")
    chosen = auto_legacy["accepted"]
    assert (chosen.loc[chosen["coords_space"] == "png", "flip_h"]).all()
    assert (auto_current["accepted"]["coords_space"] == "dicom").all()
    # Every mirrored 2D box that the dicom reading puts off the breast is restored.
    truth = boxes_by_roi(stage["accepted"])
    restored = boxes_by_roi(chosen[chosen["coords_space"] == "png"])
    pd.testing.assert_frame_equal(restored, truth.loc[restored.index])
    assert auto_legacy["summary"]["accepted_by_coords_space"]["png"] == len(restored) > 0


# ---- the outcome cache: a rerun reads only new or changed images ----------------------------


def assert_same_tables(one: dict, other: dict) -> None:
    pd.testing.assert_frame_equal(one["accepted"], other["accepted"])
    pd.testing.assert_frame_equal(one["rejected"], other["rejected"])


def test_a_rerun_reuses_every_row_with_an_image_and_writes_the_same_tables(filtered, tmp_path):
    cache = tmp_path / "cache" / "outcomes.parquet"
    cold = run_stage(filtered, tmp_path / "cold", cache)
    warm = run_stage(filtered, tmp_path / "warm", cache)
    assert_same_tables(cold, warm)
    assert_same_tables(cold, run_stage(filtered, tmp_path / "uncached"))
    missing = (cold["rejected"]["reason"] == "image_missing").sum()
    rows = cold["summary"]["cache"]["rows_validated"]
    assert cold["summary"]["cache"] == {"rows_reused": 0, "rows_validated": rows}
    assert warm["summary"]["cache"] == {"rows_reused": rows - missing, "rows_validated": missing}
    other_settings = run_stage(filtered, tmp_path / "other", cache, border="reject")
    assert other_settings["summary"]["cache"]["rows_reused"] == 0


def test_only_new_and_changed_images_are_read(filtered, stage, tmp_path):
    table = pd.read_parquet(filtered, dtype_backend="numpy_nullable")
    clean = set(stage["accepted"]["anon_dicom_path"]) - set(stage["rejected"]["anon_dicom_path"])
    flat = table[(table["FinalImageType"] == "2D") & table["anon_dicom_path"].isin(clean)]
    copies = tmp_path / "images"
    copies.mkdir()
    chosen = flat.iloc[:3].copy()
    for index, source in zip(chosen.index, chosen["dicom_path"], strict=True):
        copy = copies / f"{index}.dcm"
        copy.write_bytes(Path(source).read_bytes())
        chosen.loc[index, "dicom_path"] = str(copy)
    edited = tmp_path / "edited.parquet"
    chosen.iloc[:2].to_parquet(edited)
    cache = tmp_path / "outcomes.parquet"
    cold = run_stage(edited, tmp_path / "cold", cache)
    assert cold["summary"]["cache"] == {"rows_reused": 0, "rows_validated": 2}

    unchanged, touched = (Path(path) for path in chosen["dicom_path"].iloc[:2])
    stamp = unchanged.stat()
    unchanged.write_bytes(b"\0" * stamp.st_size)  # same size and time: never read again
    os.utime(unchanged, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    os.utime(touched, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # a changed image
    chosen.to_parquet(edited)  # and a new row
    warm = run_stage(edited, tmp_path / "warm", cache)
    assert warm["summary"]["cache"] == {"rows_reused": 1, "rows_validated": 2}
    assert set(warm["accepted"]["dicom_path"]) == set(chosen["dicom_path"])
    assert warm["rejected"].empty
    touched.write_bytes(b"not a DICOM file")
    refused = run_stage(edited, tmp_path / "refused", cache)["rejected"]
    assert list(refused["reason"]) == ["image_unreadable"]
