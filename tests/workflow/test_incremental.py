"""Incremental reruns: only new or changed exams are recomputed (Snakemake drives them).

A baseline run on a copy of the demo table without one exam, with the exams spread
over 2 batches (several exams per extraction job); every scenario starts from a copy
of that finished folder (results and Snakemake's metadata), edits the table or the
config, runs again, reads from Snakemake's output which jobs ran and why, and from
the shard files (inode, mtime) which shards were written.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from embedpatch.demo import SOURCE_PREFIX
from embedpatch.patches.batches import BatchLayout, batch_name
from helpers.snakemake_runner import run_snakemake

N_BATCHES = 2
JOB = re.compile(r"^(?:local)?(?:rule|checkpoint) (\w+):\n(?P<body>(?:    .*\n)+)", re.MULTILINE)

pytestmark = pytest.mark.workflow


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_table(table: pd.DataFrame, path: Path) -> None:
    table.to_csv(path, index=False)


def run(workdir: Path, *args: str) -> list[tuple[str, str, str]]:
    """Run the workflow in `workdir`; the jobs that ran as (rule, batch or '', reason)."""
    result = run_snakemake(workdir, *args, configfiles=(workdir / "config.yaml",))
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = []
    for match in JOB.finditer(result.stderr + result.stdout):
        body = match.group("body")
        wildcard = re.search(r"wildcards: batch=(b\d+)", body)
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
    """The batches whose extraction job ran."""
    return {batch for rule, batch, _ in jobs if rule == "extract_patches"}


def shard_stamps(workdir: Path) -> dict[str, tuple[int, int]]:
    """acc_anon -> (inode, mtime) of every shard: a rewritten shard changes both."""
    return {
        path.stem: (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in (workdir / "results/patches").glob("*.h5")
    }


def rewritten(before: dict, after: dict) -> set[str]:
    """Exams whose shard is new or was written again."""
    return {acc for acc, stamp in after.items() if before.get(acc) != stamp}


def batch_of(workdir: Path, acc_anon: str) -> str:
    """The exam's batch in the layout the last run saved."""
    layout = BatchLayout.read(workdir / "results/patches/layout.json")
    (batch,) = [name for name, exams in layout.batches.items() if acc_anon in exams]
    return batch


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
        "patches": {
            "size": 48,
            "negatives_per_image": 1,
            "batches": N_BATCHES,
            # Half the images without ROIs, by their hash draw: adding exams moves none.
            "negative_images": {"without_rois": "sample", "sample_fraction": 0.5},
        },
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    write_table(full_table[full_table["acc_anon"] != roi_exams[-1]], workdir / "metadata.csv")
    jobs = run(workdir)
    assert extracted(jobs), "the baseline run extracted nothing"
    assert len(shard_stamps(workdir)) > len(extracted(jobs)), "batches should hold several exams"
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
    new = roi_exams[-1]
    before = shard_stamps(workdir)
    write_table(full_table, workdir / "metadata.csv")
    batches_before = {path.stem for path in (workdir / "results/patches/batches").glob("*.json")}
    jobs = run(workdir)
    # The new exam is in a batch of its own: one job runs, and no old batch.
    assert extracted(jobs) == {batch_of(workdir, new)}
    assert batch_of(workdir, new) not in batches_before
    assert int(batch_of(workdir, new)[1:]) >= N_BATCHES
    assert rewritten(before, shard_stamps(workdir)) == {new}
    manifest = pd.read_parquet(workdir / "results/manifest.parquet")
    assert (manifest["acc_anon"].astype(str) == new).any()


def negative_patches(workdir: Path) -> pd.DataFrame:
    manifest = pd.read_parquet(workdir / "results/manifest.parquet")
    negatives = manifest[manifest["label"] == "negative"]
    columns = ["acc_anon", "anon_dicom_path", "patch_y0", "patch_x0"]
    return negatives[columns].astype(str).sort_values(columns).reset_index(drop=True)


def test_a_new_exam_keeps_every_earlier_negative(workdir, full_table, roi_exams):
    before = negative_patches(workdir)
    rois = pd.read_parquet(workdir / "results/rois/rois.parquet")["anon_dicom_path"]
    sampled = set(before["anon_dicom_path"]) - set(rois)
    assert sampled, "the sample should hold images without ROIs"
    write_table(full_table, workdir / "metadata.csv")
    run(workdir)
    after = negative_patches(workdir)
    earlier = after[after["acc_anon"] != roi_exams[-1]].reset_index(drop=True)
    pd.testing.assert_frame_equal(earlier, before)
    flat = full_table["FinalImageType"].isin(["2D", "cview"])
    without_rois = flat & ~full_table["anon_dicom_path"].isin(set(rois))
    assert len(sampled) < without_rois.sum()  # a sample, not every image


def test_a_changed_roi_recomputes_only_its_exam(workdir):
    table = read_table(workdir / "metadata.csv")
    accepted = pd.read_parquet(workdir / "results/rois/rois.parquet")["anon_dicom_path"]
    one_box = table["ROI_coords"].str.match(r"^\[\[\d+, \d+, \d+, \d+\]\]$")
    row = table.index[one_box & table["anon_dicom_path"].isin(accepted)][0]  # an accepted ROI
    changed = table.at[row, "acc_anon"]
    ymin, xmin, ymax, xmax = json.loads(table.at[row, "ROI_coords"])[0]
    table.at[row, "ROI_coords"] = json.dumps([[ymin + 2, xmin + 2, ymax + 2, xmax + 2]])
    write_table(table, workdir / "metadata.csv")
    before = shard_stamps(workdir)
    jobs = run(workdir)
    assert extracted(jobs) == {batch_of(workdir, changed)}
    reasons = [reason for rule, _, reason in jobs if rule == "extract_patches"]
    assert "Params have changed" in reasons[0]
    # The batch holds other exams; their shards are kept as they were.
    assert sum(batch_of(workdir, acc) == batch_of(workdir, changed) for acc in before) > 1
    assert rewritten(before, shard_stamps(workdir)) == {changed}


def test_a_removed_exam_loses_its_shard(workdir, roi_exams):
    table = read_table(workdir / "metadata.csv")
    removed = roi_exams[0]
    write_table(table[table["acc_anon"] != removed], workdir / "metadata.csv")
    before, batch = shard_stamps(workdir), batch_of(workdir, removed)
    jobs = run(workdir)
    assert extracted(jobs) == {batch}
    after = shard_stamps(workdir)
    assert set(after) == set(before) - {removed}
    assert rewritten(before, after) == set()
    manifest = pd.read_parquet(workdir / "results/manifest.parquet")
    assert not (manifest["acc_anon"].astype(str) == removed).any()


def test_a_patch_setting_recomputes_every_shard(workdir):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["patches"]["size"] = 40
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    before = shard_stamps(workdir)
    assert extracted(run(workdir)) == {batch_of(workdir, acc) for acc in before}
    assert rewritten(before, shard_stamps(workdir)) == set(before)


def test_another_batch_count_rewrites_no_shard(workdir):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["patches"]["batches"] = 5
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    before = shard_stamps(workdir)
    jobs = run(workdir)
    assert extracted(jobs) == {batch_name(acc, 5) for acc in before}
    assert rewritten(before, shard_stamps(workdir)) == set()
    assert run(workdir) == []


def test_a_deleted_shard_is_rewritten_by_forcing_extraction(workdir):
    before = shard_stamps(workdir)
    lost = sorted(before)[0]
    (workdir / f"results/patches/{lost}.h5").unlink()
    run(workdir, "--forcerun", "extract_patches")
    assert rewritten(before, shard_stamps(workdir)) == {lost}


def test_an_exam_added_then_removed_leaves_no_batch_or_shard(workdir, full_table, roi_exams):
    new = roi_exams[-1]
    write_table(full_table, workdir / "metadata.csv")
    run(workdir)
    alone = batch_of(workdir, new)
    before = shard_stamps(workdir)
    write_table(full_table[full_table["acc_anon"] != new], workdir / "metadata.csv")
    jobs = run(workdir)
    # Its batch held it alone: no batch job reruns, and the manifest's rule deletes the shard.
    assert extracted(jobs) == set()
    assert "collect_patches" in {rule for rule, _, _ in jobs}
    assert set(shard_stamps(workdir)) == set(before) - {new}
    layout = BatchLayout.read(workdir / "results/patches/layout.json")
    assert alone not in layout.batches
    assert all(new not in exams for exams in layout.batches.values())
    manifest = pd.read_parquet(workdir / "results/manifest.parquet")
    assert not (manifest["acc_anon"].astype(str) == new).any()
    assert not (workdir / f"results/patches/batches/{alone}.json").exists()
    # Back again: the same batch name and exams, rerun (its record went with the shard).
    write_table(full_table, workdir / "metadata.csv")
    assert extracted(run(workdir)) == {alone}
    assert new in shard_stamps(workdir)
