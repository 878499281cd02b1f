"""Snakemake script of rule evaluate_flip_check: the wrong-side check on synthetic truth."""

from embedpatch.demo.flip_evaluation import write_evaluation
from embedpatch.logs import run_logged

run_logged(
    snakemake.log[0],
    write_evaluation,
    summary_path=snakemake.output.summary,
    boxes_path=snakemake.output.boxes,
    figure_path=snakemake.output.figure,
    rois_config=snakemake.params.rois,
)
