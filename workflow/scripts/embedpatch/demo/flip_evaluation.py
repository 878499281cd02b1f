"""Measure the wrong-side check and the `auto` space choice on synthetic images with known truth.

The evaluation set is drawn with the demo cohort's phantom: 2D and C-view images of both
lateralities and views, the chest wall on either side, some stored upside down, breasts
of varied size and position, and lesions at the chest wall, the skin line, the nipple or
inside the breast. In a share of the images whose PNG would be mirrored, the boxes are
moved into the maintainers' PNG space by their rule (vertical flips included). Images
are rendered at the resolution the check reads (EVAL_SCALE: a full-size image
downsampled by the default flip_downsample of 8), so the view is the image itself.

A transformed box "lands off the breast" when at most OFF_BREAST of its pixels lie on
the phantom's breast (geometry, not the image). Recall counts the transformed boxes
flagged (the check) or restored (auto); false positives are untransformed boxes flagged
(the check: every box; auto: boxes of images whose PNG is mirrored, the only ones where
it has a choice).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from embedpatch.demo import phantom
from embedpatch.demo.cohort import CVIEW_SIZE, HOLOGIC, ORIENTATION, UPSIDE_DOWN
from embedpatch.demo.phantom import BreastShape, Lesion
from embedpatch.geometry import Box, Mirror
from embedpatch.io.atomic import atomic_output, write_json
from embedpatch.report.drawing import save_png
from embedpatch.report.flip_figure import flip_evaluation_figure
from embedpatch.rois.coordinate_space import PngRule, Space, ViewFacts, png_mirror
from embedpatch.rois.flip_check import (
    FlipThresholds,
    TissueView,
    box_evidence,
    choose_space,
    flip_verdict,
)
from embedpatch.rois.stage import RoiSettings

log = logging.getLogger(__name__)

EVAL_IMAGES = 300
EVAL_SCALE = 1 / 8
OFF_BREAST = 0.25
LOCATIONS = ("chest wall", "skin line", "nipple", "inside")
TRANSFORMED_SHARE = 0.5  # of the images whose PNG is mirrored
FULL_RULE = PngRule(vertical=True)
BACKGROUND_LEVEL, BACKGROUND_NOISE = 80.0, 30.0
MARKER_LEVEL = 3500.0


@dataclass(frozen=True)
class EvalImage:
    """One synthetic image of the evaluation set, before rendering."""

    shape: BreastShape
    laterality: str
    view: str
    boxes: tuple[Box, ...]  # the lesions' true boxes (DICOM space)
    locations: tuple[str, ...]
    mirror: Mirror  # its PNG mirror under the full rule
    transformed: bool  # boxes listed in PNG space

    @property
    def listed(self) -> list[Box]:
        """The boxes as the table lists them."""
        if not self.transformed:
            return list(self.boxes)
        return [self.mirror.apply(box, self.shape.rows, self.shape.cols) for box in self.boxes]


def _orientation(laterality: str, view: str, chest_wall_right: bool, upside_down: bool) -> tuple:
    rows_towards = (UPSIDE_DOWN if upside_down else ORIENTATION)[(laterality, view)][1]
    return ("P" if chest_wall_right else "A", rows_towards)


def _lesion_box(shape: BreastShape, rng: np.random.Generator, location: str) -> Box:
    if location == "chest wall":
        return shape.chest_wall_box(rng)
    if location == "skin line":
        return shape.skin_line_box(rng, inside=float(rng.uniform(0.6, 0.9)))
    if location == "nipple":
        for _ in range(phantom.ATTEMPTS):
            box = shape.inner_box(rng, side=(0.05, 0.1))
            far = float(shape.depth(np.array([box[1], box[3] - 1])).max())
            if far >= 0.8 * shape.reach * shape.cols:
                return box
    return shape.inner_box(rng)


def draw_images(n_images: int, seed: int) -> list[EvalImage]:
    """The evaluation set's images, drawn from `seed`."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        laterality, view = str(rng.choice(["L", "R"])), str(rng.choice(["CC", "MLO"]))
        full = HOLOGIC.size_2d if rng.random() < 0.75 else CVIEW_SIZE
        rows, cols = (round(side * EVAL_SCALE) for side in full)
        chest_wall_right = (laterality == "R") != (rng.random() < 0.25)
        upside_down = bool(rng.random() < 0.25)
        shape = BreastShape.random(rng, rows, cols, view, chest_wall_right, upside_down)
        shape = replace(
            shape,
            reach=float(rng.uniform(0.4, 0.85)),
            centre=shape.centre + float(rng.uniform(-0.08, 0.08)),
        )
        locations = tuple(str(rng.choice(LOCATIONS)) for _ in range(int(rng.integers(1, 4))))
        boxes: list[Box] = []
        for location in locations:
            boxes.append(_lesion_box(shape, rng, location))
        orientation = _orientation(laterality, view, chest_wall_right, upside_down)
        mirror = png_mirror(ViewFacts(orientation, laterality, view), FULL_RULE)
        transformed = mirror is not Mirror.NONE and bool(rng.random() < TRANSFORMED_SHARE)
        images.append(
            EvalImage(shape, laterality, view, tuple(boxes), locations, mirror, transformed)
        )
    return images


def _breast_share(shape: BreastShape, box: Box) -> float:
    ymin, xmin, ymax, xmax = box
    ys, xs = (
        np.arange(max(ymin, 0), min(ymax, shape.rows)),
        np.arange(max(xmin, 0), min(xmax, shape.cols)),
    )
    inside = shape.weight(ys[:, None], xs[None, :]) > 0
    return float(inside.sum()) / max(1, (ymax - ymin) * (xmax - xmin))


def _with_background(
    pixels: np.ndarray, shape: BreastShape, rng: np.random.Generator
) -> np.ndarray:
    """Real backgrounds are not flat zero: a noisy detector floor, and in half the images a
    burned-in marker (the view label) in a top corner away from the chest wall."""
    image = pixels.astype(np.float32)
    image += rng.normal(BACKGROUND_LEVEL, BACKGROUND_NOISE, image.shape).astype(np.float32)
    if rng.random() < 0.5:
        height, width = round(0.05 * shape.rows), round(0.12 * shape.cols)
        top = round(rng.uniform(0.02, 0.1) * shape.rows)
        left = (
            round(0.04 * shape.cols)
            if shape.chest_wall_right
            else shape.cols - width - round(0.04 * shape.cols)
        )
        image[top : top + height, left : left + width] = MARKER_LEVEL
    return np.clip(image, 0, phantom.MAX_VALUE)


def evaluate(images: list[EvalImage], thresholds: FlipThresholds, seed: int) -> pd.DataFrame:
    """One row per box: its truth and what the wrong-side check and `auto` made of it."""
    records = []
    for index, image in enumerate(images):
        rng = np.random.default_rng([seed, index])
        lesions = [
            Lesion(box, float(rng.uniform(*phantom.LESION_AMPLITUDE))) for box in image.boxes
        ]
        pixels = _with_background(phantom.render_2d(image.shape, lesions, rng), image.shape, rng)
        view = TissueView.of(pixels, 1, *pixels.shape)
        listed = image.listed
        mapped = [image.mirror.apply(box, *pixels.shape) for box in listed]
        choice = choose_space(view, listed, mapped, thresholds)
        expected = image.mirror
        for box, location, as_listed in zip(image.boxes, image.locations, listed, strict=True):
            verdict = flip_verdict(view, as_listed, thresholds, expected)
            records.append(
                {
                    "image": index,
                    "laterality": image.laterality,
                    "view": image.view,
                    "location": location,
                    "png_mirror": str(image.mirror),
                    "transformed": image.transformed,
                    "off_breast": _breast_share(image.shape, as_listed) <= OFF_BREAST,
                    "box_tissue": verdict.box.tissue,
                    "mirror_tissue": verdict.mirrored.tissue,
                    "box_contrast": box_evidence(view, as_listed).contrast,
                    "flagged": verdict.suspect,
                    "flag_mirror": str(verdict.mirror),
                    "auto_png": choice.space is Space.PNG,
                    "restored": choice.space is Space.PNG and image.transformed,
                    "true_box_found": verdict.suspect
                    and verdict.mirror.apply(as_listed, *pixels.shape) == box,
                }
            )
    return pd.DataFrame.from_records(records)


def _rate(hits: pd.Series) -> float | None:
    return float(hits.mean()) if len(hits) else None


def scores(boxes: pd.DataFrame) -> dict:
    """Recall and false-positive rates of the check and of `auto` (see the module doc)."""
    moved = boxes[boxes["transformed"]]
    off = moved[moved["off_breast"]]
    kept = boxes[~boxes["transformed"]]
    choosable = kept[kept["png_mirror"] != str(Mirror.NONE)]
    return {
        "images": int(boxes["image"].nunique()),
        "boxes": len(boxes),
        "transformed_boxes": len(moved),
        "transformed_off_breast": len(off),
        "check_recall_off_breast": _rate(off["flagged"]),
        "check_recall_all_transformed": _rate(moved["flagged"]),
        "check_true_box_found": _rate(off["true_box_found"]),
        "check_false_positive_rate": _rate(kept["flagged"]),
        "auto_recall_off_breast": _rate(off["restored"]),
        "auto_recall_all_transformed": _rate(moved["restored"]),
        "auto_false_positive_rate": _rate(choosable["auto_png"]),
    }


def run_evaluation(
    thresholds: FlipThresholds, n_images: int = EVAL_IMAGES, seed: int = 0
) -> tuple[pd.DataFrame, dict]:
    """The evaluation set's per-box table and its scores."""
    boxes = evaluate(draw_images(n_images, seed), thresholds, seed)
    return boxes, scores(boxes)


def write_evaluation(
    summary_path: str,
    boxes_path: str,
    figure_path: str,
    rois_config: Mapping[str, Any],
    n_images: int = EVAL_IMAGES,
    seed: int = 0,
) -> dict:
    """Run the evaluation with the configured thresholds; write its scores (JSON), its
    per-box table (Parquet) and its figure."""
    thresholds = RoiSettings.from_config(rois_config).flip_thresholds
    boxes, result = run_evaluation(thresholds, n_images, seed)
    result |= {"seed": seed, "thresholds": asdict(thresholds)}
    with atomic_output(boxes_path) as temporary:
        boxes.to_parquet(temporary, index=False)
    figure = flip_evaluation_figure(boxes, result, thresholds.box_max, thresholds.mirror_min)
    save_png(figure, figure_path)
    write_json(summary_path, result)
    log.info("wrong-side check evaluation: %s", result)
    return result
