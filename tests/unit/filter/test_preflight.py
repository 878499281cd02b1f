"""The path check before any job, on hand-made tables and real files: a wrong prefix or
root stops the run with what a table path became; a partly wrong table gives a warning."""

import time

import pandas as pd
import pyarrow as pa
import pytest

from embedpatch.filter import preflight as path_preflight
from embedpatch.filter.preflight import (
    PathCheckError,
    check_paths,
    most_common_prefix,
    preflight_paths,
    sample_paths,
)
from embedpatch.io import object_store
from embedpatch.io.object_store import StoreOptions
from embedpatch.io.tables import CSV_BLOCK_BYTES, HEADER_BLOCK_BYTES
from helpers.s3lab import DUMMY_CREDENTIALS, upload_tree

NAS = "/mnt/NAS2/mammo/anon_dicom/"


def image_rows(n: int, cohort: str = "cohort_1") -> list[str]:
    """Table paths of `n` images, as the maintainers' storage names them."""
    return [f"{NAS}{cohort}/{100 + i}/1.2.{i}/1.3.{i}/1.4.{i}.dcm" for i in range(n)]


def write_images(root, table_paths) -> None:
    """A small file for each table path, below `root` where a correct rewrite puts it."""
    for path in table_paths:
        target = root / path.removeprefix(NAS)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"DICM")


def write_table(path, table_paths, **columns) -> str:
    table = pd.DataFrame({"empi_anon": range(len(table_paths)), "anon_dicom_path": table_paths})
    table = table.assign(**columns)
    if path.suffix == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False)
    return str(path)


@pytest.fixture
def cohort(tmp_path):
    """A CSV table of 40 images and its DICOM root, every image present."""
    paths = image_rows(40)
    root = tmp_path / "images"
    write_images(root, paths)
    return write_table(tmp_path / "metadata.csv", paths), root, paths


def test_a_right_mapping_passes_silently(cohort):
    table, root, _ = cohort
    assert preflight_paths(table, str(root), [(NAS, f"{root}/")]) is None
    check = check_paths(table, str(root), [(NAS, f"{root}/")])
    assert check.found == len(check.probes) == 40


def test_a_wrong_prefix_stops_with_the_path_what_it_became_and_the_fix(cohort):
    table, root, paths = cohort
    wrong = NAS.replace("anon_dicom/", "anon_dicom_WRONG/")
    with pytest.raises(PathCheckError) as raised:
        preflight_paths(table, str(root), [(wrong, f"{root}/")])
    message = str(raised.value)
    assert f"none of 40 image paths sampled from the 40 rows of {table}" in message
    assert f"table path:    {paths[0]}" in message  # the first row is always sampled
    assert f"became:        {paths[0]} (outside dicom_root)" in message
    assert f"from prefixes: {wrong} (they start 0 of the 40 sampled paths)" in message
    assert f"most common prefix of the table's paths: {NAS}cohort_1/ (100% of the sample)" in (
        message
    )
    assert f"      - from: {NAS}\n        to: {root}/" in message


def test_a_root_on_the_wrong_disk_stops_saying_the_folder_does_not_exist(cohort, tmp_path):
    table, _, paths = cohort
    elsewhere = tmp_path / "other_disk/images"
    with pytest.raises(PathCheckError) as raised:
        preflight_paths(table, str(elsewhere), [(NAS, f"{elsewhere}/")])
    message = str(raised.value)
    assert f"under dicom_root {elsewhere} (that folder does not exist)" in message
    became = f"{elsewhere}/{paths[0].removeprefix(NAS)} (no such file)"
    assert f"became:        {became}" in message
    assert "this rewrite finds" not in message  # nothing to find under a missing root


def test_relative_table_paths_without_a_rewrite_are_taken_under_the_root(tmp_path):
    paths = [path.removeprefix(NAS) for path in image_rows(5)]
    write_images(tmp_path / "images", paths)
    table = write_table(tmp_path / "metadata.parquet", paths)
    assert preflight_paths(table, str(tmp_path / "images")) is None
    with pytest.raises(PathCheckError, match="from prefixes: none"):
        preflight_paths(table, str(tmp_path))


def test_some_paths_not_found_give_a_warning_with_the_share_and_examples(cohort, tmp_path):
    _, root, paths = cohort
    absent = image_rows(10, cohort="cohort_9")
    table = write_table(tmp_path / "mixed.csv", paths + absent)
    warning = preflight_paths(table, str(root), [(NAS, f"{root}/")])
    assert warning.startswith(f"10 of 50 image paths sampled from {table} (20%) lead to no image")
    examples = [line for line in warning.splitlines() if line.startswith("  ")]
    assert examples == [
        f"  {path} -> {root}/{path.removeprefix(NAS)} (no such file)" for path in absent[:3]
    ]


def test_paths_leaving_the_root_count_as_not_found(cohort, tmp_path):
    _, root, paths = cohort
    table = write_table(tmp_path / "escape.csv", [*paths[:3], f"{NAS}../../etc/passwd"])
    warning = preflight_paths(table, str(root), [(NAS, f"{root}/")])
    assert "1 of 4" in warning and "(outside dicom_root)" in warning


def test_tables_it_cannot_check_are_left_to_stage_1(tmp_path):
    """No anon_dicom_path column, no rows, only empty paths: stage 1 says what is wrong."""
    no_column = tmp_path / "no_column.csv"
    pd.DataFrame({"empi_anon": [1]}).to_csv(no_column, index=False)
    header_only = write_table(tmp_path / "header_only.csv", [])
    empty_paths = write_table(tmp_path / "empty_paths.csv", ["", " "])
    for table in (str(no_column), header_only, empty_paths):
        assert check_paths(table, str(tmp_path)) is None


def test_the_sample_is_seeded_bounded_and_keeps_the_first_row():
    paths = pa.array([None, "", *(f"p/{i}.dcm" for i in range(1000))], pa.string())
    sample = sample_paths(paths, 50)
    assert len(sample) == 51 and sample[0] == "p/0.dcm"
    assert sample == sample_paths(paths, 50)
    assert sample != sample_paths(paths, 50, seed=1)
    assert sample == sorted(sample, key=lambda path: int(path[2:-4]))  # table order
    assert sample_paths(paths, 5000) == [f"p/{i}.dcm" for i in range(1000)]


def test_the_most_common_prefix_is_the_deepest_most_paths_share():
    two_cohorts = image_rows(6, "cohort_1") + image_rows(4, "cohort_2")
    assert most_common_prefix(two_cohorts) == (NAS, 1.0)
    assert most_common_prefix(image_rows(10))[0].startswith(f"{NAS}cohort_1/")
    mixed = ["/a/x/1.dcm", "/a/x/2.dcm", "/b/3.dcm", "c/4.dcm"]
    assert most_common_prefix(mixed) == ("/", 0.75)
    assert most_common_prefix(["c/1.dcm", "d/2.dcm", "c/3.dcm"]) == ("c/", 2 / 3)


def test_the_check_reads_a_large_table_in_seconds(tmp_path):
    """100,000 rows of long paths and a wide row: the column alone is read."""
    paths = image_rows(100_000)
    table = write_table(tmp_path / "big.csv", paths, notes="x" * 200)
    write_images(tmp_path / "images", paths[:1])
    started = time.perf_counter()
    warning = preflight_paths(table, str(tmp_path / "images"), [(NAS, f"{tmp_path}/images/")])
    assert time.perf_counter() - started < 5
    assert warning.startswith("300 of 301 image paths")


@pytest.fixture
def lab_store(s3lab, monkeypatch):
    """This process's object store pointed at the lab, with dummy credentials."""
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    object_store.configure(StoreOptions(endpoint_url=s3lab.endpoint_url, max_attempts=1))
    yield object_store.current_store()
    object_store.configure(StoreOptions())


@pytest.mark.slow
def test_a_bucket_root_is_checked_object_by_object(lab_store, s3lab, demo_cohort_s3):
    from embedpatch.demo import SOURCE_PREFIX

    root = f"{demo_cohort_s3.root}/images"
    table = f"{demo_cohort_s3.root}/tables/metadata.csv"
    local = demo_cohort_s3.local
    on_disk = check_paths(
        str(local / "tables/metadata.csv"),
        str(local / "images"),
        [(SOURCE_PREFIX, f"{local}/images/")],
    )
    in_bucket = check_paths(table, root, [(SOURCE_PREFIX, f"{root}/")])
    assert 0 < in_bucket.found == on_disk.found < len(on_disk.probes)  # the demo's odd rows
    assert [p.outcome for p in in_bucket.probes] == [p.outcome for p in on_disk.probes]
    wrong = SOURCE_PREFIX.replace("anon_dicom/", "anon_dicom_WRONG/")
    with pytest.raises(PathCheckError) as raised:
        preflight_paths(table, root, [(wrong, f"{root}/")])
    assert f"      - from: {SOURCE_PREFIX}\n        to: {root}/" in str(raised.value)
    s3lab.proxy.add_fault("*.dcm", status=403, code="AccessDenied")
    with pytest.raises(PathCheckError, match=r"the store refused it \(.*access denied"):
        preflight_paths(table, root, [(SOURCE_PREFIX, f"{root}/")])


@pytest.mark.slow
def test_a_csv_in_a_bucket_is_sampled_from_its_first_blocks(
    lab_store, s3lab, s3_bucket, tmp_path, monkeypatch
):
    """Stage 1 reads the whole object: the check reads only its start (4 MiB here, one
    GET) and its header (twice, at most 64 KiB each)."""
    paths = image_rows(600_000)
    folder = tmp_path / "tables"
    folder.mkdir()
    write_table(folder / "metadata.csv", paths)
    size = (folder / "metadata.csv").stat().st_size
    upload_tree(s3lab.moto_url, folder, s3_bucket, "tables")
    table, root = f"s3://{s3_bucket}/tables/metadata.csv", str(tmp_path / "images")
    rewrite = [(NAS, f"{root}/")]
    monkeypatch.setattr(path_preflight, "REMOTE_CSV_BYTES", CSV_BLOCK_BYTES)
    s3lab.proxy.reset()
    check = check_paths(table, root, rewrite)
    fetched = sum(record.body_bytes for record in s3lab.proxy.records())
    assert not check.whole_table and 0 < check.rows < len(paths)
    assert {probe.table_path for probe in check.probes} <= set(paths[: check.rows])
    assert CSV_BLOCK_BYTES <= fetched < CSV_BLOCK_BYTES + 3 * HEADER_BLOCK_BYTES < size, fetched
    with pytest.raises(PathCheckError, match=f"sampled from the first {check.rows:,} rows of"):
        preflight_paths(table, root, rewrite)
    monkeypatch.setattr(path_preflight, "REMOTE_CSV_BYTES", size)
    whole = check_paths(table, root, rewrite)
    assert whole.whole_table and whole.rows == len(paths)
