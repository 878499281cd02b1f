"""The pipeline's shared vocabulary: image types, column names, empty ROI cells, sentinels.

Every stage imports these names from here rather than spelling them again. The codes
for rows and ROIs dropped, refused or flagged (FilterReason, RoiReason, RoiWarning)
are in embedpatch.reasons; what an ROI cell means (parsing, "does the row declare
ROIs") is in embedpatch.rois.parse.
"""

from __future__ import annotations

# ---- image types: EMBED's FinalImageType values the pipeline handles -----------------

DBT = "3D"
"""Digital breast tomosynthesis: a volume of frames; its ROIs list the frames they are on."""
CVIEW = "cview"
"""A C-view: the 2D image synthesized from a DBT acquisition (kept when filter.cview_as_2d)."""
FLAT_TYPES = ("2D", CVIEW)
"""Image types of one frame: ROIs have no frames, negative windows are drawn on them, and
the wrong-side check runs on them."""
IMAGE_TYPES = (*FLAT_TYPES, DBT)
"""Every image type the pipeline keeps, in the order summaries and figures list them."""

# ---- column names ------------------------------------------------------------------------

IMAGE_TYPE = "FinalImageType"
LATERALITY = "ImageLateralityFinal"
VIEW = "ViewPosition"
DICOM_PATH = "dicom_path"
"""The local path of an image, added by the filter (anon_dicom_path is the table's own)."""
IDENTIFIERS = ("empi_anon", "acc_anon", "anon_dicom_path", IMAGE_TYPE)
"""Patient, exam, image and its type: the first columns of every per-image or per-ROI table."""
IMAGE_COLUMNS = (LATERALITY, VIEW, DICOM_PATH)
"""What the later stages need to know of an image besides IDENTIFIERS."""
BOX_COLUMNS = ("ymin", "xmin", "ymax", "xmax")
"""A box's columns, in EMBED's ROI_coords order (maxima exclusive; embedpatch.geometry)."""

ROI_COUNT = "num_ROI"
LEGACY_ROI_COUNT = "num_roi"
"""The ROI count's name in older releases; the table reader renames it ROI_COUNT."""
ROI_COORDS = "ROI_coords"
ROI_FRAMES = "ROI_frames"
DCM_ROI_COORDS = "DCM_ROI_coords"
PNG_ROI_COORDS = "PNG_ROI_coords"
"""Boxes some table versions hold beside (or instead of) ROI_coords, in DICOM pixel space and
in the maintainers' PNG space (embedpatch.rois.coordinate_space); the table reader serves the
chosen one as ROI_COORDS and names it in COORDS_COLUMN."""
COORDS_COLUMNS = (DCM_ROI_COORDS, ROI_COORDS, PNG_ROI_COORDS)
"""Coordinate columns in the order a table's is chosen; the chosen one is read as ROI_coords."""
COORDS_COLUMN = "coords_column"
"""Column the filter adds: which of the table's coordinate columns ROI_COORDS came from."""
ROI_CELLS = (ROI_COUNT, ROI_COORDS, ROI_FRAMES)
EMPTY_ROI_TEXT = ("", "[]", "()")
"""ROI_coords / ROI_frames texts (after trimming whitespace) that declare no ROI; a
missing cell declares none either."""

CLINICAL_PREFIX = "clin_"
"""Prefix of the clinical columns the filter joins (clin_asses_worst, ...)."""

# ---- sentinels ---------------------------------------------------------------------------

WHOLE_ROW = -1
"""roi_index of a rejection that refuses the whole image row (every ROI it declares)."""
NO_ROI = -1
"""roi_index of a negative patch (a window away from every ROI)."""
NO_FRAME = -1
"""frame of a 2D / C-view patch (one frame, not a DBT frame index)."""
