"""Snakemake script of rule summarize_run: summary.json, the funnel and the stage summaries."""

from embedpatch.logs import run_logged
from embedpatch.report.summary import write_summary

run_logged(
    snakemake.log[0],
    write_summary,
    summary_path=snakemake.output.summary,
    **dict(snakemake.input.items()),
)
