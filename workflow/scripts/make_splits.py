"""Snakemake script of rule make_splits: patient-level train / validation / test splits."""

from embedpatch.logs import run_logged
from embedpatch.splits import write_splits

run_logged(
    snakemake.log[0],
    write_splits,
    snakemake.input.manifest,
    snakemake.output.splits,
    snakemake.params.fractions,
    snakemake.params.seed,
)
