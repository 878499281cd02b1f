"""Rule scripts name every argument they pass to the library (static check, no Snakemake run)."""

import ast
from pathlib import Path

import pytest

from helpers.project import ROOT

SCRIPTS = sorted((ROOT / "workflow" / "scripts").glob("*.py"))


def library_calls(script: Path) -> list[ast.Call]:
    """The run_logged calls of a rule script (each runs one library step)."""
    tree = ast.parse(script.read_text())
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_logged"
    ]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_rule_script_passes_arguments_by_name(script):
    calls = library_calls(script)
    assert len(calls) == 1, f"{script.name}: one run_logged call expected"
    (call,) = calls
    assert len(call.args) == 2, f"{script.name}: only the log and the step are positional"
