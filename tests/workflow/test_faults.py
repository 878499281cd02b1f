"""Bad DICOMs and paths that leave the DICOM root, through the whole workflow in user mode.

One run on a read-only copy of two demo exams (exam A also holds every fault: rows of
its table copied and pointed at broken files, symlinks and escaping paths). Each fault
must end as one recorded rejection with its reason, at the stage named in FAULTS; the
exams' good images still give patches; the workflow finishes; nothing is modified under
the DICOM root, the folder beside it the symlinks point to, or the demo's own images.
"""

from __future__ import annotations

import json
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGExtended12Bit,
    RLELossless,
)

from embedpatch.demo import SOURCE_PREFIX
from embedpatch.dicom import ImageReader, ImageUnreadable, read_header
from helpers.user_mode import (
    check_outputs,
    clean_rows,
    copy_images,
    exams_with,
    has_rois,
    relative,
    set_up_run,
    set_writable,
    snakemake,
    tree_state,
)

pytestmark = pytest.mark.workflow

OUTSIDE_NAME = "image.dcm"  # the copy of a row's image beside the root, in outside/
ABSURD = 65535  # Rows and Columns of the absurd headers (their maximum), 10,000 frames
UNKNOWN_SYNTAX = "1.2.826.0.1.3680043.8.498.77"  # a UID no decoder knows
Build = Callable[[Path, Path, Path], None]  # (the row's image, file to write, its copy outside)


def dataset(source: Path, syntax: UID) -> Dataset:
    """The source image re-encoded in `syntax`."""
    ds = pydicom.dcmread(source)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)
    if syntax.is_compressed:
        ds.compress(syntax, generate_instance_uid=False)
    return ds


def frame_bytes(ds: Dataset) -> int:
    return ds.Rows * ds.Columns * ds.BitsAllocated // 8


def edited(syntax: UID, edit: Callable[[Dataset], None]) -> Build:
    """A copy of the image in `syntax`, edited."""

    def build(source: Path, target: Path, _outside: Path) -> None:
        ds = dataset(source, syntax)
        edit(ds)
        ds.save_as(target, enforce_file_format=False)

    return build


def relabelled(syntax: UID) -> Build:
    """The raw frames encapsulated as if `syntax` had encoded them."""

    def edit(ds: Dataset) -> None:
        size, raw = frame_bytes(ds), ds.PixelData
        ds.PixelData = encapsulate([raw[i : i + size] for i in range(0, len(raw), size)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = syntax

    return edited(ExplicitVRLittleEndian, edit)


def text(content: str) -> Build:
    def build(_source: Path, target: Path, _outside: Path) -> None:
        target.write_text(content)

    return build


def cut(source: Path, target: Path, _outside: Path) -> None:
    """The native image cut off two frames before its end."""
    ds = dataset(source, ExplicitVRLittleEndian)
    ds.save_as(target, enforce_file_format=False)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) - 2 * frame_bytes(ds)])


def structured_report(_source: Path, target: Path, _outside: Path) -> None:
    """A DICOM file that is not an image: a structured report, no Pixel Data."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.78"
    ds.Modality, ds.ValueType = "SR", "CONTAINER"
    ds.save_as(target, enforce_file_format=True)


def link_outside(_source: Path, target: Path, outside: Path) -> None:
    target.symlink_to(outside)


def link_inside(source: Path, target: Path, _outside: Path) -> None:
    target.symlink_to(source)


def link_folder_outside(_source: Path, target: Path, outside: Path) -> None:
    """target's folder is a symlink to the outside copy's folder (target named like it)."""
    target.parent.symlink_to(outside.parent, target_is_directory=True)


def absurd(ds: Dataset) -> None:
    ds.Rows = ds.Columns = ABSURD
    if "NumberOfFrames" in ds:
        ds.NumberOfFrames = 10_000


@dataclass(frozen=True)
class Fault:
    """A row of exam A pointed at a broken file or path, and what the pipeline must do."""

    row: str  # the row copied: "2D" / "3D" (with ROIs) or "negative" (2D / C-view, none)
    build: Build | None  # writes the file (None: the path alone is the fault)
    reason: str  # expected reason ("" for an image that must be accepted)
    stage: str  # "filter" (dropped.parquet), "validate" / "extract" (rejected.parquet)
    detail: str = ""  # expected in the rejection's detail
    cells: dict[str, str] = field(default_factory=dict)  # table cells changed on the row
    path: str | None = None  # default faults/<name>.dcm; SOURCE_PREFIX added if relative


FRAMES_UNKNOWN = {"ImagesInAcquisition": ""}
ABSURD_CELLS = {"Rows": str(ABSURD), "Columns": str(ABSURD)}
FAULTS = {
    "zero_bytes": Fault("2D", text(""), "image_unreadable", "validate", "not a readable DICOM"),
    "not_dicom": Fault(
        "2D", text("ymin,xmin\n1,2\n" * 50), "image_unreadable", "validate", "not a readable"
    ),
    "structured_report": Fault(
        "2D", structured_report, "image_unreadable", "validate", "not an image, missing Rows"
    ),
    "truncated": Fault("3D", cut, "image_unreadable", "validate", "truncated"),
    "pixel_data_short": Fault(
        "3D",
        edited(ExplicitVRLittleEndian, lambda ds: setattr(ds, "PixelData", ds.PixelData[:-1000])),
        "image_unreadable",
        "validate",
        "Pixel Data holds",
    ),
    "frames_fewer_than_data": Fault(
        "3D",
        edited(ExplicitVRLittleEndian, lambda ds: setattr(ds, "NumberOfFrames", 2)),
        "image_unreadable",
        "validate",
        "the header implies",
        FRAMES_UNKNOWN,
    ),
    "frames_beyond_jpeg2000_data": Fault(
        "3D",
        edited(JPEG2000Lossless, lambda ds: setattr(ds, "NumberOfFrames", ds.NumberOfFrames + 3)),
        "image_unreadable",
        "extract",
        "the Basic Offset Table has 8 entries",
        FRAMES_UNKNOWN,
    ),
    "frames_disagree_with_table": Fault(
        "3D",
        edited(JPEG2000Lossless, lambda ds: setattr(ds, "NumberOfFrames", ds.NumberOfFrames + 3)),
        "dimension_mismatch",
        "validate",
        "table ImagesInAcquisition",
    ),
    "unknown_transfer_syntax": Fault(
        "2D",
        edited(
            ExplicitVRLittleEndian,
            lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", UNKNOWN_SYNTAX),
        ),
        "image_unreadable",
        "validate",
        f"{UNKNOWN_SYNTAX} is not a known transfer syntax",
    ),
    "unsupported_transfer_syntax": Fault(
        "3D", relabelled(MPEG2MPML), "image_unreadable", "validate", "cannot be decoded"
    ),
    "data_not_what_the_syntax_says": Fault(
        "3D",
        relabelled(JPEGExtended12Bit),
        "image_unreadable",
        "extract",
        "not a whole JPEG stream",
    ),
    "absurd_dbt_header": Fault(
        "3D",
        edited(ExplicitVRLittleEndian, absurd),
        "image_unreadable",
        "validate",
        "implausible frame size",
        {**ABSURD_CELLS, "ImagesInAcquisition": "10000"},
    ),
    "absurd_rle_2d_header": Fault(
        "2D",
        edited(RLELossless, absurd),
        "image_unreadable",
        "validate",
        "implausible frame size",
        ABSURD_CELLS,
    ),
    "negative_not_dicom": Fault(
        "negative", text("not an image"), "image_unreadable", "extract", "not a readable"
    ),
    "symlink_out_of_root": Fault(
        "2D", link_outside, "image_outside_root", "validate", "outside the DICOM root"
    ),
    "negative_symlink_out_of_root": Fault(
        "negative", link_outside, "image_outside_root", "extract", "outside the DICOM root"
    ),
    "symlinked_folder_out_of_root": Fault(
        "3D",
        link_folder_outside,
        "image_outside_root",
        "validate",
        "outside the DICOM root",
        path=f"faults/linked_folder/{OUTSIDE_NAME}",
    ),
    "symlink_within_root": Fault("2D", link_inside, "", "accepted"),
    "dot_dot_path": Fault(
        "2D", None, "path_outside_root", "filter", path=f"cohort_1/../../outside/2D/{OUTSIDE_NAME}"
    ),
    "absolute_path_elsewhere": Fault(
        "2D", None, "path_outside_root", "filter", path=f"/elsewhere/{OUTSIDE_NAME}"
    ),
}


def anon_path(name: str, fault: Fault) -> str:
    path = fault.path or f"faults/{name}.dcm"
    return path if path.startswith("/") else SOURCE_PREFIX + path


@dataclass(frozen=True)
class FaultRun:
    """The finished run and what the tests compare it with."""

    workdir: Path
    clean: pd.DataFrame  # the good rows of the two exams
    returncode: int
    stderr: str
    inputs_before: dict  # tree_state of the root and the folder beside it, before the run
    inputs_after: dict
    demo_before: dict  # tree_state of the demo's images
    demo_after: dict


def template_rows(table: pd.DataFrame) -> dict[str, pd.Series]:
    """Exam A's first 2D row with ROIs, 3D row with ROIs, and 2D / C-view row without."""
    flat = table["FinalImageType"].isin(["2D", "cview"])
    masks = {
        "2D": flat & has_rois(table),
        "3D": table["FinalImageType"].eq("3D") & has_rois(table),
        "negative": flat & ~has_rois(table),
    }
    return {kind: table[mask].iloc[0] for kind, mask in masks.items()}


def fault_rows(exam: pd.DataFrame, root: Path) -> pd.DataFrame:
    """One row per fault (a copy of its template row), its file written below root/faults;
    the template's image is copied to root/../outside/ for the symlinks to point at."""
    templates = template_rows(exam)
    (root / "faults").mkdir()
    rows = []
    for name, fault in FAULTS.items():
        template = templates[fault.row]
        path = anon_path(name, fault)
        if fault.build is not None:
            source = root / relative(template["anon_dicom_path"])
            outside = root.parent / "outside" / fault.row / OUTSIDE_NAME
            outside.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, outside)
            fault.build(source, root / relative(path), outside)
        rows.append({**template.to_dict(), **fault.cells, "anon_dicom_path": path})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def fault_run(demo_cohort, tmp_path_factory) -> FaultRun:
    clean = clean_rows(demo_cohort)
    exam_a = exams_with(clean, "2D", "3D", "negative")[0]
    exam_b = next(acc for acc in exams_with(clean, "2D") if acc != exam_a)
    clean = clean[clean["acc_anon"].isin([exam_a, exam_b])]
    inputs = tmp_path_factory.mktemp("fault_inputs")
    root = inputs / "images"
    copy_images(clean, demo_cohort, root)
    faults = fault_rows(clean[clean["acc_anon"] == exam_a], root)
    workdir = set_up_run(tmp_path_factory.mktemp("fault_run"), pd.concat([clean, faults]), root)
    set_writable(inputs, False)
    inputs_before, demo_before = tree_state(inputs), tree_state(demo_cohort / "images")
    result = snakemake(workdir, "results/manifest.parquet")
    run = FaultRun(
        workdir,
        clean,
        result.returncode,
        result.stderr,
        inputs_before,
        tree_state(inputs),
        demo_before,
        tree_state(demo_cohort / "images"),
    )
    set_writable(inputs, True)
    return run


def test_the_workflow_finishes(fault_run):
    assert fault_run.returncode == 0, fault_run.stderr[-4000:]


def outcome(run: FaultRun, path: str) -> tuple[str, str, str]:
    """(reason, stage, detail) of an image row: filter, validate, extract or accepted."""
    results = run.workdir / "results"
    dropped = pd.read_parquet(results / "metadata/dropped.parquet")
    rejected = pd.read_parquet(results / "rois/rejected.parquet")
    found = [(r, "filter", "") for r in dropped.loc[dropped["anon_dicom_path"] == path, "reason"]]
    mine = rejected[rejected["anon_dicom_path"] == path]
    found += list(zip(mine["reason"], mine["stage"], mine["detail"], strict=True))
    assert len(found) <= 1, found
    return found[0] if found else ("", "accepted", "")


@pytest.mark.parametrize("name", FAULTS)
def test_each_fault_is_one_recorded_rejection(fault_run, name):
    fault = FAULTS[name]
    reason, stage, detail = outcome(fault_run, anon_path(name, fault))
    assert (reason, stage) == (fault.reason, fault.stage), detail
    assert fault.detail in detail
    assert "\n" not in detail


def test_faulty_images_give_no_patches_and_good_ones_all_do(fault_run):
    manifest, rejected = check_outputs(fault_run.workdir)
    accepted = {anon_path(name, f) for name, f in FAULTS.items() if f.stage == "accepted"}
    faulty = {anon_path(name, f) for name, f in FAULTS.items()} - accepted
    assert not faulty & set(manifest["anon_dicom_path"])
    assert set(rejected["anon_dicom_path"]) <= faulty, "a good image was refused"
    clean = fault_run.clean
    expected = set(clean["anon_dicom_path"]) | accepted
    assert set(manifest["anon_dicom_path"]) == expected
    assert set(manifest["acc_anon"].astype(str)) == set(clean["acc_anon"])


def test_every_roi_is_accounted_for(fault_run):
    results = fault_run.workdir / "results"
    summary = json.loads((results / "rois/roi_summary.json").read_text())
    accepted = pd.read_parquet(results / "rois/rois.parquet")
    validation = pd.read_parquet(results / "rois/validation_rejected.parquet")
    assert summary["rois_declared"] == len(accepted) + validation["n_rois"].sum()
    assert summary["rows_in"] == (
        summary["rows_with_accepted_rois"]
        + summary["rows_all_rois_rejected"]
        + summary["rows_without_rois"]
    )


def test_the_read_only_inputs_are_not_modified(fault_run):
    """As root, permission bits stop no write: compare every entry's content, mode, mtime."""
    assert fault_run.inputs_after == fault_run.inputs_before
    modes = [mode for mode, _, _ in fault_run.inputs_before.values()]
    assert not any(stat.S_ISREG(mode) and mode & 0o222 for mode in modes)
    assert fault_run.demo_after == fault_run.demo_before


def test_an_absurd_header_is_refused_before_any_decoder_runs(tmp_path, demo_cohort):
    """A 65535 x 65535 RLE frame would make pydicom allocate 8.6 GB before decoding."""
    template = template_rows(clean_rows(demo_cohort))["2D"]
    source = demo_cohort / "images" / relative(template["anon_dicom_path"])
    edited(RLELossless, absurd)(source, tmp_path / "absurd.dcm", source)
    for open_image in (read_header, ImageReader):
        with pytest.raises(ImageUnreadable, match="implausible frame size"):
            open_image(tmp_path / "absurd.dcm")
