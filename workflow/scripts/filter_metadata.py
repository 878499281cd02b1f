"""Snakemake script of rule filter_metadata: stage 1, the metadata filter."""

from embedpatch.filtering import filter_metadata
from embedpatch.logs import run_logged

run_logged(
    snakemake.log[0],
    filter_metadata,
    snakemake.input.metadata,
    snakemake.output.filtered,
    snakemake.output.dropped,
    snakemake.output.summary,
    filter_config=snakemake.params.filter,
    dicom_root=snakemake.params.dicom_root,
    path_rewrite=snakemake.params.path_rewrite,
    clinical=snakemake.input.get("clinical"),
)
