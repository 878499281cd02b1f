"""The config is validated against its schema, defaults filled, errors in one line."""

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml

import embedpatch
from embedpatch.config import (
    ConfigError,
    config_schema,
    resolve_inputs,
    validate_config,
)
from embedpatch.patches.shards import COMPRESSIONS, DEFAULT_COMPRESSION
from helpers.project import ROOT


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_shipped_config_is_valid_and_means_demo():
    config = validate_config(default_config())
    inputs = resolve_inputs(config)
    assert inputs.is_demo
    assert inputs.metadata == "results/demo/tables/metadata.csv"
    assert inputs.path_rewrite == (("/mnt/NAS2/mammo/anon_dicom/", "results/demo/images/"),)


def test_defaults_fill_every_section():
    config = validate_config({})
    assert config["results"] == "results"
    assert config["filter"]["cview_as_2d"] is True
    assert config["filter"]["view_positions"] is None
    assert config["demo"]["seed"] == 2026


def test_validation_does_not_mutate_its_argument():
    raw = {"filter": {}}
    validate_config(raw)
    assert raw == {"filter": {}}


@pytest.mark.parametrize(
    ("config", "key", "expected"),
    [
        ({"filter": {"view_positions": "CC"}}, "filter.view_positions", "not of type"),
        ({"filter": {"lateralities": ["X"]}}, "filter.lateralities.0", "is not one of"),
        ({"demo": {"scale": 0}}, "demo.scale", "less than or equal to the minimum"),
        ({"demo": {"n_patients": "many"}}, "demo.n_patients", "not of type 'integer'"),
        ({"bogus": 1}, "(top level)", "'bogus' was unexpected"),
        ({"path_rewrite": [{"from": "/a"}]}, "path_rewrite.0", "'to' is a required property"),
        ({"metadata": "t.csv"}, "dicom_root", "required when 'metadata' is set"),
        ({"dicom_root": "/data"}, "dicom_root", "set only with 'metadata'"),
    ],
)
def test_bad_config_names_key_and_expectation(config, key, expected):
    with pytest.raises(ConfigError) as raised:
        validate_config(config)
    message = str(raised.value)
    assert f"config key '{key}'" in message
    assert expected in message
    assert "\n" not in message


def test_user_inputs_resolve_to_their_paths():
    config = validate_config(
        {
            "metadata": "/data/meta.csv",
            "dicom_root": "/data/images",
            "path_rewrite": [{"from": "/mnt/NAS2/", "to": "/data/images/"}],
        }
    )
    inputs = resolve_inputs(config)
    assert not inputs.is_demo
    assert inputs.clinical is None
    assert inputs.path_rewrite == (("/mnt/NAS2/", "/data/images/"),)


@pytest.mark.workflow
def test_snakemake_stops_with_one_clear_line(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--dry-run",
            "--directory",
            str(ROOT),
            "--config",
            "filter={'view_positions': 'CC'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode != 0
    error_lines = [line for line in result.stderr.splitlines() if "view_positions" in line]
    assert error_lines == [
        "Invalid configuration: config key 'filter.view_positions': "
        "'CC' is not of type 'array', 'null'"
    ]
    assert "Traceback" not in result.stderr


def test_compression_choices_are_the_shard_writers():
    schema = config_schema()
    choices = schema["properties"]["patches"]["properties"]["compression"]
    assert set(choices["enum"]) == set(COMPRESSIONS)
    assert choices["default"] == DEFAULT_COMPRESSION


def test_the_package_reads_nothing_outside_itself():
    """The schema is package data; no module climbs out of the package to find a file."""
    assert resources.files("embedpatch").joinpath("config.schema.yaml").is_file()
    package = Path(embedpatch.__file__).parent
    climbing = [path.name for path in package.rglob("*.py") if "parents[" in path.read_text()]
    assert climbing == []
