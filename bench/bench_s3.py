"""Benchmark reading DICOMs straight from S3: requests, bytes and wall time per operation,
and for a whole demo-sized run, against downloading the same objects whole.

The store is a real S3 server (moto) behind the project's recording proxy
(tests/s3lab.py, run as a separate process: `s3lab.py serve`), which emulates a
network: every response waits `--latency-ms` before its first byte (default 20 ms,
about an in-region S3 GET's first-byte latency) and its body streams at most at
`--bandwidth-mbps` MB/s (default 100, about one S3 connection's throughput). The
proxy counts every request and every body byte; the numbers below are its counts.

Images: the full-size files of bench/bench_read.py (a 3328 x 2560 2D mammogram and a
64-frame 2457 x 1890 DBT, uncompressed and JPEG 2000 Lossless), plus the JPEG 2000 DBT
rewritten without its Basic Offset Table. Each operation runs on a new reader.

Usage: .venv/bin/python bench/bench_s3.py [--latency-ms 20] [--bandwidth-mbps 100]
       [--skip-run]   (leave out the whole-run comparison)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pydicom
import yaml
from pydicom.encaps import encapsulate, generate_frames

from bench_read import FRAMES, PATCH, ROI_X, ROI_Y, make_inputs
from embedpatch.demo import SOURCE_PREFIX
from embedpatch.demo.cohort import write_demo_cohort
from embedpatch.dicom import ImageReader, read_header
from embedpatch.io import object_store
from embedpatch.io.object_store import StoreOptions
from snakemake_start import refuse_slow_start

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "s3"
BUCKET = "bench-embed"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata lookup off the loopback
}
WINDOW = (ROI_Y, ROI_Y + PATCH, ROI_X, ROI_X + PATCH)


def without_offset_table(source: Path, target: Path) -> Path:
    """`source` rewritten with the same frames and an empty Basic Offset Table."""
    if target.exists():
        return target
    dataset = pydicom.dcmread(source)
    frames = list(generate_frames(dataset.PixelData, number_of_frames=dataset.NumberOfFrames))
    dataset.PixelData = encapsulate(frames, has_bot=False)
    dataset.save_as(target)
    return target


def image_folder() -> Path:
    """bench/out/s3/images/ holding (hard links to) the benchmark's images."""
    inputs = make_inputs(regenerate=False)
    folder = OUT / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in inputs.items():
        link = folder / f"{name}.dcm"
        if not link.exists():
            os.link(path, link)
    without_offset_table(inputs["dbt_j2k"], folder / "dbt_j2k_no_bot.dcm")
    return folder


class Lab:
    """The S3 lab in its own process (moto + recording, latency-emulating proxy)."""

    def __init__(self, latency_ms: float, bandwidth: float, upload: list[Path]) -> None:
        command = [sys.executable, str(ROOT / "tests" / "s3lab.py"), "serve", "--bucket", BUCKET]
        command += ["--latency-ms", str(latency_ms), "--bandwidth-mbps", str(bandwidth)]
        for folder in upload:
            command += ["--upload", str(folder)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.info = json.loads(self.process.stdout.readline())
        self.endpoint = self.info["endpoint_url"]

    def _call(self, method: str, route: str) -> dict:
        request = urllib.request.Request(f"{self.info['control_url']}/{route}", method=method)
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def reset(self) -> None:
        self._call("POST", "reset")

    def totals(self) -> dict:
        return self._call("GET", "stats")["totals"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def measure(lab: Lab, operation: Callable[[], object]) -> dict:
    lab.reset()
    started = time.perf_counter()
    operation()
    wall = time.perf_counter() - started
    totals = lab.totals()
    return {"requests": totals["requests"], "bytes": totals["body_bytes"], "wall_s": wall}


def download(url: str) -> bytes:
    return object_store.current_store().filesystem_for(url).cat_file(url)


def operations(url: dict[str, str]) -> dict[str, Callable[[], object]]:
    def window(name: str, frames: list[int]) -> Callable[[], object]:
        def run() -> None:
            with ImageReader(url[name]) as reader:
                for frame in frames:
                    reader.region(frame, *WINDOW)

        return run

    def frames(name: str, indices: list[int]) -> Callable[[], object]:
        def run() -> None:
            with ImageReader(url[name]) as reader:
                for frame in indices:
                    reader.frame(frame)

        return run

    def flip_view() -> None:
        with ImageReader(url["mammo_2d"]) as reader:
            reader.downsampled(0, 8)

    return {
        "2D: header": lambda: read_header(url["mammo_2d"]),
        "2D: 512 x 512 window": window("mammo_2d", [0]),
        "2D: wrong-side view (every 8th row)": flip_view,
        "DBT raw: header": lambda: read_header(url["dbt_native"]),
        "DBT raw: 512 x 512 window, 1 frame": window("dbt_native", FRAMES[:1]),
        "DBT raw: 512 x 512 window, 5 frames": window("dbt_native", FRAMES),
        "DBT J2K + offset table: header": lambda: read_header(url["dbt_j2k"]),
        "DBT J2K + offset table: 1 frame": frames("dbt_j2k", FRAMES[:1]),
        "DBT J2K + offset table: 5 frames": frames("dbt_j2k", FRAMES),
        "DBT J2K, no offset table: 1 frame": frames("dbt_j2k_no_bot", FRAMES[:1]),
        "DBT J2K, no offset table: 5 frames": frames("dbt_j2k_no_bot", FRAMES),
    }


def per_operation(lab: Lab, folder: Path) -> list[dict]:
    urls = {path.stem: f"s3://{BUCKET}/{path.name}" for path in folder.glob("*.dcm")}
    rows = []
    for name, operation in operations(urls).items():
        rows.append({"operation": name, **measure(lab, operation)})
    for stem, url in sorted(urls.items()):
        size = (folder / f"{stem}.dcm").stat().st_size
        result = measure(lab, lambda url=url: download(url))
        rows.append({"operation": f"whole download: {stem} ({size / 1e6:.0f} MB)", **result})
    return rows


def run_workflow(workdir: Path, config: dict, env: dict) -> float:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]
    command += ["--configfile", str(ROOT / "config.yaml"), str(workdir / "config.yaml")]
    command += ["--directory", str(workdir), "--cores", "2", "-q"]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def whole_run(lab: Lab, cohort: Path, env: dict) -> list[dict]:
    """The demo cohort run from the bucket, against downloading every image whole first."""
    root = f"s3://{BUCKET}"  # the cohort folder is uploaded at the bucket's top
    config = {
        "metadata": f"{root}/tables/metadata.csv",
        "clinical": f"{root}/tables/clinical.csv",
        "dicom_root": f"{root}/images",
        "path_rewrite": [{"from": SOURCE_PREFIX, "to": f"{root}/images/"}],
        "patches": {"negatives_per_image": 2},
    }
    with tempfile.TemporaryDirectory(dir=OUT) as scratch:
        lab.reset()
        wall = run_workflow(Path(scratch) / "from_bucket", config, env)
        totals = lab.totals()
    rows = [
        {
            "operation": "whole run from the bucket",
            "requests": totals["requests"],
            "bytes": totals["body_bytes"],
            "wall_s": wall,
        }
    ]
    images = sorted((cohort / "images").rglob("*.dcm"))
    keys = [f"{root}/images/{path.relative_to(cohort / 'images')}" for path in images]

    def download_all() -> None:
        fs = object_store.current_store().filesystem_for(keys[0])
        fs.cat(keys)  # concurrent whole-object GETs: what a download script does

    result = measure(lab, download_all)
    rows.append({"operation": "download every image whole (then run locally)", **result})
    return rows


def show(rows: list[dict]) -> None:
    print(f"| {'operation':<52} | requests | MB fetched | wall (s) |")
    print(f"|{'-' * 54}|----------|------------|----------|")
    for row in rows:
        megabytes = row["bytes"] / 1e6
        print(
            f"| {row['operation']:<52} | {row['requests']:>8} | {megabytes:>10.3f} | "
            f"{row['wall_s']:>8.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--bandwidth-mbps", type=float, default=100.0)
    parser.add_argument("--skip-run", action="store_true")
    args = parser.parse_args()
    refuse_slow_start()
    os.environ.update(CREDENTIALS)
    folder = image_folder()
    cohort = OUT / "cohort"
    if not (cohort / "truth.json").exists():
        write_demo_cohort(cohort, seed=2026, n_patients=8, scale=0.25, dbt_frames=12)
    upload = [folder] if args.skip_run else [folder, cohort]
    lab = Lab(args.latency_ms, args.bandwidth_mbps, upload)
    try:
        os.environ["AWS_ENDPOINT_URL"] = lab.endpoint
        object_store.configure(StoreOptions(endpoint_url=lab.endpoint))
        print(f"latency {args.latency_ms:g} ms per response, {args.bandwidth_mbps:g} MB/s per body")
        rows = per_operation(lab, folder)
        if not args.skip_run:
            rows += whole_run(lab, cohort, dict(os.environ))
        show(rows)
        (OUT / "results.json").write_text(json.dumps(rows, indent=1))
    finally:
        lab.stop()


if __name__ == "__main__":
    main()
