from embedpatch.config import demo_dir

DEMO = demo_dir(config)


rule demo_cohort:
    """Synthetic EMBED-like cohort (tables, DICOMs, ground truth) the pipeline runs on by default."""
    output:
        metadata=f"{DEMO}/tables/metadata.csv",
        metadata_legacy=f"{DEMO}/tables/metadata_legacy.csv",
        clinical=f"{DEMO}/tables/clinical.csv",
        truth=f"{DEMO}/truth.json",
        images=directory(f"{DEMO}/images"),
    log:
        f"{RESULTS}/logs/demo_cohort.log",
    conda:
        "../../envs/demo.yaml"
    params:
        seed=config["demo"]["seed"],
        n_patients=config["demo"]["n_patients"],
        scale=config["demo"]["scale"],
        dbt_frames=config["demo"]["dbt_frames"],
    script:
        "../scripts/make_demo_cohort.py"
