"""Snakemake script of rule collect_patches: the manifest and the combined rejections."""

from embedpatch.logs import run_logged
from embedpatch.patches.manifest import collect_patches

run_logged(
    snakemake.log[0],
    collect_patches,
    record_paths=snakemake.input.records,
    table_paths=snakemake.input.tables,
    filtered_path=snakemake.input.filtered,
    validation_rejected_path=snakemake.input.validation_rejected,
    manifest_path=snakemake.output.manifest,
    rejected_path=snakemake.output.rejected,
    rejected_csv_path=snakemake.output.rejected_csv,
    summary_path=snakemake.output.summary,
    shard_dir=snakemake.params.shard_dir,
)
