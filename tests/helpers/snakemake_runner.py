"""The project's workflow run by Snakemake itself, in a subprocess, on a working folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers.project import ROOT

DEMO_CONFIG = ROOT / "config.yaml"


def snakemake_command(
    workdir: Path,
    *args: str,
    configfiles: Sequence[Path] = (DEMO_CONFIG,),
    cores: int | None = 2,
) -> list[str]:
    """The command running the Snakefile in `workdir` with `configfiles` (later ones win);
    no --cores when `cores` is None (a profile sets it)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    command += ["--configfile", *map(str, configfiles), "--directory", str(workdir)]
    if cores is not None:
        command += ["--cores", str(cores)]
    return [*command, *args]


def run_snakemake(
    workdir: Path,
    *args: str,
    configfiles: Sequence[Path] = (DEMO_CONFIG,),
    cores: int | None = 2,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run the workflow (default target unless `args` name one), output captured; `env`
    replaces the environment when given."""
    command = snakemake_command(workdir, *args, configfiles=configfiles, cores=cores)
    return subprocess.run(command, capture_output=True, text=True, check=False, env=env)
