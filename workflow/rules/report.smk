# Summary of the run: summary.json (the funnel and every stage's summary), the check that
# the run wrote patches (checks.on_empty), and the figures of the Snakemake report
# (`snakemake --report report.html`). They read the small tables written after
# collect_patches, and only a bounded, seeded sample of shards and images.
# - plot_rois draws what stages 1 and 2 kept (image counts, ROIs per image, sizes,
#   frames, locations): it runs beside the last extraction jobs, not after the manifest
#   (extraction, on the way to the manifest, goes first: its priority).
# - plot_funnel draws what every stage kept and refused, and the patches' balance. It
#   counts the funnel from the same tables as summarize_run, beside it, not after it: it
#   is the longest job after the manifest, and its priority starts it first.
# - plot_images draws the figures of pixels (patch gallery, boxes on images).
# A figure whose input is unchanged is copied from the figure cache, not drawn.
# evaluate_flip_check measures the wrong-side check, with this run's thresholds, on
# synthetic images whose truth is known (embedpatch.demo.flip_evaluation). It does not
# depend on the user's data, so it is not in `rule all`: `snakemake evaluate_flip_check`.

# Rule -> figure name (its output name and PNG stem) -> report category.
FIGURES = {
    "plot_rois": {
        "counts": "1. Pipeline funnel",
        "rois_per_image": "2. ROIs",
        "roi_sizes": "2. ROIs",
        "dbt_frames": "2. ROIs",
        "roi_locations": "2. ROIs",
    },
    "plot_funnel": {
        "funnel": "1. Pipeline funnel",
        "rejections": "1. Pipeline funnel",
        "balance": "3. Patches",
    },
    "plot_images": {
        "patch_gallery": "3. Patches",
        "overlay_2d": "4. ROIs on images",
        "overlay_dbt": "4. ROIs on images",
        "suspect_flips": "4. ROIs on images",
    },
}
# Every figure is cached by what it shows (embedpatch.report.figure_cache).
FIGURE_CACHE = f"{RESULTS}/figures/cache"
# Each rule's outputs, registered in the report with their caption (../report/<name>.rst).
FIGURE_OUTPUTS = {
    rule_name: {
        name: report(
            f"{RESULTS}/figures/{name}.png",
            caption=f"../report/{name}.rst",
            category=category,
        )
        for name, category in figures.items()
    }
    for rule_name, figures in FIGURES.items()
}


rule summarize_run:
    input:
        filter_summary_path=f"{RESULTS}/metadata/filter_summary.json",
        roi_summary_path=f"{RESULTS}/rois/roi_summary.json",
        patches_summary_path=f"{RESULTS}/patches_summary.json",
        filtered_path=f"{RESULTS}/metadata/filtered.parquet",
        rois_path=f"{RESULTS}/rois/rois.parquet",
        rejected_path=f"{RESULTS}/rois/rejected.parquet",
        manifest_path=f"{RESULTS}/manifest.parquet",
    output:
        summary=f"{RESULTS}/summary.json",
    log:
        f"{RESULTS}/logs/summarize_run.log",
    conda:
        "../../envs/figures.yaml"
    resources:
        mem_mb=2000,
    script:
        "../scripts/make_summary.py"


rule evaluate_flip_check:
    output:
        summary=f"{RESULTS}/rois/flip_check_evaluation.json",
        boxes=f"{RESULTS}/rois/flip_check_evaluation.parquet",
        figure=report(
            f"{RESULTS}/figures/flip_check_evaluation.png",
            caption="../report/flip_check_evaluation.rst",
            category="2. ROIs",
        ),
    log:
        f"{RESULTS}/logs/evaluate_flip_check.log",
    conda:
        "../../envs/figures.yaml"
    resources:
        mem_mb=1000,
    params:
        rois=config["rois"],
    script:
        "../scripts/evaluate_flip_check.py"


# A few milliseconds of reading one JSON file: not worth a cluster job.
localrules:
    check_run,


rule check_run:
    input:
        summary=rules.summarize_run.output.summary,
    output:
        check=f"{RESULTS}/run_check.json",
    log:
        f"{RESULTS}/logs/check_run.log",
    conda:
        "../../envs/figures.yaml"
    params:
        on_empty=config["checks"]["on_empty"],
    script:
        "../scripts/check_run.py"


rule plot_rois:
    input:
        filtered=f"{RESULTS}/metadata/filtered.parquet",
        rois=f"{RESULTS}/rois/rois.parquet",
    output:
        **FIGURE_OUTPUTS["plot_rois"],
    log:
        f"{RESULTS}/logs/plot_rois.log",
    conda:
        "../../envs/figures.yaml"
    resources:
        mem_mb=2000,
    params:
        cache_dir=FIGURE_CACHE,
    script:
        "../scripts/make_figures.py"


rule plot_funnel:
    input:
        filter_summary=f"{RESULTS}/metadata/filter_summary.json",
        filtered=f"{RESULTS}/metadata/filtered.parquet",
        rois=f"{RESULTS}/rois/rois.parquet",
        rejected=f"{RESULTS}/rois/rejected.parquet",
        manifest=f"{RESULTS}/manifest.parquet",
    output:
        **FIGURE_OUTPUTS["plot_funnel"],
    log:
        f"{RESULTS}/logs/plot_funnel.log",
    priority: 1
    conda:
        "../../envs/figures.yaml"
    resources:
        mem_mb=2000,
    params:
        cache_dir=FIGURE_CACHE,
    script:
        "../scripts/make_figures.py"


rule plot_images:
    input:
        filtered=f"{RESULTS}/metadata/filtered.parquet",
        rois=f"{RESULTS}/rois/rois.parquet",
        manifest=f"{RESULTS}/manifest.parquet",
    output:
        **FIGURE_OUTPUTS["plot_images"],
    log:
        f"{RESULTS}/logs/plot_images.log",
    conda:
        "../../envs/figures.yaml"
    resources:
        mem_mb=2000,
    params:
        cache_dir=FIGURE_CACHE,
    script:
        "../scripts/make_figures.py"
