"""JPEG 2000 views downsampled by a power of two: OpenJPEG's reduced-resolution decode.

Files are written by pydicom (its JPEG 2000 encoder, pylibjpeg-openjpeg, codes 5 wavelet
levels). A reduced view has the strided view's shape and dtype and is close to the mean
of the block around each strided pixel; other factors, and factors needing more levels
than the codestream has, give exactly the strided frame; frames and windows stay exact.
"""

import numpy as np
import openjpeg
import pytest
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import JPEG2000, JPEG2000Lossless

from embedpatch.dicom import ImageReader, openjpeg_region
from embedpatch.dicom.codestream import j2k_decomposition_levels
from helpers.dicom_files import block_means, reference, write_dicom

SHAPES = {"even": (128, 96), "odd": (203, 157)}
ENCODER_LEVELS = 5


def smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """12-bit waves (periods of about 200 pixels) plus a little noise."""
    rng = np.random.default_rng(seed)
    rows, columns = np.indices(shape[-2:])
    waves = 1500 * np.sin(rows / 40 + 0.3) * np.cos(columns / 30)
    return (2048 + waves + rng.normal(0, 20, shape)).round().astype(np.uint16)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Smooth images, lossless and lossy, of each shape; and a 3-frame lossless one."""
    folder = tmp_path_factory.mktemp("reduced")
    written = {
        (syntax, shape): write_dicom(
            folder / f"{syntax.keyword}_{shape}.dcm", smooth(SHAPES[shape]), syntax
        )
        for syntax in (JPEG2000Lossless, JPEG2000)
        for shape in SHAPES
    }
    frames = smooth((3, *SHAPES["odd"]), seed=1)
    written["frames"] = write_dicom(folder / "frames.dcm", frames, JPEG2000Lossless)
    return written


@pytest.mark.parametrize("factor", [2, 4, 8])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEG2000], ids=str)
def test_a_reduced_view_is_close_to_block_means(files, monkeypatch, syntax, shape, factor):
    path = files[syntax, shape]
    frame = reference(path, 0)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded the whole frame")

    monkeypatch.setattr(Decoder, "as_array", refuse)
    with ImageReader(path) as reader:
        view = reader.downsampled(0, factor)
    assert view.shape == frame[::factor, ::factor].shape
    assert view.dtype == frame.dtype
    value_range = float(frame.max()) - float(frame.min())
    difference = np.abs(view - block_means(frame, factor))
    assert difference.mean() < 0.01 * value_range
    assert not np.array_equal(view, frame[::factor, ::factor])  # low-pass, not the pixels


@pytest.mark.parametrize("factor", [4, 8])
def test_a_reduced_view_averages_noise_out(tmp_path, factor):
    rng = np.random.default_rng(2)
    flat = rng.normal(2000, 100, SHAPES["odd"]).round().astype(np.uint16)
    path = write_dicom(tmp_path / "flat.dcm", flat, JPEG2000Lossless)
    with ImageReader(path) as reader:
        view = reader.downsampled(0, factor)
    assert view.std() < 0.5 * flat[::factor, ::factor].std()


@pytest.mark.parametrize("factor", [3, 5, 6, 2 ** (ENCODER_LEVELS + 1)])
def test_other_factors_give_exactly_the_strided_frame(files, factor):
    """Not a power of two, or more levels than the codestream's 5: the whole decode."""
    path = files[JPEG2000Lossless, "odd"]
    with ImageReader(path) as reader:
        levels = j2k_decomposition_levels(reader._frames.codestream(0), "odd")
        view = reader.downsampled(0, factor)
    assert levels == ENCODER_LEVELS
    expected = reference(path, 0)[::factor, ::factor]
    assert view.dtype == expected.dtype
    np.testing.assert_array_equal(view, expected)


def test_the_largest_factor_the_levels_allow_is_reduced(files):
    path = files[JPEG2000Lossless, "odd"]
    factor = 2**ENCODER_LEVELS
    with ImageReader(path) as reader:
        view = reader.downsampled(0, factor)
    strided = reference(path, 0)[::factor, ::factor]
    assert view.shape == strided.shape == (7, 5)
    assert not np.array_equal(view, strided)


def test_without_the_binding_views_are_strided(files, monkeypatch):
    path = files[JPEG2000Lossless, "even"]
    monkeypatch.setattr(openjpeg_region, "available", lambda: False)
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(reader.downsampled(0, 4), reference(path, 0)[::4, ::4])


def test_frames_and_windows_stay_exact_around_reduced_views(files):
    """The reduced decode does not enter the decoded-frame cache, and a view does not
    depend on what was decoded before it."""
    path = files["frames"]
    with ImageReader(path) as fresh:
        view = fresh.downsampled(1, 8)
    with ImageReader(path) as reader:
        np.testing.assert_array_equal(reader.downsampled(1, 8), view)
        np.testing.assert_array_equal(
            reader.region(1, 5, 60, 7, 90), reference(path, 1)[5:60, 7:90]
        )
        np.testing.assert_array_equal(reader.frame(1), reference(path, 1))  # decoded, kept
        np.testing.assert_array_equal(reader.downsampled(1, 8), view)  # not from the kept frame
        np.testing.assert_array_equal(reader.region(1, 0, 9, 0, 9), reference(path, 1)[:9, :9])
        reader.downsampled(2, 4)
        np.testing.assert_array_equal(reader.frame(1), reference(path, 1))
        np.testing.assert_array_equal(reader.frame(2), reference(path, 2))
        np.testing.assert_array_equal(reader.region(0, 3, 4, 5, 6), reference(path, 0)[3:4, 5:6])


def test_decomposition_levels_from_cod_or_a_coc_for_component_0():
    pixels = smooth(SHAPES["even"])
    codestream = openjpeg.encode(pixels, bits_stored=12)
    assert j2k_decomposition_levels(codestream, "j2k") == ENCODER_LEVELS
    jp2 = openjpeg.encode(pixels, bits_stored=12, codec_format=1)
    assert j2k_decomposition_levels(jp2, "jp2") == ENCODER_LEVELS
    cod = codestream.index(b"\xff\x52")
    after_cod = cod + 2 + int.from_bytes(codestream[cod + 2 : cod + 4], "big")
    # COC: length 9, component 0, Scoc 0, then SPcoc: 2 levels, code-blocks, transform
    coc = b"\xff\x53\x00\x09\x00\x00\x02\x04\x04\x00\x01"
    edited = codestream[:after_cod] + coc + codestream[after_cod:]
    assert j2k_decomposition_levels(edited, "coc") == 2
