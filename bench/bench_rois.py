"""Benchmark stage 2 (ROI table) on the filtered output of an EMBED-sized metadata table.

Setup (once, cached in bench/out/rois/):
- bench_filter's cached 480,000-row metadata CSV, filtered by the pipeline's
  filter_metadata (no clinical join) into filtered_base.parquet (~300k rows);
- a small set of real full-size DICOMs written with the demo's phantom and writer:
  4 uncompressed 2D mammograms (3328 x 2560, HOLOGIC size) and 2 C-views
  (2457 x 1996) per laterality, each showing 6 lesions, and one tomosynthesis file
  per laterality (64 frames of 2457 x 1890) whose header is consistent with its
  Pixel Data length; its pixels are a sparse file of zeros (no disk, never read:
  the stage reads only the header of 3D images);
- filtered.parquet: filtered_base with the ROI rows (~3%) rewritten to point at those
  files, with boxes on the lesions (jittered) and realistic defects: missing files,
  malformed / truncated strings, count and dimension mismatches, boxes crossing the
  border, outside the image or inverted, frames out of range or missing, x-mirrored
  (flipped) boxes, tuple-style strings. Rows without ROIs keep their nonexistent
  /data/embed/... paths: the stage must never open them (checked: every opened path).

Then, each in a fresh Python process (wall time of the process, peak memory from
its own VmHWM at the end: ru_maxrss is inherited through vfork/exec here):
- (a) table level: read_filtered + rows_with_roi_cells + parse_coords / parse_frames
  on every ROI cell of the table (all rows, not only the candidates);
- (b) run_roi_stage end to end (default `rois` settings), with counters on every
  DICOM open; (b, cold) the same with the page cache of the benchmark's DICOMs
  dropped before every open (posix_fadvise DONTNEED), as if every file were new,
  bytes fetched from storage from /proc/self/io;
- (c) the dataset page's way: pandas apply(ast.literal_eval) on every row's
  ROI_coords and ROI_frames (same columns read as (a)).

Usage: .venv/bin/python bench/bench_rois.py [--regenerate] [--profile] [--skip-cold]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent

from bench_filter import OUT as BENCH_OUT  # noqa: E402
from bench_filter import cached_csv, make_metadata  # noqa: E402

OUT = BENCH_OUT / "rois"
IMAGES = OUT / "images"
MANIFEST = IMAGES / "manifest.json"
ROWS = 480_000
SEED = 7

MAMMO_SIZE = (3328, 2560)
CVIEW_SIZE = (2457, 1996)
DBT_SIZE = (2457, 1890)
DBT_FRAMES = 64
LESIONS_PER_IMAGE = 6
FILES = {  # image type -> (size, frames, files per laterality, views)
    "2D": (MAMMO_SIZE, 1, 4, ("CC", "MLO", "CC", "MLO")),
    "cview": (CVIEW_SIZE, 1, 2, ("CC", "MLO")),
    "3D": (DBT_SIZE, DBT_FRAMES, 1, ("CC",)),
}

# Share of ROI rows (or of boxes, for box defects) given each defect.
ROW_DEFECTS = {
    "missing_file": 0.01,
    "malformed": 0.01,
    "count_mismatch": 0.02,
    "dimension_mismatch": 0.02,
    "flipped": 0.03,  # 2D / C-view only: boxes x-mirrored
    "frames_out_of_range": 0.03,  # 3D only
    "frames_missing": 0.01,  # 3D only
}
BOX_DEFECTS = {"crosses_border": 0.02, "outside": 0.005, "inverted": 0.005}
TUPLE_STYLE = 0.1  # legacy "((y, x, y, x),)" serialization


# ---- setup ---------------------------------------------------------------------------


def filtered_base(csv: Path, regenerate: bool) -> Path:
    """The pipeline's stage-1 output for bench_filter's table (cached)."""
    from embedpatch.filter.stage import filter_metadata

    path = OUT / "filtered_base.parquet"
    if regenerate or not path.exists():
        started = time.perf_counter()
        OUT.mkdir(parents=True, exist_ok=True)
        filter_metadata(
            csv,
            path,
            OUT / "dropped_base.parquet",
            OUT / "filter_summary.json",
            filter_config=dict(
                cview_as_2d=True,
                keep_spot_mag=False,
                view_positions=None,
                lateralities=None,
                manufacturers=None,
                join_clinical=False,
            ),
            dicom_root="/data/embed",
            path_rewrite=[("/mnt/NAS2/mammo/anon_dicom/", "/data/embed/")],
        )
        print(f"filtered {csv.name} -> {path} in {time.perf_counter() - started:.1f} s")
    return path


def _header(kind: str, laterality: str, view: str, index: int):
    from pydicom.uid import generate_uid

    from embedpatch.demo.dicom_writer import (
        BREAST_TOMOSYNTHESIS,
        MAMMO_FOR_PRESENTATION,
        DicomHeader,
    )
    from embedpatch.demo.phantom import WINDOW

    def uid(part: str) -> str:
        return generate_uid(entropy_srcs=["bench_rois", kind, laterality, str(index), part])

    return DicomHeader(
        sop_class_uid=BREAST_TOMOSYNTHESIS if kind == "3D" else MAMMO_FOR_PRESENTATION,
        study_uid=uid("study"),
        series_uid=uid("series"),
        sop_uid=uid("sop"),
        patient_id="10000037",
        accession_number="1000000000000000",
        study_date="20170412",
        study_description="MG Screening Bilateral w/ Tomo",
        series_description=f"{laterality} {view}",
        series_number=index + 1,
        manufacturer="HOLOGIC, Inc.",
        model="Selenia Dimensions",
        laterality=laterality,
        view_position=view,
        patient_orientation=("A", "R") if laterality == "L" else ("P", "L"),
        window=WINDOW,
        photometric="MONOCHROME2",
    )


def _write_sparse_dbt(path: Path, header: Any, rows: int, columns: int, frames: int) -> None:
    """A multi-frame file whose Pixel Data (zeros, a hole in a sparse file) fits its header."""
    import pydicom

    from embedpatch.demo.dicom_writer import Encoding, write_dicom

    write_dicom(path, np.zeros((2, 8, 8), np.uint16), header, Encoding.UNCOMPRESSED)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, frames
    ds.save_as(path, enforce_file_format=True)
    length = rows * columns * frames * 2
    with open(path, "r+b") as file:
        file.seek(0, os.SEEK_END)
        file.write(b"\xe0\x7f\x10\x00OW\x00\x00" + length.to_bytes(4, "little"))
        file.truncate(file.tell() + length)


def write_images(regenerate: bool) -> dict:
    """Write the DICOMs once; the manifest lists each file with its size and lesions."""
    from embedpatch.demo.dicom_writer import Encoding, write_dicom
    from embedpatch.demo.phantom import LESION_AMPLITUDE, BreastShape, Lesion, render_2d
    from embedpatch.dicom import read_header

    if MANIFEST.exists() and not regenerate:
        return json.loads(MANIFEST.read_text())
    started = time.perf_counter()
    IMAGES.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    manifest: dict = {"images": []}
    for kind, (size, frames, per_side, views) in FILES.items():
        for laterality in ("L", "R"):
            for index in range(per_side):
                view = views[index]
                shape = BreastShape.random(rng, *size, view, laterality == "R")
                boxes: list = []
                for _ in range(LESIONS_PER_IMAGE):
                    boxes.append(shape.inner_box(rng, side=(0.03, 0.1), avoid=tuple(boxes)))
                centres = [int(rng.integers(3, frames - 3)) for _ in boxes] if frames > 1 else []
                path = IMAGES / f"{kind}_{laterality}_{view}_{index}.dcm"
                header = _header(kind, laterality, view, index)
                if frames > 1:
                    _write_sparse_dbt(path, header, *size, frames)
                else:
                    lesions = [Lesion(b, float(rng.uniform(*LESION_AMPLITUDE))) for b in boxes]
                    pixels = render_2d(shape, lesions, rng)
                    write_dicom(path, pixels, header, Encoding.UNCOMPRESSED)
                real = read_header(path)
                assert (real.rows, real.columns, real.number_of_frames) == (*size, frames), real
                manifest["images"].append(
                    {
                        "path": str(path),
                        "type": kind,
                        "laterality": laterality,
                        "rows": size[0],
                        "columns": size[1],
                        "frames": frames,
                        "boxes": [list(map(int, b)) for b in boxes],
                        "centre_frames": centres,
                    }
                )
    MANIFEST.write_text(json.dumps(manifest, indent=1))
    print(
        f"wrote {len(manifest['images'])} DICOMs to {IMAGES} "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return manifest


def _roi_mask(table: pa.Table) -> np.ndarray:
    declared = pc.fill_null(pc.not_equal(table["num_ROI"], 0), False)
    text = pc.utf8_trim_whitespace(table["ROI_coords"].cast(pa.string()))
    listed = pc.and_not(pc.is_valid(text), pc.is_in(text, value_set=pa.array(["", "[]", "()"])))
    frames = pc.utf8_trim_whitespace(table["ROI_frames"].cast(pa.string()))
    framed = pc.and_not(pc.is_valid(frames), pc.is_in(frames, value_set=pa.array(["", "[]", "()"])))
    mask = pc.or_(pc.or_(declared, pc.fill_null(listed, False)), pc.fill_null(framed, False))
    return mask.to_numpy(zero_copy_only=False)


def _format(entries: list[list[int]], tuple_style: bool) -> str:
    if not tuple_style:
        return str(entries)
    inner = ", ".join(
        str(tuple(entry)) if len(entry) != 1 else f"({entry[0]},)" for entry in entries
    )
    return f"({inner},)" if len(entries) == 1 else f"({inner})"


class _RowMaker:
    """New ROI cells for one ROI row of a given image type and laterality."""

    def __init__(self, manifest: dict, rng: np.random.Generator) -> None:
        self.rng = rng
        self.by_kind: dict = {}
        for image in manifest["images"]:
            self.by_kind.setdefault((image["type"], image["laterality"]), []).append(image)
        self.defects: dict[str, int] = dict.fromkeys([*ROW_DEFECTS, *BOX_DEFECTS], 0)
        self.missing = 0

    def _box(self, image: dict, box: list[int]) -> list[int]:
        rng = self.rng
        ymin, xmin, ymax, xmax = (int(v + rng.integers(-12, 13)) for v in box)
        rows, columns = image["rows"], image["columns"]
        ymin, xmin = max(ymin, 0), max(xmin, 0)
        ymax, xmax = min(max(ymax, ymin + 8), rows), min(max(xmax, xmin + 8), columns)
        draw = rng.random()
        if draw < BOX_DEFECTS["crosses_border"]:
            self.defects["crosses_border"] += 1
            return [ymin, xmin, ymax, columns + int(rng.integers(5, 200))]
        draw -= BOX_DEFECTS["crosses_border"]
        if draw < BOX_DEFECTS["outside"]:
            self.defects["outside"] += 1
            return [rows + 50, xmin, rows + 50 + (ymax - ymin), xmax]
        draw -= BOX_DEFECTS["outside"]
        if draw < BOX_DEFECTS["inverted"]:
            self.defects["inverted"] += 1
            return [ymax, xmin, ymin, xmax]
        return [ymin, xmin, ymax, xmax]

    def _defect(self, kind: str) -> str | None:
        draw = self.rng.random()
        for name, share in ROW_DEFECTS.items():
            applies = (
                (name in ("frames_out_of_range", "frames_missing") and kind == "3D")
                or (name == "flipped" and kind != "3D")
                or name not in ("frames_out_of_range", "frames_missing", "flipped")
            )
            if applies and draw < share:
                self.defects[name] += 1
                return name
            draw -= share if applies else 0
        return None

    def make(self, kind: str, laterality: str, count: int) -> dict:
        rng = self.rng
        side = laterality if laterality in ("L", "R") else ("L", "R")[int(rng.integers(2))]
        images = self.by_kind[(kind, side)]
        image = images[int(rng.integers(len(images)))]
        count = max(int(count), 1)
        picks = rng.permutation(LESIONS_PER_IMAGE)
        picks = [int(picks[i % LESIONS_PER_IMAGE]) for i in range(count)]
        boxes = [self._box(image, image["boxes"][i]) for i in picks]
        frames = (
            [[image["centre_frames"][i] + d for d in (-1, 0, 1)] for i in picks]
            if kind == "3D"
            else []
        )
        cells = {
            "dicom_path": image["path"],
            "num_ROI": count,
            "Rows": image["rows"],
            "Columns": image["columns"],
            "ImagesInAcquisition": image["frames"],
        }
        defect = self._defect(kind)
        if defect == "missing_file":
            self.missing += 1
            cells["dicom_path"] = str(IMAGES / "missing" / f"{self.missing}.dcm")
        elif defect == "count_mismatch":
            cells["num_ROI"] = count + 1
        elif defect == "dimension_mismatch":
            cells["Rows"] = 2457 if image["rows"] != 2457 else 3328
        elif defect == "flipped":
            boxes = [
                [y0, image["columns"] - x1, y1, image["columns"] - x0] for y0, x0, y1, x1 in boxes
            ]
        elif defect == "frames_out_of_range":
            frames[-1] = [image["frames"] + 2, image["frames"] + 3]
        elif defect == "frames_missing":
            frames = []
        tuple_style = bool(rng.random() < TUPLE_STYLE)
        cells["ROI_coords"] = _format(boxes, tuple_style)
        cells["ROI_frames"] = _format(frames, tuple_style) if frames else "[]"
        if defect == "malformed":
            text = cells["ROI_coords"]
            cells["ROI_coords"] = text[: int(rng.integers(3, len(text) - 1))]
        return cells


def rewrite_roi_rows(base: Path, manifest: dict, regenerate: bool) -> Path:
    """filtered_base with its ROI rows pointed at the benchmark's DICOMs (cached)."""
    path = OUT / "filtered.parquet"
    if path.exists() and not regenerate and path.stat().st_mtime > MANIFEST.stat().st_mtime:
        return path
    started = time.perf_counter()
    table = pq.read_table(base)
    rows = np.flatnonzero(_roi_mask(table))
    kinds = table["FinalImageType"].take(rows).to_pylist()
    sides = table["ImageLateralityFinal"].take(rows).to_pylist()
    counts = table["num_ROI"].take(rows).to_pylist()
    maker = _RowMaker(manifest, np.random.default_rng(SEED + 1))
    new = [maker.make(k, s or "", c or 1) for k, s, c in zip(kinds, sides, counts, strict=True)]
    for name in (
        "dicom_path",
        "num_ROI",
        "Rows",
        "Columns",
        "ImagesInAcquisition",
        "ROI_coords",
        "ROI_frames",
    ):
        index = table.schema.get_field_index(name)
        field = table.schema.field(index)
        values = table[name].to_numpy(zero_copy_only=False).astype(object)
        values[rows] = [cells[name] for cells in new]
        table = table.set_column(index, field, pa.array(values, type=field.type))
    temporary = path.with_suffix(".tmp")
    pq.write_table(table, temporary, row_group_size=65_536)
    temporary.replace(path)
    (OUT / "defects.json").write_text(
        json.dumps({"roi_rows": len(rows), "defects": maker.defects}, indent=1)
    )
    print(
        f"rewrote {len(rows)} ROI rows of {table.num_rows} -> {path} "
        f"in {time.perf_counter() - started:.1f} s; defects {maker.defects}"
    )
    return path


# ---- measured children ---------------------------------------------------------------

PRELUDE = """
import json, time
started = time.perf_counter()
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
def call_stage(run_roi_stage, filtered, out, cache=None):
    # run_roi_stage with the outputs its signature asks for (its outputs changed over time)
    import inspect
    from embedpatch.config import validate_config
    paths = dict(filtered_path=filtered, accepted_path=out + "/accepted.parquet",
                 rejected_path=out + "/rejected.parquet", rejected_csv_path=out + "/rejected.csv",
                 summary_path=out + "/summary.json", rois_config=validate_config({})["rois"],
                 cache_path=cache)
    wanted = inspect.signature(run_roi_stage).parameters
    return run_roi_stage(**{name: value for name, value in paths.items() if name in wanted})
def report(**values):
    values["inner_s"] = time.perf_counter() - started
    values["peak_mb"] = peak_mb()
    print("RESULT " + json.dumps(values))
"""

TABLE_LEVEL = """
from embedpatch.rois.columns import read_filtered, rows_with_roi_cells
from embedpatch.rois.parse import parse_coords, parse_frames
t0 = time.perf_counter()
table = read_filtered({filtered!r})
t1 = time.perf_counter()
mask = rows_with_roi_cells(table)
t2 = time.perf_counter()
coords = [parse_coords(v) for v in table["ROI_coords"]]
frames = [parse_frames(v) for v in table["ROI_frames"]]
t3 = time.perf_counter()
boxes = sum(len(p.entries) for p in coords)
errors = sum(p.error is not None for p in coords) + sum(p.error is not None for p in frames)
report(rows=len(table), roi_rows=int(mask.sum()), boxes=boxes, parse_errors=errors,
       read_s=t1 - t0, mask_s=t2 - t1, parse_s=t3 - t2)
"""

STAGE = """
import os
import embedpatch.dicom.reader as dicom_reader
import embedpatch.rois.stage as roi_stage
opened, header_reads, readers = [], [0], [0]
timing = {{"read_header_s": 0.0, "check_flips_s": 0.0, "read_filtered_s": 0.0}}
io_before = {{}}
def io_bytes():
    return {{k: int(v) for k, v in (l.split(": ") for l in open("/proc/self/io"))}}
original_open = dicom_reader.open_source
def counting_open(path, root=None):
    opened.append(str(path))
    if {cold} and os.path.exists(path):
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    return original_open(path, root)
dicom_reader.open_source = counting_open
def timed(module, name, counter=None):
    original = getattr(module, name)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            timing[name + "_s"] += time.perf_counter() - t
            if counter is not None:
                counter[0] += 1
    setattr(module, name, wrapper)
timed(roi_stage, "read_header", header_reads)
timed(roi_stage, "check_flips", readers)
timed(roi_stage, "read_filtered")
out = {out!r}
os.makedirs(out, exist_ok=True)
io_start = io_bytes()
summary = call_stage(roi_stage.run_roi_stage, {filtered!r}, out, {cache!r})
io_end = io_bytes()
outside = [p for p in opened if not p.startswith({images!r})]
report(rows=summary["rows_in"],
       roi_rows=summary["rows_in"] - summary["rows_without_rois"],
       header_reads=header_reads[0], flip_reads=readers[0], files_opened=len(opened),
       distinct_files=len(set(opened)), opened_outside_roi_files=len(outside),
       storage_read_mb=(io_end["read_bytes"] - io_start["read_bytes"]) / 1e6,
       summary=summary, **timing)
"""

PROFILE = """
import cProfile, io, pstats, os
from embedpatch.rois.stage import run_roi_stage
out = {out!r}
os.makedirs(out, exist_ok=True)
profile = cProfile.Profile()
profile.enable()
call_stage(run_roi_stage, {filtered!r}, out)
profile.disable()
for key in ("tottime", "cumulative"):
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats(key).print_stats(18)
    print("\\n".join(l for l in text.getvalue().splitlines() if l.strip())[:6000])
report()
"""

DOC_WAY = """
import ast
import pandas as pd
from embedpatch.rois.columns import INPUT_COLUMNS
failures = [0]
def literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        failures[0] += 1  # the doc's bare literal_eval would stop the run here
        return None
t0 = time.perf_counter()
table = pd.read_parquet({filtered!r}, columns=INPUT_COLUMNS)
t1 = time.perf_counter()
table["ROI_coords"] = table["ROI_coords"].apply(literal)
table["ROI_frames"] = table["ROI_frames"].apply(literal)
t2 = time.perf_counter()
roi_rows = int(table["ROI_coords"].map(lambda v: bool(v)).sum())
report(rows=len(table), roi_rows=roi_rows, parse_errors=failures[0], read_s=t1 - t0,
       parse_s=t2 - t1)
"""


def run_child(code: str, show_output: bool = False) -> tuple[float, dict]:
    """Wall seconds of a fresh Python process running PRELUDE + code, and its report."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PRELUDE + code], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.stderr.write(done.stdout + done.stderr)
        raise RuntimeError(f"benchmark child failed (exit {done.returncode})")
    lines = done.stdout.splitlines()
    if show_output:
        print("\n".join(line for line in lines if not line.startswith("RESULT ")))
    result = json.loads(next(line for line in reversed(lines) if line.startswith("RESULT "))[7:])
    return wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true", help="rewrite DICOMs and table")
    parser.add_argument("--profile", action="store_true", help="also cProfile the stage")
    parser.add_argument("--skip-cold", action="store_true", help="skip the cold-cache run")
    args = parser.parse_args()
    csv = cached_csv(f"metadata_{ROWS}", lambda: make_metadata(ROWS), False)
    manifest = write_images(args.regenerate)
    filtered = rewrite_roi_rows(filtered_base(csv, args.regenerate), manifest, args.regenerate)
    defects = json.loads((OUT / "defects.json").read_text())
    print(
        f"input: {filtered} ({filtered.stat().st_size / 1e6:.0f} MB), "
        f"{defects['roi_rows']} ROI rows, injected defects {defects['defects']}"
    )
    fmt = dict(filtered=str(filtered), images=str(IMAGES), out=str(OUT / "run"), cache=None)
    cache = OUT / "run" / "cache" / "outcomes.parquet"
    cache.unlink(missing_ok=True)
    cached = STAGE.replace("{cold}", "False").replace("{cache!r}", repr(str(cache)))
    variants = {
        "(a) table level: read + rows_with_roi_cells + parse every ROI cell": TABLE_LEVEL,
        "(b) run_roi_stage end to end (warm page cache)": STAGE.replace("{cold}", "False"),
    }
    if not args.skip_cold:
        variants["(b) run_roi_stage, DICOM page cache dropped before each open"] = STAGE.replace(
            "{cold}", "True"
        )
    variants["(c) doc's way: pandas apply(ast.literal_eval) on every row"] = DOC_WAY
    variants["(d) run_roi_stage, first run filling the outcome cache"] = cached
    variants["(d) run_roi_stage rerun, nothing changed (outcome cache)"] = cached
    results = {}
    for name, code in variants.items():
        wall, result = run_child(code.format(**fmt))
        results[name] = (wall, result)
        extra = {k: v for k, v in result.items() if k != "summary"}
        print(f"  {name}: {wall:.1f} s  {json.dumps(extra, default=str)}", flush=True)
    print()
    print("| variant | rows | rows with ROIs | header reads | wall s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (wall, result) in results.items():
        reads = result.get("header_reads", "-")
        print(
            f"| {name} | {result['rows']:,} | {result['roi_rows']:,} | {reads} "
            f"| {wall:.1f} | {result['peak_mb']:.0f} |"
        )
    stage = results["(b) run_roi_stage end to end (warm page cache)"][1]
    print()
    print("stage summary:", json.dumps(stage["summary"]))
    if args.profile:
        print("\ncProfile of run_roi_stage (warm):")
        run_child(PROFILE.format(**fmt), show_output=True)
    table_wall = results[next(iter(results))][0]
    doc_wall = results["(c) doc's way: pandas apply(ast.literal_eval) on every row"][0]
    warm_wall = results["(b) run_roi_stage end to end (warm page cache)"][0]
    cold = [result for name, (_, result) in results.items() if "page cache dropped" in name]
    cold_text = (
        f"; with every DICOM cold, {cold[0]['storage_read_mb'] / 1e3:.0f} GB come from storage, "
        f"~{cold[0]['storage_read_mb'] / max(cold[0]['flip_reads'], 1):.0f} MB per flip-check "
        "image (the strided memmap read pulls in the whole file)"
        if cold
        else ""
    )
    print(
        f"\nconclusion: table level {table_wall:.1f} s for {stage['rows']:,} rows "
        f"(doc's literal_eval way {doc_wall:.1f} s); whole stage {warm_wall:.1f} s warm, of which "
        f"{stage['header_reads']:,} header reads {stage['read_header_s']:.1f} s and "
        f"{stage['flip_reads']:,} flip-check reads {stage['check_flips_s']:.1f} s; "
        f"non-ROI files opened: {stage['opened_outside_roi_files']}{cold_text}."
    )


if __name__ == "__main__":
    main()
