"""The synthetic EMBED-like demo cohort, and phantoms with known truth.

`phantom` (breast phantom pixels with bright lesions), `dicom_writer` (one synthetic
DICOM file in a chosen transfer syntax and pixel type), `cohort` (the cohort's plan,
tables, files and truth), `flip_evaluation` (the wrong-side check measured on phantoms).
"""

# Where the maintainers' anon_dicom_path values start; the demo's table uses it too.
SOURCE_PREFIX = "/mnt/NAS2/mammo/anon_dicom/"
