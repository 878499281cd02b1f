"""Snakemake script of rule filter_metadata: stage 1, the metadata filter."""

from embedpatch.filter.stage import filter_metadata
from embedpatch.io.object_store import configure_from
from embedpatch.logs import run_logged

configure_from(snakemake.config)
run_logged(
    snakemake.log[0],
    filter_metadata,
    metadata=snakemake.params.tables["metadata"],
    filtered_out=snakemake.output.filtered,
    dropped_out=snakemake.output.dropped,
    summary_out=snakemake.output.summary,
    filter_config=snakemake.params.filter,
    dicom_root=snakemake.params.dicom_root,
    path_rewrite=snakemake.params.path_rewrite,
    clinical=snakemake.params.tables.get("clinical"),
)
