"""Snakemake script of rule filter_metadata: stage 1, the metadata filter."""

import logging

from embedpatch.filtering import filter_metadata
from embedpatch.logs import log_to

log_to(snakemake.log[0])
try:
    filter_metadata(
        snakemake.input.metadata,
        snakemake.output.filtered,
        snakemake.output.dropped,
        snakemake.output.summary,
        filter_config=snakemake.params.filter,
        dicom_root=snakemake.params.dicom_root,
        path_rewrite=snakemake.params.path_rewrite,
        clinical=snakemake.input.get("clinical"),
    )
except Exception:
    logging.exception("filter_metadata failed")
    raise
