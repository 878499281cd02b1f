"""The S3 lab (tests/s3lab.py) checked with real clients: s3fs, boto3 and raw HTTP.

Also pins what s3fs 2026.9 does over the wire (HEAD on open, ranged GETs per cache type),
which exception each failure becomes, and how retries multiply (s3fs retries on top of
botocore's).
"""

import errno
import http.client
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import botocore.exceptions
import pydicom
import pytest
from boto3.s3.transfer import TransferConfig

from helpers.project import TESTS
from helpers.s3lab import (
    LabControl,
    S3Lab,
    boto3_client,
    create_bucket,
    free_port,
    port_open,
    s3_filesystem,
    upload_tree,
)

pytestmark = pytest.mark.slow  # a real S3 server process: full tier


BLOCK = 2**16
FAST_FAIL = {"retries": {"total_max_attempts": 1, "mode": "standard"}}


def put(lab: S3Lab, bucket: str, key: str, size: int) -> bytes:
    """Store `size` random bytes at bucket/key, behind the proxy (not recorded)."""
    data = os.urandom(size)
    boto3_client(lab.moto_url).put_object(Bucket=bucket, Key=key, Body=data)
    return data


def wire(lab: S3Lab) -> list[tuple[str, str | None, int, int]]:
    """(method, Range, status, body bytes) of each recorded request."""
    return [(r.method, r.range, r.status, r.body_bytes) for r in lab.proxy.records()]


# What s3fs sends ------------------------------------------------------------------------
def test_open_sends_a_head_and_each_read_one_exact_range(s3lab, s3_bucket, s3_fs_factory):
    data = put(s3lab, s3_bucket, "dir/image.dcm", 300_000)
    fs = s3_fs_factory(default_block_size=BLOCK, default_cache_type="none")
    with fs.open(f"{s3_bucket}/dir/image.dcm") as f:
        assert wire(s3lab) == [("HEAD", None, 200, 0)]
        f.seek(1000)
        assert f.read(150_000) == data[1000:151_000]
        f.seek(120_000)
        assert f.read(1000) == data[120_000:121_000]
    assert wire(s3lab)[1:] == [
        ("GET", "bytes=1000-150999", 206, 150_000),
        ("GET", "bytes=120000-120999", 206, 1000),  # cache "none": read again
    ]
    records = s3lab.proxy.records()
    assert {r.path for r in records} == {f"{s3_bucket}/dir/image.dcm"}
    # After the HEAD, GETs carry If-Match: the ETag it returned.
    assert records[1].headers["If-Match"].strip('"')
    totals = s3lab.proxy.stats()["totals"]
    assert totals["requests"] == 3
    assert totals["body_bytes"] == 151_000
    assert totals["by_method"] == {
        "HEAD": {"requests": 1, "body_bytes": 0},
        "GET": {"requests": 2, "body_bytes": 151_000},
    }


def test_readahead_fetches_one_block_past_each_read(s3lab, s3_bucket, s3_fs_factory):
    data = put(s3lab, s3_bucket, "obj", 1_000_000)
    fs = s3_fs_factory(default_block_size=BLOCK, default_cache_type="readahead")
    with fs.open(f"{s3_bucket}/obj") as f:
        f.seek(100_000)
        assert f.read(5000) == data[100_000:105_000]
        assert f.read(50_000) == data[105_000:155_000]  # inside the read-ahead: no request
        assert f.read(20_000) == data[155_000:175_000]
    assert wire(s3lab) == [
        ("HEAD", None, 200, 0),
        ("GET", f"bytes=100000-{105_000 + BLOCK - 1}", 206, 5000 + BLOCK),
        # The cached tail is kept; the fetch starts where the cache ends.
        ("GET", f"bytes={105_000 + BLOCK}-{175_000 + BLOCK - 1}", 206, 70_000),
    ]


def test_blockcache_fetches_every_block_a_read_touches(s3lab, s3_bucket, s3_fs_factory):
    data = put(s3lab, s3_bucket, "obj", 1_000_000)
    fs = s3_fs_factory(default_block_size=BLOCK, default_cache_type="blockcache")
    with fs.open(f"{s3_bucket}/obj") as f:
        f.seek(100_000)
        assert f.read(150_000) == data[100_000:250_000]  # blocks 1, 2, 3
    gets = wire(s3lab)[1:]
    assert gets == [
        ("GET", f"bytes={n * BLOCK}-{(n + 1) * BLOCK - 1}", 206, BLOCK) for n in (1, 2, 3)
    ]


def test_cat_file_and_cat_ranges_send_no_head(s3lab, s3_bucket, s3_fs_factory):
    data = put(s3lab, s3_bucket, "obj", 600_000)
    fs = s3_fs_factory(default_block_size=BLOCK)
    assert fs.cat_file(f"{s3_bucket}/obj", start=10, end=20) == data[10:20]
    assert fs.cat_ranges([f"{s3_bucket}/obj"] * 2, [0, 500_000], [5, 500_100]) == [
        data[:5],
        data[500_000:500_100],
    ]
    assert sorted(wire(s3lab)) == [
        ("GET", "bytes=0-4", 206, 5),
        ("GET", "bytes=10-19", 206, 10),
        ("GET", "bytes=500000-500099", 206, 100),
    ]


def test_open_with_a_size_still_heads_at_the_first_read(s3lab, s3_bucket, s3_fs_factory):
    """s3fs passes `details` (a HEAD) to every range fetch, so size= saves nothing."""
    data = put(s3lab, s3_bucket, "obj", 10_000)
    fs = s3_fs_factory(default_block_size=BLOCK, default_cache_type="none")
    with fs.open(f"{s3_bucket}/obj", size=len(data)) as f:
        assert wire(s3lab) == []
        f.seek(5)
        assert f.read(10) == data[5:15]
    assert wire(s3lab) == [("HEAD", None, 200, 0), ("GET", "bytes=5-14", 206, 10)]
    assert "If-Match" not in s3lab.proxy.records()[1].headers


def test_a_listing_spares_the_heads_but_info_is_never_cached(s3lab, s3_bucket, s3_fs_factory):
    put(s3lab, s3_bucket, "dir/a", 100)
    put(s3lab, s3_bucket, "dir/b", 100)
    fs = s3_fs_factory(default_cache_type="none")
    fs.info(f"{s3_bucket}/dir/a")
    fs.info(f"{s3_bucket}/dir/a")
    assert [r.method for r in s3lab.proxy.records()] == ["HEAD", "HEAD"]
    s3lab.proxy.reset()
    assert len(fs.ls(f"{s3_bucket}/dir")) == 2
    for name in "ab":
        with fs.open(f"{s3_bucket}/dir/{name}") as f:
            f.read(3)
    records = s3lab.proxy.records()
    assert [(r.method, r.key, r.range) for r in records] == [
        ("GET", "", None),  # ListObjectsV2
        ("GET", "dir/a", "bytes=0-2"),
        ("GET", "dir/b", "bytes=0-2"),
    ]
    assert "list-type=2" in records[0].query


# Byte-exact pass-through ----------------------------------------------------------------
def test_multipart_upload_and_full_download_are_byte_exact(s3lab, s3_bucket, s3_fs_factory):
    data = os.urandom(6 * 2**20 + 123)
    client = boto3_client(s3lab.endpoint_url)
    config = TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20)
    client.upload_fileobj(io.BytesIO(data), s3_bucket, "big.bin", Config=config)
    uploads = s3lab.proxy.records()
    # CreateMultipartUpload, two UploadPart (in either order), CompleteMultipartUpload.
    assert [r.method for r in uploads] == ["POST", "PUT", "PUT", "POST"]
    assert sorted(r.request_bytes for r in uploads[1:3]) == [2**20 + 123, 5 * 2**20]
    s3lab.proxy.reset()
    fs = s3_fs_factory(default_block_size=8 * 2**20)
    assert fs.cat_file(f"{s3_bucket}/big.bin") == data
    assert sum(r.body_bytes for r in s3lab.proxy.records()) == len(data)
    assert client.head_object(Bucket=s3_bucket, Key="big.bin")["ContentLength"] == len(data)


def test_a_chunked_request_body_is_forwarded(s3lab, s3_bucket):
    pieces = [os.urandom(n) for n in (1, 70_000, 3)]
    connection = http.client.HTTPConnection("127.0.0.1", s3lab.proxy.port, timeout=10)
    connection.request("PUT", f"/{s3_bucket}/chunked", body=iter(pieces), encode_chunked=True)
    response = connection.getresponse()
    response.read()
    connection.close()
    assert response.status == 200
    stored = boto3_client(s3lab.moto_url).get_object(Bucket=s3_bucket, Key="chunked")
    assert stored["Body"].read() == b"".join(pieces)
    assert s3lab.proxy.records()[0].request_bytes == 70_004


# Faults and the exceptions they become --------------------------------------------------
def test_503_n_times_is_retried_by_botocore(s3lab, s3_bucket, s3_fs_factory):
    data = put(s3lab, s3_bucket, "obj", 1000)
    s3lab.proxy.add_fault(f"{s3_bucket}/obj", status=503, times=1)
    client = boto3_client(s3lab.endpoint_url, retries={"total_max_attempts": 2, "mode": "standard"})
    assert client.get_object(Bucket=s3_bucket, Key="obj")["Body"].read() == data
    assert [r.status for r in s3lab.proxy.records()] == [503, 200]
    assert [r.fault for r in s3lab.proxy.records()] == ["SlowDown", None]

    s3lab.proxy.reset()
    s3lab.proxy.add_fault(f"{s3_bucket}/obj", status=503, times=1, methods=["HEAD"])
    fs = s3_fs_factory(
        retries=1,
        default_cache_type="none",
        config_kwargs={"retries": {"total_max_attempts": 2, "mode": "standard"}},
    )
    with fs.open(f"{s3_bucket}/obj") as f:
        assert f.read() == data
    assert [(r.method, r.status) for r in s3lab.proxy.records()] == [
        ("HEAD", 503),
        ("HEAD", 200),
        ("GET", 206),
    ]


def test_s3fs_retries_a_slowdown_itself_on_top_of_botocore(s3lab, s3_bucket, s3_fs_factory):
    """s3fs's own loop (fs.retries, 0.1 s * 1.7**i apart) retries any error saying SlowDown."""
    data = put(s3lab, s3_bucket, "obj", 1000)
    s3lab.proxy.add_fault(f"{s3_bucket}/obj", status=503, times=2)
    fs = s3_fs_factory(retries=3, config_kwargs=FAST_FAIL)
    started = time.monotonic()
    assert fs.cat_file(f"{s3_bucket}/obj", start=0, end=100) == data[:100]
    assert time.monotonic() - started < 2
    assert [r.status for r in s3lab.proxy.records()] == [503, 503, 206]


def test_503_forever_fails_after_a_bounded_number_of_requests(s3lab, s3_bucket, s3_fs_factory):
    put(s3lab, s3_bucket, "obj", 1000)
    s3lab.proxy.add_fault(f"{s3_bucket}/obj", status=503)
    fs = s3_fs_factory(
        retries=2, config_kwargs={"retries": {"total_max_attempts": 2, "mode": "standard"}}
    )
    started = time.monotonic()
    with pytest.raises(OSError) as failed:
        fs.cat_file(f"{s3_bucket}/obj", start=0, end=10)
    assert time.monotonic() - started < 4  # 2 botocore backoffs of at most 1 s, 1 of s3fs
    assert type(failed.value) is OSError
    assert failed.value.errno == errno.EBUSY
    assert failed.value.strerror == "Please reduce your request rate."
    # s3fs's loop (2) times botocore's attempts (2): the body says SlowDown.
    assert [r.status for r in s3lab.proxy.records()] == [503] * 4

    # A HEAD's 503 has no body, so no SlowDown: s3fs's loop leaves it to botocore.
    s3lab.proxy.reset()
    fs = s3_fs_factory(retries=5, config_kwargs=FAST_FAIL)
    with pytest.raises(OSError) as failed:
        fs.open(f"{s3_bucket}/obj")
    assert type(failed.value) is OSError
    assert failed.value.errno == errno.EBUSY
    assert failed.value.strerror == "Service Unavailable"
    assert [r.method for r in s3lab.proxy.records()] == ["HEAD"]


def test_403_is_a_permission_error_and_never_retried(s3lab, s3_bucket, s3_fs_factory):
    put(s3lab, s3_bucket, "secret", 100)
    s3lab.proxy.add_fault(f"{s3_bucket}/secret", status=403)
    fs = s3_fs_factory()
    with pytest.raises(PermissionError, match="Forbidden"):  # HEAD: no body, no message
        fs.open(f"{s3_bucket}/secret")
    with pytest.raises(PermissionError, match="Access Denied"):
        fs.cat_file(f"{s3_bucket}/secret", start=0, end=10)
    assert [(r.method, r.status) for r in s3lab.proxy.records()] == [
        ("HEAD", 403),
        ("GET", 403),
    ]


def test_404_is_a_file_not_found_error(s3lab, s3_bucket, s3_fs_factory):
    fs = s3_fs_factory()
    with pytest.raises(FileNotFoundError):
        fs.open(f"{s3_bucket}/missing")
    # A HEAD's 404 leads s3fs to list the prefix: it might be a "directory".
    assert [(r.method, r.status) for r in s3lab.proxy.records()] == [("HEAD", 404), ("GET", 200)]
    s3lab.proxy.reset()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fs.cat_file(f"{s3_bucket}/missing", start=0, end=10)
    with pytest.raises(FileNotFoundError, match="bucket does not exist"):
        fs.cat_file("no-such-bucket/key", start=0, end=10)
    assert [r.status for r in s3lab.proxy.records()] == [404, 404]


def test_timeouts_are_oserrors_but_a_refused_connection_is_not(s3lab, s3_bucket, s3_fs_factory):
    put(s3lab, s3_bucket, "slow", 100)
    s3lab.proxy.set_latency(400)
    fs = s3_fs_factory(retries=1, config_kwargs={"read_timeout": 0.1, **FAST_FAIL})
    with pytest.raises(botocore.exceptions.ReadTimeoutError) as failed:
        fs.cat_file(f"{s3_bucket}/slow", start=0, end=10)
    assert isinstance(failed.value, OSError)  # through botocore's vendored requests
    assert len(s3lab.proxy.records()) == 1  # waits for the proxy's side to end

    s3lab.proxy.set_latency(0)
    refused = f"http://127.0.0.1:{free_port()}"
    closed = s3_filesystem(refused, config_kwargs={"connect_timeout": 1, **FAST_FAIL})
    closed.retries = 1
    with pytest.raises(botocore.exceptions.EndpointConnectionError) as failed:
        closed.cat_file(f"{s3_bucket}/slow", start=0, end=10)
    assert not isinstance(failed.value, OSError)


# Latency and bandwidth ------------------------------------------------------------------
def test_latency_delays_each_request(s3lab, s3_bucket, s3_fs_factory):
    put(s3lab, s3_bucket, "obj", 1000)
    fs = s3_fs_factory()
    fs.cat_file(f"{s3_bucket}/obj", start=0, end=10)  # connect and sign once, unmeasured
    s3lab.proxy.reset()
    s3lab.proxy.set_latency(150)
    started = time.monotonic()
    for _ in range(2):
        fs.cat_file(f"{s3_bucket}/obj", start=0, end=10)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 1.5
    assert all(0.15 <= r.seconds < 1.0 for r in s3lab.proxy.records())


def test_bandwidth_caps_each_response_body(s3lab, s3_bucket, s3_fs_factory):
    put(s3lab, s3_bucket, "obj", 2_000_000)
    fs = s3_fs_factory()
    fs.cat_file(f"{s3_bucket}/obj", start=0, end=10)
    s3lab.proxy.set_latency(0, bandwidth_mbps=10)
    started = time.monotonic()
    assert len(fs.cat_file(f"{s3_bucket}/obj", start=0, end=1_000_000)) == 1_000_000
    assert 0.09 <= time.monotonic() - started < 1.5  # 1 MB at 10 MB/s: 0.1 s


# Control endpoint, CLI, lifetime --------------------------------------------------------
def test_control_endpoint_drives_the_proxy(s3lab, s3_bucket):
    control = LabControl(s3lab.endpoint_url)
    data = put(s3lab, s3_bucket, "obj", 100)
    config = control.configure(
        {"rules": [{"key": f"{s3_bucket}/o*", "status": 403, "times": 1}], "latency_ms": 5}
    )
    assert config["latency_ms"] == 5
    assert config["rules"][0]["status"] == 403
    client = boto3_client(s3lab.endpoint_url)
    with pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        client.get_object(Bucket=s3_bucket, Key="obj")
    assert client.get_object(Bucket=s3_bucket, Key="obj")["Body"].read() == data
    assert control.faults()["rules"][0]["hits"] == 1
    stats = control.stats()
    assert [(r["method"], r["status"], r["fault"]) for r in stats["requests"]] == [
        ("GET", 403, "AccessDenied"),
        ("GET", 200, None),
    ]
    assert stats["totals"]["faults"] == 1
    control.reset()
    assert control.stats()["totals"]["requests"] == 0
    bad = urllib.request.Request(f"{s3lab.endpoint_url}/_lab/faults", data=b"{", method="POST")
    with pytest.raises(urllib.error.HTTPError, match="400"):
        urllib.request.urlopen(bad, timeout=10)
    assert control.clear_faults() == {"rules": [], "latency_ms": 0.0, "bandwidth_mbps": None}


def read_line(process: subprocess.Popen, timeout: float) -> str:
    """The lab's next line; poll, not select, which refuses descriptors above 1023."""
    poller = select.poll()
    poller.register(process.stdout, select.POLLIN)
    assert poller.poll(timeout * 1000), "no line from the lab in time"
    return process.stdout.readline()


def test_cli_serves_until_terminated(tmp_path):
    (tmp_path / "images" / "a").mkdir(parents=True)
    (tmp_path / "images" / "a" / "1.dcm").write_bytes(b"x" * 1000)
    (tmp_path / "images" / "top.txt").write_bytes(b"y")
    command = [sys.executable, str(TESTS / "helpers" / "s3lab.py"), "serve", "--latency-ms", "20"]
    command += ["--bandwidth-mbps", "100", "--bucket", "cli-bucket"]
    command += ["--upload", str(tmp_path / "images"), "--prefix", "imgs"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(read_line(process, timeout=30))
        assert info["uploaded"] == 2
        control = LabControl(info["endpoint_url"])
        assert control.faults()["latency_ms"] == 20
        assert control.faults()["bandwidth_mbps"] == 100
        fs = s3_filesystem(info["endpoint_url"])
        assert fs.cat_file("cli-bucket/imgs/a/1.dcm") == b"x" * 1000
        assert sorted(fs.find("cli-bucket/imgs")) == [
            "cli-bucket/imgs/a/1.dcm",
            "cli-bucket/imgs/top.txt",
        ]
        assert control.stats()["totals"]["requests"] >= 2
        proxy_port = int(info["endpoint_url"].rsplit(":", 1)[1])
        moto_port = int(info["moto_url"].rsplit(":", 1)[1])
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    assert not port_open("127.0.0.1", proxy_port)
    assert not port_open("127.0.0.1", moto_port)


def test_the_lab_is_gone_after_its_context(tmp_path):
    with S3Lab() as lab:
        moto = lab.moto.process
        assert moto.poll() is None
        assert port_open("127.0.0.1", lab.moto.port)
        assert port_open("127.0.0.1", lab.proxy.port)
        create_bucket(lab.endpoint_url, "short-lived")
        (tmp_path / "d").mkdir()
        (tmp_path / "d" / "f.bin").write_bytes(b"z" * 10)
        assert upload_tree(lab.endpoint_url, tmp_path, "short-lived", "p/") == ["p/d/f.bin"]
    assert moto.poll() is not None
    assert not port_open("127.0.0.1", lab.moto.port)
    assert not port_open("127.0.0.1", lab.proxy.port)


def test_clients_find_the_lab_through_aws_endpoint_url(s3lab, s3_bucket, s3_env, monkeypatch):
    import s3fs

    put(s3lab, s3_bucket, "obj", 10)
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    assert len(fs.cat_file(f"{s3_bucket}/obj", start=0, end=10)) == 10
    assert [r.path for r in s3lab.proxy.records()] == [f"{s3_bucket}/obj"]


def test_demo_cohort_is_served_and_a_dicom_header_costs_few_requests(
    s3lab, demo_cohort_s3, s3_fs_factory
):
    local = demo_cohort_s3.local
    expected = sorted(
        p.relative_to(local).as_posix()
        for folder in ("images", "tables")
        for p in (local / folder).rglob("*")
        if p.is_file()
    )
    assert sorted(k.removeprefix("cohort/") for k in demo_cohort_s3.keys) == expected
    key = next(k for k in demo_cohort_s3.keys if k.endswith(".dcm"))
    fs = s3_fs_factory(default_block_size=BLOCK, default_cache_type="readahead")
    with fs.open(f"{demo_cohort_s3.bucket}/{key}") as f:
        header = pydicom.dcmread(f, stop_before_pixels=True)
    assert header == pydicom.dcmread(local / key.removeprefix("cohort/"), stop_before_pixels=True)
    records = s3lab.proxy.records()
    assert [r.method for r in records][:1] == ["HEAD"]
    assert len(records) <= 4, wire(s3lab)
