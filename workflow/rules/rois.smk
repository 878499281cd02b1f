# Stage 2: parse and validate every ROI of the filtered table against its image's
# header (refusing images whose real path leaves dicom_root); each ROI is accepted
# (rois.parquet) or refused with a reason. A checkpoint: the per-exam extraction jobs
# are known only once its tables exist.


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
    script:
        "../scripts/validate_rois.py"
