"""Snakemake script of rule list_needed_images: the images the run will read, one a line."""

from embedpatch.logs import run_logged
from embedpatch.patches.needed_images import write_needed_images
from embedpatch.patches.negative_images import NegativeChoice

run_logged(
    snakemake.log[0],
    write_needed_images,
    filtered_path=snakemake.input.filtered,
    out_path=snakemake.output.images,
    negatives_per_image=snakemake.params.negatives_per_image,
    choice=NegativeChoice.from_config(snakemake.params.negative_images),
    seed=snakemake.params.seed,
)
