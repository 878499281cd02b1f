"""The synthetic demo cohort: real files, read back the way the pipeline will read them."""

import ast
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pydicom.pixels
import pytest

from embedpatch.config import DEMO_SOURCE_PREFIX
from embedpatch.demo.cohort import write_demo_cohort
from embedpatch.demo.dicom_writer import PixelType
from embedpatch.demo.phantom import MAX_VALUE, WINDOW
from embedpatch.reasons import FilterReason, RoiReason, RoiWarning

MAMMO = "1.2.840.10008.5.1.4.1.1.1.2"
DBT = "1.2.840.10008.5.1.4.1.1.13.1.3"
TEXT = {"ROI_coords": str, "ROI_frames": str, "LossyImageCompression": str}


def read_metadata(cohort: Path, name: str = "metadata.csv") -> pd.DataFrame:
    return pd.read_csv(cohort / "tables" / name, dtype=TEXT)


def local(cohort: Path, table_path: str) -> Path:
    return cohort / "images" / table_path.removeprefix(DEMO_SOURCE_PREFIX)


def boxes(cell: str) -> list:
    return [] if pd.isna(cell) else list(ast.literal_eval(cell))


@pytest.fixture(scope="module")
def metadata(demo_cohort) -> pd.DataFrame:
    return read_metadata(demo_cohort)


@pytest.fixture(scope="module")
def truth(demo_cohort) -> list[dict]:
    return json.loads((demo_cohort / "truth.json").read_text())


@pytest.fixture(scope="module")
def truth_by_reason(truth, metadata) -> dict[str, pd.Series]:
    """The metadata row of each odd case, by reason (first one where there are several)."""
    rows = metadata.set_index("anon_dicom_path", drop=False)
    return {
        record["reason"] or record["note"]: rows.loc[record["anon_dicom_path"]]
        for record in reversed(truth)
        if record["anon_dicom_path"]
    }


# How each pixel type is stored: (dtype kind, itemsize), BitsStored, HighBit, PixelRepresentation.
STORAGE = {
    PixelType.UINT16: (("u", 2), 12, 11, 0),
    PixelType.INT16: (("i", 2), 12, 11, 1),
    PixelType.UINT8: (("u", 1), 8, 7, 0),
}


def pixel_type(ds: pydicom.Dataset) -> PixelType:
    """The demo pixel type a file is stored as, from its header."""
    if ds.BitsAllocated == 8:
        return PixelType.UINT8
    return PixelType.INT16 if ds.PixelRepresentation else PixelType.UINT16


def pixels(cohort: Path, row: pd.Series) -> np.ndarray:
    """The image as bright = dense on the 12-bit scale, whatever its photometric
    interpretation and pixel type (8-bit images to within 15)."""
    ds = pydicom.dcmread(local(cohort, row.anon_dicom_path))
    array = pixel_type(ds).decode(pydicom.pixels.pixel_array(ds))
    return 4095 - array if ds.PhotometricInterpretation == "MONOCHROME1" else array


NO_FILE = {
    RoiReason.IMAGE_UNREADABLE,
    RoiReason.IMAGE_MISSING,
    FilterReason.IMAGE_TYPE,
    FilterReason.PATH_OUTSIDE_ROOT,
    FilterReason.PATH_MISSING,
}


def readable_rows(metadata: pd.DataFrame, truth: list[dict]) -> pd.DataFrame:
    """Rows whose path holds a readable DICOM file."""
    broken = {r["anon_dicom_path"] for r in truth if r["reason"] in NO_FILE}
    return metadata[metadata.anon_dicom_path.notna() & ~metadata.anon_dicom_path.isin(broken)]


# ---- files ---------------------------------------------------------------------------


def test_every_file_reads_back_as_declared(demo_cohort, metadata, truth):
    mismatched = {
        r["anon_dicom_path"] for r in truth if r["reason"] == RoiReason.DIMENSION_MISMATCH
    }
    syntaxes = set()
    for row in readable_rows(metadata, truth).itertuples():
        ds = pydicom.dcmread(local(demo_cohort, row.anon_dicom_path))
        array = pydicom.pixels.pixel_array(ds)
        syntaxes.add(ds.file_meta.TransferSyntaxUID.name)
        assert ds.SOPClassUID == (DBT if row.FinalImageType == "3D" else MAMMO)
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        kind, bits, high, signed = STORAGE[pixel_type(ds)]
        assert (array.dtype.kind, array.dtype.itemsize) == kind
        assert (ds.BitsStored, ds.HighBit, ds.PixelRepresentation) == (bits, high, signed)
        assert row.BitsStored == bits
        low = -(1 << bits - 1) if signed else 0
        assert low <= array.min() and array.max() < low + (1 << bits)
        expected = (row.Rows, row.Columns)
        if row.anon_dicom_path in mismatched:
            expected = expected[::-1]
        assert array.shape[-2:] == expected
        if row.FinalImageType == "3D":
            assert array.shape[0] == ds.NumberOfFrames == row.ImagesInAcquisition
        else:
            assert array.ndim == 2
        assert (ds.PatientID, ds.AccessionNumber) == (str(row.empi_anon), str(row.acc_anon))
        assert (ds.ImageLaterality, ds.ViewPosition) == (row.ImageLateralityFinal, row.ViewPosition)
        assert ds.Manufacturer == row.Manufacturer
        assert "PatientName" not in ds and "PatientBirthDate" not in ds
    assert {
        "Explicit VR Little Endian",
        "Explicit VR Big Endian",
        "JPEG 2000 Image Compression (Lossless Only)",
        "RLE Lossless",
        "JPEG-LS Lossless Image Compression",
    } <= syntaxes


def test_other_pixel_types_fill_whole_exams_and_one_mixed_exam(demo_cohort, metadata, truth):
    """Every image of one exam is signed (int16, one of them big-endian), of another 8-bit;
    a signed C-view sits among unsigned images; each of these images has valid ROIs."""
    types: dict[int, set] = {}
    with_rois, others = set(), set()
    for row in readable_rows(metadata, truth).itertuples():
        ds = pydicom.dcmread(local(demo_cohort, row.anon_dicom_path), stop_before_pixels=True)
        kind = (pixel_type(ds), row.FinalImageType, ds.file_meta.TransferSyntaxUID.name)
        types.setdefault(row.acc_anon, set()).add(kind[0])
        if kind[0] is not PixelType.UINT16:
            others.add(row.anon_dicom_path)
            if row.num_ROI > 0:
                with_rois.add(kind)
    exams = {frozenset(found) for found in types.values()}
    assert {frozenset({PixelType.INT16}), frozenset({PixelType.UINT8})} <= exams
    assert frozenset({PixelType.UINT16, PixelType.INT16}) in exams
    assert with_rois == {
        (PixelType.INT16, "2D", "Explicit VR Big Endian"),
        (PixelType.UINT8, "2D", "Explicit VR Little Endian"),
        (PixelType.INT16, "cview", "Explicit VR Little Endian"),
    }
    odd = {record["anon_dicom_path"] for record in truth if record["kind"] != "valid"}
    assert len(others) == 9 and not others & odd  # none of them is an odd case


def test_the_window_and_values_of_every_pixel_type_agree(demo_cohort, metadata, truth):
    """The table's WindowCenter / WindowWidth are in each file's stored values; decoded to
    the 12-bit scale every type shows the same tissue range."""
    for row in readable_rows(metadata, truth).itertuples():
        if row.FinalImageType == "3D":
            continue
        ds = pydicom.dcmread(local(demo_cohort, row.anon_dicom_path))
        kind = pixel_type(ds)
        centre, width = WINDOW
        if ds.PhotometricInterpretation == "MONOCHROME1":
            centre = MAX_VALUE - centre
        window = kind.window(centre, width)
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == window
        assert (row.WindowCenter, row.WindowWidth) == window
        image = pixels(demo_cohort, row)
        tissue = image[image > 100]
        assert 500 < np.median(tissue) < 2800, (row.anon_dicom_path, kind)


def test_path_names_the_uids_of_its_file(demo_cohort, metadata, truth):
    pattern = re.compile(
        re.escape(DEMO_SOURCE_PREFIX) + r"cohort_1/(\d{8})/([\d.]+)/([\d.]+)/([\d.]+)\.dcm"
    )
    for row in readable_rows(metadata, truth).itertuples():
        empi, study, series, sop = pattern.fullmatch(row.anon_dicom_path).groups()
        ds = pydicom.dcmread(local(demo_cohort, row.anon_dicom_path), stop_before_pixels=True)
        assert (empi, study, series, sop) == (
            ds.PatientID,
            ds.StudyInstanceUID,
            ds.SeriesInstanceUID,
            ds.SOPInstanceUID,
        )


def test_compressed_dbt_with_rois_has_one_fragment_per_frame(demo_cohort, metadata):
    dbt = metadata[(metadata.FinalImageType == "3D") & (metadata.num_ROI > 0)]
    compressed = []
    for path in dbt.anon_dicom_path:
        ds = pydicom.dcmread(local(demo_cohort, path))
        if ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEG2000Lossless:
            frames = list(
                pydicom.encaps.generate_fragmented_frames(
                    ds.PixelData, number_of_frames=ds.NumberOfFrames
                )
            )
            compressed.append(len(frames) == ds.NumberOfFrames)
            compressed.append(all(len(fragments) == 1 for fragments in frames))
    assert compressed and all(compressed)


def test_broken_files_are_missing_or_unreadable(demo_cohort, truth):
    by_reason = {}
    for record in truth:
        by_reason.setdefault(record["reason"], []).append(
            local(demo_cohort, record["anon_dicom_path"])
        )
    assert not any(path.exists() for path in by_reason[RoiReason.IMAGE_MISSING])
    assert len(by_reason[RoiReason.IMAGE_UNREADABLE]) == 2
    for path in by_reason[RoiReason.IMAGE_UNREADABLE]:
        with pytest.raises(Exception):  # noqa: B017 - any failure to parse or decode
            pydicom.pixels.pixel_array(pydicom.dcmread(path))


def test_monochrome1_is_stored_inverted(demo_cohort, metadata):
    rows = metadata[metadata.PhotometricInterpretation == "MONOCHROME1"]
    assert len(rows) and (rows.Manufacturer == "FUJIFILM").all()
    for path in rows.anon_dicom_path:
        ds = pydicom.dcmread(local(demo_cohort, path))
        stored = pydicom.pixels.pixel_array(ds)
        far_edge = stored[:, -1] if ds.ImageLaterality == "L" else stored[:, 0]
        assert ds.PhotometricInterpretation == "MONOCHROME1"
        assert (far_edge == stored.max()).all() and stored.max() == 4095
        assert stored.min() < 3500  # tissue is dark


def test_tissue_lies_against_the_chest_wall(demo_cohort, metadata, truth):
    rows = readable_rows(metadata, truth)
    for row in rows[rows.FinalImageType != "3D"].itertuples():
        image = pixels(demo_cohort, row)
        third = image.shape[1] // 3
        left, right = image[:, :third].mean(), image[:, -third:].mean()
        assert (left > right) == (row.ImageLateralityFinal == "L")
        background = image[:, -1] if row.ImageLateralityFinal == "L" else image[:, 0]
        assert (background == 0).all()


# ---- ROIs ------------------------------------------------------------------------------


def ring_contrast(image: np.ndarray, box: list[int]) -> float:
    """Mean tissue value inside the box minus that of a ring around it."""
    ymin, xmin, ymax, xmax = box
    pad_y, pad_x = (ymax - ymin) // 2 + 2, (xmax - xmin) // 2 + 2
    window = (slice(max(0, ymin - pad_y), ymax + pad_y), slice(max(0, xmin - pad_x), xmax + pad_x))
    ring = image.astype(float)
    ring[ymin:ymax, xmin:xmax] = 0
    ring = ring[window]
    inside = image[ymin:ymax, xmin:xmax]
    return inside[inside > 0].mean() - ring[ring > 0].mean()


def valid_roi_rows(metadata: pd.DataFrame, truth: list[dict]) -> pd.DataFrame:
    """Rows with ROIs whose every box is expected to be accepted."""
    not_valid = {r["anon_dicom_path"] for r in truth if r["kind"] != "valid"}
    paths = metadata.anon_dicom_path
    return metadata[(metadata.num_ROI > 0) & paths.notna() & ~paths.isin(not_valid)]


def test_lesions_are_brighter_than_the_tissue_around_valid_boxes(demo_cohort, metadata, truth):
    rows = valid_roi_rows(metadata, truth)
    assert len(rows) >= 5 and {"2D", "3D"} <= set(rows.FinalImageType)
    for row in rows.itertuples():
        image = pixels(demo_cohort, row)
        frames = boxes(row.ROI_frames)
        for index, box in enumerate(boxes(row.ROI_coords)):
            plane = image[list(frames[index])].mean(axis=0) if image.ndim == 3 else image
            assert ring_contrast(plane, box) > 100, (row.anon_dicom_path, box)


def test_valid_boxes_lie_on_tissue_inside_the_image(demo_cohort, metadata, truth):
    for row in valid_roi_rows(metadata, truth).itertuples():
        for ymin, xmin, ymax, xmax in boxes(row.ROI_coords):
            assert 0 <= ymin < ymax <= row.Rows and 0 <= xmin < xmax <= row.Columns
            assert len(boxes(row.ROI_coords)) == row.num_ROI
        image = pixels(demo_cohort, row)
        plane = image.max(axis=0) if image.ndim == 3 else image
        for ymin, xmin, ymax, xmax in boxes(row.ROI_coords):
            assert (plane[ymin:ymax, xmin:xmax] > 0).mean() > 0.6


def test_dbt_lesions_are_brightest_on_their_listed_frames(demo_cohort, metadata, truth):
    rows = valid_roi_rows(metadata, truth)
    for row in rows[rows.FinalImageType == "3D"].itertuples():
        volume = pixels(demo_cohort, row)
        for (ymin, xmin, ymax, xmax), frames in zip(
            boxes(row.ROI_coords), boxes(row.ROI_frames), strict=True
        ):
            assert frames and all(0 <= f < row.ImagesInAcquisition for f in frames)
            means = volume[:, ymin:ymax, xmin:xmax].mean(axis=(1, 2))
            assert means.argmax() in frames


def test_both_serializations_and_every_empty_form(metadata):
    coords = metadata.ROI_coords
    assert coords.str.startswith("[[").any()
    assert coords.str.startswith("((").any() and coords.str.contains(r"\), \(").any()
    assert (coords == "[]").any() and (coords == "()").any() and coords.isna().any()
    two_d = metadata[metadata.FinalImageType == "2D"]
    assert (two_d.ROI_frames.dropna().isin(["[]", "()"])).mean() > 0.9


def test_legacy_table_is_the_older_release(demo_cohort, metadata):
    legacy = read_metadata(demo_cohort, "metadata_legacy.csv")
    assert "num_roi" in legacy and "num_ROI" not in legacy
    for column in ("ROI_coords", "ROI_frames"):
        assert legacy[column].dropna().str.startswith("(").all()
        assert legacy[column].isna().equals(metadata[column].isna())
    same = [c for c in metadata if c not in ("num_ROI", "ROI_coords", "ROI_frames")]
    pd.testing.assert_frame_equal(legacy[same], metadata[same])
    assert legacy.num_roi.equals(metadata.num_ROI)


def test_legacy_boxes_are_in_png_space(demo_cohort, metadata):
    """Older tables list boxes on the maintainers' PNGs: images whose chest wall is on the
    right (PatientOrientation P...) have their CC / MLO boxes mirrored left-right."""
    legacy = read_metadata(demo_cohort, "metadata_legacy.csv")
    listed = metadata.ROI_coords.fillna("").str.fullmatch(r"\[\[.*\]\]")
    mirrored = 0
    for (_, current), (_, old) in zip(
        metadata[listed].iterrows(), legacy[listed].iterrows(), strict=True
    ):
        boxes, old_boxes = ast.literal_eval(current.ROI_coords), ast.literal_eval(old.ROI_coords)
        flipped = current.PatientOrientation.startswith("('P'") and current.ViewPosition in (
            "CC",
            "MLO",
        )
        for box, old_box in zip(boxes, old_boxes, strict=True):
            if len(box) == 4 and flipped:
                ymin, xmin, ymax, xmax = box
                path = local(demo_cohort, str(current.anon_dicom_path))
                columns = int(current.Columns)  # the table's, unless the file says otherwise
                if path.is_file() and path.stat().st_size > 4096:
                    columns = pydicom.dcmread(path, stop_before_pixels=True).Columns
                assert list(old_box) == [ymin, columns - xmax, ymax, columns - xmin]
                mirrored += 1
            else:
                assert list(old_box) == box
    assert mirrored


def test_identifiers_never_pass_through_float(demo_cohort):
    lines = (demo_cohort / "tables" / "metadata.csv").read_text().splitlines()[1:]
    for line in lines:
        empi, acc = line.split(",")[:2]
        assert re.fullmatch(r"\d{8}", empi) and re.fullmatch(r"\d{16}", acc)


# ---- truth ----------------------------------------------------------------------------


def test_truth_lists_every_odd_kind(truth, metadata):
    reasons = {(r["kind"], r["reason"]) for r in truth}
    expected = {
        ("filtered", reason)
        for reason in (
            FilterReason.IMAGE_TYPE,
            FilterReason.DBT_WITHOUT_ROI,
            FilterReason.SPOT_MAG,
            FilterReason.PATH_OUTSIDE_ROOT,
            FilterReason.PATH_MISSING,
        )
    }
    expected |= {
        ("reject", reason)
        for reason in (
            RoiReason.MALFORMED_COORDS,
            RoiReason.MALFORMED_FRAMES,
            RoiReason.COUNT_MISMATCH,
            RoiReason.WRONG_ARITY,
            RoiReason.NON_INTEGER,
            RoiReason.INVERTED_BOX,
            RoiReason.EMPTY_BOX,
            RoiReason.OUTSIDE_IMAGE,
            RoiReason.FRAMES_OUT_OF_RANGE,
            RoiReason.FRAMES_MISSING,
            RoiReason.FRAMES_LENGTH_MISMATCH,
            RoiReason.IMAGE_MISSING,
            RoiReason.IMAGE_UNREADABLE,
            RoiReason.DIMENSION_MISMATCH,
        )
    }
    expected |= {
        ("warn", w)
        for w in (
            RoiWarning.CLIPPED,
            RoiWarning.SUSPECT_FLIP,
            RoiWarning.NEAR_DUPLICATE,
            RoiWarning.SUSPECT_AXES_SWAPPED,
            RoiWarning.FRAMES_ON_2D,
        )
    }
    assert expected <= reasons
    valid = sorted(r["note"] for r in truth if r["kind"] == "valid")
    assert len(valid) == 2 and "chest wall" in valid[0] and "skin line" in valid[1]
    known = set(metadata.anon_dicom_path.fillna(""))
    codes = {*FilterReason, *RoiReason, *RoiWarning, ""}
    for record in truth:
        assert record["anon_dicom_path"] in known and record["reason"] in codes
        assert record["acc_anon"] in set(metadata.acc_anon)


def test_each_odd_case_has_its_own_image(truth):
    paths = [r["anon_dicom_path"] for r in truth]
    assert len(paths) == len(set(paths))


def test_every_dbt_row_without_rois_is_listed(truth, metadata):
    listed = {r["anon_dicom_path"] for r in truth if r["reason"] == FilterReason.DBT_WITHOUT_ROI}
    dbt = metadata[metadata.FinalImageType == "3D"]
    assert listed == set(dbt[dbt.num_ROI == 0].anon_dicom_path)


def test_quirk_geometry(demo_cohort, truth_by_reason):
    flip = truth_by_reason[RoiWarning.SUSPECT_FLIP]
    ymin, xmin, ymax, xmax = boxes(flip.ROI_coords)[0]
    image = pixels(demo_cohort, flip)
    assert (image[ymin:ymax, xmin:xmax] == 0).all()
    assert (image[ymin:ymax, flip.Columns - xmax : flip.Columns - xmin] > 0).all()

    first, second = (
        np.array(b) for b in boxes(truth_by_reason[RoiWarning.NEAR_DUPLICATE].ROI_coords)
    )
    overlap = np.prod(
        np.clip(np.minimum(first[2:], second[2:]) - np.maximum(first[:2], second[:2]), 0, None)
    )
    area = np.prod(first[2:] - first[:2])
    assert overlap / (2 * area - overlap) > 0.8

    clipped = truth_by_reason[RoiWarning.CLIPPED]
    assert boxes(clipped.ROI_coords)[0][3] > clipped.Columns

    outside = truth_by_reason[RoiReason.OUTSIDE_IMAGE]
    assert boxes(outside.ROI_coords)[0][0] >= outside.Rows

    wall = next(row for key, row in truth_by_reason.items() if "chest wall" in key)
    assert wall.ImageLateralityFinal == "R" and boxes(wall.ROI_coords)[0][3] == wall.Columns


def test_bad_strings_do_not_parse_as_valid_boxes(truth_by_reason):
    with pytest.raises(SyntaxError):
        ast.literal_eval(truth_by_reason[RoiReason.MALFORMED_COORDS].ROI_coords)
    with pytest.raises(SyntaxError):
        ast.literal_eval(truth_by_reason[RoiReason.MALFORMED_FRAMES].ROI_frames)
    assert len(boxes(truth_by_reason[RoiReason.WRONG_ARITY].ROI_coords)[0]) == 3
    mismatch = truth_by_reason[RoiReason.COUNT_MISMATCH]
    assert len(boxes(mismatch.ROI_coords)) != mismatch.num_ROI
    assert truth_by_reason[RoiReason.FRAMES_MISSING].ROI_frames in ("[]", "()")
    assert "/../" in truth_by_reason[FilterReason.PATH_OUTSIDE_ROOT].anon_dicom_path


# ---- clinical ---------------------------------------------------------------------------


def test_clinical_findings_match_the_rois(demo_cohort, metadata):
    clinical = pd.read_csv(demo_cohort / "tables" / "clinical.csv")
    assert set(clinical.acc_anon) == set(metadata.acc_anon)
    sides = clinical.side
    assert (sides == "B").any() and sides.isna().any() and sides.isin(["L", "R"]).any()
    per_side = clinical.dropna(subset=["side"]).groupby(["acc_anon", "side"]).size()
    assert (per_side >= 2).any()
    assert (clinical.groupby("acc_anon").side.apply(lambda s: {"L", "R"} <= set(s))).any()
    with_rois = metadata[metadata.num_ROI > 0][
        ["acc_anon", "ImageLateralityFinal"]
    ].drop_duplicates()
    joined = with_rois.merge(clinical, on="acc_anon")
    matched = joined[(joined.side == joined.ImageLateralityFinal) | (joined.side == "B")]
    assert (matched.asses == "A").mean() > 0.6
    assert clinical.asses.isin(list("ANBPSMK")).all()


# ---- generation -------------------------------------------------------------------------


OUTPUT_FILES = (
    "tables/metadata.csv",
    "tables/metadata_legacy.csv",
    "tables/clinical.csv",
    "truth.json",
)


def tree_bytes(root: Path) -> dict[Path, bytes]:
    return {path.relative_to(root): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def test_same_seed_same_bytes_other_seed_differs(demo_cohort, demo_params, tmp_path):
    write_demo_cohort(tmp_path / "again", **demo_params)
    assert tree_bytes(tmp_path / "again") == tree_bytes(demo_cohort)
    write_demo_cohort(tmp_path / "other", **{**demo_params, "seed": demo_params["seed"] + 1})
    other, first = tree_bytes(tmp_path / "other"), tree_bytes(demo_cohort)
    outputs = {Path(name) for name in OUTPUT_FILES}
    assert not (set(other) & set(first)) - outputs  # images: other UIDs, other paths
    assert all(other[name] != first[name] for name in outputs)


def test_failed_generation_leaves_no_metadata_table(tmp_path):
    stale = tmp_path / "tables" / "metadata.csv"
    stale.parent.mkdir()
    stale.write_text("from an earlier run\n")
    with pytest.raises(ValueError, match="n_patients"):
        write_demo_cohort(tmp_path, seed=1, n_patients=2, scale=0.1, dbt_frames=8)
    assert not stale.exists()
