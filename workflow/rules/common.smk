import os
import sys

# The library package lives in workflow/; rule scripts (run by their own Python,
# perhaps in a conda env) find it through PYTHONPATH.
WORKFLOW_DIR = os.path.join(workflow.basedir, "workflow")
sys.path.insert(0, WORKFLOW_DIR)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [WORKFLOW_DIR, os.environ.get("PYTHONPATH")])
    )
)

from embedpatch.config import (
    ConfigError,
    extraction_settings,
    negatives_per_image,
    resolve_inputs,
    validate_config,
)

try:
    config.update(validate_config(config))
except ConfigError as error:
    sys.exit(f"Invalid configuration: {error}")

RESULTS = config["results"]
INPUTS = resolve_inputs(config)
NEGATIVES_PER_IMAGE = negatives_per_image(config)
EXTRACTION_SETTINGS = extraction_settings(config)
