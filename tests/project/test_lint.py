"""The workflow and the code stay lint-clean: snakemake --lint, snakefmt, ruff."""

import subprocess
import sys
from pathlib import Path

import pytest

from helpers.project import ROOT

BIN = Path(sys.executable).parent


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.workflow
def test_snakemake_lint_is_clean():
    result = run(sys.executable, "-m", "snakemake", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_rules_are_snakefmt_formatted():
    rule_files = ["Snakefile", *sorted(str(p) for p in (ROOT / "workflow/rules").glob("*.smk"))]
    result = run(str(BIN / "snakefmt"), "--check", *rule_files)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", [("check",), ("format", "--check")], ids=" ".join)
def test_python_is_ruff_clean(command):
    result = run(str(BIN / "ruff"), *command, ".")
    assert result.returncode == 0, result.stdout + result.stderr
