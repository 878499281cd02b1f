"""Snakemake script of rule list_needed_images: the images the run will read, one a line."""

from embedpatch.logs import run_logged
from embedpatch.needed_images import write_needed_images

run_logged(
    snakemake.log[0],
    write_needed_images,
    filtered_path=snakemake.input.filtered,
    out_path=snakemake.output.images,
    negatives_per_image=snakemake.params.negatives_per_image,
)
