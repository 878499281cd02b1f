"""The wrong-side check and the auto space choice, on hand-made images and DICOM files."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, generate_uid

from embedpatch.config import validate_config
from embedpatch.geometry import Mirror
from embedpatch.rois.coordinate_space import Space
from embedpatch.rois.flip_check import FlipThresholds, TissueView, choose_space, flip_verdict
from embedpatch.rois.stage import RoiSettings, validate_row

ROWS, COLUMNS = 100, 80
THRESHOLDS = FlipThresholds()


def view_of(image: np.ndarray) -> TissueView:
    return TissueView.of(image, 1, *image.shape)


def tissue(rows=slice(None), columns=slice(None)) -> np.ndarray:
    """A background image with a textured tissue region."""
    rng = np.random.default_rng(0)
    image = rng.normal(20, 3, (ROWS, COLUMNS))
    image[rows, columns] = rng.normal(1000, 40, image[rows, columns].shape)
    return image


def test_a_box_above_the_breast_is_suspected_of_a_top_bottom_flip():
    verdict = flip_verdict(view_of(tissue(rows=slice(50, None))), (10, 10, 20, 20), THRESHOLDS)
    assert verdict.suspect and verdict.mirror is Mirror.Y
    assert verdict.box.tissue == 0 and verdict.mirrored.tissue == 1


def test_a_box_on_tissue_is_not_suspect():
    verdict = flip_verdict(view_of(tissue(rows=slice(50, None))), (60, 10, 70, 20), THRESHOLDS)
    assert not verdict.suspect and verdict.box.tissue == 1


def test_the_expected_mirror_wins_then_the_brightest_lesion():
    image = tissue()
    image[:50, :40] = 20  # the top-left quarter is background: the box's quarter
    image[75:85, 55:65] += 600  # a lesion under the xy-mirror of the box
    view = view_of(image)
    box = (15, 15, 25, 25)
    assert flip_verdict(view, box, THRESHOLDS).mirror is Mirror.XY
    assert flip_verdict(view, box, THRESHOLDS, expected=Mirror.X).mirror is Mirror.X
    assert flip_verdict(view, box, THRESHOLDS).mirrored.contrast > 3


def test_the_space_choice_follows_tissue_then_lesions():
    on_breast_below = view_of(tissue(rows=slice(50, None)))
    above, below = (10, 10, 20, 20), (80, 10, 90, 20)
    assert choose_space(on_breast_below, [above], [below], THRESHOLDS).space is Space.PNG
    assert choose_space(on_breast_below, [below], [above], THRESHOLDS).space is Space.DICOM
    image = tissue()
    image[80:90, 10:20] += 600  # the lesion is where the mapped box is
    lesion = view_of(image)
    choice = choose_space(lesion, [above], [below], THRESHOLDS)
    assert (choice.space, choice.png_votes, choice.dicom_votes) == (Space.PNG, 1, 0)
    plain = view_of(tissue())
    assert choose_space(plain, [above], [below], THRESHOLDS).space is Space.DICOM  # no evidence


# ---- whole rows on DICOM files written here ------------------------------------------------


def write_image(path: Path, pixels: np.ndarray, laterality: str, view: str, orientation) -> str:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "MG"
    ds.ImageLaterality = laterality
    ds.ViewPosition = view
    if orientation is not None:
        ds.PatientOrientation = list(orientation)
    ds.set_pixel_data(pixels.astype(np.uint16), "MONOCHROME2", 12)
    ds.save_as(path, enforce_file_format=True)
    return str(path)


def breast(chest_wall_right: bool, upside_down: bool = False) -> np.ndarray:
    """Tissue against one side wall and the top rows (the bottom ones once upside down)."""
    image = np.full((ROWS, COLUMNS), 20.0)
    columns = slice(40, None) if chest_wall_right else slice(None, 40)
    rows = slice(40, None) if upside_down else slice(None, 60)
    image[rows, columns] = 1000
    return image


def row(path: str, coords: str, column: str = "ROI_coords", laterality="R", view="CC") -> dict:
    return {
        "FinalImageType": "2D",
        "dicom_path": path,
        "num_ROI": 1,
        "ROI_coords": coords,
        "ROI_frames": "[]",
        "Rows": None,
        "Columns": None,
        "ImagesInAcquisition": None,
        "ImageLateralityFinal": laterality,
        "ViewPosition": view,
        "coords_column": column,
    }


def settings(**changes) -> RoiSettings:
    return RoiSettings.from_config(validate_config({})["rois"] | changes)


def accepted(outcome):
    (checked,) = outcome.accepted
    return checked


@pytest.fixture
def right_cc(tmp_path) -> str:
    """A right CC image, chest wall on the right (PatientOrientation P\\L)."""
    return write_image(tmp_path / "r.dcm", breast(True), "R", "CC", ("P", "L"))


def test_png_space_maps_a_right_image_back_left_to_right(right_cc):
    png_box = "[[10, 10, 20, 20]]"  # on the PNG: the chest wall on the left
    outcome = validate_row(row(right_cc, png_box), settings(coordinate_space="png"))
    checked = accepted(outcome)
    assert checked.roi.box == (10, 60, 20, 70)
    assert (checked.space, checked.mapped_by) == (Space.PNG, Mirror.X)
    assert not checked.suspect_flip


def test_the_column_name_beats_the_setting(right_cc):
    box = "[[10, 60, 20, 70]]"
    dicom = row(right_cc, box, column="DCM_ROI_coords")
    assert accepted(validate_row(dicom, settings(coordinate_space="png"))).roi.box == (
        10,
        60,
        20,
        70,
    )
    png = row(right_cc, "[[10, 10, 20, 20]]", column="PNG_ROI_coords")
    assert accepted(validate_row(png, settings())).roi.box == (10, 60, 20, 70)


def test_png_boxes_read_as_dicom_are_flagged_with_the_expected_mirror(right_cc):
    checked = accepted(validate_row(row(right_cc, "[[10, 10, 20, 20]]"), settings()))
    assert checked.space is Space.DICOM and checked.suspect_flip
    assert checked.mirror is Mirror.X  # y and xy are background here; x is the rule's mirror


def test_auto_decides_per_image(right_cc):
    auto = settings(coordinate_space="auto")
    png = accepted(validate_row(row(right_cc, "[[10, 10, 20, 20]]"), auto))
    assert (png.space, png.roi.box, png.suspect_flip) == (Space.PNG, (10, 60, 20, 70), False)
    dicom = accepted(validate_row(row(right_cc, "[[10, 60, 20, 70]]"), auto))
    assert (dicom.space, dicom.roi.box) == (Space.DICOM, (10, 60, 20, 70))


def test_images_without_orientation_follow_the_switch(tmp_path):
    path = write_image(tmp_path / "n.dcm", breast(True), "R", "CC", None)
    assert pydicom.dcmread(path).get("PatientOrientation") is None
    png_box = row(path, "[[10, 10, 20, 20]]")
    as_run = accepted(validate_row(png_box, settings(coordinate_space="png")))
    assert as_run.mapped_by is Mirror.NONE and as_run.suspect_flip
    intended = settings(coordinate_space="png", png_flip_without_orientation=True)
    assert accepted(validate_row(png_box, intended)).roi.box == (10, 60, 20, 70)


def test_vertical_flips_when_asked(tmp_path):
    path = write_image(tmp_path / "u.dcm", breast(False, True), "L", "CC", ("A", "L"))
    png_box = row(path, "[[10, 10, 20, 20]]", laterality="L")  # top rows on the PNG
    as_run = accepted(validate_row(png_box, settings(coordinate_space="png")))
    assert as_run.mapped_by is Mirror.NONE and as_run.suspect_flip and as_run.mirror is Mirror.Y
    vertical = settings(coordinate_space="png", png_vertical_flip=True)
    checked = accepted(validate_row(png_box, vertical))
    assert (checked.mapped_by, checked.roi.box) == (Mirror.Y, (80, 10, 90, 20))
