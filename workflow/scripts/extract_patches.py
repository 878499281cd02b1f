"""Snakemake script of rule extract_patches: the shards of one batch of exams, and its record."""

from embedpatch.io.object_store import configure_from
from embedpatch.logs import run_logged
from embedpatch.patches.batch_job import extract_batch

configure_from(snakemake.config)
run_logged(
    snakemake.log[0],
    extract_batch,
    specs=snakemake.params.exams,
    settings_json=snakemake.params.settings,
    shard_dir=snakemake.params.shard_dir,
    record_path=snakemake.output.record,
    table_path=snakemake.output.table,
    dicom_root=snakemake.params.dicom_root,
)
