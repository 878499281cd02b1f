"""Property tests of tissue and black padding: exact shape, dtype kept, pixels where they belong."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpatch.patches.padding import (
    Placement,
    black_pad,
    black_window,
    cut_patch,
    tissue_pad,
    tissue_placement,
    tissue_window,
)

QUICK = settings(max_examples=200, deadline=None)
DTYPES = [np.uint8, np.uint16, np.int16, np.float32]


def doc_tissue_pad(img, roi, patch_size):
    """The EMBED doc's tissue_pad_patch semantics, restated as an oracle."""
    y_min, x_min, y_max, x_max = roi
    y_center, x_center = (y_min + y_max) // 2, (x_min + x_max) // 2
    half = patch_size // 2
    y_end = max(min(y_center + half, img.shape[0]), patch_size)
    x_end = max(min(x_center + half, img.shape[1]), patch_size)
    y_start = max(min(y_center - half, y_end - patch_size), 0)
    x_start = max(min(x_center - half, x_end - patch_size), 0)
    return img[y_start:y_end, x_start:x_end]


def doc_black_pad(img, roi, patch_size):
    """The EMBED doc's black_pad_patch semantics, with the uint8 bug fixed (dtype kept)."""
    y_min, x_min, y_max, x_max = roi
    patch = np.zeros((patch_size, patch_size), dtype=img.dtype)
    half = patch_size // 2
    if y_max - y_min > patch_size:
        y_center = (y_max + y_min) // 2
        y_min, y_max = y_center - half, y_center + half
    if x_max - x_min > patch_size:
        x_center = (x_max + x_min) // 2
        x_min, x_max = x_center - half, x_center + half
    height, width = y_max - y_min, x_max - x_min
    top, left = (patch_size - height) // 2, (patch_size - width) // 2
    patch[top : top + height, left : left + width] = img[y_min:y_max, x_min:x_max]
    return patch


def numbered_image(rows, columns, dtype):
    """Distinct non-zero values (modulo the dtype), so a zero means 'outside the image'."""
    values = np.arange(1, rows * columns + 1).reshape(rows, columns)
    if np.dtype(dtype).kind in "ui":
        values = 1 + (values - 1) % (np.iinfo(dtype).max - 1)
    return values.astype(dtype)


@st.composite
def scenes(draw, inside=False, large_image=False, even=False):
    """(image, box, size): boxes may cross or miss the border unless `inside`."""
    size = draw(st.integers(1, 48))
    if even:
        size += size % 2
    low = size if large_image else 1
    rows, columns = draw(st.integers(low, 90)), draw(st.integers(low, 90))
    margin = 0 if inside else 30
    ymin = draw(st.integers(-margin, rows - 1 + margin))
    xmin = draw(st.integers(-margin, columns - 1 + margin))
    ymax = draw(st.integers(ymin + 1, rows + margin))
    xmax = draw(st.integers(xmin + 1, columns + margin))
    dtype = draw(st.sampled_from(DTYPES))
    return numbered_image(rows, columns, dtype), (ymin, xmin, ymax, xmax), size


def expected_patch(image, placement: Placement, size):
    """Pixel by pixel: patch (py, px) shows image (py, px) - patch origin + window origin."""
    patch = np.zeros((size, size), dtype=image.dtype)
    rows, columns = image.shape
    for py in range(size):
        for px in range(size):
            y = py - placement.patch_y + placement.y0
            x = px - placement.patch_x + placement.x0
            in_window = placement.y0 <= y < placement.y1 and placement.x0 <= x < placement.x1
            if in_window and 0 <= y < rows and 0 <= x < columns:
                patch[py, px] = image[y, x]
    return patch


@QUICK
@given(scenes())
def test_tissue_pad_shape_dtype_content(scene):
    image, box, size = scene
    patch = tissue_pad(image, box, size)
    assert patch.shape == (size, size)
    assert patch.dtype == image.dtype
    placement = tissue_placement(box, *image.shape, size)
    np.testing.assert_array_equal(patch, expected_patch(image, placement, size))


@QUICK
@given(scenes())
def test_black_pad_shape_dtype_content(scene):
    image, box, size = scene
    patch = black_pad(image, box, size)
    assert patch.shape == (size, size)
    assert patch.dtype == image.dtype
    np.testing.assert_array_equal(patch, expected_patch(image, black_window(box, size), size))


@QUICK
@given(scenes())
def test_tissue_window_geometry(scene):
    image, box, size = scene
    rows, columns = image.shape
    y0, x0 = tissue_window(box, rows, columns, size)
    for start, extent, low, high in ((y0, rows, box[0], box[2]), (x0, columns, box[1], box[3])):
        if extent >= size:  # inside the image, and centred unless pushed in by the border
            assert 0 <= start <= extent - size
            centred = (low + high) // 2 + size // 2 - size  # the doc ends at centre + size // 2
            assert start == centred or start in (0, extent - size)
        else:  # image smaller than the patch: start at 0, zeros after the image
            assert start == 0
    full = tissue_pad(image, box, size)
    inside = full[: min(rows, size), : min(columns, size)]
    assert inside.all()  # the window never shows padding where the image has pixels


@QUICK
@given(scenes())
def test_black_window_geometry(scene):
    _, box, size = scene
    placement = black_window(box, size)
    height, width = placement.y1 - placement.y0, placement.x1 - placement.x0
    assert height == min(box[2] - box[0], size)
    assert width == min(box[3] - box[1], size)
    assert (placement.patch_y, placement.patch_x) == ((size - height) // 2, (size - width) // 2)
    if box[2] - box[0] > size:
        assert placement.y0 == (box[0] + box[2]) // 2 - size // 2


@QUICK
@given(scenes(inside=True, large_image=True))
def test_tissue_pad_equals_doc_for_inside_rois_on_large_images(scene):
    image, box, size = scene
    np.testing.assert_array_equal(tissue_pad(image, box, size), doc_tissue_pad(image, box, size))


@QUICK
@given(scenes(inside=True, even=True))
def test_black_pad_equals_doc_for_inside_rois(scene):
    image, box, size = scene
    np.testing.assert_array_equal(black_pad(image, box, size), doc_black_pad(image, box, size))


@QUICK
@given(scenes(inside=True))
def test_black_pad_fills_the_row_the_doc_leaves_empty_for_odd_sizes(scene):
    image, box, size = scene
    doc, ours = doc_black_pad(image, box, size), black_pad(image, box, size)
    shown = doc != 0
    np.testing.assert_array_equal(ours[shown], doc[shown])
    assert np.count_nonzero(ours) >= np.count_nonzero(doc)


def test_black_pad_keeps_16_bit_values():
    image = np.full((100, 100), 4000, dtype=np.uint16)
    patch = black_pad(image, (40, 40, 60, 70), 64)
    assert patch.dtype == np.uint16
    assert patch.max() == 4000  # the doc's uint8 patch would hold 4000 % 256 = 160
    assert patch.sum() == 4000 * 20 * 30


def test_small_image_is_zero_padded_bottom_right():
    image = numbered_image(10, 300, np.uint16)
    patch = tissue_pad(image, (2, 100, 8, 140), 32)
    np.testing.assert_array_equal(patch[:10], image[:, 104:136])
    assert not patch[10:].any()


@QUICK
@given(scenes(), st.booleans())
def test_cut_patch_reads_once_inside_the_image(scene, tissue):
    image, box, size = scene
    rows, columns = image.shape
    calls = []

    def read_region(y0, y1, x0, x1):
        assert 0 <= y0 < y1 <= rows and 0 <= x0 < x1 <= columns
        calls.append((y0, y1, x0, x1))
        return image[y0:y1, x0:x1]

    placement = tissue_placement(box, rows, columns, size) if tissue else black_window(box, size)
    patch = cut_patch(read_region, placement, size, rows, columns, image.dtype)
    assert len(calls) <= 1
    assert patch.any() == bool(calls)


def test_cut_patch_never_reads_a_window_off_the_image():
    def read_region(*window):
        raise AssertionError(f"read {window}")

    placement = black_window((-50, -50, -10, -20), 16)
    patch = cut_patch(read_region, placement, 16, 100, 100, np.dtype(np.uint16))
    assert patch.shape == (16, 16)
    assert not patch.any()


@pytest.mark.parametrize("size", [1, 2, 511, 512])
def test_full_size_patches_on_a_mammogram_sized_grid(size):
    image = numbered_image(600, 400, np.uint16)
    for box in [(0, 0, 600, 400), (590, 390, 600, 400), (-5, -5, 3, 3), (100, 100, 101, 101)]:
        assert tissue_pad(image, box, size).shape == (size, size)
        assert black_pad(image, box, size).shape == (size, size)
