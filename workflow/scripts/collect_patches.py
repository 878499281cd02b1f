"""Snakemake script of rule collect_patches: the manifest and the combined rejections."""

from embedpatch.logs import run_logged
from embedpatch.manifest import collect_patches

run_logged(
    snakemake.log[0],
    collect_patches,
    snakemake.input.records,
    snakemake.input.tables,
    snakemake.input.filtered,
    snakemake.input.validation_rejected,
    snakemake.output.manifest,
    snakemake.output.rejected,
    snakemake.output.rejected_csv,
    snakemake.output.summary,
)
