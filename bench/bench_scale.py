"""Scale benchmark of the per-exam-job design: Snakemake's cost with N extraction jobs.

For each cohort size (bench/make_large_cohort.py; N exams, one extraction job each) it
runs the project's Snakefile, unchanged, in its own working directory
bench/out/scale/<N>/run (config: that cohort, patches.size 32, negatives off, no
clinical table), each Snakemake call in a subprocess, and records its wall time and
peak RSS (os.wait4's rusage of that child: the maximum over the child and the
descendants it waited for):

  stages   snakemake results/rois/rois.parquet --cores 2 (real: filter + checkpoint)
  parse    snakemake --list-rules (the Snakefile parse alone)
  dryrun   snakemake -n (whole workflow, checkpoint outputs present: N extraction jobs)
  complete the up-to-date state, either
             real:   snakemake --cores 2 (every job really run; per-job overhead measured)
             direct: the extraction library for every exam (2 processes, as the rule's
                     script calls it), then `snakemake --touch --forcerun extract_patches
                     --until extract_patches` so that Snakemake records each job's metadata
                     (params included), then a plain run (should run only the aggregates)
  noop     snakemake --cores 2 once everything is up to date

--touch-study N (default 1000) also runs, in bench/out/scale/<N>/run_touch, the direct
route step by step with a dry run after each step, to show what Snakemake would rerun.
--profile N runs cProfile on `snakemake -n` at size N.

Usage: .venv/bin/python bench/bench_scale.py [--sizes 1000 10000 50000] [--real-max 1000]
       [--timeout 600] [--touch-study 1000] [--profile 50000] [--link]
Results: bench/out/scale/<N>/bench.json, logs next to it; the table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import IO

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "bench"))

from embedpatch.demo import SOURCE_PREFIX  # noqa: E402
from make_large_cohort import OUT, make_cohort  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
SNAKEFILE = str(ROOT / "Snakefile")
CORES = 2
TOUCH_SCHEDULING = ("--cores", "1000", "--scheduler-subsample", "1000")
# The touch executor sleeps Executor.SLEEPING_TIME (0.1 s) per job before touching;
# this runs Snakemake's own CLI with that sleep set to 0 (nothing else changed).
NO_SLEEP_TOUCH = (
    "import sys; import snakemake.executors.touch as t; t.Executor.SLEEPING_TIME = 0; "
    "from snakemake.cli import main; sys.argv[0] = 'snakemake'; main()"
)


# ---- measuring one subprocess ----------------------------------------------------------


def measure(cmd: list[str], cwd: Path, log: Path, timeout: float) -> dict:
    """Run `cmd` (own process group), return wall seconds, peak RSS (MB), exit code."""
    load = os.getloadavg()[0]  # the machine is shared: other workers' load, for the record
    start = time.perf_counter()
    with open(log, "w") as out:
        pid = _spawn(cmd, cwd, out)
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if not timed_out and time.perf_counter() - start > timeout:
            timed_out = True
            os.killpg(pid, signal.SIGTERM)
            kill_at = time.perf_counter() + 20
        if timed_out and time.perf_counter() > kill_at:
            os.killpg(pid, signal.SIGKILL)
        time.sleep(0.02)
    wall = time.perf_counter() - start
    return {
        "cmd": " ".join(cmd),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "user_s": round(usage.ru_utime, 2),
        "sys_s": round(usage.ru_stime, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "load_before": round(load, 2),
        "exit": os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "log": str(log.relative_to(ROOT)),
    }


def _spawn(cmd: list[str], cwd: Path, out: IO) -> int:
    pid = os.fork()
    if pid == 0:  # child: own process group, output to the log
        try:
            os.setpgid(0, 0)
            os.chdir(cwd)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            os.execv(cmd[0], cmd)
        finally:
            os._exit(127)
    return pid


def snakemake(*args: str, configfile: Path, no_sleep_touch: bool = False) -> list[str]:
    head = [PYTHON, "-c", NO_SLEEP_TOUCH] if no_sleep_touch else [PYTHON, "-m", "snakemake"]
    return [*head, "-s", SNAKEFILE, "--configfile", str(configfile), *args]


# ---- reading Snakemake's output ---------------------------------------------------------


def job_stats(log: Path) -> dict[str, int]:
    """The last 'Job stats' table of a Snakemake log: rule -> jobs."""
    text = log.read_text(errors="replace")
    tables = re.findall(r"Job stats:\njob\s+count\n[-\s]+\n((?:\S+\s+\d+\n)+)", text)
    if not tables:
        return {}
    return {row.split()[0]: int(row.split()[1]) for row in tables[-1].strip().splitlines()}


def ran_rules(log: Path) -> dict[str, int]:
    """Jobs that finished in a real run, by rule."""
    text = log.read_text(errors="replace")
    return dict(Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", text)))


STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def rule_phase(log: Path, rule: str) -> dict | None:
    """First start and last finish of `rule`'s jobs in a real run's log (1 s resolution)."""
    now = first = last = None
    for line in log.read_text(errors="replace").splitlines():
        stamp = STAMP.match(line)
        if stamp:
            now = datetime.strptime(stamp.group(1), "%a %b %d %H:%M:%S %Y")
        elif line.rstrip(":") in (f"rule {rule}", f"localrule {rule}") and first is None:
            first = now
        elif f"(Rule: {rule})" in line:
            last = now
    if first is None or last is None:
        return None
    return {"first_start": first.isoformat(), "last_finish": last.isoformat(),
            "seconds": (last - first).total_seconds()}  # fmt: skip


def missing_metadata(log: Path) -> int:
    found = re.search(r"(\d+) jobs have missing provenance/metadata", log.read_text())
    return int(found.group(1)) if found else 0


# ---- the cohort's config and the direct extraction --------------------------------------


def write_config(cohort: Path) -> Path:
    config = {
        "metadata": str(cohort / "tables" / "metadata.csv"),
        "clinical": None,
        "dicom_root": str(cohort / "images"),
        "path_rewrite": [{"from": SOURCE_PREFIX, "to": f"{cohort / 'images'}/"}],
        "results": "results",
        "patches": {"size": 32, "negatives_per_image": 0},
    }
    path = cohort / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def extraction_inputs(configfile: Path, workdir: Path) -> tuple[dict[str, str], str, str]:
    """Every exam's spec, the settings JSON and dicom_root, as the Snakefile computes them."""
    from embedpatch.config import (
        extraction_settings,
        negatives_per_image,
        resolve_inputs,
        validate_config,
    )
    from embedpatch.exam_spec import load_exam_specs

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config = validate_config(_merge(config, yaml.safe_load(configfile.read_text())))
    results = workdir / config["results"]
    specs = load_exam_specs(
        str(results / "rois" / "rois.parquet"),
        str(results / "rois" / "validation_rejected.parquet"),
        str(results / "metadata" / "filtered.parquet"),
        negatives_per_image(config),
    )
    return specs, extraction_settings(config), resolve_inputs(config).dicom_root


def _extract_chunk(work: list[tuple[str, str, str, str]], settings: str, root: str) -> int:
    """The rule's script (workflow/scripts/extract_patches.py), for many exams in one process."""
    from embedpatch.exam_job import extract_exam_shard
    from embedpatch.logs import run_logged

    for spec, shard, log_path, _ in work:
        run_logged(log_path, extract_exam_shard, spec, settings, shard, root)
    return len(work)


def extract_directly(configfile: Path, workdir: Path, processes: int = CORES) -> dict:
    start = time.perf_counter()
    specs, settings, root = extraction_inputs(configfile, workdir)
    (workdir / "results" / "patches").mkdir(parents=True, exist_ok=True)
    (workdir / "results" / "logs" / "extract_patches").mkdir(parents=True, exist_ok=True)
    work = [
        (spec, f"{workdir}/results/patches/{acc}.h5",
         f"{workdir}/results/logs/extract_patches/{acc}.log", acc)
        for acc, spec in sorted(specs.items())
    ]  # fmt: skip
    chunks = [work[i::processes] for i in range(processes)]
    with ProcessPoolExecutor(processes) as pool:
        done = sum(pool.map(_extract_chunk, chunks, [settings] * processes, [root] * processes))
    wall = time.perf_counter() - start
    return {"exams": done, "wall_s": round(wall, 2),
            "core_s_per_exam": round(wall * processes / max(done, 1), 4)}  # fmt: skip


# ---- one size -------------------------------------------------------------------------


def prepare(n: int, args: argparse.Namespace, name: str = "run") -> tuple[Path, Path, Path]:
    cohort = make_cohort(n, link=args.link)
    configfile = write_config(cohort)
    workdir = cohort / name
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(exist_ok=True)
    return cohort, configfile, workdir


def bench_size(n: int, args: argparse.Namespace) -> dict:
    cohort, configfile, workdir = prepare(n, args)
    logs = cohort / "logs"
    logs.mkdir(exist_ok=True)
    info = json.loads((cohort / "cohort.json").read_text())
    result: dict = {"n_exams": n, "cohort": info}

    def step(name: str, *sm_args: str, timeout: float = args.timeout, **kw) -> dict:
        record = measure(snakemake(*sm_args, configfile=configfile, **kw), workdir,
                         logs / f"{name}.log", timeout)  # fmt: skip
        result[name] = record
        killed = " TIMEOUT" if record["timed_out"] else ""
        print(f"  {n} {name}: {record['wall_s']} s, {record['peak_rss_mb']} MB, "
              f"exit {record['exit']}{killed}", flush=True)  # fmt: skip
        return record

    print(f"size {n}: {info['n_images']} images, {info['n_rois']} ROIs", flush=True)
    step("stages", "--cores", str(CORES), "results/rois/rois.parquet", timeout=args.setup_timeout)
    step("parse", "--list-rules")
    step("dryrun", "-n")
    result["dryrun"]["jobs"] = job_stats(logs / "dryrun.log")
    step("dryrun_quiet", "-n", "--quiet", "all")
    result["dryrun_quiet"]["jobs"] = job_stats(logs / "dryrun_quiet.log")

    if n <= args.real_max:
        # A real run, bounded: its jobs give Snakemake's per-job cost.
        real = step("real_run", "--cores", str(CORES))
        real["ran"] = ran_rules(logs / "real_run.log")
        phase = rule_phase(logs / "real_run.log", "extract_patches")
        jobs = real["ran"].get("extract_patches", 0)
        real["extract_phase"] = phase
        result["real"] = {
            "extract_jobs": jobs,
            "extract_phase_s": (phase or {}).get("seconds"),
            "extract_wall_s_per_job": round((phase or {}).get("seconds", 0) / max(jobs, 1), 3),
            # rusage of the whole run (Snakemake and its job processes) per extraction job
            "cpu_s_per_job": round(real["cpu_s"] / max(jobs, 1), 3),
        }
        result["complete_mode"] = "real" if not real["timed_out"] else "real+direct"
    else:
        result["complete_mode"] = "direct"
    if result["complete_mode"] != "real":
        # The library for every exam, then Snakemake's own touch of every extraction job
        # (forced: a touch of jobs that need no run records nothing), then a plain run.
        direct = extract_directly(configfile, workdir)
        result["direct_extract"] = direct
        print(f"  {n} direct extraction: {direct}", flush=True)
        # Wide --cores and --scheduler-subsample: the greedy job selector is quadratic in
        # the number of ready jobs (a forced touch of 10,000 jobs at --cores 2: 336 s).
        touch = step("touch", "--touch", "--forcerun", "extract_patches", "--until",
                     "extract_patches", *TOUCH_SCHEDULING, no_sleep_touch=True,
                     timeout=args.setup_timeout)  # fmt: skip
        touch["jobs"] = job_stats(logs / "touch.log")
        after = step("after_touch", "--cores", str(CORES), timeout=args.setup_timeout)
        after["ran"] = ran_rules(logs / "after_touch.log")
    noop = step("noop", "--cores", str(CORES))
    noop["nothing_to_do"] = "Nothing to be done" in (logs / "noop.log").read_text()
    noop["ran"] = ran_rules(logs / "noop.log")
    (cohort / "bench.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---- the --touch study ----------------------------------------------------------------


def touch_study(n: int, args: argparse.Namespace) -> dict:
    """The direct route, one step at a time, with what a dry run says after each step."""
    cohort, configfile, workdir = prepare(n, args, "run_touch")
    logs = cohort / "logs_touch"
    logs.mkdir(exist_ok=True)
    study: dict = {"n_exams": n}

    def step(name: str, *sm_args: str, **kw) -> dict:
        record = measure(snakemake(*sm_args, configfile=configfile, **kw), workdir,
                         logs / f"{name}.log", args.setup_timeout)  # fmt: skip
        record["jobs"] = job_stats(logs / f"{name}.log")
        record["missing_metadata"] = missing_metadata(logs / f"{name}.log")
        record["ran"] = ran_rules(logs / f"{name}.log")
        study[name] = record
        print(f"  touch study {n} {name}: {record['wall_s']} s, jobs {record['jobs']}, "
              f"missing metadata {record['missing_metadata']}", flush=True)  # fmt: skip
        return record

    step("stages", "--cores", str(CORES), "results/rois/rois.parquet")
    study["direct_extract"] = extract_directly(configfile, workdir)
    print(f"  touch study {n} direct extraction: {study['direct_extract']}", flush=True)
    step("dryrun_before_touch", "-n")
    step("touch_plain", "--touch", "--cores", str(CORES))
    step("dryrun_after_touch_plain", "-n")
    step("touch_forced", "--touch", "--forcerun", "extract_patches", "--until",
         "extract_patches", "--cores", str(CORES))  # fmt: skip
    step("dryrun_after_touch_forced", "-n")
    step("touch_forced_nosleep", "--touch", "--forcerun", "extract_patches", "--until",
         "extract_patches", "--cores", str(CORES), no_sleep_touch=True)  # fmt: skip
    step("plain_run", "--cores", str(CORES))
    step("noop", "--cores", str(CORES))
    (cohort / "touch_study.json").write_text(json.dumps(study, indent=2) + "\n")
    return study


# ---- profile ----------------------------------------------------------------------------


def profile(n: int, args: argparse.Namespace) -> None:
    import pstats

    cohort = OUT / str(n)
    workdir = cohort / "run"
    prof = cohort / "dryrun.prof"
    cmd = [PYTHON, "-m", "cProfile", "-o", str(prof), "-m", "snakemake", "-s", SNAKEFILE,
           "--configfile", str(cohort / "config.yaml"), "-n", "--quiet", "all"]  # fmt: skip
    record = measure(cmd, workdir, cohort / "logs" / "profile.log", args.timeout * 2)
    print(f"profile {n}: {record}", flush=True)
    if prof.exists():
        with open(cohort / "dryrun_profile.txt", "w") as out:
            stats = pstats.Stats(str(prof), stream=out)
            stats.sort_stats("tottime").print_stats(30)
            stats.sort_stats("cumulative").print_stats(60)
        print(f"profile written to {cohort / 'dryrun_profile.txt'}")


# ---- report -----------------------------------------------------------------------------


def _cell(record: dict | None, rss: bool = True) -> str:
    if not record:
        return "n/a"
    text = f"{record['wall_s']:.1f} s (CPU {record['cpu_s']:.0f} s)"
    if rss:
        text += f" / {record['peak_rss_mb'] / 1024:.2f} GB"
    if record.get("timed_out"):
        text += " (killed)"
    elif record.get("exit"):
        text += f" (exit {record['exit']})"
    return text


def table(results: list[dict]) -> str:
    lines = [
        "| exams | images | parse | dry run (time / peak RSS) | dry run -q | jobs in DAG "
        "| no-op run (time / peak RSS) | up-to-date state made by | extraction cost per job |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        jobs = r.get("dryrun", {}).get("jobs", {})
        extract = jobs.get("extract_patches", 0)
        if r.get("complete_mode", "").startswith("real"):
            real = r["real"]
            made = f"real run {_cell(r['real_run'])}, {real['extract_jobs']} jobs"
            if r["complete_mode"] != "real":
                made += f" + direct/touch for the rest ({_cell(r.get('touch'))})"
            per_job = (f"{real['extract_wall_s_per_job']} s wall at {CORES} cores, "
                       f"{real['cpu_s_per_job']} CPU-s (Snakemake job)")  # fmt: skip
        else:
            made = (f"direct {r['direct_extract']['wall_s']:.0f} s + touch "
                    f"{_cell(r.get('touch'))} + aggregates "
                    f"{_cell(r.get('after_touch'))}")  # fmt: skip
            per_job = f"{r['direct_extract']['core_s_per_exam']} core-s (library, no Snakemake)"
        lines.append(
            f"| {r['n_exams']:,} | {r['cohort']['n_images']:,} | {_cell(r.get('parse'))} "
            f"| {_cell(r.get('dryrun'))} | {_cell(r.get('dryrun_quiet'))} "
            f"| {extract:,} + {jobs.get('total', 0) - extract} "
            f"| {_cell(r.get('noop'))} | {made} | {per_job} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[1000, 10000, 50000])
    parser.add_argument("--real-max", type=int, default=1000,
                        help="largest size made up to date by a real Snakemake run")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=600, help="per benchmark step (s)")
    parser.add_argument("--setup-timeout", type=float, default=1500, help="per setup step (s)")
    parser.add_argument("--touch-study", type=int, default=None, metavar="N")
    parser.add_argument("--profile", type=int, default=None, metavar="N")
    parser.add_argument("--link", action="store_true", help="cohorts with hard-linked DICOMs")
    parser.add_argument("--fresh", action="store_true", help="start from empty working dirs")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    results = []
    for n in args.sizes:
        saved = OUT / str(n) / "bench.json"
        if args.report_only:
            if saved.exists():
                results.append(json.loads(saved.read_text()))
            continue
        results.append(bench_size(n, args))
    if args.touch_study and not args.report_only:
        touch_study(args.touch_study, args)
    if args.profile and not args.report_only:
        profile(args.profile, args)
    if results:
        print(table(results))


if __name__ == "__main__":
    main()
