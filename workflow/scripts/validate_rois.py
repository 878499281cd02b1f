"""Snakemake script of rule validate_rois: stage 2, ROI parsing and validation."""

from embedpatch.io.object_store import configure_from
from embedpatch.logs import run_logged
from embedpatch.rois.stage import run_roi_stage

configure_from(snakemake.config)
run_logged(
    snakemake.log[0],
    run_roi_stage,
    filtered_path=snakemake.input.filtered,
    accepted_path=snakemake.output.accepted,
    rejected_path=snakemake.output.rejected,
    summary_path=snakemake.output.summary,
    rois_config=snakemake.params.rois,
    dicom_root=snakemake.params.dicom_root,
    cache_path=snakemake.params.cache,
)
