"""The whole workflow run straight from a bucket on a real S3 server (moto behind the lab's
proxy): the same outputs as a local run, no credential in any output, per-image faults
recorded (and retried on the next run), a wrong bucket stopped before any job."""

import json
import os
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_slurm import BATCHES, PROFILE

from embedpatch.demo import SOURCE_PREFIX
from helpers.s3lab import DUMMY_CREDENTIALS
from helpers.snakemake_runner import run_snakemake

pytestmark = pytest.mark.workflow

PATCHES = {"size": 48, "negatives_per_image": 1}
SECRET = f"secret-{uuid.uuid4().hex}"  # planted as the secret key: must reach no output


def write_config(workdir: Path, metadata: str, clinical: str, root: str, **extra) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "metadata": metadata,
        "clinical": clinical,
        "dicom_root": root,
        "path_rewrite": [{"from": SOURCE_PREFIX, "to": f"{root}/"}],
        **extra,
        "patches": PATCHES | extra.get("patches", {}),
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir / "config.yaml"


def lab_env(s3lab) -> dict[str, str]:
    """The process environment with the lab as endpoint, a planted secret, and no
    instance-metadata lookups (they would leave the loopback)."""
    return {
        **os.environ,
        **DUMMY_CREDENTIALS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": s3lab.endpoint_url,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run(workdir: Path, env: dict | None = None, *args: str, cores: int | None = 2):
    return run_snakemake(
        workdir, *args, configfiles=(workdir / "config.yaml",), env=env, cores=cores
    )


def s3_config(workdir: Path, cohort, **extra) -> Path:
    return write_config(
        workdir,
        f"{cohort.root}/tables/metadata.csv",
        f"{cohort.root}/tables/clinical.csv",
        f"{cohort.root}/images",
        **extra,
    )


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, demo_cohort):
    workdir = tmp_path_factory.mktemp("local_run")
    tables = demo_cohort / "tables"
    write_config(
        workdir,
        str(tables / "metadata.csv"),
        str(tables / "clinical.csv"),
        str(demo_cohort / "images"),
    )
    result = run(workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "results"


@pytest.fixture(scope="module")
def s3_run(tmp_path_factory, s3lab_session, demo_cohort_s3):
    workdir = tmp_path_factory.mktemp("s3_run")
    s3_config(workdir, demo_cohort_s3)
    s3lab_session.proxy.reset()
    result = run(workdir, lab_env(s3lab_session))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, s3lab_session.proxy.records()


def test_the_bucket_run_writes_what_the_local_run_writes(local_run, s3_run):
    workdir, _ = s3_run
    results = workdir / "results"
    local_manifest = pd.read_parquet(local_run / "manifest.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(results / "manifest.parquet"), local_manifest)
    shards = sorted(path.name for path in (local_run / "patches").glob("*.h5"))
    assert shards and shards == sorted(path.name for path in (results / "patches").glob("*.h5"))
    for name in shards:
        assert (results / "patches" / name).read_bytes() == (
            local_run / "patches" / name
        ).read_bytes(), name


def test_the_summary_states_what_each_stage_fetched(s3_run):
    workdir, records = s3_run
    summary = json.loads((workdir / "results/summary.json").read_text())
    fetched = summary["object_store"]
    assert fetched["rois"]["bytes"] > 0 and fetched["patches"]["bytes"] > 0
    assert fetched["filter"]["requests"] >= 2  # the metadata and clinical tables
    assert fetched["filter"]["bytes"] > 0
    image_bytes = sum(r.body_bytes for r in records if r.key.endswith(".dcm"))
    assert fetched["rois"]["bytes"] + fetched["patches"]["bytes"] <= image_bytes


def test_no_credential_reaches_any_output_or_log(s3_run):
    workdir, _ = s3_run
    for path in workdir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_image_faults_are_recorded_and_retried_by_rerunning_the_stages(
    tmp_path, s3lab, demo_cohort_s3, local_run
):
    manifest = pd.read_parquet(local_run / "manifest.parquet")
    with_rois = manifest.loc[manifest["label"] == "roi", "anon_dicom_path"].unique()
    negatives_only = sorted(set(manifest["anon_dicom_path"]) - set(with_rois))
    denied, missing = (path.removeprefix(SOURCE_PREFIX) for path in sorted(with_rois)[:2])
    throttled = negatives_only[0].removeprefix(SOURCE_PREFIX)  # first read by extraction
    proxy = s3lab.proxy
    proxy.add_fault(f"*/{denied}", status=403, code="AccessDenied")
    proxy.add_fault(f"*/{missing}", status=404, code="NoSuchKey")
    proxy.add_fault(f"*/{throttled}", status=503, methods=["GET"], code="SlowDown")
    s3_config(tmp_path, demo_cohort_s3)
    env = lab_env(s3lab)
    result = run(tmp_path, env, "results/manifest.parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    rejected = pd.read_parquet(tmp_path / "results/rois/rejected.parquet")
    found = rejected.set_index("anon_dicom_path")[["reason", "stage"]].apply(tuple, axis=1)
    assert found[SOURCE_PREFIX + denied] == ("image_unavailable", "validate")
    assert found[SOURCE_PREFIX + missing] == ("image_missing", "validate")
    assert found[SOURCE_PREFIX + throttled] == ("image_unavailable", "extract")
    proxy.clear_faults()
    # the store answers again: rerunning both stages reads those images
    result = run(
        tmp_path, env, "results/manifest.parquet", "-R", "validate_rois", "extract_patches"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    again = pd.read_parquet(tmp_path / "results/manifest.parquet")
    pd.testing.assert_frame_equal(again, manifest)


def test_an_image_answering_other_ranges_is_refused_and_no_other_shard_changes(
    tmp_path, s3lab, demo_cohort_s3, local_run
):
    """A store that answers every GET of one image with other bytes (shifted
    Content-Range, right length): that image is refused, never cut from wrong pixels."""
    manifest = pd.read_parquet(local_run / "manifest.parquet")
    rois = manifest[manifest["label"] == "roi"]
    shifted = sorted(rois["anon_dicom_path"].unique())[-1]
    s3lab.proxy.add_fault(
        f"*/{shifted.removeprefix(SOURCE_PREFIX)}", kind="shift_range", methods=["GET"]
    )
    s3_config(tmp_path, demo_cohort_s3)
    result = run(tmp_path, lab_env(s3lab), "results/manifest.parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    rejected = pd.read_parquet(tmp_path / "results/rois/rejected.parquet")
    refused = rejected[rejected["anon_dicom_path"] == shifted]
    assert list(refused["reason"]) == ["image_unavailable"]
    assert "Content-Range" in refused["detail"].iloc[0]
    got = pd.read_parquet(tmp_path / "results/manifest.parquet")
    assert shifted not in set(got["anon_dicom_path"])
    exam_shard = manifest.loc[manifest["anon_dicom_path"] == shifted, "shard"].iloc[0]
    others = sorted(set(manifest["shard"]) - {exam_shard})
    assert others and set(others) <= set(got["shard"])
    for shard in others:
        assert (tmp_path / "results" / shard).read_bytes() == (local_run / shard).read_bytes()


def test_a_wrong_bucket_stops_before_any_job(tmp_path, s3lab, demo_cohort_s3):
    write_config(
        tmp_path,
        "s3://no-such-embed-bucket/tables/metadata.csv",
        None,
        "s3://no-such-embed-bucket/images",
    )
    result = run(tmp_path, lab_env(s3lab))
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if line.startswith("Object store:")]
    assert message and "does not exist: check the bucket name and prefix" in message[0]
    assert not (tmp_path / "results").exists()


@pytest.mark.slurm
def test_a_run_from_the_bucket_through_slurm_equals_the_local_run(
    tmp_path, cluster, s3lab_session, demo_cohort_s3, local_run
):
    """The SLURM profile as it is, every job reading the bucket from its own node."""
    s3_config(tmp_path, demo_cohort_s3, **BATCHES)
    result = run(
        tmp_path,
        lab_env(s3lab_session),
        "results/manifest.parquet",
        "--profile",
        str(PROFILE),
        "--slurm-init-seconds-before-status-checks",
        "1",
        cores=None,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    results = tmp_path / "results"
    manifest = pd.read_parquet(results / "manifest.parquet")
    pd.testing.assert_frame_equal(manifest, pd.read_parquet(local_run / "manifest.parquet"))
    for shard in manifest["shard"].unique():
        assert (results / shard).read_bytes() == (local_run / shard).read_bytes(), shard
