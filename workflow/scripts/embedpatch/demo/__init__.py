"""Synthetic EMBED-like demo cohort: phantom pixels, DICOM writer, cohort plan and tables."""

# Where the maintainers' anon_dicom_path values start; the demo's table uses it too.
SOURCE_PREFIX = "/mnt/NAS2/mammo/anon_dicom/"
