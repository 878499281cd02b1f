"""A compressed frame's own size is compared with the header before it is decoded.

Files are written by pydicom (JPEG 2000, RLE, JPEG-LS) or taken from pydicom's test
files (JPEG Extended), then their header edited to claim another size: the reader
refuses them as unreadable, naming both sizes, without the decoder's allocation.
"""

import contextlib
import dataclasses
import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import openjpeg
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGLSLossless, RLELossless

from embedpatch.dicom import ImageReader, ImageUnreadable, read_header
from embedpatch.dicom.codestream import RLE_MAX_EXPANSION, check_codestream
from embedpatch.dicom.encapsulation import FrameIndex
from embedpatch.dicom.header import read_layout
from embedpatch.io.source import LocalFile
from helpers.dicom_files import COLUMNS, ROWS, pixels, reference, write_dicom

WRITTEN = [JPEG2000Lossless, JPEG2000, RLELossless, JPEGLSLossless]
JPEG_EXTENDED = "JPGExtended.dcm"  # pydicom's test file: JPEG Extended, 12 bits
FILES = [*(syntax.keyword for syntax in WRITTEN), JPEG_EXTENDED]
LIES = {
    "rows": {"Rows": 65535, "Columns": 1024},
    "columns": {"Columns": 65535},
    "a few rows more": {"Rows": ROWS + 8},
}
QUICK = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("codestreams")
    files = {
        syntax.keyword: write_dicom(folder / f"{syntax.keyword}.dcm", pixels(2), syntax)
        for syntax in WRITTEN
    }
    files[JPEG_EXTENDED] = Path(get_testdata_file(JPEG_EXTENDED))
    return files


def with_header(source: Path, target: Path, **values: int) -> Path:
    """A copy of `source` whose header claims `values`; the Pixel Data is untouched."""
    dataset = pydicom.dcmread(source)
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    dataset.save_as(target)
    return target


@functools.cache
def frame_bytes(path: Path) -> bytes:
    """Frame 0's encoded bytes, as the reader finds them."""
    source = LocalFile(path)
    try:
        layout = read_layout(source)
        frames = layout.header.number_of_frames
        return FrameIndex(source, layout.dataset, layout.value_offset, frames).frame_bytes(0)
    finally:
        source.close()


def refusal(path: Path) -> str:
    with pytest.raises(ImageUnreadable) as caught, ImageReader(path) as reader:
        reader.frame(0)
    return str(caught.value)


@pytest.mark.parametrize("name", FILES)
def test_the_intact_frame_passes_the_check(originals, name):
    path = originals[name]
    check_codestream(frame_bytes(path), read_header(path), "frame 0")
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(reader.frame(0), reference(path, 0))


@pytest.mark.parametrize("lie", LIES, ids=str)
@pytest.mark.parametrize("name", FILES)
def test_a_header_claiming_another_size_is_refused_naming_both(originals, tmp_path, name, lie):
    path = with_header(originals[name], tmp_path / "lying.dcm", **LIES[lie])
    message = refusal(path)
    if name == RLELossless.keyword and lie == "a few rows more":
        return  # RLE states no size; a plane its segments can hold is left to the decoder
    claimed, true = read_header(path), read_header(originals[name])
    assert f"{claimed.rows} x {claimed.columns}" in message
    if name != RLELossless.keyword:
        assert f"says {true.rows} x {true.columns}" in message


@pytest.mark.parametrize("name", [JPEG2000Lossless.keyword, JPEGLSLossless.keyword])
def test_a_precision_beyond_bits_allocated_is_refused(originals, tmp_path, name):
    path = with_header(
        originals[name], tmp_path / "eight.dcm", BitsAllocated=8, BitsStored=8, HighBit=7
    )
    assert "12 bits; the header says" in refusal(path)


@pytest.mark.parametrize("name", FILES)
def test_more_components_than_the_header_are_refused(originals, name):
    path = originals[name]
    colour = dataclasses.replace(read_header(path), samples_per_pixel=3)
    with pytest.raises(ImageUnreadable, match=r"component|segments"):
        check_codestream(frame_bytes(path), colour, "frame 0")


def test_a_jp2_file_is_checked_through_its_codestream_box(originals):
    header = read_header(originals[JPEG2000Lossless.keyword])
    jp2 = openjpeg.encode(pixels(None), bits_stored=12, codec_format=1)
    assert jp2.startswith(b"\x00\x00\x00\x0cjP  ")
    check_codestream(jp2, header, "frame 0")
    taller = dataclasses.replace(header, rows=header.rows + 1)
    with pytest.raises(ImageUnreadable, match=f"says {ROWS} x {COLUMNS}"):
        check_codestream(jp2, taller, "frame 0")


def test_an_rle_plane_beyond_what_its_segments_decode_to_is_refused(originals):
    path = originals[RLELossless.keyword]
    data, header = frame_bytes(path), read_header(path)
    count, *offsets = np.frombuffer(data[:64], "<u4")
    shortest = int(min(np.diff([*offsets[:count], len(data)])))
    bound = RLE_MAX_EXPANSION * shortest
    check_codestream(data, dataclasses.replace(header, rows=1, columns=bound), "f")
    with pytest.raises(ImageUnreadable, match=f"RLE segment of {shortest} bytes"):
        check_codestream(data, dataclasses.replace(header, rows=1, columns=bound + 1), "f")


@pytest.mark.parametrize("name", FILES)
@given(data=st.data())
@QUICK
def test_cut_or_garbled_codestreams_raise_nothing_but_unreadable(originals, name, data):
    path = originals[name]
    stream = bytearray(frame_bytes(path))
    end = data.draw(st.integers(0, len(stream)), label="end")
    for _ in range(data.draw(st.integers(0, 4), label="garbled bytes")):
        position = data.draw(st.integers(0, max(end - 1, 0)))
        if position < len(stream):
            stream[position] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ImageUnreadable):
        check_codestream(bytes(stream[:end]), read_header(path), "frame 0")


@given(garbage=st.binary(max_size=300), start=st.sampled_from([b"\xff\xd8", b"\xff\x4f\xff\x51"]))
@QUICK
def test_random_bytes_after_a_start_marker_raise_nothing_but_unreadable(originals, garbage, start):
    for name in (JPEG2000Lossless.keyword, JPEGLSLossless.keyword, RLELossless.keyword):
        with contextlib.suppress(ImageUnreadable):
            check_codestream(start + garbage + b"\xff\xd9", read_header(originals[name]), "f")


PEAK_GROWTH = """
import json, resource, sys
from embedpatch.dicom import ImageReader, ImageUnreadable
with ImageReader(sys.argv[1]) as reader:  # decoders loaded, one frame decoded
    reader.frame(0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    with ImageReader(sys.argv[2]) as reader:
        reader.frame(0)
    outcome = "read"
except ImageUnreadable as error:
    outcome = str(error)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"growth_kib": after - before, "outcome": outcome}))
"""


@pytest.mark.parametrize("name", FILES)
def test_a_lying_header_costs_no_large_allocation(originals, tmp_path, name):
    """Rows 65535 x Columns 1024 is 128 MiB of 16-bit pixels: refused before the decoder
    allocates them (peak resident memory grows by less than 20 MB)."""
    lying = with_header(originals[name], tmp_path / "lying.dcm", **LIES["rows"])
    child = subprocess.run(
        [sys.executable, "-c", PEAK_GROWTH, str(originals[name]), str(lying)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(child.stdout)
    assert result["growth_kib"] < 20 * 1024, result
    assert "65535 x 1024" in result["outcome"]
