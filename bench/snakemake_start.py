"""Refuse to time Snakemake runs that would each start about 9 s late.

snakemake-executor-plugin-slurm (2.8.0) runs `scontrol show config` whenever Snakemake
loads its plugins, local runs included. With the SLURM client tools installed and no
controller answering, that call waits for its 10 s time-out, so every command of a
benchmark would carry it (docs/benchmarks.md, "The SLURM plugin's start-up").
"""

from __future__ import annotations

import shutil
import subprocess
import sys

ANSWER_WITHIN_S = 2.0


def slurm_start_delay() -> str | None:
    """Why Snakemake would start late on this machine, or None when it would not."""
    if not (shutil.which("sacct") or shutil.which("squeue")) or not shutil.which("scontrol"):
        return None  # the plugin finds no SLURM and asks nothing
    try:
        subprocess.run(
            ["scontrol", "show", "config"],
            capture_output=True,
            check=True,
            timeout=ANSWER_WITHIN_S,
        )
    except subprocess.TimeoutExpired:
        return f"`scontrol show config` did not answer within {ANSWER_WITHIN_S:g} s"
    except subprocess.CalledProcessError as error:
        return f"`scontrol show config` failed: {error.stderr.decode(errors='replace').strip()}"
    return None


def refuse_slow_start() -> None:
    """Exit with a message when every Snakemake start would wait for the SLURM controller."""
    reason = slurm_start_delay()
    if reason:
        sys.exit(
            f"{reason}: the SLURM client is installed but its controller does not answer, "
            "so every snakemake command would start about 9 s late. Start it "
            "(sudo .ci/slurm-up.sh) or benchmark in an environment without the SLURM tools."
        )
