"""Static checks of the per-rule conda envs (conda channels are not reachable here)."""

import ast
import itertools
import re
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from helpers.project import ROOT

RULES_DIR = ROOT / "workflow" / "rules"
PACKAGE_DIR = ROOT / "workflow" / "scripts" / "embedpatch"

# Import name -> distribution name, where they differ.
DISTRIBUTION_OF = {
    "yaml": "pyyaml",
    "openjpeg": "pylibjpeg-openjpeg",
    "libjpeg": "pylibjpeg-libjpeg",
    "rle": "pylibjpeg-rle",
    "jpeg_ls": "pyjpegls",
}
# pydicom finds its pixel-data plugins at run time, never through an import of ours.
PYDICOM_PLUGINS = {
    "pylibjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-rle",
    "pyjpegls",
}
RULE_HEADER = re.compile(r"^(?:rule|checkpoint)\s+(\w+):", re.MULTILINE)


def rule_blocks() -> dict[str, tuple[Path, str]]:
    """Each rule's name -> (its .smk file, the text of its block)."""
    blocks = {}
    for smk in sorted(RULES_DIR.glob("*.smk")):
        text = smk.read_text()
        starts = [match.start() for match in RULE_HEADER.finditer(text)]
        for start, end in itertools.pairwise([*starts, len(text)]):
            blocks[RULE_HEADER.match(text, start).group(1)] = (smk, text[start:end])
    return blocks


def directive(block: str, name: str) -> str | None:
    match = re.search(rf"^\s{{4}}{name}:\s*\n?\s*(.+)$", block, re.MULTILINE)
    return match.group(1).strip() if match else None


def quoted_path(smk: Path, value: str) -> Path:
    return (smk.parent / ast.literal_eval(value)).resolve()


def module_file(dotted: str) -> Path | None:
    path = PACKAGE_DIR.parent.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@cache
def direct_imports(source: Path) -> tuple[frozenset[str], frozenset[Path]]:
    """The top-level third-party modules `source` imports, and the files of our own
    package it imports (lazy and type-checking imports included)."""
    third_party: set[str] = set()
    own: set[Path] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "embedpatch":
                path = module_file(name)
                if path is not None:
                    own.add(path)
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
    return frozenset(third_party), frozenset(own)


def third_party_imports(source: Path) -> frozenset[str]:
    """Top-level third-party modules `source` imports, following our own package (whose
    modules may import each other in a cycle)."""
    found: set[str] = set()
    seen, pending = {source}, [source]
    while pending:
        third_party, own = direct_imports(pending.pop())
        found |= third_party
        pending += sorted(own - seen)
        seen |= own
    return frozenset(found)


def env_packages(env_file: Path) -> dict[str, str]:
    """Package name -> pinned version, from conda and pip dependencies."""
    env = yaml.safe_load(env_file.read_text())
    specs = []
    for dependency in env["dependencies"]:
        if isinstance(dependency, dict):
            specs += dependency["pip"]
        else:
            specs.append(dependency)
    pins = {}
    for spec in specs:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(==|=)\s*([0-9][\w.]*)", spec)
        assert match, f"{env_file.name}: '{spec}' is not pinned to one version"
        pins[match.group(1).lower()] = match.group(3)
    return pins


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


RULES = rule_blocks()
SCRIPT_RULES = {name: item for name, item in RULES.items() if directive(item[1], "script")}


def test_every_rule_with_work_has_conda_and_log():
    assert SCRIPT_RULES, "no rules found"
    for name, (_, block) in RULES.items():
        if directive(block, "output"):
            assert directive(block, "conda"), f"rule {name} has no conda env"
            assert directive(block, "log"), f"rule {name} has no log"


@pytest.mark.parametrize("rule", sorted(SCRIPT_RULES))
def test_rule_env_lists_every_module_its_code_imports(rule):
    smk, block = SCRIPT_RULES[rule]
    env_file = quoted_path(smk, directive(block, "conda"))
    script = quoted_path(smk, directive(block, "script"))
    packages = env_packages(env_file)
    needed = {DISTRIBUTION_OF.get(name, name).lower() for name in third_party_imports(script)}
    if "pydicom" in needed:
        needed |= PYDICOM_PLUGINS
    missing = sorted(needed - packages.keys())
    assert not missing, f"{env_file.name} (rule {rule}) lacks {missing}"


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_env_is_pinned_to_the_tested_versions(env_file):
    env = yaml.safe_load(env_file.read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    packages = env_packages(env_file)
    assert packages.get("python") == "3.11"
    tested = requirement_pins()
    for name, version in packages.items():
        if name in tested:
            assert version == tested[name], (
                f"{env_file.name}: {name} {version} != tested {tested[name]}"
            )


def test_every_env_file_is_used_by_a_rule():
    used = {
        quoted_path(smk, directive(block, "conda"))
        for smk, block in RULES.values()
        if directive(block, "conda")
    }
    assert set((ROOT / "envs").glob("*.yaml")) == used
