"""embedpatch installs like any Python package, and rule scripts import it without path edits."""

import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from helpers.project import ROOT

SCRIPTS = ROOT / "workflow" / "scripts"
PATH_EDIT = re.compile(r"sys\.path\.(insert|append|extend)|PYTHONPATH")


def readme_block(heading: str, index: int = 0) -> str:
    """The `index`-th python code block of the README section `heading`."""
    section = (ROOT / "README.md").read_text().split(f"## {heading}\n", 1)[1].split("\n## ")[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)[index]


def test_no_project_file_edits_the_module_search_path():
    # bench/ holds its scripts at the top; bench/out/ is what they generate.
    files = [*ROOT.glob("*.toml"), ROOT / "Snakefile", ROOT / "Makefile", *ROOT.glob("bench/*.py")]
    for folder in ("workflow", "tests", ".ci"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".smk", ".sh"}]
    offenders = [
        f"{path.relative_to(ROOT)}: {line.strip()}"
        for path in files
        if path != Path(__file__)
        for line in path.read_text().splitlines()
        if PATH_EDIT.search(line)
    ]
    assert not offenders


def test_a_rule_script_imports_the_package_from_its_own_folder(tmp_path):
    """As a job in a conda env does: another Python (this one, isolated: no site-packages
    of the project's venv, no PYTHONPATH), a working directory outside the project, and
    only the rule script's own folder to search, which Snakemake's script preamble
    appends for a local script (snakemake/script/__init__.py: "For local scripts, add
    their location to the path"). The package is found there by Python's path finder,
    as an import does when that folder is on the search path."""
    code = (
        "import importlib, importlib.machinery, importlib.util, sys\n"
        f"spec = importlib.machinery.PathFinder.find_spec('embedpatch', [{str(SCRIPTS)!r}])\n"
        "package = importlib.util.module_from_spec(spec)\n"
        "sys.modules['embedpatch'] = package\n"
        "spec.loader.exec_module(package)\n"
        "importlib.import_module('embedpatch.logs'), importlib.import_module('embedpatch.vocab')\n"
        "print(package.__file__)\n"
    )
    env = {"PATH": "/usr/bin:/bin"}  # PYTHONPATH unset
    base = Path(sys.base_prefix) / "bin" / "python3"
    result = subprocess.run(
        [str(base), "-I", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == SCRIPTS / "embedpatch"


@pytest.mark.workflow
def test_pip_install_then_the_readme_loader_example_runs_elsewhere(tmp_path, demo_run):
    """A fresh virtual env, `pip install <checkout>`, and the README's example run from the
    demo run's folder (outside the checkout): the loader needs no workflow dependency."""
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(ROOT)], capture_output=True, text=True
    )
    assert install.returncode == 0, install.stderr[-3000:]
    example = readme_block("Reading the patches for training")
    check = "\nimport sys; assert not {'snakemake', 'matplotlib'} & set(sys.modules)\n"
    result = subprocess.run(
        [python, "-c", example + check], cwd=demo_run, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    count, *_ = result.stdout.split()
    assert int(count) > 0
    listed = subprocess.run(
        [python, "-m", "pip", "show", "-f", "embedpatch"], capture_output=True, text=True
    )
    assert "embedpatch/config.schema.yaml" in listed.stdout  # package data shipped


def test_parsing_the_workflow_imports_no_dicom_reader():
    """`embedpatch.dicom` loads its modules on use: the errors alone bring no pydicom."""
    code = (
        "import sys, embedpatch.config, embedpatch.io.object_store, embedpatch.filter.preflight\n"
        "from embedpatch.dicom import ImageError\n"
        "assert 'pydicom' not in sys.modules, 'pydicom imported'\n"
        "from embedpatch.dicom import ImageReader\n"
        "assert 'pydicom' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
