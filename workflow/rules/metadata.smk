# Stage 1: keep the metadata rows worth ROI parsing (2D, C-view, 3D with ROIs), map
# their anon_dicom_path onto dicom_root, attach clinical findings; every dropped row
# is listed with its reason.

# The clinical table is read only when it will be joined. Local tables are inputs (their
# modification time reruns the rule); tables in an object store are not files Snakemake
# can see: their identity (ETag, size, last-modified) is a param instead, so a replaced
# object reruns the rule just as a replaced file would.
JOIN_CLINICAL = INPUTS.clinical is not None and config["filter"]["join_clinical"]
TABLES = {"metadata": INPUTS.metadata} | (
    {"clinical": INPUTS.clinical} if JOIN_CLINICAL else {}
)


rule filter_metadata:
    input:
        **{what: path for what, path in TABLES.items() if not object_store.is_url(path)},
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
        tables=TABLES,
        table_versions={
            path: object_store.identity(path)
            for path in TABLES.values()
            if object_store.is_url(path)
        },
        filter=config["filter"],
        dicom_root=INPUTS.dicom_root,
        path_rewrite=INPUTS.path_rewrite,
    script:
        "../scripts/filter_metadata.py"


rule list_needed_images:
    """Not part of `all`: for users who download the images first (aws s3 cp, s5cmd)."""
    input:
        filtered=f"{RESULTS}/metadata/filtered.parquet",
    output:
        images=f"{RESULTS}/needed_images.txt",
    log:
        f"{RESULTS}/logs/list_needed_images.log",
    conda:
        "../../envs/rois.yaml"
    params:
        negatives_per_image=NEGATIVES_PER_IMAGE,
        negative_images=config["patches"]["negative_images"],
        seed=config["patches"]["seed"],
    script:
        "../scripts/list_needed_images.py"
