# Stage 3: one HDF5 shard per exam, then the manifest of every patch.
# Each extraction job carries its exam's specification as a param (see
# embedpatch.exam_spec): only exams whose specification changed are rerun, and the
# ROI table is an ancient() input so rewriting it alone reruns nothing. dicom_root is
# passed apart from both: images whose real path leaves it are refused, never read.


rule extract_patches:
    input:
        rois=ancient(f"{RESULTS}/rois/rois.parquet"),
    output:
        shard=f"{RESULTS}/patches/{{acc_anon}}.h5",
    log:
        f"{RESULTS}/logs/extract_patches/{{acc_anon}}.log",
    wildcard_constraints:
        acc_anon=r"\d+",
    conda:
        "../../envs/extract.yaml"
    resources:
        mem_mb=1500,
    params:
        spec=exam_spec,
        settings=EXTRACTION_SETTINGS,
        dicom_root=INPUTS.dicom_root,
    script:
        "../scripts/extract_patches.py"


rule collect_patches:
    input:
        shards=exam_shards,
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
    script:
        "../scripts/collect_patches.py"
