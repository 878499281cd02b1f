# EMBED ROI patch pipeline: metadata filtering, ROI validation, patch shards, report.
# Run `snakemake --cores N`; configuration in config.yaml (schema: embedpatch/config.schema.yaml).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/metadata.smk"
include: "workflow/rules/rois.smk"
include: "workflow/rules/patches.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/dataset.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/metadata/filtered.parquet",
        f"{RESULTS}/metadata/filter_summary.json",
        f"{RESULTS}/rois/roi_summary.json",
        f"{RESULTS}/manifest.parquet",
        rules.summarize_run.output,
        rules.plot_tables.output,
        rules.plot_images.output,
        rules.evaluate_flip_check.output,
        DATASET_TARGETS,
