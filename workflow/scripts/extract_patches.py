"""Snakemake script of rule extract_patches: the shards of one batch of exams, and its record."""

from embedpatch.exam_job import extract_batch
from embedpatch.logs import run_logged
from embedpatch.object_store import configure_from

configure_from(snakemake.config)
run_logged(
    snakemake.log[0],
    extract_batch,
    snakemake.params.exams,
    snakemake.params.settings,
    snakemake.params.shard_dir,
    snakemake.output.record,
    snakemake.output.table,
    snakemake.params.n_batches,
    snakemake.params.dicom_root,
)
