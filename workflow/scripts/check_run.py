"""Snakemake script of rule check_run: a run that wrote no patch from a table with rows
fails (or warns, checks.on_empty)."""

from embedpatch.logs import run_logged
from embedpatch.report.end_of_run import check_run

run_logged(
    snakemake.log[0],
    check_run,
    summary_path=snakemake.input.summary,
    check_path=snakemake.output.check,
    on_empty=snakemake.params.on_empty,
)
