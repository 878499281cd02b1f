"""Incremental reruns: only new or changed exams are recomputed (Snakemake drives them).

A baseline run on a copy of the demo table without one exam; every scenario starts
from a copy of that finished folder (results and Snakemake's metadata), edits the
table or the config, runs again, and reads from Snakemake's output which jobs ran.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from embedpatch.demo import SOURCE_PREFIX

ROOT = Path(__file__).resolve().parent.parent
JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n(?P<body>(?:    .*\n)+)", re.MULTILINE)

pytestmark = pytest.mark.workflow


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_table(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False)


def run(workdir: Path, *args: str) -> list[tuple[str, str, str]]:
    """Run the workflow in `workdir`; the jobs that ran as (rule, acc_anon or '', reason)."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    command += ["--configfile", str(workdir / "config.yaml"), "--directory", str(workdir)]
    result = subprocess.run(
        [*command, "--cores", "2", *args], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = []
    for match in JOB.finditer(result.stderr + result.stdout):
        body = match.group("body")
        wildcard = re.search(r"wildcards: acc_anon=(\d+)", body)
        reason = re.search(r"reason: (.*)", body)
        jobs.append(
            (
                match.group(1),
                wildcard.group(1) if wildcard else "",
                reason.group(1) if reason else "",
            )
        )
    return jobs


def extracted(jobs: list[tuple[str, str, str]]) -> set[str]:
    return {acc for rule, acc, _ in jobs if rule == "extract_patches"}


@pytest.fixture(scope="module")
def full_table(demo_cohort) -> pd.DataFrame:
    return read_table(demo_cohort / "tables/metadata.csv")


@pytest.fixture(scope="module")
def roi_exams(full_table) -> list[str]:
    """Exams whose rows hold valid-looking ROI boxes, in table order."""
    with_boxes = full_table[full_table["ROI_coords"].str.match(r"^\[\[\d+, \d+, \d+, \d+\]\]$")]
    return list(dict.fromkeys(with_boxes["acc_anon"]))


@pytest.fixture(scope="module")
def baseline(demo_cohort, full_table, roi_exams, tmp_path_factory) -> Path:
    """A finished run on the demo table less its last ROI exam (added back later)."""
    workdir = tmp_path_factory.mktemp("incremental")
    images = demo_cohort / "images"
    config = {
        "metadata": "metadata.csv",
        "clinical": str(demo_cohort / "tables/clinical.csv"),
        "dicom_root": str(images),
        "path_rewrite": [{"from": SOURCE_PREFIX, "to": f"{images}/"}],
        "patches": {"size": 48, "negatives_per_image": 1},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    write_table(full_table[full_table["acc_anon"] != roi_exams[-1]], workdir / "metadata.csv")
    jobs = run(workdir)
    assert extracted(jobs), "the baseline run extracted nothing"
    return workdir


@pytest.fixture
def workdir(baseline, tmp_path) -> Path:
    """A copy of the finished baseline folder (mtimes kept)."""
    copy = tmp_path / "run"
    shutil.copytree(baseline, copy, symlinks=True)
    return copy


def test_no_change_runs_nothing(workdir):
    assert run(workdir) == []


def test_touching_the_table_recomputes_no_shard(workdir):
    table = workdir / "metadata.csv"
    later = table.stat().st_mtime + 10
    os.utime(table, (later, later))
    # Small tables are checksummed by Snakemake, so nothing at all reruns here; a large
    # table reruns the filter and the aggregates, but still no shard.
    assert extracted(run(workdir)) == set()


def test_reordering_rows_recomputes_no_shard(workdir):
    table = read_table(workdir / "metadata.csv")
    write_table(table.iloc[::-1], workdir / "metadata.csv")
    jobs = run(workdir)
    assert extracted(jobs) == set()
    assert "collect_patches" in {rule for rule, _, _ in jobs}


def test_a_new_exam_recomputes_only_that_exam(workdir, full_table, roi_exams):
    write_table(full_table, workdir / "metadata.csv")
    jobs = run(workdir)
    assert extracted(jobs) == {roi_exams[-1]}
    manifest = pd.read_parquet(workdir / "results/manifest.parquet")
    assert (manifest["acc_anon"].astype(str) == roi_exams[-1]).any()


def test_a_changed_roi_recomputes_only_its_exam(workdir, roi_exams):
    table = read_table(workdir / "metadata.csv")
    changed = roi_exams[0]
    row = table.index[(table["acc_anon"] == changed) & table["ROI_coords"].str.match(r"^\[\[\d")][0]
    ymin, xmin, ymax, xmax = json.loads(table.at[row, "ROI_coords"])[0]
    table.at[row, "ROI_coords"] = json.dumps([[ymin + 2, xmin + 2, ymax + 2, xmax + 2]])
    write_table(table, workdir / "metadata.csv")
    jobs = run(workdir)
    assert extracted(jobs) == {changed}
    reasons = [reason for rule, _, reason in jobs if rule == "extract_patches"]
    assert "Params have changed" in reasons[0]


def test_a_patch_setting_recomputes_every_shard(workdir):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["patches"]["size"] = 40
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    shards = {path.stem for path in (workdir / "results/patches").glob("*.h5")}
    assert extracted(run(workdir)) == shards
