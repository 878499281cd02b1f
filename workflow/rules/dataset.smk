# Training side, after the manifest: patient-level splits (splits.parquet) and, with
# dataset.combined, one HDF5 file indexing every shard's patches (no pixel copied). Read
# them with embedpatch.training (PatchDataset, open_combined; see docs/training.md).

# What `rule all` asks for.
DATASET_TARGETS = [f"{RESULTS}/splits.parquet"] + (
    [f"{RESULTS}/patches_combined.h5"] if config["dataset"]["combined"] else []
)


rule make_splits:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
    output:
        splits=f"{RESULTS}/splits.parquet",
    log:
        f"{RESULTS}/logs/make_splits.log",
    conda:
        "../../envs/dataset.yaml"
    resources:
        mem_mb=1000,
    params:
        fractions=config["dataset"]["splits"],
        seed=config["dataset"]["seed"],
    script:
        "../scripts/make_splits.py"


rule combine_shards:
    input:
        manifest=f"{RESULTS}/manifest.parquet",
    output:
        combined=f"{RESULTS}/patches_combined.h5",
    log:
        f"{RESULTS}/logs/combine_shards.log",
    conda:
        "../../envs/dataset.yaml"
    resources:
        mem_mb=2000,
    script:
        "../scripts/combine_shards.py"
