"""Validate the pipeline's configuration against its JSON schema, filling defaults.

The schema, config.schema.yaml, documents every key with its default; it is package
data of embedpatch (read with importlib.resources), so the package reads nothing
outside itself. Validation uses jsonschema directly rather than
snakemake.utils.validate: the library and its tests validate configs without
Snakemake, and a bad value stops the run with one line naming the key. After the
schema, `validate_config` checks what a schema cannot say (which inputs go together).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
import yaml

from embedpatch.demo import SOURCE_PREFIX as DEMO_SOURCE_PREFIX

SCHEMA = "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong kind."""


def _properties_with_defaults(
    validator: jsonschema.protocols.Validator, properties: dict, instance: Any, schema: dict
) -> Iterator[jsonschema.ValidationError]:
    """The `properties` keyword, but first fill in each missing property's default."""
    if isinstance(instance, dict):
        for name, subschema in properties.items():
            if "default" in subschema and name not in instance:
                instance[name] = copy.deepcopy(subschema["default"])
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](
        validator, properties, instance, schema
    )


_DefaultFillingValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"properties": _properties_with_defaults}
)


def _key_of(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def config_schema() -> dict:
    """The config's JSON schema (package data)."""
    return yaml.safe_load(resources.files("embedpatch").joinpath(SCHEMA).read_text())


def validate_config(config: Mapping[str, Any]) -> dict:
    """Return a copy of `config` validated against the schema with defaults filled in.

    Raises ConfigError with one line naming the offending key and what was expected.
    """
    schema = config_schema()
    filled = copy.deepcopy(dict(config))
    error = jsonschema.exceptions.best_match(_DefaultFillingValidator(schema).iter_errors(filled))
    if error is not None:
        raise ConfigError(f"config key '{_key_of(error)}': {error.message}")
    _check_inputs(filled)
    _check_negative_images(filled)
    return filled


def _check_inputs(config: Mapping[str, Any]) -> None:
    if config["metadata"] is None:
        stray = [key for key in ("clinical", "dicom_root") if config[key] is not None]
        stray += ["path_rewrite"] if config["path_rewrite"] else []
        if stray:
            raise ConfigError(
                f"config key '{stray[0]}': set only with 'metadata' "
                "(metadata null means the demo cohort, which brings its own)"
            )
    elif config["dicom_root"] is None:
        raise ConfigError("config key 'dicom_root': required when 'metadata' is set")


def _check_negative_images(config: Mapping[str, Any]) -> None:
    section = config["patches"]["negative_images"]
    given = [key for key in ("sample_count", "sample_fraction") if section[key] is not None]
    key = "patches.negative_images"
    if section["without_rois"] == "sample" and len(given) != 1:
        raise ConfigError(
            f"config key '{key}.without_rois': sample needs exactly one of sample_count, "
            f"sample_fraction (given: {given or 'neither'})"
        )
    if section["without_rois"] != "sample" and given:
        raise ConfigError(f"config key '{key}.{given[0]}': set only with without_rois: sample")
    if section["clinical"] and not config["filter"]["join_clinical"]:
        raise ConfigError(f"config key '{key}.clinical': needs filter.join_clinical: true")


@dataclass(frozen=True)
class Inputs:
    """Where the pipeline's input tables and images are, demo or user data."""

    metadata: str
    clinical: str | None
    dicom_root: str
    path_rewrite: tuple[tuple[str, str], ...]
    is_demo: bool

    def locations(self) -> dict[str, str]:
        """What each input is -> where it is (the clinical table only when set)."""
        found = {"dicom_root": self.dicom_root, "metadata": self.metadata}
        return found | ({"clinical": self.clinical} if self.clinical else {})


def demo_dir(config: Mapping[str, Any]) -> str:
    """Folder the synthetic demo cohort is written to."""
    return f"{config['results']}/demo"


def resolve_inputs(config: Mapping[str, Any]) -> Inputs:
    """The input locations a validated config asks for (the demo's when metadata is null)."""
    if config["metadata"] is None:
        root = f"{demo_dir(config)}/images"
        return Inputs(
            metadata=f"{demo_dir(config)}/tables/metadata.csv",
            clinical=f"{demo_dir(config)}/tables/clinical.csv",
            dicom_root=root,
            path_rewrite=((DEMO_SOURCE_PREFIX, f"{root}/"),),
            is_demo=True,
        )
    return Inputs(
        metadata=config["metadata"],
        clinical=config["clinical"],
        dicom_root=config["dicom_root"],
        path_rewrite=tuple((rule["from"], rule["to"]) for rule in config["path_rewrite"]),
        is_demo=False,
    )


def _type_text(node: Mapping[str, Any]) -> str:
    kinds = node.get("type", "")
    text = " or ".join(kinds) if isinstance(kinds, list) else str(kinds)
    if "enum" in node:
        text = " / ".join(f"`{value}`" for value in node["enum"])
    return text or "see schema"


def _reference_rows(properties: Mapping[str, Any], prefix: str) -> Iterator[str]:
    for name, node in properties.items():
        key = f"{prefix}{name}"
        description = " ".join(str(node.get("description", "")).split()).replace("|", "\\|")
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        yield f"| `{key}` | {_type_text(node)} | {default} | {description} |"
        if node.get("type") == "object" and "properties" in node:
            yield from _reference_rows(node["properties"], f"{key}.")


def config_reference() -> str:
    """docs/configuration.md: every key of the schema with its type, default and meaning."""
    schema = config_schema()
    rows = "\n".join(_reference_rows(schema["properties"], ""))
    return (
        "# Configuration reference\n\n"
        "Every key `config.yaml` may hold, from the schema the config is validated against\n"
        "(`workflow/scripts/embedpatch/config.schema.yaml`; this page is generated from it by\n"
        "`make docs`, and a test keeps the two equal). A key not given takes its default;\n"
        "a nested key is written `section.key`.\n\n"
        "| key | type | default | meaning |\n|---|---|---|---|\n"
        f"{rows}\n"
    )
