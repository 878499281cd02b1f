"""Snakemake script of rule validate_rois: stage 2, ROI parsing and validation."""

import logging

from embedpatch.logs import log_to
from embedpatch.roi_table import run_roi_stage

log_to(snakemake.log[0])
try:
    run_roi_stage(
        snakemake.input.filtered,
        snakemake.output.accepted,
        snakemake.output.rejected,
        snakemake.output.summary,
        rois_config=snakemake.params.rois,
    )
except Exception:
    logging.exception("validate_rois failed")
    raise
