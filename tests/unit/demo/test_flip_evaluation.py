"""The wrong-side check and coordinate_space auto meet their targets on the evaluation set."""

import pytest

from embedpatch.demo.flip_evaluation import draw_images, run_evaluation
from embedpatch.geometry import Mirror
from embedpatch.rois.flip_check import FlipThresholds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run():
    return run_evaluation(FlipThresholds())


def test_default_thresholds_meet_the_targets(default_run):
    _, scores = default_run
    assert scores["transformed_off_breast"] >= 50
    for method in ("check", "auto"):
        assert scores[f"{method}_recall_off_breast"] >= 0.95
        assert scores[f"{method}_false_positive_rate"] <= 0.01
    assert scores["check_true_box_found"] >= 0.95


def test_the_set_covers_every_case(default_run):
    boxes, _ = default_run
    assert set(boxes["location"]) == {"chest wall", "skin line", "nipple", "inside"}
    assert set(boxes["laterality"]) == {"L", "R"} and set(boxes["view"]) == {"CC", "MLO"}
    moved = boxes[boxes["transformed"]]
    assert {"x", "y", "xy"} <= set(moved["png_mirror"])
    images = draw_images(300, 0)
    assert {image.shape.chest_wall_right for image in images if image.laterality == "L"} == {
        True,
        False,
    }
    assert any(image.shape.upside_down for image in images)
    assert any(image.mirror is Mirror.NONE for image in images)


def test_the_evaluation_tells_bad_thresholds_apart():
    """Loose thresholds flag boxes on tissue; strict ones miss moved boxes."""
    _, loose = run_evaluation(FlipThresholds(box_max=1.0, mirror_min=0.0), n_images=80)
    assert loose["check_false_positive_rate"] > 0.5
    _, strict = run_evaluation(FlipThresholds(box_max=0.0, mirror_min=1.0), n_images=80)
    assert strict["check_recall_off_breast"] < 0.95
