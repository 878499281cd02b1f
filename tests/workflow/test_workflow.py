"""The demo pipeline run end to end by Snakemake itself, in a temporary folder."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless

from embedpatch.patches.shards import read_shard
from helpers.reference_patches import (
    decoded,
    reference_dtype,
    reference_origin,
    reference_patch,
    reference_values,
)
from helpers.snakemake_runner import run_snakemake

pytestmark = pytest.mark.workflow


def test_demo_run_writes_the_filtered_table(demo_run):
    filtered = pd.read_parquet(demo_run / "results/metadata/filtered.parquet")
    summary = json.loads((demo_run / "results/metadata/filter_summary.json").read_text())
    assert len(filtered) == summary["rows_kept"] > 0
    assert set(filtered["FinalImageType"]) <= {"2D", "3D", "cview"}
    assert filtered["dicom_path"].map(lambda p: (demo_run / p).is_file() or Path(p).is_file()).any()


# the default target; targets of their own
NOT_IN_ALL = {"all", "list_needed_images", "verify_shards", "evaluate_flip_check"}


def test_demo_run_logs_every_rule(demo_run):
    """Every rule the default target ran wrote a non-empty log (batch jobs: one each)."""
    listed = run_snakemake(demo_run, "--list-rules")
    assert listed.returncode == 0, listed.stderr
    rules = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()} - NOT_IN_ALL
    logs = demo_run / "results/logs"
    for rule in sorted(rules):
        files = [logs / f"{rule}.log"] if (logs / f"{rule}.log").exists() else []
        files += sorted((logs / rule).glob("*.log")) if (logs / rule).is_dir() else []
        assert files and all(path.stat().st_size > 0 for path in files), rule


def test_demo_run_rejects_exactly_the_bad_rows_of_the_truth_file(demo_run):
    """The ROI accounting identities are checked by unit/rois/test_roi_stage.py; here, reasons."""
    rejected = pd.read_parquet(demo_run / "results/rois/rejected.parquet")
    truth = json.loads((demo_run / "results/demo/truth.json").read_text())
    expected = {(r["anon_dicom_path"], r["reason"]) for r in truth if r["kind"] == "reject"}
    assert expected == set(zip(rejected["anon_dicom_path"], rejected["reason"], strict=True))


def shard_patches(run: Path) -> dict[str, np.ndarray]:
    return {
        path.name: read_shard(path).patches
        for path in sorted((run / "results/patches").glob("*.h5"))
    }


def test_every_patch_equals_a_whole_image_reference(demo_run):
    """Values from pydicom's whole-image decode, and dtypes: pydicom's (native byte order)
    for exams of one pixel type, numpy's result type of theirs for exams mixing them."""
    manifest = pd.read_parquet(demo_run / "results/manifest.parquet")
    filtered = pd.read_parquet(demo_run / "results/metadata/filtered.parquet")
    local = dict(zip(filtered["anon_dicom_path"], filtered["dicom_path"], strict=True))
    patches = shard_patches(demo_run)
    assert len(manifest) == sum(len(stack) for stack in patches.values()) > 0
    assert set(manifest["label"]) == {"roi", "negative"}
    assert set(manifest["FinalImageType"]) == {"2D", "cview", "3D"}
    images = manifest.groupby("acc_anon")["anon_dicom_path"].unique()
    paths = {acc: [str(demo_run / local[image]) for image in exam] for acc, exam in images.items()}
    exam_dtypes = {acc: reference_dtype(exam) for acc, exam in paths.items()}
    exam_kinds = {
        acc: {(decoded(path).dtype.kind, decoded(path).dtype.itemsize) for path in exam}
        for acc, exam in paths.items()
    }
    decoded_dtypes = set()
    for row in manifest.to_dict("records"):
        path = str(demo_run / local[row["anon_dicom_path"]])
        values = reference_values(path, max(row["frame"], 0), "stored")
        box = (row["ymin"], row["xmin"], row["ymax"], row["xmax"])
        origin, kept = reference_origin(box, *values.shape, row["patch_size"], row["padding"])
        assert (row["patch_y0"], row["patch_x0"]) == origin
        expected = reference_patch(values, origin, kept, row["patch_size"])
        actual = patches[Path(row["shard"]).name][row["index"]]
        np.testing.assert_array_equal(actual, expected, err_msg=str(row))
        assert actual.dtype == exam_dtypes[row["acc_anon"]] == np.dtype(row["dtype"]), row
        if len(exam_kinds[row["acc_anon"]]) == 1:  # an exam of one pixel type: pydicom's
            kind = (values.dtype.kind, values.dtype.itemsize)
            assert (actual.dtype.kind, actual.dtype.itemsize) == kind, row
        decoded_dtypes.add((values.dtype.kind, values.dtype.itemsize, values.dtype.isnative))
    # the demo's other pixel types: int16 (one image big-endian), uint8; an exam mixing
    # uint16 and int16 gives int32
    assert {("u", 2, True), ("i", 2, True), ("i", 2, False), ("u", 1, True)} <= decoded_dtypes
    assert set(manifest["dtype"]) == {"uint16", "int16", "uint8", "int32"}


def test_shards_record_config_and_versions(demo_run):
    shard = read_shard(next((demo_run / "results/patches").glob("*.h5")))
    assert shard.attrs["complete"] is True
    assert shard.attrs["config"]["size"] == 512
    assert shard.attrs["config"]["compression"] == shard.attrs["compression"]
    assert {"pydicom", "numpy", "h5py", "embedpatch"} <= set(shard.attrs["package_versions"])
    assert len(shard.attrs["config_hash"]) == 64


def test_a_second_run_gives_identical_patches(demo_run, tmp_path):
    result = run_snakemake(tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    first, second = shard_patches(demo_run), shard_patches(tmp_path)
    assert first.keys() == second.keys()
    for name, stack in first.items():
        np.testing.assert_array_equal(stack, second[name], err_msg=name)
    pd.testing.assert_frame_equal(
        pd.read_parquet(demo_run / "results/manifest.parquet"),
        pd.read_parquet(tmp_path / "results/manifest.parquet"),
    )


def break_every_frame(path: Path) -> None:
    """Rewrite a JPEG 2000 DICOM so that no frame decodes (its header stays valid)."""
    dataset = pydicom.dcmread(path)
    count = int(dataset.get("NumberOfFrames", 1))
    dataset.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)] * count)
    dataset.save_as(path)


def test_an_image_failing_to_decode_stays_local(tmp_path):
    assert run_snakemake(tmp_path).returncode == 0
    rois = pd.read_parquet(tmp_path / "results/rois/rois.parquet")
    compressed = [
        (row.dicom_path, row.acc_anon, row.anon_dicom_path)
        for row in rois.drop_duplicates("dicom_path").itertuples()
        if pydicom.dcmread(
            tmp_path / row.dicom_path, stop_before_pixels=True
        ).file_meta.TransferSyntaxUID
        == JPEG2000Lossless
    ]
    local_path, acc_anon, anon_path = compressed[0]
    break_every_frame(tmp_path / local_path)
    result = run_snakemake(tmp_path, "--forcerun", "extract_patches")
    assert result.returncode == 0, result.stderr[-4000:]
    rejected = pd.read_parquet(tmp_path / "results/rois/rejected.parquet")
    from_extraction = rejected[rejected["stage"] == "extract"]
    assert list(from_extraction["anon_dicom_path"]) == [anon_path]
    assert from_extraction["reason"].iloc[0] == "image_unreadable"
    manifest = pd.read_parquet(tmp_path / "results/manifest.parquet")
    exam = manifest[manifest["acc_anon"] == acc_anon]
    assert anon_path not in set(exam["anon_dicom_path"])
    others = rois[(rois["acc_anon"] == acc_anon) & (rois["anon_dicom_path"] != anon_path)]
    assert set(others["anon_dicom_path"]) <= set(exam["anon_dicom_path"])
