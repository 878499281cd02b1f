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
        rules.check_run.output,
        rules.plot_rois.output,
        rules.plot_funnel.output,
        rules.plot_images.output,
        DATASET_TARGETS,


# What the run did, in the terminal: computed from summary.json when the run left a
# current one; after a failure, each failed rule and its log first. Then the process
# exits without waiting for the scheduler's last wake-up timer (embedpatch.report.end_of_run).
onsuccess:
    from embedpatch.report.end_of_run import (
        cancel_scheduler_timers,
        print_end_of_run,
    )

    print_end_of_run(
        rules.summarize_run.output.summary, rules.summarize_run.input, RESULTS
    )
    cancel_scheduler_timers()


onerror:
    from embedpatch.report.end_of_run import cancel_scheduler_timers, print_failure

    print_failure(
        log, rules.summarize_run.output.summary, rules.summarize_run.input, RESULTS
    )
    cancel_scheduler_timers()
