"""Scale benchmark: Snakemake's cost at 1,000 to 50,000 exams, batched and one job per exam.

For each cohort size N (bench/make_large_cohort.py: N exams with ROIs, tiny uncompressed
images) it runs the project's Snakefile, unchanged, in bench/out/scale/<N>/batched
(config: that cohort, patches.size 32, negatives off, no clinical table), each
Snakemake call in a subprocess, recording its wall time and peak RSS (os.wait4's
rusage of that child: the maximum over it and the descendants it waited for):

  stages       filter + ROI checkpoint on the table less its last 10 exams
  parse        snakemake --list-rules (the Snakefile parse alone)
  dryrun       snakemake -n: the whole workflow, every extraction pending
               (patches.batches 200: at most 200 extraction jobs)
  dryrun_per_exam  the same with patches.batches 100000: about one job per exam, the
               design before batching, for comparison
  run          snakemake --cores 2: every job really run
  noop         the same command again: nothing to do
  add_10       the full table (10 exams more): a real run; which batches and shards ran
               (a folder an earlier add_10 left with the full table first runs
               without those exams again, unmeasured)
  noop_after   nothing to do again
  dryrun_after snakemake -n with every output there
  recheck      --forcerun extract_patches: every batch re-checks its shards (a replaced
               image or a deleted shard is found this way); shards written
               (--repeats K: K-1 more rounds of removing the added exams, unmeasured,
               then add_10 and recheck again, measured; the tables give the first
               round, the ratio lines the medians against the full run)
  combine      -f patches_combined.h5: the combined file rebuilt (and Snakemake's start)
  job          one batch job as a cluster node runs it (--mode remote --target-jobs),
               every shard current: the overhead of a job (its own Snakemake, reading its
               batch's published specifications, the re-check, the outputs)
  job_unpublished  the same without the published specifications (every exam's built in
               the job: what every job did before they were published)

--release: instead of the sizes, the table shaped like the public release
(bench/make_release_cohort.py: 480,000 rows, negatives on 20,000 sampled images without
ROIs and on the images with ROIs); its `add` step adds the last 1 % of the exams.

Usage: .venv/bin/python bench/bench_scale.py [--sizes 1000 10000 50000] [--release]
       [--fresh] [--steps STEP ...] [--repeats K] [--report-only]
--steps runs only those steps (in the order above) on the working folder as the last
run left it, and merges them into the size's saved results, e.g. `--steps recheck`;
each step expects the folder as the steps before it leave it.
Results: bench/out/scale/<N>/bench.json, logs beside it; the table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import IO

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent

from embedpatch.demo import SOURCE_PREFIX  # noqa: E402
from make_large_cohort import OUT, make_cohort  # noqa: E402
from make_release_cohort import ADDED_SHARE, make_release_cohort  # noqa: E402
from make_release_cohort import OUT as RELEASE_BASE  # noqa: E402
from make_release_cohort import ROWS as RELEASE_ROWS  # noqa: E402
from snakemake_start import refuse_slow_start  # noqa: E402

PYTHON = str(ROOT / ".venv" / "bin" / "python")
SNAKEFILE = str(ROOT / "Snakefile")
CORES = 2
ADDED = 10  # exams added for the incremental step
PER_EXAM_BATCHES = 100_000
STEPS = ["stages", "parse", "dryrun", "dryrun_per_exam", "run", "noop", "add_10",
         "noop_after", "dryrun_after", "recheck", "combine", "job", "job_unpublished"]  # fmt: skip
RELEASE_OUT = RELEASE_BASE / str(RELEASE_ROWS)
RELEASE_ADDED = ADDED_SHARE  # share of the release-shaped table's exams its add step adds
RELEASE_PATCHES = {
    "size": 32,
    "negatives_per_image": 1,
    "negative_margin": 4,
    "negative_images": {"with_rois": True, "without_rois": "sample", "sample_count": 20_000},
}


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


def snakemake(*args: str, configfile: Path) -> list[str]:
    return [PYTHON, "-m", "snakemake", "-s", SNAKEFILE, "--configfile", str(configfile), *args]


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


# ---- one size --------------------------------------------------------------------------


def write_config(
    cohort: Path, workdir: Path, batches: int | None = None, patches: dict | None = None
) -> Path:
    config = {
        "metadata": str(workdir / "metadata.csv"),
        "clinical": None,
        "dicom_root": str(cohort / "images"),
        "path_rewrite": [{"from": SOURCE_PREFIX, "to": f"{cohort / 'images'}/"}],
        "results": "results",
        "patches": dict(patches or {"size": 32, "negatives_per_image": 0}),
    }
    if batches is not None:
        config["patches"]["batches"] = batches
    path = workdir / (f"config_{batches}.yaml" if batches else "config.yaml")
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def write_table(cohort: Path, workdir: Path, leave_out: int) -> list[str]:
    """The cohort's table, less its last `leave_out` exams, as workdir/metadata.csv; the
    exams it adds to the table that was there."""
    path = workdir / "metadata.csv"
    before = (
        set(pd.read_csv(path, dtype=str, usecols=["acc_anon"])["acc_anon"])
        if path.exists()
        else set()
    )
    table = pd.read_csv(cohort / "tables" / "metadata.csv", dtype=str, keep_default_na=False)
    exams = list(dict.fromkeys(table["acc_anon"]))
    left_out = exams[len(exams) - leave_out :] if leave_out else []
    table[~table["acc_anon"].isin(left_out)].to_csv(path, index=False)
    return [exam for exam in exams if exam not in before and exam not in left_out]


def run_logs(cohort: Path) -> Path:
    """Where the Snakemake logs of a cohort's steps go."""
    return cohort / "logs_batched"


def first_batch(workdir: Path) -> str:
    """The first batch of the run (the job steps run it)."""
    return sorted((workdir / "results/patches/batches").glob("b*.json"))[0].stem


def shards_written_since(workdir: Path, since: float) -> int:
    return sum(path.stat().st_mtime > since for path in (workdir / "results/patches").glob("*.h5"))


def bench_size(n: int | None, args: argparse.Namespace) -> dict:
    """One cohort's steps: `n` exams of make_large_cohort, or (None) the release-shaped table."""
    release = n is None
    cohort = make_release_cohort() if release else make_cohort(n)
    workdir = cohort / "batched"
    if args.fresh and workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(exist_ok=True)
    patches = RELEASE_PATCHES if release else None
    configfile = write_config(cohort, workdir, patches=patches)
    per_exam_config = write_config(cohort, workdir, PER_EXAM_BATCHES, patches)
    logs = run_logs(cohort)
    logs.mkdir(exist_ok=True)
    info = json.loads((cohort / "cohort.json").read_text())
    n = info["n_exams"]
    added = round(n * RELEASE_ADDED) if release else ADDED
    saved = cohort / "bench.json"
    result: dict = json.loads(saved.read_text()) if saved.exists() and not args.fresh else {}
    result |= {"n_exams": n, "cohort": info, "release": release, "added": added}

    def step(name: str, *sm_args: str, config: Path = configfile) -> dict:
        if name not in args.steps:
            return result.get(name, {})
        log = logs / f"{name}.log"
        record = measure(snakemake(*sm_args, configfile=config), workdir, log, args.timeout)
        record["jobs"] = job_stats(log)
        record["ran"] = ran_rules(log)
        result[name] = record
        saved.write_text(json.dumps(result, indent=2) + "\n")  # a killed run keeps its steps
        killed = " TIMEOUT" if record["timed_out"] else ""
        print(f"  {n} {name}: {record['wall_s']} s, {record['peak_rss_mb']} MB, "
              f"exit {record['exit']}{killed}, jobs {record['ran'] or record['jobs']}",
              flush=True)  # fmt: skip
        return record

    print(f"{n} exams: {info}", flush=True)
    if "stages" in args.steps:
        write_table(cohort, workdir, added)
    step("stages", "--cores", str(CORES), "results/rois/rois.parquet")
    step("parse", "--list-rules")
    step("dryrun", "-n")
    step("dryrun_per_exam", "-n", config=per_exam_config)
    step("run", "--cores", str(CORES))
    step("noop", "--cores", str(CORES))
    if "add_10" in args.steps:
        new_exams = write_table(cohort, workdir, 0)
        if not new_exams:  # an earlier add_10 left the full table
            leave_out_added(cohort, workdir, configfile, added, args)
            new_exams = write_table(cohort, workdir, 0)
        start = time.time()
        add = step("add_10", "--cores", str(CORES))
        add["added_exams"] = new_exams
        add["shards_written"] = shards_written_since(workdir, start)
    step("noop_after", "--cores", str(CORES))
    step("dryrun_after", "-n")
    if "recheck" in args.steps:
        start = time.time()
        recheck = step("recheck", "--cores", str(CORES), "--forcerun", "extract_patches")
        recheck["shards_written"] = shards_written_since(workdir, start)
    if args.repeats > 1 and {"add_10", "recheck"} <= set(args.steps):
        repeat_reruns(cohort, workdir, configfile, added, args, result)
        saved.write_text(json.dumps(result, indent=2) + "\n")
    step("combine", "--cores", str(CORES), "-f", "results/patches_combined.h5")
    if {"job", "job_unpublished"} & set(args.steps):
        target = f"extract_patches:batch={first_batch(workdir)}"
        job = ["--target-jobs", target, "--allowed-rules", "extract_patches", "--cores", "1",
               "--mode", "remote", "--force", "--nolock"]  # fmt: skip
        step("job", *job)
        published = workdir / "results/patches/specs"
        hidden = published.with_name("specs.hidden")
        published.rename(hidden)
        try:
            step("job_unpublished", *job)
        finally:
            hidden.rename(published)
    result["shards"] = len(list((workdir / "results/patches").glob("*.h5")))
    saved.write_text(json.dumps(result, indent=2) + "\n")
    return result


def leave_out_added(
    cohort: Path, workdir: Path, configfile: Path, added: int, args: argparse.Namespace
) -> None:
    """The added exams left out of the table again and a run to match (not measured), so
    the next add_10 really adds them."""
    write_table(cohort, workdir, added)
    log = run_logs(cohort) / "remove.log"
    record = measure(snakemake("--cores", str(CORES), configfile=configfile), workdir, log,
                     args.timeout)  # fmt: skip
    if record["exit"] != 0:
        raise SystemExit(f"the run leaving out the added exams failed, see {log}")


def repeat_reruns(
    cohort: Path,
    workdir: Path,
    configfile: Path,
    added: int,
    args: argparse.Namespace,
    result: dict,
) -> None:
    """args.repeats - 1 more rounds of: the added exams left out again (a run, not
    measured), added back (add_10), every batch re-checked (recheck); each step's wall
    times, the first round's included, go to result[step]["walls"]."""
    logs = run_logs(cohort)
    cores = ["--cores", str(CORES)]
    for step_name in ("add_10", "recheck"):
        result[step_name]["walls"] = [result[step_name]["wall_s"]]
    for round_number in range(2, args.repeats + 1):
        leave_out_added(cohort, workdir, configfile, added, args)
        write_table(cohort, workdir, 0)
        for step_name, extra in (("add_10", []), ("recheck", ["--forcerun", "extract_patches"])):
            log = logs / f"{step_name}_{round_number}.log"
            record = measure(
                snakemake(*cores, *extra, configfile=configfile), workdir, log, args.timeout
            )
            result[step_name]["walls"].append(record["wall_s"])
            print(f"  round {round_number} {step_name}: {record['wall_s']} s", flush=True)


# ---- report -----------------------------------------------------------------------------


def ratio_lines(results: list[dict]) -> str:
    """Each rerun step's median wall time (all rounds) as a share of the full run."""
    lines = []
    for r in results:
        full = r.get("run", {}).get("wall_s")
        if not full:
            continue
        parts = [f"{r['n_exams']:,} exams: full run {full:.1f} s"]
        for step_name, label in (("add_10", "+ exams"), ("recheck", "-R extract_patches")):
            walls = r.get(step_name, {}).get("walls") or [r.get(step_name, {}).get("wall_s")]
            if walls[0] is None:
                continue
            middle = statistics.median(walls)
            spread = (
                f" (rounds: {', '.join(f'{wall:.1f}' for wall in walls)})" if len(walls) > 1 else ""
            )
            parts.append(f"{label} {middle:.1f} s{spread}, {100 * middle / full:.1f} %")
        lines.append("; ".join(parts))
    return "\n".join(lines)


def _cell(record: dict | None) -> str:
    if not record:
        return "n/a"
    text = f"{record['wall_s']:.1f} s / {record['peak_rss_mb'] / 1024:.2f} GB"
    if record.get("timed_out"):
        text += " (killed)"
    elif record.get("exit"):
        text += f" (exit {record['exit']})"
    return text


def _extract_jobs(record: dict | None) -> int:
    return (record or {}).get("jobs", {}).get("extract_patches", 0)


def job_table(results: list[dict]) -> str:
    """The steps added for issue 17: dry run with outputs, combined file, one batch job."""
    lines = [
        "| exams | dry run, all done | no-op rerun | combined file rebuilt "
        "| one batch job, published specifications | one batch job, every spec built |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['n_exams']:,}{' (release-shaped)' if r.get('release') else ''} "
            f"| {_cell(r.get('dryrun_after'))} | {_cell(r.get('noop'))} "
            f"| {_cell(r.get('combine'))} | {_cell(r.get('job'))} "
            f"| {_cell(r.get('job_unpublished'))} |"
        )
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    lines = [
        "| exams | images | parse | dry run, batched (extraction jobs) "
        "| dry run, one job per exam (jobs) | full run | no-op rerun "
        "| + exams: run (exams added, batches rerun, shards written) "
        "| `-R extract_patches` (shards written) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        add = r.get("add_10", {})
        recheck = r.get("recheck", {})
        lines.append(
            f"| {r['n_exams']:,} | {r['cohort'].get('n_images', r['cohort'].get('n_rows')):,} "
            f"| {_cell(r.get('parse'))} "
            f"| {_cell(r.get('dryrun'))} ({_extract_jobs(r.get('dryrun')):,}) "
            f"| {_cell(r.get('dryrun_per_exam'))} ({_extract_jobs(r.get('dryrun_per_exam')):,}) "
            f"| {_cell(r.get('run'))} | {_cell(r.get('noop'))} "
            f"| {_cell(add)} ({r.get('added', ADDED):,}, "
            f"{add.get('ran', {}).get('extract_patches', 0)}, {add.get('shards_written', 0)}) "
            f"| {_cell(recheck)} ({recheck.get('shards_written', 0)}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[1000, 10000, 50000])
    parser.add_argument("--release", action="store_true", help="the release-shaped table")
    parser.add_argument("--timeout", type=float, default=3600, help="per step (s)")
    parser.add_argument("--fresh", action="store_true", help="start from empty working dirs")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=STEPS)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of add_10 and recheck")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        refuse_slow_start()
    results = []
    for n in [None] if args.release else args.sizes:
        saved = (RELEASE_OUT if n is None else OUT / str(n)) / "bench.json"
        if args.report_only:
            if saved.exists():
                results.append(json.loads(saved.read_text()))
            continue
        results.append(bench_size(n, args))
    if results:
        print(table(results))
        print(job_table(results))
        print(ratio_lines(results))


if __name__ == "__main__":
    main()
