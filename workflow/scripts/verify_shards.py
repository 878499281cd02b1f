"""Snakemake script of rule verify_shards: every shard read whole, the damaged deleted."""

from embedpatch.logs import run_logged
from embedpatch.patches.batch_job import verify_shards

run_logged(
    snakemake.log[0],
    verify_shards,
    shard_dir=snakemake.params.shard_dir,
    report_path=snakemake.output.report,
)
