"""Patch extraction of one exam on real files: every patch equals an independent reference.

The reference decodes the whole image with pydicom and restates the padding
semantics here, without padding.py: a patch is the image window whose top-left is
(patch_y0, patch_x0), zero outside the image and, for black padding, zero outside
the (centre-cropped) ROI.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pydicom.pixels
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from embedpatch.config import validate_config
from embedpatch.demo import SOURCE_PREFIX
from embedpatch.dicom import ImageError, ImageReader
from embedpatch.patches.extract import INFO_COLUMNS, REJECTION_COLUMNS, extract_exam
from embedpatch.patches.shards import DEFAULT_COMPRESSION
from embedpatch.patches.spec import ExamSpec, PatchSettings, SpecError
from helpers.reference_patches import reference_origin, reference_patch, reference_values

SETTINGS = {
    "size": 64,
    "padding": ["tissue", "black"],
    "dbt_frames": "all",
    "negative_margin": 8,
    "seed": 3,
    "pixel_values": "stored",
    "compression": "gzip",
}
# (FinalImageType, transfer syntax, photometric) of the demo images the tests use
KINDS = {
    "2d": ("2D", ExplicitVRLittleEndian, "MONOCHROME2"),
    "monochrome1": ("2D", ExplicitVRLittleEndian, "MONOCHROME1"),
    "jpeg2000": ("2D", JPEG2000Lossless, "MONOCHROME2"),
    "rle": ("2D", RLELossless, "MONOCHROME2"),
    "jpegls": ("2D", JPEGLSLossless, "MONOCHROME2"),
    "cview": ("cview", ExplicitVRLittleEndian, "MONOCHROME2"),
    "dbt": ("3D", ExplicitVRLittleEndian, "MONOCHROME2"),
    "dbt_jpeg2000": ("3D", JPEG2000Lossless, "MONOCHROME2"),
}
DBT_FRAMES = [[6, 2, 4], [0], [7, 1]]  # unsorted on purpose


def settings(**changes) -> PatchSettings:
    return PatchSettings.from_dict({**SETTINGS, **changes})


@pytest.fixture(scope="module")
def catalog(demo_cohort) -> dict[str, dict]:
    """One readable 12-bit (uint16) demo image of every kind: its table fields, local path
    and header."""
    table = pd.read_csv(demo_cohort / "tables" / "metadata.csv", dtype=str)
    found = {}
    for row in table.to_dict("records"):
        path = row["anon_dicom_path"]
        if not isinstance(path, str) or not path.startswith(SOURCE_PREFIX):
            continue
        local = demo_cohort / "images" / path.removeprefix(SOURCE_PREFIX)
        try:
            with ImageReader(local) as reader:
                header, dtype = reader.header, reader.dtype
        except ImageError:
            continue
        if dtype != np.uint16:  # the 12-bit kinds; other pixel types: test_combine, test_workflow
            continue
        kind = (
            row["FinalImageType"],
            header.transfer_syntax_uid,
            header.photometric_interpretation,
        )
        name = next((name for name, wanted in KINDS.items() if wanted == kind), None)
        if name is not None:
            found.setdefault(name, {**row, "dicom_path": str(local), "header": header})
    assert set(found) == set(KINDS)
    return found


def boxes_for(rows: int, columns: int) -> list[list[int]]:
    """Inside, top-left corner, bottom-right corner, and one larger than a 64 patch."""
    return [
        [rows // 2 - 10, columns // 2 - 15, rows // 2 + 10, columns // 2 + 15],
        [0, 0, 15, 25],
        [rows - 12, columns - 40, rows, columns],
        [10, 10, 110, 100],
    ]


def image_entry(entry: dict, negatives: int = 0, avoid=(), boxes=None, roi_indices=None) -> dict:
    header = entry["header"]
    boxes = boxes_for(header.rows, header.columns) if boxes is None else boxes
    indices = range(len(boxes)) if roi_indices is None else roi_indices
    dbt = entry["FinalImageType"] == "3D"
    return {
        "anon_dicom_path": entry["anon_dicom_path"],
        "dicom_path": entry["dicom_path"],
        "FinalImageType": entry["FinalImageType"],
        "ImageLateralityFinal": entry["ImageLateralityFinal"],
        "ViewPosition": entry["ViewPosition"],
        "rois": [
            {
                "roi_index": index,
                **dict(zip(["ymin", "xmin", "ymax", "xmax"], box, strict=True)),
                "frames": DBT_FRAMES[index % len(DBT_FRAMES)] if dbt else [],
            }
            for index, box in zip(indices, boxes, strict=True)
        ],
        "negatives": negatives,
        "avoid": [list(box) for box in avoid],
    }


def exam_of(*images: dict) -> ExamSpec:
    return ExamSpec.from_dict(
        {"acc_anon": 1234567890123456, "empi_anon": 12345678, "images": list(images)}
    )


def check_against_reference(spec: ExamSpec, result, mode: str) -> None:
    size = int(result.patches.shape[1])
    paths = {image.anon_dicom_path: image.dicom_path for image in spec.images}
    for row in result.info.to_dict("records"):
        path = paths[row["anon_dicom_path"]]
        values = reference_values(path, max(row["frame"], 0), mode)
        box = (row["ymin"], row["xmin"], row["ymax"], row["xmax"])
        origin, kept = reference_origin(box, *values.shape, size, row["padding"])
        assert (row["patch_y0"], row["patch_x0"]) == origin
        expected = reference_patch(values, origin, kept, size)
        np.testing.assert_array_equal(result.patches[row["index"]], expected, err_msg=str(row))


@pytest.fixture(scope="module")
def full_exam(catalog) -> ExamSpec:
    return exam_of(*(image_entry(catalog[name]) for name in KINDS))


@pytest.mark.parametrize("size", [64, 512])
@pytest.mark.parametrize("mode", ["stored", "monochrome2", "windowed_uint8"])
def test_every_patch_equals_the_whole_decode_reference(full_exam, size, mode):
    result = extract_exam(full_exam, settings(size=size, pixel_values=mode))
    assert result.patches.shape[1:] == (size, size)
    assert result.patches.dtype == (np.uint8 if mode == "windowed_uint8" else np.uint16)
    assert list(result.info.columns) == INFO_COLUMNS
    assert result.rejections.empty and list(result.rejections.columns) == REJECTION_COLUMNS
    check_against_reference(full_exam, result, mode)
    # 6 flat images x 4 ROIs, 2 DBTs x (3 + 1 + 2 + 3) ROI frames; 2 padding modes each
    assert len(result.info) == 2 * (6 * 4 + 2 * 9)


def test_monochrome2_inverts_only_monochrome1_images(catalog):
    spec = exam_of(image_entry(catalog["2d"]), image_entry(catalog["monochrome1"]))
    stored = extract_exam(spec, settings())
    inverted = extract_exam(spec, settings(pixel_values="monochrome2"))
    mono2 = stored.info["anon_dicom_path"] == catalog["2d"]["anon_dicom_path"]
    np.testing.assert_array_equal(stored.patches[mono2], inverted.patches[mono2])
    mono1 = ~mono2.to_numpy()
    assert not np.array_equal(stored.patches[mono1], inverted.patches[mono1])
    # In-image pixels of MONOCHROME1 sum to 4095 across the two modes.
    in_image = stored.patches[mono1] > 0
    total = stored.patches[mono1].astype(int) + inverted.patches[mono1]
    assert np.all(total[in_image] == 4095)


def test_order_images_rois_frames_padding_then_negatives(catalog):
    flat = image_entry(catalog["2d"], negatives=2, roi_indices=[3, 0, 2, 1])
    dbt = image_entry(catalog["dbt"], roi_indices=[2, 0, 1, 5])
    result = extract_exam(exam_of(flat, dbt), settings(padding=["black", "tissue"]))
    info = result.info
    assert info["index"].tolist() == list(range(len(info)))
    images = info["anon_dicom_path"].tolist()
    assert images == sorted(images, key=[flat["anon_dicom_path"], dbt["anon_dicom_path"]].index)
    first = info[info["anon_dicom_path"] == flat["anon_dicom_path"]]
    assert first["label"].tolist() == ["roi"] * 8 + ["negative"] * 2
    assert first["roi_index"].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, -1, -1]
    assert first["padding"].tolist()[:2] == ["black", "tissue"]
    second = info[info["anon_dicom_path"] == dbt["anon_dicom_path"]]
    keys = list(
        zip(second["roi_index"], second["frame"], second["padding"] == "tissue", strict=True)
    )
    assert keys == sorted(keys)
    assert second[second["roi_index"] == 2]["frame"].tolist() == [1, 1, 7, 7]  # [7, 1] sorted


def test_dbt_center_frame_is_the_middle_of_the_sorted_frames(catalog):
    spec = exam_of(image_entry(catalog["dbt_jpeg2000"]))
    result = extract_exam(spec, settings(dbt_frames="center", padding=["tissue"]))
    assert result.info["frame"].tolist() == [4, 0, 7, 4]  # [2, 4, 6] [0] [1, 7] [2, 4, 6]
    check_against_reference(spec, result, "stored")


def test_negative_windows_are_tissue_windows_away_from_the_rois(catalog):
    entry = image_entry(catalog["cview"], negatives=3, boxes=[[100, 20, 130, 60]])
    entry["avoid"] = [[100, 20, 130, 60], [40, 100, 70, 140]]
    spec = exam_of(entry)
    result = extract_exam(spec, settings(size=32, negative_margin=10))
    negatives = result.info[result.info["label"] == "negative"]
    assert 1 <= len(negatives) <= 3
    assert (negatives["roi_index"] == -1).all() and (negatives["frame"] == -1).all()
    assert (negatives["ymax"] - negatives["ymin"] == 32).all()
    corners = negatives[["patch_y0", "patch_x0", "ymin", "xmin"]].to_numpy()
    np.testing.assert_array_equal(corners[:, :2], corners[:, 2:])
    for window in negatives[["ymin", "xmin", "ymax", "xmax"]].to_numpy():
        for ymin, xmin, ymax, xmax in entry["avoid"]:
            apart_y = window[2] <= ymin - 10 or window[0] >= ymax + 10
            apart_x = window[3] <= xmin - 10 or window[1] >= xmax + 10
            assert apart_y or apart_x
    check_against_reference(spec, result, "stored")


def test_two_runs_give_identical_patches_and_info(catalog):
    spec = exam_of(
        image_entry(catalog["2d"], negatives=4), image_entry(catalog["rle"], negatives=2)
    )
    first, second = (extract_exam(spec, settings()) for _ in range(2))
    np.testing.assert_array_equal(first.patches, second.patches)
    pd.testing.assert_frame_equal(first.info, second.info)
    assert (first.info["label"] == "negative").sum() >= 4


def corrupt_last_frame(source: str, target: Path) -> Path:
    """A copy of a JPEG 2000 DBT whose last frame holds bytes that do not decode."""
    dataset = pydicom.dcmread(source)
    count = int(dataset.NumberOfFrames)
    frames = list(generate_frames(dataset.PixelData, number_of_frames=count))
    frames[-1] = b"\xff\x4f\xff\x51" + bytes(60)  # a codestream header cut short
    dataset.PixelData = encapsulate(frames)
    dataset.save_as(target)
    return target


def truncated_copy(source: str, target: Path) -> Path:
    data = Path(source).read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def test_bad_images_are_rejected_and_the_others_still_give_patches(catalog, tmp_path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(bytes(range(256)) * 8)
    broken = {
        "missing": (str(tmp_path / "nowhere.dcm"), "image_missing"),
        "garbage": (str(garbage), "image_unreadable"),
        "truncated": (
            str(truncated_copy(catalog["2d"]["dicom_path"], tmp_path / "t.dcm")),
            "image_unreadable",
        ),
        "last_frame": (
            str(corrupt_last_frame(catalog["dbt_jpeg2000"]["dicom_path"], tmp_path / "f.dcm")),
            "image_unreadable",
        ),
    }
    good = [image_entry(catalog["jpegls"]), image_entry(catalog["cview"], negatives=1)]
    bad = []
    for name, (path, _) in broken.items():
        source = catalog["dbt_jpeg2000" if name == "last_frame" else "2d"]
        entry = image_entry({**source, "dicom_path": path, "anon_dicom_path": f"/x/{name}.dcm"})
        bad.append(entry)
    spec = exam_of(good[0], *bad, good[1])
    result = extract_exam(spec, settings())
    rejected = result.rejections.set_index("anon_dicom_path")
    assert set(rejected.index) == {f"/x/{name}.dcm" for name in broken}
    for name, (_, reason) in broken.items():
        row = rejected.loc[f"/x/{name}.dcm"]
        assert row["reason"] == reason and row["roi_index"] == -1 and row["n_rois"] == 4
        assert row["detail"]
    assert "frame 7" in rejected.loc["/x/last_frame.dcm", "detail"]  # after 0..6
    assert set(result.info["anon_dicom_path"]) == {entry["anon_dicom_path"] for entry in good}
    check_against_reference(spec, result, "stored")


def test_image_that_no_longer_fits_its_spec_is_rejected(catalog):
    entry = image_entry(catalog["2d"], boxes=[[0, 0, 10, 10], [300, 0, 400, 10]])
    result = extract_exam(exam_of(entry, image_entry(catalog["rle"])), settings())
    assert result.rejections["reason"].tolist() == ["dimension_mismatch"]
    assert set(result.info["anon_dicom_path"]) == {catalog["rle"]["anon_dicom_path"]}


def test_image_without_window_uses_the_full_bit_depth(catalog, tmp_path):
    dataset = pydicom.dcmread(catalog["2d"]["dicom_path"])
    del dataset.WindowCenter, dataset.WindowWidth
    path = tmp_path / "no_window.dcm"
    dataset.save_as(path)
    spec = exam_of(image_entry({**catalog["2d"], "dicom_path": str(path)}))
    result = extract_exam(spec, settings(pixel_values="windowed_uint8"))
    assert result.patches.dtype == np.uint8
    check_against_reference(spec, result, "windowed_uint8")


def test_images_of_different_dtypes_share_a_dtype_holding_both(catalog, tmp_path):
    dataset = pydicom.dcmread(catalog["2d"]["dicom_path"])
    signed = dataset.pixel_array.astype(np.int16) - 1000
    dataset.PixelRepresentation, dataset.BitsStored, dataset.HighBit = 1, 16, 15
    dataset.PixelData = signed.tobytes()
    path = tmp_path / "signed.dcm"
    dataset.save_as(path)
    entry = image_entry({**catalog["2d"], "dicom_path": str(path), "anon_dicom_path": "/x/s.dcm"})
    spec = exam_of(image_entry(catalog["cview"]), entry)
    result = extract_exam(spec, settings())
    assert result.patches.dtype == np.int32
    assert result.patches.min() < 0 < result.patches.max()
    check_against_reference(spec, result, "stored")


def test_exam_without_patches_is_empty_but_typed(tmp_path, catalog):
    entry = image_entry({**catalog["2d"], "dicom_path": str(tmp_path / "gone.dcm")})
    result = extract_exam(exam_of(entry), settings(size=32))
    assert result.patches.shape == (0, 32, 32) and result.patches.dtype == np.uint16
    assert result.info.empty and list(result.info.columns) == INFO_COLUMNS
    assert len(result.rejections) == 1


def test_settings_read_the_validated_config_section():
    section = validate_config({})["patches"]
    PatchSettings.from_dict(section)
    without = {key: value for key, value in section.items() if key != "compression"}
    assert PatchSettings.from_dict(without).compression == DEFAULT_COMPRESSION


def test_specs_and_settings_round_trip_through_json(full_exam):
    assert ExamSpec.from_json(json.dumps(full_exam.to_dict())) == full_exam
    assert PatchSettings.from_json(json.dumps(settings().to_dict())) == settings()


def image_change(**changes):
    def apply(image):
        image.update(changes)

    return apply


@pytest.mark.parametrize(
    "change",
    [
        image_change(FinalImageType="ROI_SSC"),
        image_change(negatives=-1),
        image_change(
            rois=[{"roi_index": 0, "ymin": 5, "xmin": 5, "ymax": 5, "xmax": 9, "frames": []}]
        ),
        image_change(
            rois=[{"roi_index": 0, "ymin": 0, "xmin": 0, "ymax": 5, "xmax": 9, "frames": [1]}]
        ),
        image_change(avoid=[[1, 2, 3]]),
        image_change(extra=1),
        image_change(rois="[]"),
        lambda image: image.pop("dicom_path"),
    ],
)
def test_malformed_spec_raises(catalog, change):
    image = image_entry(catalog["2d"])
    change(image)
    with pytest.raises(SpecError):
        exam_of(image)


@pytest.mark.parametrize(
    "changes",
    [
        {"padding": []},
        {"padding": ["tissue", "tissue"]},
        {"padding": "tissue"},
        {"size": 0},
        {"dbt_frames": "middle"},
        {"compression": "zip"},
        {"seed": 1.5},
    ],
)
def test_malformed_settings_raise(changes):
    with pytest.raises(SpecError):
        settings(**changes)


def test_exam_listing_an_image_twice_raises(catalog):
    image = image_entry(catalog["2d"])
    with pytest.raises(SpecError, match="twice"):
        exam_of(image, image)


def test_3d_roi_without_frames_and_negatives_on_3d_raise(catalog):
    dbt = image_entry(catalog["dbt"])
    dbt["rois"][0]["frames"] = []
    with pytest.raises(SpecError):
        exam_of(dbt)
    with pytest.raises(SpecError):
        exam_of(image_entry(catalog["dbt"], negatives=1))
