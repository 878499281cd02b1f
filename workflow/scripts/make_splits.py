"""Snakemake script of rule make_splits: patient-level train / validation / test splits."""

from embedpatch.logs import run_logged
from embedpatch.training.splits import write_splits

run_logged(
    snakemake.log[0],
    write_splits,
    manifest_path=snakemake.input.manifest,
    splits_path=snakemake.output.splits,
    fractions=snakemake.params.fractions,
    seed=snakemake.params.seed,
)
