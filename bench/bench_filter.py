"""Benchmark stage 1 (metadata filter) on an EMBED-sized synthetic metadata table.

Generates (once, cached in bench/out/) a 480,000-row, 150-column metadata CSV with
the real decision columns in realistic proportions, then times, each in its own
subprocess (wall time and peak RSS of that process):

- the pipeline's filter_metadata, end to end (read, decide, write the outputs),
  without and with the clinical join (a synthetic clinical table, ~1.5 findings/exam);
- reading only the decision columns (the first pass a two-pass design would add);
- the path check run before any job (checks.paths: the anon_dicom_path column, 301
  sampled paths looked up; here none exists, so it also searches for a rewrite);
- the naive way: pandas.read_csv of the whole table, a boolean filter, to_parquet.

Usage: .venv/bin/python bench/bench_filter.py [--rows N] [--regenerate]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
N_COLUMNS = 150
UID_ROOT = "1.2.826.0.1.3680043.8.498."
IMAGE_TYPES = {
    "2D": 0.36,
    "3D": 0.30,
    "cview": 0.29,
    "ROI_SSC": 0.025,
    "ROI_SS": 0.015,
    "other": 0.01,
}
VIEWS = {"CC": 0.44, "MLO": 0.44, "ML": 0.04, "LM": 0.02, "XCCL": 0.03, "FB": 0.01, "": 0.02}
MANUFACTURERS = {"HOLOGIC, Inc.": 0.92, "GE MEDICAL SYSTEMS": 0.06, "FUJIFILM Corporation": 0.02}
ROI_SHARE = 0.02  # rows with at least one ROI


def _choice(rng: np.random.Generator, weights: dict[str, float], n: int) -> pa.Array:
    labels = list(weights)
    p = np.array(list(weights.values()))
    return pa.array(np.array(labels, dtype=object)[rng.choice(len(labels), n, p=p / p.sum())])


def _text(values: np.ndarray) -> pa.Array:
    return pa.array(values).cast(pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _uid(rng: np.random.Generator, n: int) -> pa.Array:
    return _join(UID_ROOT, _text(rng.integers(10**17, 10**18, n)), ".", _text(np.arange(n)))


def _roi_columns(rng: np.random.Generator, image_type: pa.Array) -> dict[str, pa.Array]:
    n = len(image_type)
    counts = np.where(rng.random(n) < ROI_SHARE, rng.geometric(0.6, n).clip(1, 9), 0)
    is_3d = pc.equal(image_type, "3D").to_numpy(zero_copy_only=False)
    coords = np.full(n, "[]", dtype=object)
    frames = np.full(n, "[]", dtype=object)
    for row in np.flatnonzero(counts):
        y, x = rng.integers(0, 3000, 2)
        boxes = [[y + 40 * k, x, y + 40 * k + 150, x + 180] for k in range(counts[row])]
        coords[row] = str(boxes)
        if is_3d[row]:
            frames[row] = str([[int(rng.integers(0, 60)) + d for d in range(3)] for _ in boxes])
    return {
        "num_ROI": pa.array(counts),
        "ROI_coords": pa.array(coords),
        "ROI_frames": pa.array(frames),
    }


def _acc_anon(exam: np.ndarray) -> np.ndarray:
    return 1_000_000_000_000_000 + exam * 123_456_789_011


def _n_exams(n_images: int) -> int:
    return max(n_images * 72 // 480, 1)


def make_clinical(n_images: int, seed: int = 1) -> pa.Table:
    """A synthetic clinical table (one row per finding) for the metadata's exams."""
    rng = np.random.default_rng(seed)
    exam = np.repeat(np.arange(_n_exams(n_images)), rng.integers(1, 3, _n_exams(n_images)))
    n = len(exam)
    return pa.table(
        {
            "empi_anon": pa.array(10_000_000 + exam),
            "acc_anon": pa.array(_acc_anon(exam)),
            "side": _choice(rng, {"L": 0.4, "R": 0.4, "B": 0.1, "": 0.1}, n),
            "asses": _choice(rng, dict.fromkeys("NBPASMK", 1.0), n),
            "path_severity": pa.array(
                np.where(rng.random(n) < 0.8, np.nan, rng.integers(0, 7, n)), from_pandas=True
            ),
            "tissueden": pa.array(rng.integers(1, 5, n)),
            "desc": _choice(rng, {"mass": 0.5, "calcification": 0.5}, n),
            "massshape": _choice(rng, {"O": 0.3, "R": 0.3, "S": 0.2, "": 0.2}, n),
            "calcfind": _choice(rng, {"": 0.7, "fine pleomorphic": 0.3}, n),
            "age_at_study": pa.array(np.round(rng.uniform(40, 80, n), 1)),
        }
    )


def make_metadata(n: int, seed: int = 0) -> pa.Table:
    """A synthetic metadata table: real decision columns plus filler up to N_COLUMNS."""
    rng = np.random.default_rng(seed)
    n_exams = _n_exams(n)
    patient_of_exam = rng.integers(0, max(n * 23 // 480, 1), n_exams)
    exam = np.sort(rng.integers(0, n_exams, n))
    empi = 10_000_000 + patient_of_exam[exam] * 37
    acc = _acc_anon(exam)
    image_type = _choice(rng, IMAGE_TYPES, n)
    path = _join(
        "/mnt/NAS2/mammo/anon_dicom/cohort_",
        _text(rng.integers(1, 3, n)),
        "/",
        _text(empi),
        "/",
        _uid(rng, n),
        "/",
        _uid(rng, n),
        "/",
        _uid(rng, n),
        ".dcm",
    )
    columns = {
        "empi_anon": pa.array(empi),
        "acc_anon": pa.array(acc),
        "anon_dicom_path": path,
        "study_date_anon": _text(rng.integers(20100101, 20201231, n)),
        "cohort_num": pa.array(rng.integers(1, 3, n)),
        "FinalImageType": image_type,
        "ViewPosition": _choice(rng, VIEWS, n),
        "ImageLateralityFinal": _choice(rng, {"L": 0.497, "R": 0.497, "": 0.006}, n),
        "spot_mag": pa.array(np.where(rng.random(n) < 0.03, 1.0, np.nan), from_pandas=True),
        "Manufacturer": _choice(rng, MANUFACTURERS, n),
        "ManufacturerModelName": _choice(rng, {"Selenia Dimensions": 0.9, "Senographe": 0.1}, n),
        "SeriesDescription": _choice(
            rng, {"L CC": 0.25, "R CC": 0.25, "L MLO": 0.25, "R MLO": 0.25}, n
        ),
        "PatientOrientation": _choice(rng, {"('P', 'R')": 0.5, "('A', 'L')": 0.5}, n),
        "Rows": pa.array(np.where(rng.random(n) < 0.5, 3328, 2457)),
        "Columns": pa.array(np.where(rng.random(n) < 0.5, 2560, 1890)),
        "ImagesInAcquisition": pa.array(rng.integers(1, 90, n)),
        "WindowCenter": _text(rng.integers(1500, 2500, n)),
        "WindowWidth": _text(rng.integers(2000, 4000, n)),
        "LossyImageCompression": _choice(rng, {"00": 0.95, "01": 0.05}, n),
        **_roi_columns(rng, image_type),
    }
    for index in range(N_COLUMNS - len(columns)):
        kind = index % 3
        if kind == 0:
            filler = pa.array(rng.integers(0, 10_000, n))
        elif kind == 1:
            values = np.round(rng.normal(100, 30, n), 2)
            filler = pa.array(np.where(rng.random(n) < 0.2, np.nan, values), from_pandas=True)
        else:
            filler = _choice(rng, {"YES": 0.3, "NO": 0.6, "UNKNOWN": 0.1}, n)
        columns[f"filler_{index:03d}"] = filler
    return pa.table(columns)


def cached_csv(name: str, make: Callable[[], pa.Table], regenerate: bool) -> Path:
    """bench/out/<name>.csv, written from make() if missing."""
    path = OUT / f"{name}.csv"
    if regenerate or not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        temporary = path.with_suffix(".tmp")
        options = pacsv.WriteOptions(quoting_style="needed")
        pacsv.write_csv(make(), temporary, write_options=options)
        temporary.replace(path)
        print(f"generated {path} in {time.perf_counter() - started:.1f} s")
    return path


FILTER = """
from embedpatch.filter.stage import filter_metadata
filter_metadata(
    {csv!r}, {out!r} + "/filtered.parquet", {out!r} + "/dropped.parquet",
    {out!r} + "/summary.json",
    filter_config=dict(cview_as_2d=True, keep_spot_mag=False, view_positions=None,
                       lateralities=None, manufacturers=None, join_clinical=True),
    dicom_root="/data/embed",
    path_rewrite=[("/mnt/NAS2/mammo/anon_dicom/", "/data/embed/")],
    clinical={clinical},
)
"""
DECISION_COLUMNS = """
from embedpatch.io.tables import read_table
read_table({csv!r}, ["empi_anon", "acc_anon", "anon_dicom_path", "FinalImageType", "num_ROI",
                     "ROI_coords", "spot_mag"])
"""
PATH_CHECK = """
from embedpatch.filter.preflight import PathCheckError, preflight_paths
try:
    preflight_paths({csv!r}, "/data/embed", [("/mnt/NAS2/mammo/anon_dicom/", "/data/embed/")])
except PathCheckError:
    pass  # no image exists on this machine: the check's failure path, suggestion search included
"""
NAIVE = """
import pandas as pd
table = pd.read_csv({csv!r}{engine})
kind = table["FinalImageType"]
keep = ((kind == "2D") | (kind == "cview") | ((kind == "3D") & (table["num_ROI"] > 0)))
keep &= table["spot_mag"] != 1
table[keep].to_parquet({out!r} + "/naive.parquet")
"""
VARIANTS = {
    "filter_metadata (streaming, pyarrow)": FILTER.replace("{clinical}", "None"),
    "filter_metadata + clinical join": FILTER.replace("{clinical}", "{clinical!r}"),
    "decision columns only (pyarrow include_columns)": DECISION_COLUMNS,
    "path check before the run (checks.paths)": PATH_CHECK,
    "naive: pandas.read_csv + mask + to_parquet": NAIVE.replace("{engine}", ""),
    "naive: pandas.read_csv(engine='pyarrow') + mask": NAIVE.replace(
        "{engine}", ", engine='pyarrow'"
    ),
}


def run_measured(code: str) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of `code` run by a fresh Python process."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"benchmark variant failed (exit {process.returncode})")
    return wall, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main() -> None:
    """Generate the table if needed, run every variant, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=480_000)
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    csv = cached_csv(f"metadata_{args.rows}", lambda: make_metadata(args.rows), args.regenerate)
    clinical = cached_csv(
        f"clinical_{args.rows}", lambda: make_clinical(args.rows), args.regenerate
    )
    out = OUT / "run"
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"input: {csv} ({csv.stat().st_size / 1e6:.0f} MB, {args.rows} rows, {N_COLUMNS} columns)"
    )
    print(f"{'variant':<50} {'wall s':>8} {'peak RSS GB':>12}")
    for name, template in VARIANTS.items():
        code = template.format(csv=str(csv), out=str(out), clinical=str(clinical))
        wall, peak = run_measured(code)
        print(f"{name:<50} {wall:>8.1f} {peak:>12.2f}", flush=True)


if __name__ == "__main__":
    main()
