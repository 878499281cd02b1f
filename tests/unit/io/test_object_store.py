"""Images read straight from a real S3 server (moto, behind the lab's recording proxy):
same pixels as the local file, bounded requests and bytes, faults recorded, not fatal."""

import time

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from embedpatch.dicom import ImageMissing, ImageOutsideRoot, ImageReader, read_header
from embedpatch.dicom.header import HEADER_PREFIX
from embedpatch.io import object_store
from embedpatch.io.object_store import (
    ImageUnavailable,
    ObjectStore,
    StoreError,
    StoreOptions,
    coalesce,
    preflight,
)
from embedpatch.io.tables import read_table
from embedpatch.reasons import RoiReason
from helpers.dicom_files import write_dicom
from helpers.s3lab import DUMMY_CREDENTIALS, boto3_client, upload_tree

pytestmark = pytest.mark.slow  # a real S3 server process: full tier

FRAMES, ROWS, COLUMNS = 24, 256, 192
WINDOW = (40, 104, 30, 94)  # a 64 x 64 window
KIB = 1024


@pytest.fixture
def store(s3lab, monkeypatch):
    """This process's object store pointed at the lab's proxy, with dummy credentials, and
    no instance-metadata lookups (they would leave the loopback)."""
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    object_store.configure(StoreOptions(endpoint_url=s3lab.endpoint_url, max_attempts=3))
    yield object_store.current_store()
    object_store.configure(StoreOptions())


def volume(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.indices((FRAMES, ROWS, COLUMNS)).sum(axis=0) * 5
    return ((ramp + rng.integers(0, 300, ramp.shape)) % 4096).astype(np.uint16)


def without_offset_table(path):
    """`path` rewritten with the same frames and no Basic Offset Table."""
    dataset = pydicom.dcmread(path)
    frames = list(generate_frames(dataset.PixelData, number_of_frames=FRAMES))
    dataset.PixelData = encapsulate(frames, has_bot=False)
    dataset.save_as(path)
    return path


@pytest.fixture(scope="module")
def dbt_files(tmp_path_factory):
    """DBT volumes: uncompressed, JPEG 2000 Lossless with and without an offset table."""
    folder = tmp_path_factory.mktemp("dbt")
    files = {
        "native": write_dicom(folder / "native.dcm", volume(1), ExplicitVRLittleEndian),
        "j2k": write_dicom(folder / "j2k.dcm", volume(2), JPEG2000Lossless),
        "j2k_no_bot": write_dicom(folder / "j2k_no_bot.dcm", volume(2), JPEG2000Lossless),
    }
    without_offset_table(files["j2k_no_bot"])
    return folder, files


@pytest.fixture
def bucket_dbt(s3lab, s3_bucket, dbt_files):
    folder, files = dbt_files
    upload_tree(s3lab.moto_url, folder, s3_bucket, "dbt")
    return {name: f"s3://{s3_bucket}/dbt/{path.name}" for name, path in files.items()}, files


def traffic(s3lab) -> tuple[int, int]:
    """(requests, response body bytes) the proxy has seen since its last reset."""
    records = s3lab.proxy.records()
    return len(records), sum(record.body_bytes for record in records)


def test_every_demo_image_reads_the_same_from_the_bucket(store, demo_cohort_s3):
    images = sorted((demo_cohort_s3.local / "images").rglob("*.dcm"))
    assert len(images) > 20
    for path in images:
        url = f"{demo_cohort_s3.root}/images/{path.relative_to(demo_cohort_s3.local / 'images')}"
        try:
            with ImageReader(path) as local:
                last = local.header.number_of_frames - 1
                expected = local.frame(last), local.region(0, 1, 7, 2, 9), local.downsampled(0, 3)
        except Exception as error:  # the demo's deliberately broken files: same refusal
            with pytest.raises(type(error)):
                ImageReader(url, f"{demo_cohort_s3.root}/images")
            continue
        with ImageReader(url, f"{demo_cohort_s3.root}/images") as remote:
            got = remote.frame(last), remote.region(0, 1, 7, 2, 9), remote.downsampled(0, 3)
        for want, have in zip(expected, got, strict=True):
            np.testing.assert_array_equal(have, want)
            assert have.dtype == want.dtype


def test_a_header_costs_one_head_and_one_64_kib_get(store, s3lab, bucket_dbt):
    urls, files = bucket_dbt
    s3lab.proxy.reset()
    header = read_header(urls["native"])
    assert (header.rows, header.columns, header.number_of_frames) == (ROWS, COLUMNS, FRAMES)
    requests, received = traffic(s3lab)
    assert requests <= 2 and received <= 128 * KIB
    assert received == HEADER_PREFIX < files["native"].stat().st_size / 10


def test_an_uncompressed_window_costs_its_rows(store, s3lab, bucket_dbt):
    urls, files = bucket_dbt
    y0, y1, x0, x1 = WINDOW
    with ImageReader(files["native"]) as local:
        expected = local.region(FRAMES - 1, *WINDOW)
    s3lab.proxy.reset()
    with ImageReader(urls["native"]) as remote:
        np.testing.assert_array_equal(remote.region(FRAMES - 1, *WINDOW), expected)
        np.testing.assert_array_equal(remote.region(FRAMES - 1, y0 + 1, y1, x0, x1), expected[1:])
    requests, received = traffic(s3lab)
    rows_bytes = (y1 - y0) * COLUMNS * 2
    assert requests == 3  # HEAD, header, the window's rows (the second window is inside them)
    assert received <= rows_bytes + HEADER_PREFIX


@pytest.mark.parametrize("name", ["j2k", "j2k_no_bot"])
def test_an_encapsulated_frame_costs_its_fragment(store, s3lab, bucket_dbt, name):
    urls, files = bucket_dbt
    with ImageReader(files[name]) as local:
        expected = local.frame(FRAMES // 2)
    dataset = pydicom.dcmread(files[name])
    fragment = max(len(f) for f in generate_frames(dataset.PixelData, number_of_frames=FRAMES))
    s3lab.proxy.reset()
    with ImageReader(urls[name]) as remote:
        np.testing.assert_array_equal(remote.frame(FRAMES // 2), expected)
    requests, received = traffic(s3lab)
    # HEAD, header (holding the offset table), the file's last 8 bytes (the delimiter),
    # the frame; without a table, one read per item header the header's 64 KiB did not
    # hold, instead of the tail (once per reader: the index serves every frame).
    if name == "j2k":
        assert requests == 4
    else:
        assert FRAMES - 2 <= requests - 3 <= FRAMES
    assert received <= HEADER_PREFIX + fragment + 8 * (FRAMES + 2)
    assert received < files[name].stat().st_size / 4


def test_a_missing_object_is_image_missing(store, s3_bucket):
    with pytest.raises(ImageMissing) as raised:
        ImageReader(f"s3://{s3_bucket}/nothing/here.dcm")
    assert raised.value.reason == RoiReason.IMAGE_MISSING


def test_an_object_outside_the_root_is_refused_before_any_request(store, s3lab, bucket_dbt):
    urls, _ = bucket_dbt
    s3lab.proxy.reset()
    root = urls["native"].rsplit("/", 2)[0] + "/other"
    with pytest.raises(ImageOutsideRoot):
        ImageReader(urls["native"], root)
    assert traffic(s3lab) == (0, 0)


def test_access_denied_is_image_unavailable(store, s3lab, bucket_dbt):
    urls, _ = bucket_dbt
    s3lab.proxy.add_fault("*/native.dcm", status=403, code="AccessDenied")
    with pytest.raises(ImageUnavailable, match="access denied") as raised:
        ImageReader(urls["native"])
    assert raised.value.reason == RoiReason.IMAGE_UNAVAILABLE


def test_a_throttled_request_is_retried(store, s3lab, bucket_dbt):
    urls, files = bucket_dbt
    s3lab.proxy.add_fault("*/native.dcm", status=503, times=2, methods=["GET"], code="SlowDown")
    with ImageReader(urls["native"]) as remote, ImageReader(files["native"]) as local:
        np.testing.assert_array_equal(remote.frame(3), local.frame(3))


def test_a_dead_object_costs_its_attempts_and_seconds(store, s3lab, bucket_dbt):
    urls, _ = bucket_dbt
    s3lab.proxy.add_fault("*/native.dcm", status=503, methods=["GET"], code="SlowDown")
    started = time.monotonic()
    with pytest.raises(ImageUnavailable, match="object store error"):
        ImageReader(urls["native"])
    assert time.monotonic() - started < 10
    gets = [r for r in s3lab.proxy.records() if r.method == "GET"]
    assert len(gets) == store.options.max_attempts


def test_preflight_says_what_to_set(store, s3lab, s3_bucket, monkeypatch):
    preflight({"dicom_root": f"s3://{s3_bucket}"})  # an empty bucket answers
    with pytest.raises(StoreError, match="does not exist: check the bucket"):
        preflight({"dicom_root": "s3://no-such-bucket-here/images"})
    s3lab.proxy.add_fault(f"{s3_bucket}*", status=403, code="AccessDenied")
    with pytest.raises(StoreError, match="refused"):
        preflight({"dicom_root": f"s3://{s3_bucket}/images"})
    s3lab.proxy.clear_faults()
    for name in DUMMY_CREDENTIALS:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    object_store.configure(StoreOptions(endpoint_url=s3lab.endpoint_url, region="us-east-1"))
    with pytest.raises(StoreError, match="no usable AWS credentials"):
        preflight({"dicom_root": f"s3://{s3_bucket}/images"})


def test_an_unreachable_endpoint_stops_preflight_quickly(store, monkeypatch):
    object_store.configure(
        StoreOptions(endpoint_url="http://127.0.0.1:9", max_attempts=2, connect_timeout=1)
    )
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot reach the object store"):
        preflight({"dicom_root": "s3://embed/images"})
    assert time.monotonic() - started < 15


def test_the_cache_serves_reruns_and_never_a_replaced_object(store, s3lab, bucket_dbt, tmp_path):
    urls, files = bucket_dbt
    options = StoreOptions(endpoint_url=s3lab.endpoint_url, cache_dir=str(tmp_path / "cache"))
    object_store.configure(options)
    with ImageReader(files["native"]) as local:
        expected = local.region(FRAMES - 1, *WINDOW)
    gets = []
    for _ in range(2):
        s3lab.proxy.reset()
        with ImageReader(urls["native"]) as remote:
            np.testing.assert_array_equal(remote.region(FRAMES - 1, *WINDOW), expected)
        gets.append([r.body_bytes for r in s3lab.proxy.records() if r.method == "GET"])
    # the header's block, the window's (the file's last, shorter one); then nothing
    assert len(gets[0]) == 2 and max(gets[0]) == 1 << 20 and gets[1] == []
    replacement = write_dicom(tmp_path / "replacement.dcm", volume(9))
    bucket, key = urls["native"].removeprefix("s3://").split("/", 1)
    boto3_client(s3lab.moto_url).upload_file(str(replacement), bucket, key)
    with ImageReader(urls["native"]) as remote:  # a new ETag: no stale block served
        np.testing.assert_array_equal(
            remote.region(FRAMES - 1, *WINDOW), volume(9)[FRAMES - 1, 40:104, 30:94]
        )


def test_coalesce_merges_nearby_ranges_and_cuts_them_back():
    ranges = [(100, 10), (0, 10), (5000, 4), (112, 8)]
    merged, where = coalesce(ranges, gap=90)
    assert merged == [(0, 120), (5000, 4)]
    data = [bytes(range(120)), b"WXYZ"]
    cut = [data[index][start : start + length] for index, start, length in where]
    assert cut == [bytes(range(100, 110)), bytes(range(10)), b"WXYZ", bytes(range(112, 120))]


def test_each_process_makes_its_own_client(store, s3lab):
    other = ObjectStore(StoreOptions(endpoint_url=s3lab.endpoint_url))
    first = other.filesystem("s3")
    assert other.filesystem("s3") is first
    other._filesystems = {(pid + 1, proto): fs for (pid, proto), fs in other._filesystems.items()}
    assert other.filesystem("s3") is not first  # as after a fork: a new pid, a new client


def test_a_downsampled_view_then_windows_fetch_the_frame_once(store, s3lab, bucket_dbt):
    """Every 8th row is fetched as the frame (the rows lie within the coalescing gap), so the
    windows cut next (the negatives' and ROIs' of one image) fetch nothing more."""
    urls, files = bucket_dbt
    with ImageReader(files["native"]) as local:
        view, window = local.downsampled(7, 8), local.region(7, *WINDOW)
    s3lab.proxy.reset()
    with ImageReader(urls["native"]) as remote:
        np.testing.assert_array_equal(remote.downsampled(7, 8), view)
        np.testing.assert_array_equal(remote.region(7, *WINDOW), window)
    requests, received = traffic(s3lab)
    assert requests == 3  # HEAD, header, frame
    assert received <= HEADER_PREFIX + ROWS * COLUMNS * 2


def test_a_table_read_counts_the_bytes_it_fetched(store, s3lab, demo_cohort_s3):
    table = f"{demo_cohort_s3.root}/tables/metadata.csv"
    before = object_store.TRANSFER.as_dict()
    s3lab.proxy.reset()
    read_table(table, ["acc_anon", "anon_dicom_path"])
    after = object_store.TRANSFER.as_dict()
    requests, received = traffic(s3lab)
    assert after["bytes"] - before["bytes"] == received > 0
    assert after["requests"] - before["requests"] <= requests
