"""Generate a table shaped like EMBED's public release for bench/bench_scale.py --release.

480,000 image rows with the release's distribution of ROIs per image (0: 472,504,
1: 6,426, 2: 1,026, 3: 95, 4: 25, 5-9: 5), about four images per exam (L / R x CC /
MLO), 2D, C-view and DBT rows (DBT rows without ROIs are dropped by the filter, as in
the release). Images are 64 x 64 (DBT 4 frames), hard links to a small pool of
phantoms (bench/make_large_cohort.py's), and only the images a run opens are
written: those with ROIs and the sample of images without ROIs that
`patches.negative_images` picks (`sample_count`, seeded: the benchmark's config uses
the same), chosen with the pipeline's own code. The others are named by the table
and never opened, as on the real bucket.

Output: bench/out/release/{tables/metadata.csv, images/..., cohort.json}.
Usage: .venv/bin/python bench/make_release_cohort.py [--rows 480000] [--negatives 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

from embedpatch.demo import SOURCE_PREFIX, phantom  # noqa: E402
from embedpatch.demo.dicom_writer import BITS_STORED, Encoding, write_dicom  # noqa: E402
from embedpatch.patches.negative_images import NegativeChoice, sample_without_rois  # noqa: E402
from make_large_cohort import (  # noqa: E402
    COHORT,
    DBT_FRAMES,
    MANUFACTURER,
    ORIENTATION,
    SIZE,
    UID_ROOT,
    Template,
    _header,
    _templates,
    _text,
)

OUT = ROOT / "bench" / "out" / "release"
ROWS = 480_000
ROI_COUNTS = {1: 6_426, 2: 1_026, 3: 95, 4: 25, 5: 2, 6: 1, 7: 1, 9: 1}  # the rest: 0
TYPE_SHARES = {"2D": 0.55, "cview": 0.30, "3D": 0.15}
NEGATIVE_SEED = 0  # patches.seed of the benchmark's config
ADDED_SHARE = 0.01  # the benchmark first runs without the last 1 % of the exams


def roi_counts(n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """ROIs per image row: the release's counts (scaled to `n_rows`), shuffled."""
    scale = n_rows / ROWS
    counts = np.zeros(n_rows, dtype=np.int64)
    start = 0
    for rois, images in ROI_COUNTS.items():
        take = max(1, round(images * scale))
        counts[start : start + take] = rois
        start += take
    return rng.permutation(counts)


def _boxes(template: Template, count: int) -> list[list[int]]:
    """`count` boxes on the template's tissue: its two, then shifted copies of the first."""
    boxes = [list(box) for box in template.boxes[:count]]
    ymin, xmin, ymax, xmax = template.boxes[0]
    for shift in range(1, count - len(boxes) + 1):
        boxes.append([ymin + shift, xmin, ymax + shift, xmax])
    return boxes


def release_table(n_rows: int, pool: list, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, n_rows])
    rois = roi_counts(n_rows, rng)
    kinds = np.array(list(TYPE_SHARES))
    image_type = rng.choice(kinds, n_rows, p=list(TYPE_SHARES.values()))
    laterality = rng.integers(0, 2, n_rows)
    view = rng.integers(0, 2, n_rows)
    variant = rng.integers(0, 6, n_rows)
    is_3d = image_type == "3D"
    template = ((is_3d * 2 + laterality) * 2 + view) * 6 + variant
    exam = np.arange(n_rows) // 4
    n_exams = int(exam[-1]) + 1
    patient_of_exam = np.sort(rng.integers(0, max(n_exams * 2 // 3, 1), n_exams))
    empi = 10_000_000 + patient_of_exam[exam]
    acc_of_exam = 1_000_000_000_000_000 + rng.permutation(n_exams) * 104_729 + 17
    acc = acc_of_exam[exam]
    coords, frames = [], []
    for count, kind, index in zip(rois, image_type, template, strict=True):
        boxes = _boxes(pool[index], int(count))
        coords.append(str(boxes) if count else "[]")
        if kind == "3D" and count:
            first = list(pool[index].frames[0])
            frames.append(str([first] * int(count)))
        else:
            frames.append("[]")
    lat_text = np.array(["L", "R"])[laterality]
    view_text = np.array(["CC", "MLO"])[view]
    study_uid = UID_ROOT + "1." + _text(acc)
    series_uid = study_uid + "." + _text(np.arange(n_rows) % 4 + 1)
    sop_uid = UID_ROOT + "2." + _text(np.arange(n_rows) + 1)
    path = (
        SOURCE_PREFIX + COHORT + "/" + _text(empi) + "/" + study_uid + "/" + series_uid
        + "/" + sop_uid + ".dcm"
    )  # fmt: skip
    days = rng.integers(0, 3650, n_exams)[exam]
    return pd.DataFrame(
        {
            "empi_anon": empi,
            "acc_anon": acc,
            "study_date_anon": (np.datetime64("2013-01-01") + days).astype(str),
            "StudyDescription": "MG Screening Bilateral w/ Tomo",
            "SeriesDescription": pd.Series(lat_text) + " " + pd.Series(view_text),
            "FinalImageType": image_type,
            "ImageLateralityFinal": lat_text,
            "ViewPosition": view_text,
            "spot_mag": np.nan,
            "ROI_coords": coords,
            "num_ROI": rois,
            "ROI_frames": frames,
            "anon_dicom_path": path,
            "cohort_num": 1,
            "Manufacturer": MANUFACTURER[0],
            "ManufacturerModelName": MANUFACTURER[1],
            "Modality": "MG",
            "PhotometricInterpretation": "MONOCHROME2",
            "BitsStored": BITS_STORED,
            "PatientOrientation": [
                str(ORIENTATION[pair]) for pair in zip(lat_text, view_text, strict=True)
            ],
            "Rows": SIZE,
            "Columns": SIZE,
            "ImagesInAcquisition": np.where(is_3d, float(DBT_FRAMES), 1.0),
            "WindowCenter": phantom.WINDOW[0],
            "WindowWidth": phantom.WINDOW[1],
            "_template": template,
        }
    )


def opened_rows(table: pd.DataFrame, negatives: int) -> pd.Series:
    """Rows whose image a run opens: those with ROIs, and the images without ROIs sampled
    from the whole table or from the table less its last ADDED_SHARE of exams."""
    with_rois = table["num_ROI"] > 0
    flat = table["FinalImageType"].isin(["2D", "cview"])
    choice = NegativeChoice(without_rois="sample", sample_count=negatives)
    exams = list(dict.fromkeys(table["acc_anon"]))
    first = table["acc_anon"].isin(exams[: len(exams) - round(len(exams) * ADDED_SHARE)])
    opened = with_rois.copy()
    for rows in (table, table[first]):
        without = rows[rows["FinalImageType"].isin(["2D", "cview"]) & (rows["num_ROI"] == 0)]
        opened |= table.index.isin(sample_without_rois(without, choice, NEGATIVE_SEED).index)
    return opened & (with_rois | flat)


def link_images(table: pd.DataFrame, pool: list, images: Path) -> None:
    """Hard links to the pool's files for the given rows (one pool file per template)."""
    pool_dir = images.parent / "pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    firsts = table.drop_duplicates("_template")
    for row in firsts.to_dict("records"):
        pixels = pool[row["_template"]].pixels
        write_dicom(
            pool_dir / f"{row['_template']}.dcm", pixels, _header(row), Encoding.UNCOMPRESSED
        )
    made: set[str] = set()
    for path, index in zip(table["anon_dicom_path"], table["_template"], strict=True):
        target = images / path.removeprefix(SOURCE_PREFIX)
        if str(target.parent) not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(str(target.parent))
        os.link(pool_dir / f"{index}.dcm", target)


def make_release_cohort(n_rows: int = ROWS, negatives: int = 20_000, seed: int = 0) -> Path:
    """Build (once) the release-shaped cohort; returns its folder."""
    out = OUT / str(n_rows)
    done = out / "cohort.json"
    if done.exists():
        return out
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    pool = _templates(seed)
    table = release_table(n_rows, pool, seed)
    (out / "tables").mkdir(parents=True)
    table.drop(columns="_template").to_csv(out / "tables" / "metadata.csv", index=False)
    opened = table[opened_rows(table, negatives)]
    link_images(opened, pool, out / "images")
    info = {
        "n_rows": n_rows,
        "n_exams": int(table["acc_anon"].nunique()),
        "rows_with_rois": int((table["num_ROI"] > 0).sum()),
        "n_rois": int(table["num_ROI"].sum()),
        "images_written": len(opened),
        "negatives_sample": negatives,
        "seed": seed,
        "total_seconds": round(time.perf_counter() - start, 2),
    }
    done.write_text(json.dumps(info, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--negatives", type=int, default=20_000)
    args = parser.parse_args()
    out = make_release_cohort(args.rows, args.negatives)
    print(out, (out / "cohort.json").read_text().strip().replace("\n", ""))


if __name__ == "__main__":
    main()
