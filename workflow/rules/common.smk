import os
import sys

# The library, embedpatch, is installed in the environment running Snakemake (make run:
# pip install -e .). Rule scripts import it from their own folder, workflow/scripts/,
# which Snakemake appends to a local script's module search path in every deployment mode.
from embedpatch.config import ConfigError, resolve_inputs, validate_config
from embedpatch.filter import preflight
from embedpatch.io import object_store
from embedpatch.patches.plan import extraction_settings, negatives_per_image

try:
    config.update(validate_config(config))
except ConfigError as error:
    sys.exit(f"Invalid configuration: {error}")

RESULTS = config["results"]
INPUTS = resolve_inputs(config)

# Inputs in an object store (s3://): this process reaches them with config["storage"];
# before any job, each must answer (one request), or the run stops saying what to set.
object_store.configure_from(config)
REMOTE_INPUTS = {
    what: location
    for what, location in INPUTS.locations().items()
    if object_store.is_url(location)
}
if REMOTE_INPUTS and config["storage"]["preflight"] and workflow.is_main_process:
    try:
        object_store.preflight(REMOTE_INPUTS)
    except object_store.StoreError as error:
        sys.exit(f"Object store: {error}")

# A wrong path_rewrite prefix or dicom_root would cost a whole run that writes nothing:
# before any job, a sample of the table's image paths must lead to images (not for the
# demo cohort, whose table the run builds).
if not INPUTS.is_demo and config["checks"]["paths"] and workflow.is_main_process:
    try:
        path_warning = preflight.preflight_paths(
            INPUTS.metadata,
            INPUTS.dicom_root,
            INPUTS.path_rewrite,
            config["checks"]["path_sample"],
        )
    except preflight.PathCheckError as error:
        sys.exit(f"Path check: {error}")
    if path_warning:
        print(f"Path check: {path_warning}", file=sys.stderr)
NEGATIVES_PER_IMAGE = negatives_per_image(config)
EXTRACTION_SETTINGS = extraction_settings(config)


# Which exams each batch holds, kept from run to run, and each batch's specifications,
# written by the main process for its jobs (patches.batches, patches.plan).
LAYOUT = f"{RESULTS}/patches/layout.json"
SPEC_DIR = f"{RESULTS}/patches/specs"


def spec_inputs():
    """What the exams' specifications are built from (after stage 2)."""
    # Imported here, not at the top: it brings pandas, and every job parses this file.
    from embedpatch.patches.plan import SpecInputs

    stage2 = checkpoints.validate_rois.get().output
    filtered = f"{RESULTS}/metadata/filtered.parquet"
    return SpecInputs.from_config(config, stage2.accepted, stage2.rejected, filtered)


def exam_batches():
    """batch -> {acc_anon: JSON specification}, for every exam with work (after stage 2):
    the main process's plan, which it saves (layout) and publishes for the jobs."""
    from embedpatch.patches.plan import plan_batches

    return plan_batches(spec_inputs(), LAYOUT, SPEC_DIR)


def batch_specs(wildcards):
    """A batch's specifications: a batch job (its own Snakemake process, e.g. on a
    cluster node) reads only its batch's file, not every exam's specification."""
    if workflow.is_main_process:
        return exam_batches()[wildcards.batch]
    from embedpatch.patches.plan import job_batch_specs

    return job_batch_specs(spec_inputs(), wildcards.batch, LAYOUT, SPEC_DIR)


def batch_outputs(wildcards):
    """Every extraction batch's record and table, for the manifest."""
    batches = exam_batches()
    return {
        "records": expand(rules.extract_patches.output.record, batch=batches),
        "tables": expand(rules.extract_patches.output.table, batch=batches),
    }


def shard_dir(wildcards, output):
    """The shards' folder: patches/, where the batch records' folder is."""
    return os.path.dirname(os.path.dirname(output.record))


def manifest_shard_dir(wildcards, output):
    """The shards' folder for the manifest's rule: patches/ beside the manifest."""
    return os.path.join(os.path.dirname(output.manifest), "patches")
