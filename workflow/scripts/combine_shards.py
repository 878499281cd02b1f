"""Snakemake script of rule combine_shards: one index of every shard's patches."""

from embedpatch.logs import run_logged
from embedpatch.training.combined import combine_shards

run_logged(
    snakemake.log[0],
    combine_shards,
    manifest_path=snakemake.input.manifest,
    combined_path=snakemake.output.combined,
)
