"""Machine-readable codes for every row or ROI the pipeline drops, refuses or flags."""

from enum import StrEnum


class FilterReason(StrEnum):
    """Why the metadata filter did not keep an image row, in the order the filter checks: a
    row failing several checks gets the first (filter.stage.CHECK_ORDER)."""

    IMAGE_TYPE = "image_type"  # FinalImageType not 2D / 3D / cview
    CVIEW_EXCLUDED = "cview_excluded"  # C-view row while cview_as_2d is false
    DBT_WITHOUT_ROI = "3d_without_roi"  # 3D row with no ROI declared
    SPOT_MAG = "spot_mag"  # spot compression / magnification view
    VIEW_POSITION = "view_position"  # ViewPosition not in filter.view_positions
    LATERALITY = "laterality"  # ImageLateralityFinal not in filter.lateralities
    MANUFACTURER = "manufacturer"  # Manufacturer not in filter.manufacturers
    PATH_MISSING = "path_missing"  # anon_dicom_path empty
    PATH_OUTSIDE_ROOT = "path_outside_root"  # anon_dicom_path escapes dicom_root
    ID_INVALID = "id_invalid"  # empi_anon or acc_anon missing or negative
    DUPLICATE_PATH = "duplicate_path"  # same dicom_path as an earlier kept row (first kept)


class RoiReason(StrEnum):
    """Why an ROI (roi_index >= 0) or a whole image row (roi_index -1) was refused."""

    MALFORMED_COORDS = "malformed_coords"  # ROI_coords is not a list of boxes
    MALFORMED_FRAMES = "malformed_frames"  # ROI_frames is not a list of frame lists
    COUNT_MISMATCH = "count_mismatch"  # number of boxes differs from num_ROI
    WRONG_ARITY = "wrong_arity"  # a box without exactly 4 values
    NON_INTEGER = "non_integer"  # a coordinate or frame that is not an integer
    INVERTED_BOX = "inverted_box"  # ymin > ymax or xmin > xmax
    EMPTY_BOX = "empty_box"  # zero height or width
    OUTSIDE_IMAGE = "outside_image"  # no pixel of the box lies in the image
    CROSSES_BORDER = "crosses_border"  # box crosses the border, border policy 'reject'
    FRAMES_MISSING = "frames_missing"  # 3D ROI without frame indices
    FRAMES_OUT_OF_RANGE = "frames_out_of_range"  # frame index not in [0, n_frames) (1 on 2D)
    FRAMES_ON_2D = "frames_on_2d"  # frame lists on a 2D / C-view row, rois.frames_on_2d 'reject'
    FRAMES_LENGTH_MISMATCH = "frames_length_mismatch"  # ROI_frames and ROI_coords lengths differ
    IMAGE_MISSING = "image_missing"  # DICOM file not found
    IMAGE_UNREADABLE = "image_unreadable"  # DICOM file cannot be parsed or decoded
    IMAGE_OUTSIDE_ROOT = "image_outside_root"  # real path (symlinks resolved) leaves dicom_root
    IMAGE_UNAVAILABLE = "image_unavailable"  # object store refused or failed past the retries
    IMAGE_CHANGED = "image_changed"  # object replaced while read, and again when read anew
    DIMENSION_MISMATCH = "dimension_mismatch"  # table Rows/Columns/frames disagree with the image
    NEAR_DUPLICATE = "near_duplicate"  # IoU above threshold with an earlier box, policy 'drop'
    SUSPECT_FLIP = "suspect_flip"  # box on background, mirror on tissue, policy 'reject'
    SUSPECT_AXES_SWAPPED = "suspect_axes_swapped"  # fits only as [xmin, ymin, xmax, ymax]


class RoiWarning(StrEnum):
    """Flags on accepted ROIs: kept, but worth a look."""

    CLIPPED = "clipped"  # box crossed the border and was clipped to the image
    NEAR_DUPLICATE = "near_duplicate"  # IoU above threshold with an earlier box
    SUSPECT_FLIP = "suspect_flip"  # box on background, a mirror of it on tissue
    FLIP_FIXED = "flip_fixed"  # suspect flip replaced by its mirror (policy 'fix')
    SUSPECT_AXES_SWAPPED = "suspect_axes_swapped"  # crosses the border, fits with x / y swapped
    AXES_FIXED = "axes_fixed"  # suspect swap read as [xmin, ymin, xmax, ymax] (policy 'fix')
    FRAMES_ON_2D = "frames_on_2d"  # 2D / C-view ROI whose frame list names frame 0 only


RETRIED_NEXT_RUN = frozenset({RoiReason.IMAGE_UNAVAILABLE, RoiReason.IMAGE_CHANGED})
"""Refusals that say nothing about the image itself (the store failed, or the object
changed while read): never cached by stage 2, and a shard recording one is rewritten
by the next run."""
