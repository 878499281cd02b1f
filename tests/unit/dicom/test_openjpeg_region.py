"""The ctypes binding of OpenJPEG's window decode: layouts checked, refused when unchecked."""

import ctypes
import logging

import numpy as np
import openjpeg
import pytest

from embedpatch.dicom import openjpeg_region


@pytest.fixture
def fresh_binding():
    """The binding's cached decision cleared before and after the test."""
    openjpeg_region._library.cache_clear()
    yield
    openjpeg_region._library.cache_clear()


def test_struct_layouts_match_the_library():
    lib = openjpeg_region._bound_library()
    assert lib is not None
    pixels = np.arange(40 * 36, dtype=np.int16).reshape(40, 36) - 700
    codestream = openjpeg.encode(pixels, bits_stored=11)
    with openjpeg_region._opened(lib, codestream) as (_, _, image, _):
        header = image.contents
        component = openjpeg_region._single_component(image)
        fields = (header.x1 - header.x0, header.y1 - header.y0, header.numcomps)
        assert fields == (36, 40, 1)
        assert (component.w, component.h, component.prec, component.sgnd) == (36, 40, 11, 1)
    # 11 uint32 (44 bytes, padded to 48), a pointer, a uint16, padded: as opj_image_comp_t
    assert ctypes.sizeof(openjpeg_region._Component) == 64


def test_windows_equal_the_full_decode_at_every_border():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 1 << 14, (97, 83), dtype=np.uint16)
    codestream = openjpeg.encode(pixels, bits_stored=14)
    for y0, y1, x0, x1 in [(0, 1, 0, 1), (0, 97, 0, 83), (96, 97, 82, 83), (40, 77, 0, 9)]:
        window = openjpeg_region.decode_window(codestream, y0, y1, x0, x1)
        np.testing.assert_array_equal(window, pixels[y0:y1, x0:x1])


def test_an_unchecked_version_turns_window_decoding_off(fresh_binding, monkeypatch, caplog):
    monkeypatch.setattr(openjpeg_region, "CHECKED_VERSIONS", frozenset({"9.9.9"}))
    with caplog.at_level(logging.INFO, logger=openjpeg_region.__name__):
        assert not openjpeg_region.available()
    assert "unchecked struct layouts" in caplog.text
    with pytest.raises(openjpeg_region.J2kError, match="not available"):
        openjpeg_region.decode_window(b"", 0, 1, 0, 1)


def test_a_failing_self_check_turns_window_decoding_off(fresh_binding, monkeypatch, caplog):
    def shifted(lib, data, y0, y1, x0, x1):
        return np.zeros((y1 - y0, x1 - x0), dtype=np.int32) + 1

    monkeypatch.setattr(openjpeg_region, "_decode_window", shifted)
    with caplog.at_level(logging.WARNING, logger=openjpeg_region.__name__):
        assert not openjpeg_region.available()
    assert "self-check failed" in caplog.text


def test_a_failing_reduced_self_check_turns_decoding_off(fresh_binding, monkeypatch, caplog):
    real = openjpeg_region._decode_reduced

    def offset(lib, data, levels):
        return real(lib, data, levels) + 100  # as a missing DC level shift would be

    monkeypatch.setattr(openjpeg_region, "_decode_reduced", offset)
    with caplog.at_level(logging.WARNING, logger=openjpeg_region.__name__):
        assert not openjpeg_region.available()
    assert "self-check failed" in caplog.text
    with pytest.raises(openjpeg_region.J2kError, match="not available"):
        openjpeg_region.decode_reduced(b"", 1)


def test_reduced_views_are_rounded_up_and_refused_beyond_the_levels():
    pixels = np.arange(97 * 83, dtype=np.uint16).reshape(97, 83) % 4096
    codestream = openjpeg.encode(pixels, bits_stored=12)  # 5 wavelet levels
    for levels in range(1, 6):
        view = openjpeg_region.decode_reduced(codestream, levels)
        assert view.shape == pixels[:: 1 << levels, :: 1 << levels].shape
        assert view.dtype == np.int32
    with pytest.raises(openjpeg_region.J2kError, match="resolution factor"):
        openjpeg_region.decode_reduced(codestream, 6)
