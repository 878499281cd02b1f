"""Tests of frame-by-frame DICOM reading: values equal pydicom's, one open per image."""

import builtins
import functools
import io
import math
import os

import numpy as np
import pydicom
import pydicom.pixels
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from embedpatch.dicom import (
    ImageMissing,
    ImageReader,
    ImageUnreadable,
    invert_monochrome1,
    openjpeg_region,
    read_header,
    window_to_uint8,
)
from embedpatch.dicom.header import HEADER_PREFIX
from embedpatch.io.source import LocalFile
from embedpatch.patches.padding import (
    black_pad,
    black_window,
    cut_patch,
    tissue_pad,
    tissue_placement,
)
from embedpatch.reasons import RoiReason
from helpers.dicom_files import COLUMNS, DBT, MAMMO_2D, ROWS, pixels, reference, write_dicom

SYNTAXES = [
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000,
    RLELossless,
    JPEGLSLossless,
]
FRAMES = 3
QUICK = settings(max_examples=60, deadline=None)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """One multi-frame and one single-frame file per transfer syntax."""
    folder = tmp_path_factory.mktemp("images")
    files = {}
    for syntax in SYNTAXES:
        for frames in (FRAMES, None):
            name = f"{syntax.keyword}_{frames or 1}.dcm"
            files[syntax, frames] = write_dicom(folder / name, pixels(frames), syntax)
    return files


CASES = [(syntax, frames) for syntax in SYNTAXES for frames in (FRAMES, None)]
CASE_IDS = [f"{syntax.keyword}-{frames or 1}" for syntax, frames in CASES]


@pytest.mark.parametrize(("syntax", "frames"), CASES, ids=CASE_IDS)
def test_frames_and_regions_equal_pydicom(images, syntax, frames):
    path = images[syntax, frames]
    windows = [(0, ROWS, 0, COLUMNS), (0, 1, 0, 1), (ROWS - 5, ROWS, COLUMNS - 9, COLUMNS)]
    windows += [(10, 43, 7, 50), (31, 32, 0, COLUMNS)]
    with ImageReader(path) as reader:
        for frame in range(frames or 1):
            expected = reference(path, frame)
            assert reader.frame(frame).dtype == expected.dtype == reader.dtype
            np.testing.assert_array_equal(reader.frame(frame), expected)
            for y0, y1, x0, x1 in windows:
                region = reader.region(frame, y0, y1, x0, x1)
                assert region.dtype == expected.dtype
                np.testing.assert_array_equal(region, expected[y0:y1, x0:x1])


@st.composite
def windows(draw):
    y0 = draw(st.integers(0, ROWS - 1))
    x0 = draw(st.integers(0, COLUMNS - 1))
    return y0, draw(st.integers(y0 + 1, ROWS)), x0, draw(st.integers(x0 + 1, COLUMNS))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless], ids=str)
@QUICK
@given(window=windows(), frame=st.integers(0, FRAMES - 1))
def test_any_window_equals_pydicom(images, syntax, window, frame):
    path = images[syntax, FRAMES]
    y0, y1, x0, x1 = window
    with ImageReader(path) as reader:
        region = reader.region(frame, y0, y1, x0, x1)
    np.testing.assert_array_equal(region, reference(path, frame)[y0:y1, x0:x1])


@pytest.mark.parametrize("photometric", ["MONOCHROME1", "MONOCHROME2"])
@pytest.mark.parametrize("syntax", SYNTAXES, ids=str)
def test_photometric_kept_and_values_equal(tmp_path, syntax, photometric):
    path = write_dicom(tmp_path / "x.dcm", pixels(2, seed=3), syntax, photometric)
    with ImageReader(path) as reader:
        assert reader.header.photometric_interpretation == photometric
        np.testing.assert_array_equal(reader.frame(1), reference(path, 1))


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian], ids=str)
@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
def test_native_unused_high_bits_are_masked_like_pydicom(tmp_path, syntax, dtype):
    path = write_dicom(tmp_path / "x.dcm", pixels(2, dtype=dtype), syntax)
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(ds.PixelData, dtype=dtype).copy()
    raw |= np.array(0x5000, dtype=np.uint16).view(dtype)  # junk in bits 12-15
    ds.PixelData = raw.tobytes()
    ds.save_as(path)
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(reader.frame(1), reference(path, 1))
        np.testing.assert_array_equal(reader.region(0, 3, 9, 4, 40), reference(path, 0)[3:9, 4:40])
        assert reader.frame(1).dtype == np.dtype(dtype)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless, JPEGLSLossless], ids=str)
def test_signed_compressed_values_equal_pydicom(tmp_path, syntax):
    path = write_dicom(tmp_path / "x.dcm", pixels(2, dtype=np.int16), syntax)
    with ImageReader(path) as reader:
        assert reader.dtype == np.int16
        np.testing.assert_array_equal(
            reader.region(1, 5, 60, 2, 50), reference(path, 1)[5:60, 2:50]
        )


def test_header_fields(images):
    header = read_header(images[JPEG2000Lossless, FRAMES])
    assert (header.rows, header.columns, header.number_of_frames) == (ROWS, COLUMNS, FRAMES)
    assert header.sop_class_uid == DBT
    assert header.transfer_syntax_uid == JPEG2000Lossless
    assert header.photometric_interpretation == "MONOCHROME2"
    assert (header.bits_allocated, header.bits_stored) == (16, 12)
    assert (header.pixel_representation, header.samples_per_pixel) == (0, 1)
    assert (header.window_center, header.window_width) == (2048.0, 4096.0)  # first values


def test_header_single_frame_without_window(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", pixels(None))
    ds = pydicom.dcmread(path)
    del ds.WindowCenter, ds.WindowWidth
    ds.save_as(path)
    header = read_header(path)
    assert header.number_of_frames == 1
    assert header.sop_class_uid == MAMMO_2D
    assert header.window_center is None
    assert header.window_width is None


class CountingFile(LocalFile):
    """A local file that records every byte range read through it."""

    def __init__(self, path):
        super().__init__(path)
        self.reads = []

    def read(self, offset, length):
        self.reads.append((offset, length))
        return super().read(offset, length)


def test_read_header_reads_one_prefix_not_the_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "big.dcm", pixels(40))  # 322 kB of Pixel Data
    source = CountingFile(path)
    assert read_header(source).rows == ROWS
    assert source.reads == [(0, HEADER_PREFIX)]
    assert path.stat().st_size > HEADER_PREFIX


def test_missing_file(tmp_path):
    with pytest.raises(ImageMissing) as raised:
        read_header(tmp_path / "nope.dcm")
    assert raised.value.reason == RoiReason.IMAGE_MISSING
    with pytest.raises(ImageMissing):
        ImageReader(tmp_path / "nope.dcm")


def unreadable_message(action) -> str:
    with pytest.raises(ImageUnreadable) as raised:
        action()
    assert raised.value.reason == RoiReason.IMAGE_UNREADABLE
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_not_dicom(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_text("ymin,xmin,ymax,xmax\n1,2,3,4\n" * 50)
    assert "not a readable DICOM file" in unreadable_message(lambda: read_header(path))
    assert "not a readable DICOM file" in unreadable_message(lambda: ImageReader(path))


def test_directory_is_unreadable(tmp_path):
    assert "cannot open" in unreadable_message(lambda: read_header(tmp_path))


def test_dicom_without_pixels(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", pixels(None))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    assert "no Pixel Data" in unreadable_message(lambda: read_header(path))
    del ds.Rows
    ds.save_as(path)
    assert "missing Rows" in unreadable_message(lambda: read_header(path))


def test_colour_image_refused_by_reader(tmp_path):
    path = write_dicom(
        tmp_path / "x.dcm", np.zeros((ROWS, COLUMNS, 3), np.uint8), photometric="RGB", bits=8
    )
    assert read_header(path).samples_per_pixel == 3
    assert "grayscale" in unreadable_message(lambda: ImageReader(path))


def test_deflated_refused(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", pixels(None), DeflatedExplicitVRLittleEndian)
    assert "deflated" in unreadable_message(lambda: read_header(path))


def truncate(path, keep: int):
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return len(data)


def test_truncated_in_header(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", pixels(FRAMES))
    truncate(path, 200)
    unreadable_message(lambda: read_header(path))


def test_truncated_native_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", pixels(FRAMES))
    truncate(path, path.stat().st_size - ROWS * COLUMNS)
    assert "truncated" in unreadable_message(lambda: read_header(path))
    assert "truncated" in unreadable_message(lambda: ImageReader(path))


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEG2000, RLELossless], ids=str)
def test_truncated_compressed_frame(tmp_path, syntax):
    path = write_dicom(tmp_path / "x.dcm", pixels(FRAMES, seed=5), syntax)
    expected = reference(path, 0)
    truncate(path, path.stat().st_size - 40)  # cuts into the last frame
    assert read_header(path).rows == ROWS  # the header alone is fine
    message = unreadable_message(lambda: ImageReader(path))  # the items are checked on open
    assert "runs past the end of the file" in message
    assert expected.shape == (ROWS, COLUMNS)


def test_out_of_range_requests(images):
    with ImageReader(images[ExplicitVRLittleEndian, FRAMES]) as reader:
        with pytest.raises(IndexError):
            reader.frame(FRAMES)
        with pytest.raises(ValueError, match="outside"):
            reader.region(0, 0, ROWS + 1, 0, 5)
        with pytest.raises(ValueError, match="empty"):
            reader.region(0, 4, 4, 0, 5)
        with pytest.raises(ValueError, match="factor"):
            reader.downsampled(0, 0)


@pytest.fixture
def opened_files(monkeypatch):
    """Paths passed to open() or os.open() while the test runs."""
    opened = []
    real_open, real_os_open = builtins.open, os.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def counting_os_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_os_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(os, "open", counting_os_open)
    return opened


@pytest.mark.parametrize(("syntax", "frames"), CASES, ids=CASE_IDS)
def test_one_open_per_reader(images, opened_files, syntax, frames):
    path = images[syntax, frames]
    with ImageReader(path) as reader:
        for frame in range(frames or 1):
            reader.region(frame, 0, 10, 0, 10)
            reader.region(frame, 20, 40, 5, 30)
            reader.frame(frame)
            reader.downsampled(frame, 4)
    assert opened_files.count(str(path)) == 1
    assert reader._source._fd == -1  # closed


def test_decoded_frame_is_cached(images, monkeypatch):
    calls = []
    real = Decoder.as_array

    def counting(*args, **kwargs):
        calls.append(kwargs.get("index"))
        return real(*args, **kwargs)

    monkeypatch.setattr(Decoder, "as_array", counting)
    with ImageReader(images[RLELossless, FRAMES]) as reader:
        reader.region(1, 0, 10, 0, 10)
        reader.region(1, 30, 50, 20, 40)
        reader.frame(1)
        reader.region(2, 0, 10, 0, 10)
    assert calls == [0, 0]  # frames 1 and 2, each decoded alone, once


def test_lossless_jpeg2000_window_does_not_decode_the_frame(images, monkeypatch):
    path = images[JPEG2000Lossless, FRAMES]
    expected = reference(path, 2)[20:50, 10:30]

    def refuse(*args, **kwargs):
        raise AssertionError("decoded the whole frame")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", refuse)
    assert openjpeg_region.available()
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(reader.region(2, 20, 50, 10, 30), expected)


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless], ids=str)
@pytest.mark.parametrize("size", [16, 33, 100])
def test_patches_cut_through_the_reader_equal_padding_the_decoded_frame(images, syntax, size):
    path = images[syntax, FRAMES]
    frame = reference(path, 1)
    with ImageReader(path) as reader:
        region = functools.partial(reader.region, 1)
        for box in [(30, 20, 40, 30), (60, 40, 90, 70), (-9, -9, 4, 4), (0, 0, ROWS, COLUMNS)]:
            for placement, padded in [
                (tissue_placement(box, ROWS, COLUMNS, size), tissue_pad(frame, box, size)),
                (black_window(box, size), black_pad(frame, box, size)),
            ]:
                patch = cut_patch(region, placement, size, ROWS, COLUMNS, reader.dtype)
                np.testing.assert_array_equal(patch, padded)


def refuse_window(*args):
    raise openjpeg_region.J2kError("refused")


@pytest.mark.parametrize(
    ("name", "replacement"), [("available", lambda: False), ("decode_window", refuse_window)]
)
def test_jpeg2000_falls_back_to_pydicom(images, monkeypatch, name, replacement):
    path = images[JPEG2000Lossless, FRAMES]
    monkeypatch.setattr(openjpeg_region, name, replacement)
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(
            reader.region(1, 3, 40, 5, 50), reference(path, 1)[3:40, 5:50]
        )


def test_native_frames_beyond_the_pixel_data(tmp_path):
    path = write_dicom(tmp_path / "x.dcm", pixels(FRAMES))
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = FRAMES + 1
    ds.save_as(path)
    assert "the header implies" in unreadable_message(lambda: ImageReader(path))


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 5, 8, 64])
@pytest.mark.parametrize(("syntax", "frames"), CASES, ids=CASE_IDS)
def test_downsampled_is_exactly_the_strided_frame(images, syntax, frames, factor):
    """But JPEG 2000 views reduced by 2, 4 or 8 (low-pass: test_reduced_views.py); 64
    needs 6 wavelet levels, the encoder's codestreams have 5."""
    path = images[syntax, frames]
    with ImageReader(path) as reader:
        small = reader.downsampled(0, factor)
    full = reference(path, 0)
    assert small.shape == (math.ceil(ROWS / factor), math.ceil(COLUMNS / factor))
    assert small.dtype == full.dtype
    if syntax not in (JPEG2000Lossless, JPEG2000) or factor not in (2, 4, 8):
        np.testing.assert_array_equal(small, full[::factor, ::factor])


def test_invert_monochrome1():
    values = np.array([0, 1, 2048, 4095, 5000], dtype=np.uint16)
    inverted = invert_monochrome1(values, 12)
    assert inverted.dtype == np.uint16
    np.testing.assert_array_equal(inverted, [4095, 4094, 2047, 0, 0])  # out of range clipped
    signed = np.array([-2048, -1, 0, 2047], dtype=np.int16)
    np.testing.assert_array_equal(invert_monochrome1(signed, 12), [2047, 0, -1, -2048])


@given(st.lists(st.integers(0, 4095), min_size=1, max_size=50))
def test_invert_monochrome1_is_an_involution(values):
    array = np.array(values, dtype=np.uint16)
    np.testing.assert_array_equal(invert_monochrome1(invert_monochrome1(array, 12), 12), array)


@settings(max_examples=200, deadline=None)
@given(
    center=st.floats(-100, 5000, allow_nan=False),
    width=st.floats(1.5, 6000, allow_nan=False),
    values=st.lists(st.integers(0, 4095), min_size=1, max_size=40),
)
def test_window_to_uint8_matches_pydicom_linear_voi(center, width, values):
    array = np.array(values, dtype=np.uint16)
    ds = Dataset()
    ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation = "MONOCHROME2", 12, 0
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = center, width, "LINEAR"
    scaled = pydicom.pixels.apply_windowing(array, ds) / 4095 * 255  # output range 0..4095
    ours = window_to_uint8(array, center, width)
    assert ours.dtype == np.uint8
    assert np.abs(ours.astype(float) - scaled).max() <= 0.5 + 1e-6


def test_window_to_uint8_edges():
    array = np.array([0, 999, 1000, 1001, 4095], dtype=np.uint16)
    np.testing.assert_array_equal(window_to_uint8(array, 1000.5, 1), [0, 0, 0, 255, 255])
    steps = np.array([998, 999, 1000, 1001], dtype=np.uint16)  # 64 = rint(0.25 * 255)
    np.testing.assert_array_equal(window_to_uint8(steps, 1000, 3), [0, 64, 191, 255])
    with pytest.raises(ValueError, match="width"):
        window_to_uint8(array, 1000, 0.5)


def test_openjpeg_region_rejects_garbage():
    with pytest.raises(openjpeg_region.J2kError, match="not a JPEG 2000"):
        openjpeg_region.decode_window(b"\x00" * 64, 0, 1, 0, 1)
