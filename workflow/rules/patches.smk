# Stage 3: one HDF5 shard per exam, written by batch jobs, then the manifest of every
# patch. An exam keeps the batch it was first placed in and new exams go to new batches
# (embedpatch.patches.batches; the layout is saved in patches/layout.json). Each job
# carries its exams' specifications (embedpatch.patches.spec) as a param, so only
# batches whose specifications changed rerun, and inside them only missing or stale
# shards are rewritten. The shards are not declared outputs (Snakemake would delete a
# rerun batch's shards first); the batch's record lists them, and its table holds their
# patches' rows, from which the manifest is built without opening every shard; the
# manifest's rule deletes the shards no batch lists. The ROI table is an ancient()
# input, so rewriting it alone reruns nothing. dicom_root is passed apart: images whose
# real path leaves it are refused, never read. Extraction jobs are on the way to the
# manifest and everything after it, so they go before the figures of stage 2 (priority).


rule extract_patches:
    input:
        rois=ancient(f"{RESULTS}/rois/rois.parquet"),
    output:
        record=f"{RESULTS}/patches/batches/{{batch}}.json",
        table=f"{RESULTS}/patches/batches/{{batch}}.parquet",
    log:
        f"{RESULTS}/logs/extract_patches/{{batch}}.log",
    wildcard_constraints:
        batch=r"b\d+",
    priority: 1
    conda:
        "../../envs/extract.yaml"
    resources:
        mem_mb=1500,
    params:
        exams=batch_specs,
        settings=EXTRACTION_SETTINGS,
        shard_dir=shard_dir,
        dicom_root=INPUTS.dicom_root,
    script:
        "../scripts/extract_patches.py"


rule collect_patches:
    input:
        unpack(batch_outputs),
        filtered=f"{RESULTS}/metadata/filtered.parquet",
        validation_rejected=f"{RESULTS}/rois/validation_rejected.parquet",
    output:
        manifest=f"{RESULTS}/manifest.parquet",
        rejected=f"{RESULTS}/rois/rejected.parquet",
        rejected_csv=f"{RESULTS}/rois/rejected.csv",
        summary=f"{RESULTS}/patches_summary.json",
    log:
        f"{RESULTS}/logs/collect_patches.log",
    conda:
        "../../envs/collect.yaml"
    resources:
        mem_mb=2000,
    params:
        shard_dir=manifest_shard_dir,
    script:
        "../scripts/collect_patches.py"


# A re-check trusts a shard of the recorded size and time; this rule reads every shard
# whole and deletes the damaged ones, which `snakemake -R extract_patches` then rewrites.


rule verify_shards:
    """Not part of `all` (snakemake -f verify_shards): every shard read whole, the damaged deleted."""
    input:
        manifest=f"{RESULTS}/manifest.parquet",
    output:
        report=f"{RESULTS}/patches/verified.json",
    log:
        f"{RESULTS}/logs/verify_shards.log",
    conda:
        "../../envs/extract.yaml"
    params:
        shard_dir=lambda wildcards, output: os.path.dirname(output.report),
    script:
        "../scripts/verify_shards.py"
