"""Decode one window, or a reduced view, of a JPEG 2000 codestream without decoding the
whole image.

pylibjpeg-openjpeg decodes whole images only (`openjpeg.decode` has no area or
resolution argument). The OpenJPEG library it links statically exports its C API from
the `_openjpeg` extension module, so this module binds with ctypes the few functions
needed for `opj_set_decode_area` (decode only the code-blocks under a window) and
`opj_set_decoded_resolution_factor` (decode only the wavelet levels of a view reduced
by a power of two).

ctypes trusts the struct layouts written here, so the binding is used only when
it is known to be right: the library's version must be one of CHECKED_VERSIONS
(whose `opj_image_t` / `opj_image_comp_t` layouts tests/unit/dicom/test_openjpeg_region.py
checks), and at first use small codestreams encoded by pylibjpeg-openjpeg are decoded
through the binding and compared: a window with the full decode's pixels, a reduced view
of a ramp with its strided pixels. Otherwise `available()` is False, with one log
line saying why, and callers decode whole frames instead.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

log = logging.getLogger(__name__)

CHECKED_VERSIONS = frozenset({"2.5.0", "2.5.2", "2.5.3"})
"""OpenJPEG versions whose struct layouts match the ones bound here (2.5.x: unchanged)."""
_J2K_MAGIC = b"\xff\x4f\xff\x51"  # SOC + SIZ markers: raw codestream
_JP2_MAGIC = b"\x00\x00\x00\x0cjP  "  # JP2 signature box
_CODEC = {_J2K_MAGIC: 0, _JP2_MAGIC: 2}  # OPJ_CODEC_J2K, OPJ_CODEC_JP2
_STREAM_CHUNK = 1 << 20
_PARAMETERS_BYTES = 1 << 16  # opj_dparameters_t is ~8.3 kB in 2.5; opaque here
_EOF = ctypes.c_size_t(-1).value
# Self-check: a ramp's view reduced by 4 is its strided pixels but in the last row and
# column (off by 9 to 27 with OpenJPEG 2.5, from the symmetric extension); garbage is off
# by thousands.
_REDUCED_TOLERANCE = 32


class J2kError(RuntimeError):
    """OpenJPEG could not decode the codestream."""


class _Component(ctypes.Structure):
    _fields_ = (  # opj_image_comp_t, OpenJPEG 2.1 to 2.5
        *((name, ctypes.c_uint32) for name in ("dx", "dy", "w", "h", "x0", "y0", "prec")),
        *((name, ctypes.c_uint32) for name in ("bpp", "sgnd", "resno_decoded", "factor")),
        ("data", ctypes.POINTER(ctypes.c_int32)),
        ("alpha", ctypes.c_uint16),
    )


class _Image(ctypes.Structure):
    _fields_ = (  # opj_image_t
        *((name, ctypes.c_uint32) for name in ("x0", "y0", "x1", "y1", "numcomps")),
        ("color_space", ctypes.c_int),
        ("comps", ctypes.POINTER(_Component)),
        ("icc_profile_buf", ctypes.c_void_p),
        ("icc_profile_len", ctypes.c_uint32),
    )


_READ = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_MESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
_IMAGE_P = ctypes.POINTER(_Image)
_VOID_P = ctypes.c_void_p

_SIGNATURES = {
    "opj_version": (ctypes.c_char_p, []),
    "opj_create_decompress": (_VOID_P, [ctypes.c_int]),
    "opj_set_error_handler": (ctypes.c_int, [_VOID_P, _MESSAGE, _VOID_P]),
    "opj_set_default_decoder_parameters": (None, [_VOID_P]),
    "opj_setup_decoder": (ctypes.c_int, [_VOID_P, _VOID_P]),
    "opj_stream_create": (_VOID_P, [ctypes.c_size_t, ctypes.c_int]),
    "opj_stream_set_read_function": (None, [_VOID_P, _READ]),
    "opj_stream_set_skip_function": (None, [_VOID_P, _SKIP]),
    "opj_stream_set_seek_function": (None, [_VOID_P, _SEEK]),
    "opj_stream_set_user_data_length": (None, [_VOID_P, ctypes.c_uint64]),
    "opj_read_header": (ctypes.c_int, [_VOID_P, _VOID_P, ctypes.POINTER(_IMAGE_P)]),
    "opj_set_decode_area": (ctypes.c_int, [_VOID_P, _IMAGE_P, *[ctypes.c_int32] * 4]),
    "opj_set_decoded_resolution_factor": (ctypes.c_int, [_VOID_P, ctypes.c_uint32]),
    "opj_decode": (ctypes.c_int, [_VOID_P, _VOID_P, _IMAGE_P]),
    "opj_image_destroy": (None, [_IMAGE_P]),
    "opj_stream_destroy": (None, [_VOID_P]),
    "opj_destroy_codec": (None, [_VOID_P]),
}


def _bound_library() -> ctypes.CDLL | None:
    """The OpenJPEG library inside pylibjpeg-openjpeg with the functions bound, or None."""
    spec = importlib.util.find_spec("_openjpeg")
    if spec is None or spec.origin is None:
        log.info("OpenJPEG window decoding off: pylibjpeg-openjpeg's library not found")
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
        for name, (restype, argtypes) in _SIGNATURES.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
    except (OSError, AttributeError) as error:
        log.info("OpenJPEG window decoding off: cannot bind the library (%s)", error)
        return None
    version = lib.opj_version().decode()
    if version not in CHECKED_VERSIONS:
        log.info("OpenJPEG window decoding off: version %s has unchecked struct layouts", version)
        return None
    return lib


def _agrees_with_full_decode(lib: ctypes.CDLL) -> bool:
    """Whether, on small lossless codestreams, a window decoded through the binding equals
    the same window of pylibjpeg-openjpeg's full decode, and a ramp's view reduced by 4
    is within _REDUCED_TOLERANCE of its strided pixels."""
    import openjpeg  # pylibjpeg-openjpeg, present when its library is

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4096, (80, 72), dtype=np.uint16)
    rows, columns = np.indices((80, 72))
    ramp = (32 * rows + 16 * columns).astype(np.uint16)
    try:
        window = _decode_window(lib, openjpeg.encode(pixels, bits_stored=12), 9, 71, 5, 40)
        reduced = _decode_reduced(lib, openjpeg.encode(ramp, bits_stored=12), 2)
    except J2kError:
        return False
    strided = ramp[::4, ::4].astype(np.int32)
    return (
        window.shape == (62, 35)
        and np.array_equal(window, pixels[9:71, 5:40])
        and reduced.shape == strided.shape
        and np.abs(reduced - strided).max() <= _REDUCED_TOLERANCE
    )


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The bound OpenJPEG library, if its version is checked and it decodes windows and
    reduced views right."""
    lib = _bound_library()
    if lib is None:
        return None
    if not _agrees_with_full_decode(lib):
        log.warning("OpenJPEG window decoding off: the binding's self-check failed")
        return None
    return lib


def available() -> bool:
    """Whether window and reduced decoding are available (and checked on this machine)."""
    return _library() is not None


class _MemoryStream:
    """The read / skip / seek callbacks OpenJPEG pulls a codestream through."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0
        self.callbacks = (_READ(self._read), _SKIP(self._skip), _SEEK(self._seek))

    def _read(self, destination: int, count: int, _user: int) -> int:
        count = min(count, len(self._data) - self._position)
        if count <= 0:
            return _EOF
        chunk = self._data[self._position : self._position + count]
        ctypes.memmove(destination, chunk, count)
        self._position += count
        return count

    def _skip(self, count: int, _user: int) -> int:
        self._position = max(0, min(self._position + count, len(self._data)))
        return count

    def _seek(self, position: int, _user: int) -> int:
        if not 0 <= position <= len(self._data):
            return 0
        self._position = position
        return 1


@contextmanager
def _opened(lib: ctypes.CDLL, data: bytes) -> Iterator[tuple[int, int, _IMAGE_P, list[str]]]:
    """Codec, stream and header of `data`, freed on exit; errors collect in the list."""
    codec_format = _CODEC.get(data[: len(_JP2_MAGIC)], _CODEC.get(data[:4]))
    if codec_format is None:
        raise J2kError("not a JPEG 2000 codestream or JP2 file")
    errors: list[str] = []
    on_error = _MESSAGE(lambda message, _user: errors.append(message.decode().strip()))
    source = _MemoryStream(data)
    codec = lib.opj_create_decompress(codec_format)
    stream = lib.opj_stream_create(_STREAM_CHUNK, 1)
    image = _IMAGE_P()
    try:
        lib.opj_set_error_handler(codec, on_error, None)
        parameters = ctypes.create_string_buffer(_PARAMETERS_BYTES)
        lib.opj_set_default_decoder_parameters(parameters)
        read, skip, seek = source.callbacks
        lib.opj_stream_set_read_function(stream, read)
        lib.opj_stream_set_skip_function(stream, skip)
        lib.opj_stream_set_seek_function(stream, seek)
        lib.opj_stream_set_user_data_length(stream, len(data))
        _check(lib.opj_setup_decoder(codec, parameters), "set up the decoder", errors)
        _check(lib.opj_read_header(stream, codec, ctypes.byref(image)), "read the header", errors)
        yield codec, stream, image, errors
    finally:
        if image:
            lib.opj_image_destroy(image)
        lib.opj_stream_destroy(stream)
        lib.opj_destroy_codec(codec)


def _check(ok: int, step: str, errors: list[str]) -> None:
    if not ok:
        detail = f": {'; '.join(errors)}" if errors else ""
        raise J2kError(f"OpenJPEG failed to {step}{detail}")


def _single_component(image: _IMAGE_P) -> _Component:
    header = image.contents
    if header.numcomps != 1:
        raise J2kError(f"expected 1 component, the codestream has {header.numcomps}")
    component = header.comps[0]
    if component.dx != 1 or component.dy != 1:
        raise J2kError("subsampled components are not supported")
    return component


def _pixels(image: _IMAGE_P) -> np.ndarray:
    component = image.contents.comps[0]
    shape = (component.h, component.w)
    return np.ctypeslib.as_array(component.data, shape=shape).copy()


def _decode_window(lib: ctypes.CDLL, data: bytes, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    with _opened(lib, data) as (codec, stream, image, errors):
        _single_component(image)
        origin_x, origin_y = image.contents.x0, image.contents.y0
        area = (origin_x + x0, origin_y + y0, origin_x + x1, origin_y + y1)
        _check(lib.opj_set_decode_area(codec, image, *area), "set the decode area", errors)
        _check(lib.opj_decode(codec, stream, image), "decode", errors)
        return _pixels(image)


def decode_window(data: bytes, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Pixels [y0:y1, x0:x1] (image coordinates) of a one-component codestream, as int32.

    Decodes only the code-blocks the window needs. Bit-exact with a full decode
    for reversible (lossless) codestreams; for irreversible (9/7) ones a few
    values may differ by 1 from a full decode.
    """
    lib = _library()
    if lib is None:
        raise J2kError("OpenJPEG window decoding is not available")
    return _decode_window(lib, data, y0, y1, x0, x1)


def _decode_reduced(lib: ctypes.CDLL, data: bytes, levels: int) -> np.ndarray:
    with _opened(lib, data) as (codec, stream, image, errors):
        _single_component(image)
        ok = lib.opj_set_decoded_resolution_factor(codec, levels)
        _check(ok, "set the resolution factor", errors)
        _check(lib.opj_decode(codec, stream, image), "decode", errors)
        return _pixels(image)


def decode_reduced(data: bytes, levels: int) -> np.ndarray:
    """A one-component codestream decoded at 1 / 2**levels of its size, as int32.

    Decodes only the wavelet levels needed (`levels` at most the codestream's): the
    low-pass band, a smoothed image sampled at every 2**levels-th pixel, not those
    pixels themselves. Its size is the image's divided by 2**levels, rounded up when the
    image's origin is (0, 0).
    """
    lib = _library()
    if lib is None:
        raise J2kError("OpenJPEG reduced decoding is not available")
    return _decode_reduced(lib, data, levels)
