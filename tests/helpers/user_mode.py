"""Shared by the fault tests: the workflow in user mode on an edited copy of the demo cohort.

A run gets its own folder holding config.yaml and metadata.csv (an edited copy of the
demo table); the images stay where the test puts them (the session's demo cohort,
never modified, or a copied DICOM root).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import yaml

from embedpatch.demo import SOURCE_PREFIX
from embedpatch.patches.shards import read_shard, read_shard_tables, shard_is_complete
from embedpatch.vocab import EMPTY_ROI_TEXT, IMAGE_TYPES
from helpers.snakemake_runner import run_snakemake
from helpers.snakemake_runner import snakemake_command as runner_command

PATCH_SIZE = 48


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    """The command running the project's workflow on `workdir`'s config.yaml."""
    return runner_command(workdir, *args, configfiles=(workdir / "config.yaml",))


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the workflow in `workdir` (default target unless `args` name one)."""
    return run_snakemake(workdir, *args, configfiles=(workdir / "config.yaml",))


def read_table(path: Path) -> pd.DataFrame:
    """A metadata CSV as text, cells exactly as written ('' for empty)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def write_table(table: pd.DataFrame, path: Path) -> None:
    """Write a table read by `read_table`."""
    table.to_csv(path, index=False)


def set_up_run(
    workdir: Path, table: pd.DataFrame, dicom_root: Path, clinical: Path | None = None
) -> Path:
    """`workdir` with metadata.csv and a user-mode config.yaml (small patches, negatives on)."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_table(table, workdir / "metadata.csv")
    config = {
        "metadata": "metadata.csv",
        "clinical": None if clinical is None else str(clinical),
        "dicom_root": str(dicom_root),
        "path_rewrite": [{"from": SOURCE_PREFIX, "to": f"{dicom_root}/"}],
        "patches": {"size": PATCH_SIZE, "negatives_per_image": 1},
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


def relative(anon_path: str) -> str:
    """A demo anon_dicom_path below the image root."""
    return anon_path.removeprefix(SOURCE_PREFIX)


def has_rois(table: pd.DataFrame) -> pd.Series:
    """Rows whose ROI_coords lists something."""
    return ~table["ROI_coords"].str.strip().isin(EMPTY_ROI_TEXT)


def clean_rows(cohort: Path) -> pd.DataFrame:
    """The demo table's 2D / C-view / 3D rows that are none of its deliberately odd cases."""
    table = read_table(cohort / "tables/metadata.csv")
    truth = json.loads((cohort / "truth.json").read_text())
    odd = {record["anon_dicom_path"] for record in truth if record["kind"] != "valid"}
    usable = table["FinalImageType"].isin(IMAGE_TYPES) & table["anon_dicom_path"].ne("")
    return table[usable & ~table["anon_dicom_path"].isin(odd)].reset_index(drop=True)


def exams_with(table: pd.DataFrame, *kinds: str) -> list[str]:
    """acc_anon of the exams holding a row of each kind: '2D' / '3D' (with ROIs), 'negative'
    (a 2D / C-view row without ROIs), in table order."""
    flat = table["FinalImageType"].isin(["2D", "cview"])
    masks = {
        "2D": flat & has_rois(table),
        "3D": table["FinalImageType"].eq("3D") & has_rois(table),
        "negative": flat & ~has_rois(table),
    }
    found = [set(table.loc[masks[kind], "acc_anon"]) for kind in kinds]
    return [acc for acc in dict.fromkeys(table["acc_anon"]) if all(acc in s for s in found)]


def copy_images(table: pd.DataFrame, cohort: Path, root: Path) -> None:
    """Copy the demo images `table` names into `root`, same relative paths."""
    for anon_path in table["anon_dicom_path"]:
        source = cohort / "images" / relative(anon_path)
        if source.is_file():
            target = root / relative(anon_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry below `root` (symlinks not followed): kind, mode, mtime and content."""
    state: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            if path.is_symlink():
                content = str(path.readlink())
            elif path.is_file():
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = None
            state[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, content)
    return state


def set_writable(root: Path, writable: bool) -> None:
    """Add or remove every write permission below `root` (symlinks left alone)."""
    for folder, dirs, files in os.walk(root):
        for path in [Path(folder), *(Path(folder, name) for name in dirs + files)]:
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(mode | 0o200 if writable else mode & ~0o222)


def result_files(workdir: Path) -> Iterator[Path]:
    """Every file under the run's results folder."""
    return (path for path in sorted((workdir / "results").rglob("*")) if path.is_file())


def check_outputs(workdir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The manifest and the rejections of a finished run, after checking that every shard is
    complete, matches the manifest, and that no temporary file is left."""
    results = workdir / "results"
    manifest = pd.read_parquet(results / "manifest.parquet", dtype_backend="numpy_nullable")
    rejected = pd.read_parquet(results / "rois/rejected.parquet", dtype_backend="numpy_nullable")
    shards = sorted((results / "patches").glob("*.h5"))
    assert all(shard_is_complete(path) for path in shards)
    for path in shards:
        shard = read_shard(path)
        rows = manifest[manifest["shard"] == f"patches/{path.name}"]
        assert len(rows) == len(shard.patches) == shard.attrs["n_patches"]
        assert list(rows["index"]) == list(range(len(rows)))
        assert len(read_shard_tables(path).info) == len(rows)
    assert not list(results.rglob("*.tmp")), "a temporary file was left behind"
    return manifest, rejected
