"""Snakemake script of rules plot_tables and plot_images: each output is the figure it names."""

from embedpatch.figures import write_figures
from embedpatch.logs import run_logged
from embedpatch.object_store import configure_from

configure_from(snakemake.config)
run_logged(
    snakemake.log[0],
    write_figures,
    inputs=dict(snakemake.input.items()),
    outputs=dict(snakemake.output.items()),
)
