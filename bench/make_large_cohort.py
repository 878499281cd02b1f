"""Generate a large EMBED-like cohort for the scale benchmark (bench/bench_scale.py).

N exams, each with 1 or 2 images (2D mammograms or 4-frame DBT volumes, 64 x 64
pixels, uncompressed), every exam with at least one ROI, so that the pipeline has
one extraction job per exam. The metadata CSV has EMBED's real column names and
serializations (as embedpatch.demo.cohort.metadata_table writes them); the DICOMs are
real, header-consistent files (each image's own UIDs, PatientID, AccessionNumber,
laterality, view, Rows / Columns / NumberOfFrames matching the table).

The table is built vectorized: images draw their pixels and ROI boxes from a small
pool of rendered phantoms (per image type, laterality and view). The DICOM files are
written one per image (default), or hard-linked to the pool's files with --link (much
faster; the per-image header fields then are the pool file's).

Output: bench/out/scale/<N>/{tables/metadata.csv, images/..., cohort.json}; the
table's anon_dicom_path values start with embedpatch.demo.SOURCE_PREFIX, which the
benchmark's config rewrites onto images/.

Usage: .venv/bin/python bench/make_large_cohort.py N [N ...] [--link] [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent

from embedpatch.demo import SOURCE_PREFIX, phantom  # noqa: E402
from embedpatch.demo.dicom_writer import (  # noqa: E402
    BITS_STORED,
    BREAST_TOMOSYNTHESIS,
    MAMMO_FOR_PRESENTATION,
    DicomHeader,
    Encoding,
    write_dicom,
)

OUT = ROOT / "bench" / "out" / "scale"
COHORT = "cohort_1"
UID_ROOT = "1.2.826.0.1.3680043.8.498."
SIZE = 64  # rows = columns
DBT_FRAMES = 4
DBT_SHARE = 0.25  # images that are DBT volumes
TWO_IMAGE_SHARE = 0.5  # exams with a second image
SECOND_ROI_SHARE = 0.3  # images with two ROIs
VARIANTS = 6  # rendered phantoms per (type, laterality, view)
MANUFACTURER = ("HOLOGIC, Inc.", "Selenia Dimensions")
ORIENTATION = {("L", "CC"): ("P", "L"), ("R", "CC"): ("A", "R"),
               ("L", "MLO"): ("P", "F"), ("R", "MLO"): ("A", "F")}  # fmt: skip


@dataclass(frozen=True)
class Template:
    """One rendered phantom: its pixels, ROI boxes (1 or 2) and DBT frame lists."""

    image_type: str
    laterality: str
    view: str
    pixels: np.ndarray
    boxes: tuple[tuple[int, int, int, int], ...]
    frames: tuple[tuple[int, ...], ...]


def _templates(seed: int) -> list[Template]:
    rng = np.random.default_rng([seed, 7])
    pool = []
    for image_type in ("2D", "3D"):
        for laterality in ("L", "R"):
            for view in ("CC", "MLO"):
                for _ in range(VARIANTS):
                    shape = phantom.BreastShape.random(rng, SIZE, SIZE, view, laterality == "R")
                    first = shape.inner_box(rng, side=(0.12, 0.22))
                    boxes = (first, shape.inner_box(rng, side=(0.12, 0.22), avoid=(first,)))
                    frames: tuple[tuple[int, ...], ...] = ((), ())
                    if image_type == "3D":
                        frames = tuple(
                            tuple(range(start, start + 2))
                            for start in rng.integers(0, DBT_FRAMES - 1, 2)
                        )
                    lesions = [
                        phantom.Lesion(box, float(rng.uniform(*phantom.LESION_AMPLITUDE)), f)
                        for box, f in zip(boxes, frames, strict=True)
                    ]
                    if image_type == "3D":
                        pixels = phantom.render_dbt(shape, lesions, DBT_FRAMES, rng)
                    else:
                        pixels = phantom.render_2d(shape, lesions, rng)
                    pool.append(Template(image_type, laterality, view, pixels, boxes, frames))
    return pool


def _text(values: np.ndarray) -> pd.Series:
    return pd.Series(values).astype(str)


def _roi_strings(pool: list[Template], two: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per template: the ROI_coords and ROI_frames cells, with one or two ROIs."""
    count = 2 if two else 1
    coords = [str([list(box) for box in t.boxes[:count]]) for t in pool]
    frames = [
        str([list(f) for f in t.frames[:count]]) if t.image_type == "3D" else "[]" for t in pool
    ]
    return np.array(coords, dtype=object), np.array(frames, dtype=object)


def cohort_table(n_exams: int, pool: list[Template], seed: int) -> pd.DataFrame:
    """The metadata table: one row per image, every exam with at least one ROI."""
    rng = np.random.default_rng([seed, n_exams])
    images_per_exam = 1 + (rng.random(n_exams) < TWO_IMAGE_SHARE)
    exam = np.repeat(np.arange(n_exams), images_per_exam)
    n = len(exam)
    first_of_exam = np.r_[True, exam[1:] != exam[:-1]]
    # Patients have 1-3 exams; acc_anon is 16 digits, not in exam order.
    patient_of_exam = np.sort(rng.integers(0, max(n_exams * 2 // 3, 1), n_exams))
    empi = 10_000_000 + patient_of_exam[exam]
    acc_of_exam = 1_000_000_000_000_000 + rng.permutation(n_exams) * 104_729 + 17
    acc = acc_of_exam[exam]

    is_3d = rng.random(n) < DBT_SHARE
    laterality = rng.integers(0, 2, n)
    view = rng.integers(0, 2, n)
    variant = rng.integers(0, VARIANTS, n)
    template = ((is_3d * 2 + laterality) * 2 + view) * VARIANTS + variant
    image_type = np.where(is_3d, "3D", "2D")
    lat_text = np.array(["L", "R"])[laterality]
    view_text = np.array(["CC", "MLO"])[view]

    # Every exam's first image has ROIs; later images have them 70% of the time.
    has_roi = first_of_exam | (rng.random(n) < 0.7)
    two = has_roi & (rng.random(n) < SECOND_ROI_SHARE)
    coords1, frames1 = _roi_strings(pool, two=False)
    coords2, frames2 = _roi_strings(pool, two=True)
    coords = np.where(two, coords2[template], coords1[template])
    frames = np.where(two, frames2[template], frames1[template])
    coords = np.where(has_roi, coords, "[]")
    frames = np.where(has_roi, frames, "[]")
    num_roi = np.where(has_roi, 1 + two, 0)

    study_uid = UID_ROOT + "1." + _text(acc_of_exam[exam])
    position = np.arange(n) - np.r_[0, np.cumsum(images_per_exam)[:-1]][exam]
    series_uid = study_uid + "." + _text(position + 1)
    sop_uid = UID_ROOT + "2." + _text(np.arange(n) + 1)
    path = (
        SOURCE_PREFIX + COHORT + "/" + _text(empi) + "/" + study_uid + "/" + series_uid
        + "/" + sop_uid + ".dcm"
    )  # fmt: skip
    days = rng.integers(0, 3650, n_exams)[exam]
    study_date = (np.datetime64("2013-01-01") + days).astype(str)
    side_view = pd.Series(lat_text) + " " + pd.Series(view_text)
    series_description = side_view + np.where(is_3d, " Tomosynthesis Reconstruction", "")
    orientation = [str(ORIENTATION[(lat, v)]) for lat, v in zip(lat_text, view_text, strict=True)]
    return pd.DataFrame(
        {
            "empi_anon": empi,
            "acc_anon": acc,
            "study_date_anon": study_date,
            "StudyDescription": "MG Screening Bilateral w/ Tomo",
            "SeriesDescription": series_description,
            "FinalImageType": image_type,
            "ImageLateralityFinal": lat_text,
            "ViewPosition": view_text,
            "spot_mag": np.nan,
            "ROI_coords": coords,
            "num_ROI": num_roi,
            "ROI_frames": frames,
            "anon_dicom_path": path,
            "cohort_num": 1,
            "Manufacturer": MANUFACTURER[0],
            "ManufacturerModelName": MANUFACTURER[1],
            "Modality": "MG",
            "BodyPartExamined": "BREAST",
            "PresentationIntentType": "FOR PRESENTATION",
            "PhotometricInterpretation": "MONOCHROME2",
            "BitsStored": BITS_STORED,
            "PatientOrientation": orientation,
            "Rows": SIZE,
            "Columns": SIZE,
            "ImagesInAcquisition": np.where(is_3d, float(DBT_FRAMES), 1.0),
            "WindowCenter": phantom.WINDOW[0],
            "WindowWidth": phantom.WINDOW[1],
            "LossyImageCompression": "00",
            "BreastImplantPresent": "NO",
            "_template": template,
        }
    )


def _header(row: dict) -> DicomHeader:
    parts = row["anon_dicom_path"].split("/")
    return DicomHeader(
        sop_class_uid=BREAST_TOMOSYNTHESIS
        if row["FinalImageType"] == "3D"
        else MAMMO_FOR_PRESENTATION,
        study_uid=parts[-3],
        series_uid=parts[-2],
        sop_uid=parts[-1].removesuffix(".dcm"),
        patient_id=str(row["empi_anon"]),
        accession_number=str(row["acc_anon"]),
        study_date=row["study_date_anon"].replace("-", ""),
        study_description=row["StudyDescription"],
        series_description=row["SeriesDescription"],
        series_number=int(parts[-2].rsplit(".", 1)[1]),
        manufacturer=MANUFACTURER[0],
        model=MANUFACTURER[1],
        laterality=row["ImageLateralityFinal"],
        view_position=row["ViewPosition"],
        patient_orientation=ORIENTATION[(row["ImageLateralityFinal"], row["ViewPosition"])],
        window=phantom.WINDOW,
        photometric="MONOCHROME2",
    )


def write_images(table: pd.DataFrame, pool: list[Template], images: Path, link: bool) -> None:
    """One DICOM per table row under `images` (the table path minus SOURCE_PREFIX)."""
    pool_dir = images.parent / "pool"
    if link:
        pool_dir.mkdir(parents=True, exist_ok=True)
        first_rows = table.drop_duplicates("_template").set_index("_template")
        for index, template in enumerate(pool):
            if index in first_rows.index:
                row = first_rows.loc[index].to_dict() | {"_template": index}
                write_dicom(
                    pool_dir / f"{index}.dcm", template.pixels, _header(row), Encoding.UNCOMPRESSED
                )
    made: set[str] = set()
    for row in table[
        ["anon_dicom_path", "FinalImageType", "empi_anon", "acc_anon", "study_date_anon",
         "StudyDescription", "SeriesDescription", "ImageLateralityFinal", "ViewPosition",
         "_template"]
    ].to_dict("records"):  # fmt: skip
        target = images / row["anon_dicom_path"].removeprefix(SOURCE_PREFIX)
        parent = str(target.parent)
        if parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(parent)
        if link:
            os.link(pool_dir / f"{row['_template']}.dcm", target)
        else:
            pixels = pool[row["_template"]].pixels
            write_dicom(target, pixels, _header(row), Encoding.UNCOMPRESSED)


def make_cohort(
    n_exams: int, *, seed: int = 0, link: bool = False, regenerate: bool = False
) -> Path:
    """Build (once) the cohort of `n_exams` exams; returns its folder."""
    out = OUT / str(n_exams)
    done = out / "cohort.json"
    if done.exists() and not regenerate:
        return out
    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    pool = _templates(seed)
    table = cohort_table(n_exams, pool, seed)
    tables = out / "tables"
    tables.mkdir(parents=True)
    table.drop(columns="_template").to_csv(tables / "metadata.csv", index=False)
    table_seconds = time.perf_counter() - start
    write_images(table, pool, out / "images", link)
    info = {
        "n_exams": n_exams,
        "n_images": len(table),
        "n_rois": int(table["num_ROI"].sum()),
        "n_dbt": int((table["FinalImageType"] == "3D").sum()),
        "seed": seed,
        "linked": link,
        "image_size": SIZE,
        "dbt_frames": DBT_FRAMES,
        "source_prefix": SOURCE_PREFIX,
        "table_seconds": round(table_seconds, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
    }
    done.write_text(json.dumps(info, indent=2) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="+", type=int, help="numbers of exams")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--link", action="store_true", help="hard-link the pool's DICOMs")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    for n in args.sizes:
        out = make_cohort(n, seed=args.seed, link=args.link, regenerate=args.regenerate)
        print(out, (out / "cohort.json").read_text().strip().replace("\n", ""))


if __name__ == "__main__":
    main()
