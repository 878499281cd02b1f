"""The `cluster` fixture: a SLURM cluster answering on this machine, or a skip saying why.

`.ci/slurm-up.sh` sets up a one-node cluster as root. Loaded by conftest.py
(`pytest_plugins`), for tests/workflow/test_slurm.py and the object-store run in
tests/workflow/test_workflow_s3.py.
"""

import re
import shutil
import subprocess

import pytest


def run(*command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def cluster() -> dict:
    """The cluster's default partition and MinJobAge; skips when no cluster answers."""
    missing = [tool for tool in ("sbatch", "sinfo", "squeue", "scontrol") if not shutil.which(tool)]
    if missing:
        pytest.skip(
            f"no SLURM here ({', '.join(missing)} not on PATH); set one up: .ci/slurm-up.sh"
        )
    nodes = run("sinfo", "--noheader", "--format=%P %T")
    if nodes.returncode != 0:
        pytest.skip(f"SLURM cluster down: sinfo says {nodes.stderr.strip()!r}")
    usable = ("idle", "mixed", "allocated", "completing")
    rows = [line.split() for line in nodes.stdout.splitlines() if line.strip()]
    if not any(state.startswith(usable) for _, state in rows):
        pytest.skip(f"SLURM cluster has no usable node: sinfo says {nodes.stdout.strip()!r}")
    defaults = [name.rstrip("*") for name, _ in rows if name.endswith("*")]
    config = run("scontrol", "show", "config").stdout
    min_job_age = re.search(r"^MinJobAge\s*=\s*(\d+)", config, re.MULTILINE)
    return {
        "partition": defaults[0] if defaults else None,
        "min_job_age": int(min_job_age.group(1)) if min_job_age else 0,
    }
