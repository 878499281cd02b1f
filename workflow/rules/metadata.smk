# Stage 1: keep the metadata rows worth ROI parsing (2D, C-view, 3D with ROIs), map
# their anon_dicom_path onto dicom_root, attach clinical findings; every dropped row
# is listed with its reason.

# The clinical table is an input only when it will be joined.
JOIN_CLINICAL = INPUTS.clinical is not None and config["filter"]["join_clinical"]


rule filter_metadata:
    input:
        **({"clinical": INPUTS.clinical} if JOIN_CLINICAL else {}),
        metadata=INPUTS.metadata,
    output:
        filtered=f"{RESULTS}/metadata/filtered.parquet",
        dropped=f"{RESULTS}/metadata/dropped.parquet",
        summary=f"{RESULTS}/metadata/filter_summary.json",
    log:
        f"{RESULTS}/logs/filter_metadata.log",
    conda:
        "../../envs/filter.yaml"
    resources:
        mem_mb=1500,
    params:
        filter=config["filter"],
        dicom_root=INPUTS.dicom_root,
        path_rewrite=INPUTS.path_rewrite,
    script:
        "../scripts/filter_metadata.py"
