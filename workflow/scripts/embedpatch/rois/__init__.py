"""Stage 2: the ROI strings parsed, validated against their image, checked for flips.

`parse` (ROI_coords / ROI_frames strings and counts, never with eval), `validate` (one
row's ROIs against its image's size; pure), `coordinate_space` (which pixel space a
table's boxes are in, and the mirror to DICOM's), `flip_check` (wrong-side QC on a
downsampled view), `stage` (the stage driver: rows in, `rois.parquet` and
`rejected.parquet` out), `columns` (those tables' columns and readers, for what comes
after the stage), `cache` (the outcome cache that makes reruns read only new or changed
images).
"""
