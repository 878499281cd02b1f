"""What several test folders share: builders of real files, the S3 lab, Snakemake runners.

Imported as `helpers.<module>`: `tests/conftest.py` puts `tests/` on pytest's import path
(pytest's prepend import mode, for a conftest outside a package).
"""
