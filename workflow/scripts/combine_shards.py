"""Snakemake script of rule combine_shards: every shard's patches as one virtual dataset."""

from embedpatch.combine import combine_shards
from embedpatch.logs import run_logged

run_logged(
    snakemake.log[0],
    combine_shards,
    manifest_path=snakemake.input.manifest,
    combined_path=snakemake.output.combined,
)
