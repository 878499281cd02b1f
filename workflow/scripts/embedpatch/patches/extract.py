"""Patches of one exam: every ROI x frame x padding mode, then negative windows.

Each image is opened once (`ImageReader`); a patch reads only the in-image part of
its window (`padding.cut_patch`), so a DBT volume is never decoded whole. Output
order is deterministic: images in spec order; within an image its ROIs by
roi_index, frames ascending, padding modes in settings order, then its negative
windows. Reads run frame by frame (a decoded frame is reused), whatever that order.
A negative window (negatives.py) gives one patch, recorded as tissue padding of the
window itself with roi_index -1; 2D / C-view patches have frame -1. Images with
neither ROIs nor negatives to cut are not opened.

Pixel values (`PatchSettings.pixel_values`), outside-image pixels always 0:
- "stored": pydicom's decoded values and dtype;
- "monochrome2": MONOCHROME1 images inverted within Bits Stored (tissue bright);
- "windowed_uint8": the header's linear VOI window to 0..255, then 255 - v for
  MONOCHROME1; an image without a usable window (WindowCenter / WindowWidth
  missing, or width < 1) gets the window spanning every Bits Stored value.
An exam's patches are stored in native byte order (big-endian images too) and, when
its images' pixel values differ in dtype, cast to the lossless `shards.common_dtype`
of them all (uint8 with uint16 gives uint16, uint16 with int16 int32); an exam
without any patch has dtype uint16 (uint8 when windowed).

Failures stay local: an image that cannot be read (missing, unreadable, a frame
that does not decode, outside the DICOM root once symlinks are resolved) or does not
fit its spec (box or frame outside the image) becomes one rejection record and no
patches; the exam's other images go on. Only a malformed spec or settings raises
(SpecError, when the specification or settings are read: embedpatch.patches.spec).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from embedpatch.dicom import (
    ImageError,
    ImageHeader,
    ImageReader,
    invert_monochrome1,
    window_to_uint8,
)
from embedpatch.geometry import Box, window_box
from embedpatch.io.object_store import reread_if_changed
from embedpatch.patches.negative_windows import DOWNSAMPLE, negative_rng, negative_windows
from embedpatch.patches.padding import Placement, black_window, cut_patch, tissue_placement
from embedpatch.patches.shards import (
    INFO_COLUMNS,
    INFO_INT_COLUMNS,
    ExamPatches,
    common_dtype,
    typed_table,
)
from embedpatch.patches.spec import ExamSpec, ImageSpec, PatchSettings, RoiSpec
from embedpatch.reasons import RoiReason
from embedpatch.rois.columns import REJECTED_COLUMNS
from embedpatch.rois.flip_check import tissue_view_mask
from embedpatch.vocab import BOX_COLUMNS, FLAT_TYPES, NO_FRAME, NO_ROI, WHOLE_ROW

log = logging.getLogger(__name__)

EMPTY_DTYPE = np.dtype(np.uint16)  # dtype of a stored / monochrome2 exam without patches

REJECTION_INT_COLUMNS = ["empi_anon", "acc_anon", "roi_index", "n_rois"]
REJECTION_COLUMNS = REJECTED_COLUMNS


class ImageMismatch(ImageError):  # noqa: N818 - named after its reason code
    """The image does not fit its spec: a box or frame lies outside it."""

    reason = RoiReason.DIMENSION_MISMATCH


# ---- one image --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cut:
    """One patch to cut: where it goes in the image's output and what it records."""

    frame: int
    placement: Placement
    record: dict[str, Any]


def _selected_frames(roi: RoiSpec, dbt_frames: str) -> list[int]:
    frames = sorted(set(roi.frames))
    if not frames:
        return [0]
    return frames if dbt_frames == "all" else [frames[len(frames) // 2]]


def _placement(mode: str, box: Box, header: ImageHeader, size: int) -> Placement:
    if mode == "tissue":
        return tissue_placement(box, header.rows, header.columns, size)
    return black_window(box, size)


def _record(placement: Placement, box: Box, **fields: Any) -> dict[str, Any]:
    return {
        **fields,
        **dict(zip(BOX_COLUMNS, box, strict=True)),
        "patch_y0": placement.y0 - placement.patch_y,
        "patch_x0": placement.x0 - placement.patch_x,
    }


def _roi_cuts(image: ImageSpec, header: ImageHeader, settings: PatchSettings) -> list[_Cut]:
    flat = image.image_type in FLAT_TYPES
    cuts = []
    for roi in sorted(image.rois, key=lambda r: r.roi_index):
        for frame in _selected_frames(roi, settings.dbt_frames):
            for mode in settings.padding:
                placement = _placement(mode, roi.box, header, settings.size)
                fields = {
                    "roi_index": roi.roi_index,
                    "frame": NO_FRAME if flat else frame,
                    "padding": mode,
                    "label": "roi",
                }
                cuts.append(_Cut(frame, placement, _record(placement, roi.box, **fields)))
    return cuts


def _negative_cuts(image: ImageSpec, reader: ImageReader, settings: PatchSettings) -> list[_Cut]:
    """Negative windows: one patch each, recorded as tissue padding of the window itself."""
    if not image.negatives:
        return []
    header, size = reader.header, settings.size
    windows = negative_windows(
        tissue_view_mask(reader, DOWNSAMPLE),
        DOWNSAMPLE,
        header.rows,
        header.columns,
        size,
        image.negatives,
        image.avoid,
        settings.negative_margin,
        negative_rng(settings.seed, image.anon_dicom_path),
    )
    if len(windows) < image.negatives:
        log.info(
            "%s: %d of %d negative windows found",
            image.anon_dicom_path,
            len(windows),
            image.negatives,
        )
    cuts = []
    for y0, x0 in windows:
        box = window_box(y0, x0, size)
        placement = Placement(*box)
        fields = {"roi_index": NO_ROI, "frame": NO_FRAME, "padding": "tissue", "label": "negative"}
        cuts.append(_Cut(0, placement, _record(placement, box, **fields)))
    return cuts


def _check_fits(image: ImageSpec, header: ImageHeader) -> None:
    """Refuse an image its spec does not fit (replaced or regenerated since validation)."""
    for roi in image.rois:
        _, _, ymax, xmax = roi.box
        if ymax > header.rows or xmax > header.columns:
            raise ImageMismatch(
                f"{image.dicom_path}: ROI {roi.roi_index} box {roi.box} outside the "
                f"{header.rows} x {header.columns} image"
            )
        if any(frame >= header.number_of_frames for frame in roi.frames):
            raise ImageMismatch(
                f"{image.dicom_path}: ROI {roi.roi_index} frames {list(roi.frames)} beyond its "
                f"{header.number_of_frames} frames"
            )


def _full_range_window(header: ImageHeader) -> tuple[float, float]:
    """(centre, width) of the window spanning every value Bits Stored can hold."""
    width = float(1 << header.bits_stored)
    low = -width / 2 if header.pixel_representation else 0.0
    return low + width / 2, width


def _windowed(pixels: np.ndarray, centre: float, width: float, invert: bool) -> np.ndarray:
    values = window_to_uint8(pixels, centre, width)
    return 255 - values if invert else values


def _pixel_transform(
    reader: ImageReader, mode: str
) -> tuple[Callable[[np.ndarray], np.ndarray] | None, np.dtype]:
    """The function applied to the pixels read (None: none) and the patch dtype."""
    header = reader.header
    monochrome1 = header.photometric_interpretation == "MONOCHROME1"
    if mode == "stored" or (mode == "monochrome2" and not monochrome1):
        return None, reader.dtype
    if mode == "monochrome2":
        return partial(invert_monochrome1, bits_stored=header.bits_stored), reader.dtype
    centre, width = header.window_center, header.window_width
    if centre is None or width is None or width < 1:
        centre, width = _full_range_window(header)
    return partial(_windowed, centre=centre, width=width, invert=monochrome1), np.dtype(np.uint8)


def _region_reader(
    reader: ImageReader, frame: int, transform: Callable[[np.ndarray], np.ndarray] | None
) -> Callable[[int, int, int, int], np.ndarray]:
    if transform is None:
        return partial(reader.region, frame)
    return lambda y0, y1, x0, x1: transform(reader.region(frame, y0, y1, x0, x1))


def _image_patches(
    image: ImageSpec, settings: PatchSettings, dicom_root: str | None
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """All patches of one image and their records; raises ImageError for a bad image."""
    with ImageReader(image.dicom_path, dicom_root) as reader:
        header = reader.header
        _check_fits(image, header)
        transform, dtype = _pixel_transform(reader, settings.pixel_values)
        cuts = _roi_cuts(image, header, settings) + _negative_cuts(image, reader, settings)
        patches = np.empty((len(cuts), settings.size, settings.size), dtype=dtype)
        for position in sorted(range(len(cuts)), key=lambda i: cuts[i].frame):
            cut = cuts[position]
            patches[position] = cut_patch(
                _region_reader(reader, cut.frame, transform),
                cut.placement,
                settings.size,
                header.rows,
                header.columns,
                dtype,
            )
    return patches, [cut.record for cut in cuts]


# ---- one exam -------------------------------------------------------------------------


def _image_fields(spec: ExamSpec, image: ImageSpec) -> dict[str, Any]:
    return {
        "empi_anon": spec.empi_anon,
        "acc_anon": spec.acc_anon,
        "anon_dicom_path": image.anon_dicom_path,
        "FinalImageType": image.image_type,
    }


def _rejection(spec: ExamSpec, image: ImageSpec, error: ImageError) -> dict[str, Any]:
    log.warning("%s: no patches, %s: %s", image.anon_dicom_path, error.reason, error)
    return {
        **_image_fields(spec, image),
        "roi_index": WHOLE_ROW,
        "reason": str(error.reason),
        "detail": str(error),
        "n_rois": len(image.rois),
    }


def _stacked(arrays: list[np.ndarray], settings: PatchSettings) -> np.ndarray:
    """The images' patches as one array of their lossless common dtype, native byte order."""
    if not arrays:
        empty = np.uint8 if settings.pixel_values == "windowed_uint8" else EMPTY_DTYPE
        return np.empty((0, settings.size, settings.size), dtype=empty)
    common = common_dtype(array.dtype for array in arrays)
    return np.concatenate([array.astype(common, copy=False) for array in arrays])


def extract_exam(
    spec: ExamSpec, settings: PatchSettings, dicom_root: str | None = None
) -> ExamPatches:
    """Cut every patch of one exam; images that fail become rejections, never exceptions.

    With `dicom_root`, an image whose real path (symlinks resolved) is not below it is
    refused (image_outside_root) before it is opened. An object replaced while read is
    cut again from scratch once (image_changed if it changes again).
    """
    arrays: list[np.ndarray] = []
    records: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    for image in spec.images:
        if not (image.rois or image.negatives):
            continue  # nothing to cut: the image is not even opened
        try:
            patches, image_records = reread_if_changed(
                partial(_image_patches, image, settings, dicom_root)
            )
        except ImageError as error:
            rejections.append(_rejection(spec, image, error))
            continue
        fields = {
            **_image_fields(spec, image),
            "ImageLateralityFinal": image.laterality,
            "ViewPosition": image.view,
            "patch_size": settings.size,
        }
        records += [{**fields, **record} for record in image_records]
        arrays.append(patches)
    for index, record in enumerate(records):
        record["index"] = index
    return ExamPatches(
        acc_anon=spec.acc_anon,
        empi_anon=spec.empi_anon,
        patches=_stacked(arrays, settings),
        info=typed_table(records, INFO_COLUMNS, INFO_INT_COLUMNS),
        rejections=typed_table(rejections, REJECTION_COLUMNS, REJECTION_INT_COLUMNS),
    )
