"""Snakemake script of rule demo_cohort: write the synthetic demo cohort."""

from pathlib import Path

from embedpatch.demo.cohort import write_demo_cohort
from embedpatch.logs import run_logged

run_logged(
    snakemake.log[0],
    write_demo_cohort,
    out_dir=Path(snakemake.output.truth).parent,
    seed=snakemake.params.seed,
    n_patients=snakemake.params.n_patients,
    scale=snakemake.params.scale,
    dbt_frames=snakemake.params.dbt_frames,
)
