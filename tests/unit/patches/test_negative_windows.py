"""Negative windows: properties on random masks and boxes, reproducibility, real images."""

import math
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpatch.dicom import ImageReader
from embedpatch.patches.negative_windows import (
    MAX_IOU,
    MIN_TISSUE,
    negative_rng,
    negative_windows,
)
from embedpatch.rois.flip_check import tissue_view_mask

QUICK = settings(max_examples=150, deadline=None)


def overlap(a, b) -> int:
    height = min(a[2], b[2]) - max(a[0], b[0])
    width = min(a[3], b[3]) - max(a[1], b[1])
    return max(height, 0) * max(width, 0)


def box_iou(a, b) -> float:
    inter = overlap(a, b)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area - inter)


@st.composite
def scenes(draw):
    """A random tissue mask, the image it was downsampled from, and boxes to avoid."""
    factor = draw(st.sampled_from([1, 2, 4, 8]))
    cells_y, cells_x = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rows = draw(st.integers((cells_y - 1) * factor + 1, cells_y * factor))
    columns = draw(st.integers((cells_x - 1) * factor + 1, cells_x * factor))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = rng.random((cells_y, cells_x)) < draw(st.floats(0, 1))
    corner = st.tuples(st.integers(-20, rows + 20), st.integers(-20, columns + 20))
    avoid = []
    for (y0, x0), (height, width) in draw(
        st.lists(st.tuples(corner, st.tuples(st.integers(1, 60), st.integers(1, 60))), max_size=4)
    ):
        avoid.append((y0, x0, y0 + height, x0 + width))
    return {
        "mask": mask,
        "factor": factor,
        "rows": rows,
        "columns": columns,
        "size": draw(st.integers(1, 80)),
        "count": draw(st.integers(0, 5)),
        "avoid": avoid,
        "margin": draw(st.integers(0, 20)),
    }


def windows_of(scene, seed=0, path="a.dcm"):
    return negative_windows(**scene, rng=negative_rng(seed, path), attempts=30)


@QUICK
@given(scenes())
def test_windows_are_inside_on_tissue_apart_and_away_from_the_boxes(scene):
    windows = windows_of(scene)
    size, factor, mask = scene["size"], scene["factor"], scene["mask"]
    assert len(windows) <= scene["count"]
    boxes = [(y0, x0, y0 + size, x0 + size) for y0, x0 in windows]
    for (y0, x0), box in zip(windows, boxes, strict=True):
        for start, extent in ((y0, scene["rows"]), (x0, scene["columns"])):
            assert 0 <= start <= max(extent - size, 0)
        centre_y = min(y0 + size // 2, scene["rows"] - 1)
        centre_x = min(x0 + size // 2, scene["columns"] - 1)
        assert mask[centre_y // factor, centre_x // factor]
        cells = mask[
            y0 // factor : math.ceil((y0 + size) / factor),
            x0 // factor : math.ceil((x0 + size) / factor),
        ]
        assert cells.mean() >= MIN_TISSUE
        margin = scene["margin"]
        for ymin, xmin, ymax, xmax in scene["avoid"]:
            assert not overlap(box, (ymin - margin, xmin - margin, ymax + margin, xmax + margin))
    for i, a in enumerate(boxes):
        assert all(box_iou(a, b) < MAX_IOU for b in boxes[:i])


@QUICK
@given(scenes(), st.integers(0, 2**32 - 1))
def test_same_seed_and_path_give_the_same_windows(scene, seed):
    assert windows_of(scene, seed, "x/y.dcm") == windows_of(scene, seed, "x/y.dcm")


def test_all_tissue_image_gives_every_window_asked_for():
    scene = {"mask": np.ones((125, 100), bool), "factor": 8, "rows": 1000, "columns": 800}
    windows = negative_windows(
        **scene, size=128, count=6, avoid=[], margin=0, rng=negative_rng(1, "p")
    )
    assert len(windows) == 6


@pytest.mark.parametrize(
    ("mask", "avoid"),
    [
        (np.zeros((20, 20), bool), []),  # no tissue
        (np.ones((20, 20), bool), [(0, 0, 160, 160)]),  # every window touches the box
    ],
)
def test_no_window_when_none_fits(mask, avoid):
    rng = negative_rng(0, "p")
    assert negative_windows(mask, 8, 160, 160, 32, 3, avoid, 0, rng) == []


def test_margin_keeps_windows_away_from_a_box():
    mask = np.ones((50, 50), bool)
    box, margin = (150, 150, 250, 250), 60
    windows = negative_windows(mask, 8, 400, 400, 40, 8, [box], margin, negative_rng(5, "p"))
    assert windows
    for y0, x0 in windows:
        apart_y = y0 + 40 <= box[0] - margin or y0 >= box[2] + margin
        apart_x = x0 + 40 <= box[1] - margin or x0 >= box[3] + margin
        assert apart_y or apart_x


def test_generator_does_not_depend_on_the_process_hash_seed():
    code = (
        "from embedpatch.patches.negative_windows import negative_rng\n"
        "print(negative_rng(7, '/mnt/a/b.dcm').integers(1 << 62))"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    assert outputs == {f"{negative_rng(7, '/mnt/a/b.dcm').integers(1 << 62)}\n"}
    assert negative_rng(7, "/mnt/a/c.dcm").integers(1 << 62) != int(outputs.pop())


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
def test_tissue_mask_of_a_demo_image_lies_on_the_chest_wall_side(demo_cohort, photometric):
    for path in sorted((demo_cohort / "images").rglob("*.dcm")):
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        if dataset.PhotometricInterpretation == photometric and "NumberOfFrames" not in dataset:
            break
    with ImageReader(path) as reader:
        mask = tissue_view_mask(reader, 8)
    assert 0.2 < mask.mean() < 0.8
    chest, far = mask[:, :3].mean(), mask[:, -3:].mean()
    assert (chest > far) == (dataset.ImageLaterality == "L")
