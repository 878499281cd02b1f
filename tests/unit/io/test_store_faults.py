"""A misbehaving object store never gives wrong pixels: every fault the lab's proxy can
inject, once and always, on raw and JPEG 2000 images, with and without the block cache.

Each case reads frames, windows and a downsampled view of one image through
`ImageReader("s3://...")`, as the stages do (`reread_if_changed` around the whole
image). The outcome is either exactly the pixels of one version of the object (the
local file's, or after a re-upload the replacement's) or a refusal with its reason:
never other pixels. A fault that happens once is retried within storage.max_attempts
and gives the pixels; one that always happens costs exactly max_attempts requests and
refuses the image with a detail naming what the store answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from embedpatch.dicom import ImageReader
from embedpatch.io import object_store
from embedpatch.io.object_store import (
    ImageChanged,
    ImageUnavailable,
    StoreOptions,
    reread_if_changed,
)
from embedpatch.reasons import RoiReason
from helpers.dicom_files import write_dicom
from helpers.s3lab import DUMMY_CREDENTIALS, boto3_client

pytestmark = pytest.mark.slow  # a real S3 server process: full tier

ATTEMPTS = 3
READ_TIMEOUT = 0.5  # seconds; the delay fault waits longer than this
BLOCK = 1 << 16  # the cache's block size (its smallest): several blocks per image


def pixels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.indices(shape).sum(axis=0) * 7
    return ((ramp + rng.integers(0, 500, shape)) % 4096).astype(np.uint16)


def without_offset_table(path: Path, frames: int) -> Path:
    dataset = pydicom.dcmread(path)
    dataset.PixelData = encapsulate(
        list(generate_frames(dataset.PixelData, number_of_frames=frames)), has_bot=False
    )
    dataset.save_as(path)
    return path


@dataclass(frozen=True)
class Image:
    """One kind of image the faults are tried on: how to write it (any seed)."""

    shape: tuple[int, ...]
    syntax: object
    offset_table: bool = True

    def write(self, path: Path, seed: int) -> Path:
        write_dicom(path, pixels(self.shape, seed), self.syntax)
        if not self.offset_table:
            without_offset_table(path, self.shape[0])
        return path


IMAGES = {
    "raw_2d": Image((512, 384), ExplicitVRLittleEndian),
    "raw_frames": Image((6, 256, 192), ExplicitVRLittleEndian),
    "j2k_frames": Image((6, 256, 192), JPEG2000Lossless),
    "j2k_frames_no_bot": Image((6, 256, 192), JPEG2000Lossless, offset_table=False),
}


def read_all(location: str | Path) -> list[np.ndarray]:
    """What a stage reads of one image: the last frame, windows, a downsampled view."""
    with ImageReader(location) as reader:
        last = reader.header.number_of_frames - 1
        return [
            reader.downsampled(0, 4),
            reader.region(0, 10, 74, 20, 84),
            reader.region(last, 150, 250, 100, 190),
            reader.frame(last),
        ]


@dataclass(frozen=True)
class Case:
    """A fault as the proxy injects it, and what the always-version's detail names."""

    kind: dict
    refusal: str


FAULTS = {
    "shifted_range": Case({"kind": "shift_range"}, "Content-Range"),
    "ignored_range": Case({"kind": "ignore_range"}, "Range ignored"),
    "short_body": Case({"kind": "short_body"}, "Not enough data|IncompleteRead"),
    "reset": Case({"kind": "reset"}, "tries"),
    "delay": Case({"kind": "delay", "seconds": 3 * READ_TIMEOUT}, "timeout"),
    "status_500": Case({"status": 500}, "InternalError"),
}


@pytest.fixture
def store(s3lab, monkeypatch, request, tmp_path):
    """This process's store at the lab, with or without a block cache (`request.param`)."""
    for name, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cache = str(tmp_path / "cache") if getattr(request, "param", False) else None
    object_store.configure(
        StoreOptions(
            endpoint_url=s3lab.endpoint_url,
            max_attempts=ATTEMPTS,
            read_timeout=READ_TIMEOUT,
            connect_timeout=READ_TIMEOUT,
            cache_dir=cache,
            cache_block_size=BLOCK,
        )
    )
    yield object_store.current_store()
    object_store.configure(StoreOptions())


@dataclass
class Uploaded:
    url: str
    key: str  # bucket/key, as the proxy's fault rules name it
    local: Path
    truth: list[np.ndarray]  # read_all of the local file


def upload(s3lab, bucket: str, image: Image, folder: Path, seed: int = 1) -> Uploaded:
    local = image.write(folder / f"image-{seed}.dcm", seed)
    key = f"images/{local.name}"
    boto3_client(s3lab.moto_url).upload_file(str(local), bucket, key)
    return Uploaded(f"s3://{bucket}/{key}", f"{bucket}/{key}", local, read_all(local))


def assert_exact(got: list[np.ndarray], truth: list[np.ndarray]) -> None:
    for have, want in zip(got, truth, strict=True):
        np.testing.assert_array_equal(have, want)
        assert have.dtype == want.dtype


def assert_cache_holds_only_true_blocks(store, *versions: Path) -> None:
    """Every cached block is an aligned block of one version's bytes (never a wrong one)."""
    if store.cache is None:
        return
    true_blocks = set()
    for path in versions:
        data = path.read_bytes()
        true_blocks |= {data[start : start + BLOCK] for start in range(0, len(data), BLOCK)}
    cached = list(Path(store.cache.folder).glob("*/*.block"))
    assert all(block.read_bytes() in true_blocks for block in cached)


def faulted(s3lab, key: str) -> list:
    return [r for r in s3lab.proxy.records() if r.key == key.split("/", 1)[1] and r.fault]


CACHE = [pytest.param(False, id="no_cache"), pytest.param(True, id="cache")]


@pytest.mark.parametrize("store", CACHE, indirect=True)
@pytest.mark.parametrize("image_name", IMAGES)
@pytest.mark.parametrize("fault_name", FAULTS)
def test_a_fault_once_is_retried_and_gives_exact_pixels(
    store, s3lab, s3_bucket, tmp_path, image_name, fault_name
):
    image = upload(s3lab, s3_bucket, IMAGES[image_name], tmp_path)
    before = object_store.TRANSFER.as_dict()["requests"]
    s3lab.proxy.reset()
    # the first pixel read after the header's (skip the HEAD and the header's GET)
    s3lab.proxy.add_fault(image.key, times=1, skip=1, methods=["GET"], **FAULTS[fault_name].kind)
    assert_exact(reread_if_changed(lambda: read_all(image.url)), image.truth)
    assert len(faulted(s3lab, image.key)) == 1
    # every request, the retry included, is counted for the summaries
    assert object_store.TRANSFER.as_dict()["requests"] - before == len(s3lab.proxy.records())
    assert_cache_holds_only_true_blocks(store, image.local)


@pytest.mark.parametrize("store", CACHE, indirect=True)
@pytest.mark.parametrize("image_name", IMAGES)
@pytest.mark.parametrize("fault_name", FAULTS)
def test_a_fault_always_refuses_the_image_after_max_attempts(
    store, s3lab, s3_bucket, tmp_path, image_name, fault_name
):
    image = upload(s3lab, s3_bucket, IMAGES[image_name], tmp_path)
    s3lab.proxy.reset()
    s3lab.proxy.add_fault(image.key, skip=1, methods=["GET"], **FAULTS[fault_name].kind)
    with pytest.raises(ImageUnavailable, match=FAULTS[fault_name].refusal) as raised:
        reread_if_changed(lambda: read_all(image.url))
    assert raised.value.reason == RoiReason.IMAGE_UNAVAILABLE
    assert len(faulted(s3lab, image.key)) == ATTEMPTS  # one loop of tries, not nested ones
    assert_cache_holds_only_true_blocks(store, image.local)
    s3lab.proxy.clear_faults()  # the store behaves again: the same reads are exact
    assert_exact(read_all(image.url), image.truth)


@pytest.mark.parametrize("store", CACHE, indirect=True)
@pytest.mark.parametrize("image_name", IMAGES)
def test_an_object_replaced_after_the_head_is_read_again_whole(
    store, s3lab, s3_bucket, tmp_path, image_name
):
    kind = IMAGES[image_name]
    image = upload(s3lab, s3_bucket, kind, tmp_path)
    replacement = kind.write(tmp_path / "replacement.dcm", seed=2)
    s3lab.proxy.add_fault(
        image.key, kind="replace", times=1, skip=1, replacements=[replacement.read_bytes()]
    )
    with pytest.raises(ImageChanged):  # the read it happened in: refused, not mixed
        read_all(image.url)
    s3lab.proxy.clear_faults()
    s3lab.proxy.put_upstream(image.key, image.local.read_bytes())  # the first version again
    s3lab.proxy.add_fault(
        image.key, kind="replace", times=1, skip=1, replacements=[replacement.read_bytes()]
    )
    # read again from scratch: every pixel from the replacement, none from the first
    assert_exact(reread_if_changed(lambda: read_all(image.url)), read_all(replacement))
    assert_cache_holds_only_true_blocks(store, image.local, replacement)


@pytest.mark.parametrize("store", CACHE, indirect=True)
@pytest.mark.parametrize("image_name", ["raw_2d", "j2k_frames"])
def test_an_object_replaced_at_every_read_is_image_changed(
    store, s3lab, s3_bucket, tmp_path, image_name
):
    kind = IMAGES[image_name]
    image = upload(s3lab, s3_bucket, kind, tmp_path)
    versions = [kind.write(tmp_path / f"v{seed}.dcm", seed) for seed in (2, 3)]
    s3lab.proxy.add_fault(
        image.key, kind="replace", skip=1, replacements=[v.read_bytes() for v in versions]
    )
    with pytest.raises(ImageChanged) as raised:
        reread_if_changed(lambda: read_all(image.url))
    assert raised.value.reason == RoiReason.IMAGE_CHANGED
    assert "replaced while it was read" in str(raised.value)
    assert_cache_holds_only_true_blocks(store, image.local, *versions)


def test_a_store_ignoring_if_match_is_caught_by_the_answers_etag(store, s3lab, s3_bucket, tmp_path):
    """A store that does not honour If-Match still names the version it served."""
    image = upload(s3lab, s3_bucket, IMAGES["raw_2d"], tmp_path)
    replacement = IMAGES["raw_2d"].write(tmp_path / "replacement.dcm", seed=2)
    s3lab.proxy.add_fault(
        image.key,
        kind="replace",
        times=1,
        skip=1,
        replacements=[replacement.read_bytes()],
        drop_if_match=True,
    )
    with pytest.raises(ImageChanged, match="ETag"):
        read_all(image.url)
    forwarded = [r for r in s3lab.proxy.records() if r.fault == "replace"]
    assert len(forwarded) == 1 and "If-Match" in forwarded[0].headers  # asked, not honoured
