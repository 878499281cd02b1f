"""Snakemake script of rules plot_rois, plot_funnel and plot_images: the figures named."""

from embedpatch.io.object_store import configure_from
from embedpatch.logs import run_logged
from embedpatch.report.figure_cache import write_figures_cached

configure_from(snakemake.config)
run_logged(
    snakemake.log[0],
    write_figures_cached,
    inputs=dict(snakemake.input.items()),
    outputs=dict(snakemake.output.items()),
    cache_dir=snakemake.params.cache_dir,
)
