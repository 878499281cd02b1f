# Stage 2: parse and validate every ROI of the filtered table against its image's
# header (refusing images whose real path leaves dicom_root); each ROI is accepted
# (rois.parquet) or refused with a reason. A checkpoint: the per-exam extraction jobs
# are known only once its tables exist. Rows whose image and cells are unchanged since the
# last run take their outcome from a cache beside the outputs (embedpatch.rois.cache): a
# rerun reads only new or changed images. Delete rois/cache/ to force a cold run.


checkpoint validate_rois:
    input:
        filtered=f"{RESULTS}/metadata/filtered.parquet",
    output:
        accepted=f"{RESULTS}/rois/rois.parquet",
        rejected=f"{RESULTS}/rois/validation_rejected.parquet",
        summary=f"{RESULTS}/rois/roi_summary.json",
    log:
        f"{RESULTS}/logs/validate_rois.log",
    conda:
        "../../envs/rois.yaml"
    resources:
        mem_mb=2000,
    params:
        rois=config["rois"],
        dicom_root=INPUTS.dicom_root,
        cache=f"{RESULTS}/rois/cache/outcomes.parquet",
    script:
        "../scripts/validate_rois.py"
