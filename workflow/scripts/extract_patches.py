"""Snakemake script of rule extract_patches: one exam's patches into its HDF5 shard."""

from embedpatch.exam_job import extract_exam_shard
from embedpatch.logs import run_logged

run_logged(
    snakemake.log[0],
    extract_exam_shard,
    snakemake.params.spec,
    snakemake.params.settings,
    snakemake.output.shard,
    snakemake.params.dicom_root,
)
