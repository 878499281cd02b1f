"""Snakemake script of rule demo_cohort: write the synthetic demo cohort."""

import logging
from pathlib import Path

from embedpatch.demo.cohort import write_demo_cohort
from embedpatch.logs import log_to

log_to(snakemake.log[0])
logging.getLogger("openjpeg").setLevel(logging.WARNING)  # one line per encoded frame otherwise

write_demo_cohort(
    Path(snakemake.output.truth).parent,
    seed=snakemake.params.seed,
    n_patients=snakemake.params.n_patients,
    scale=snakemake.params.scale,
    dbt_frames=snakemake.params.dbt_frames,
)
