"""The pixel reader against pydicom on third-party files, and on damaged copies of them.

Differential: every file with pixel data and one sample per pixel among pydicom's test
files and pydicom-data 1.0.0's: 93 grayscale, 86 of them compared with pydicom and 7 that
pydicom cannot decode (the reader must refuse them too), and 10 PALETTE COLOR ones, to be
refused. No file has float pixel data (pydicom only downloads those). 59 files with 3
samples per pixel are left out.
Hostile: 223 damaged copies of 13 files covering the encodings, read in a child process
under an address-space limit: every read raises ImageError or gives the intact pixels,
within 1 s of CPU, and no MemoryError.
"""

import functools
import io
import json
import resource
import struct
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pydicom.pixels
import pytest
from data_store import DataStore  # the pydicom-data package
from pydicom.data import get_testdata_file
from pydicom.data.data_manager import DATA_ROOT

from embedpatch.dicom import ImageError, ImageReader, read_header

pytestmark = pytest.mark.slow  # every grayscale file of two test-data sets: full tier

# Both local stores, listed here rather than with get_testdata_files(): that also
# downloads files missing from pydicom-data 1.0.0, so the set would depend on the network.
STORES = {"pydicom": Path(DATA_ROOT) / "test_files", "pydicom-data": DataStore().data_path}
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
GRAYSCALE = {"MONOCHROME1", "MONOCHROME2"}
MAX_FRAMES = 4
FACTORS = (2, 3, 8)
JPEG_2000_PREFIX = "1.2.840.10008.1.2.4.9"
BAND = 7

# One file per encoding; the comment says what else it brings.
HOSTILE_SOURCES = [
    "MR_small.dcm",  # native little endian
    "MR_small_bigendian.dcm",  # native big endian
    "JPEG-LL.dcm",  # JPEG Lossless; its one frame in two fragments
    "JPGExtended.dcm",  # JPEG Extended, 12 bits
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 Lossless
    "J2K_pixelrep_mismatch.dcm",  # JPEG 2000 Lossless: signed pixels, unsigned codestream
    "JPEG2000.dcm",  # JPEG 2000 lossy
    "MR_small_RLE.dcm",  # RLE, with a Basic Offset Table
    "emri_small_RLE.dcm",  # 10 frames, RLE, with a Basic Offset Table
    "MR2_J2KR.dcm",  # JPEG 2000 Lossless; its one frame in nine fragments
    "emri_small_jpeg_2k_lossless.dcm",  # 10 frames, JPEG 2000 Lossless, no offset table
    "emri_small_jpeg_ls_lossless.dcm",  # 10 frames, JPEG-LS Lossless, no offset table
]
ITEM_TAG = b"\xfe\xff\x00\xe0"  # (FFFE,E000) little endian
HUGE_LENGTHS = (0x7FFFFFF0, 0xFFFFFFF0)
MEMORY_HEADROOM = 1 << 30
"""Address space a child may add to what it uses once its modules are imported (about
190 MiB): a 2 GiB allocation fails, reading the largest copy needs under 300 MiB."""
CASE_SECONDS = 1.0
CONTROL = "rewritten"
"""The copy pydicom only writes again: read whole, never refused (else the other copies
of that file, refused or not, prove nothing)."""


@functools.cache
def pixel_files() -> dict[str, dict[str, Path]]:
    """Files with pixel data and one sample per pixel, by id (store and path): the grayscale
    ones, and those the reader must refuse (float pixel data, or a colour photometric).

    Files with several samples per pixel are left out: colour by construction, and refused
    from the header alone (test_dicom_io.test_colour_image_refused_by_reader).
    """
    files = {"grayscale_file": {}, "refused_file": {}}
    for store, root in STORES.items():
        for path in sorted(root.rglob("*")):
            try:
                with warnings.catch_warnings(action="ignore"):
                    dataset = pydicom.dcmread(path, defer_size=1024, force=True)
            except Exception:  # a folder, or not DICOM at all
                continue
            pixels = {keyword for keyword in PIXEL_KEYWORDS if keyword in dataset}
            if not pixels or dataset.get("SamplesPerPixel", 1) != 1:
                continue
            colour = dataset.get("PhotometricInterpretation", "MONOCHROME2") not in GRAYSCALE
            kind = "refused_file" if colour or pixels != {"PixelData"} else "grayscale_file"
            files[kind][f"{store}/{path.relative_to(root)}"] = path
    return files


@functools.cache
def hostile_cases() -> dict[str, dict[str, tuple[str, object]]]:
    """The damaged copies of each hostile source file (see `damages`)."""
    return {name: damages(Path(get_testdata_file(name))) for name in HOSTILE_SOURCES}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize by data file when collecting, not on import: the child processes import
    this module and need none of it."""
    copies = [f"{name}/{label}" for name, labels in hostile_cases().items() for label in labels]
    for argument, cases in {**pixel_files(), "damaged_copy": {c: c for c in copies}}.items():
        if argument in metafunc.fixturenames:
            metafunc.parametrize(argument, list(cases.values()), ids=list(cases))


def assert_refused(path: Path) -> None:
    """Opening `path`, or reading one of its first frames, raises ImageError."""
    with pytest.raises(ImageError), ImageReader(path) as reader:
        for index in range(min(reader.header.number_of_frames, MAX_FRAMES)):
            reader.frame(index)


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Same values and shape; same dtype kind and size (byte order may differ)."""
    assert (got.dtype.kind, got.dtype.itemsize) == (want.dtype.kind, want.dtype.itemsize), what
    np.testing.assert_array_equal(got, want, err_msg=what, strict=False)


def assert_view(got: np.ndarray, frame: np.ndarray, factor: int, low_pass: bool, what: str) -> None:
    """The strided frame; if `low_pass` (JPEG 2000) and `factor` is a power of two, maybe a
    reduced view: the strided frame's shape and dtype, and no farther from the block means
    than the strided pixels are, plus 1% of the frame's range."""
    from helpers.dicom_files import block_means  # here: the child processes cannot import it

    strided = frame[::factor, ::factor]
    if not low_pass or factor & (factor - 1):
        assert_same(got, strided, what)
        return
    assert (got.dtype.kind, got.dtype.itemsize) == (frame.dtype.kind, frame.dtype.itemsize), what
    assert got.shape == strided.shape, what
    means = block_means(frame, factor)
    slack = 0.01 * (float(frame.max()) - float(frame.min()))
    assert np.abs(got - means).mean() <= np.abs(strided - means).mean() + slack, what


def windows(rows: int, columns: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1): the whole frame, a band along each border, 1 x 1 at each corner and
    the centre, one inside. Thin bands: JPEG 2000 windows cost the code blocks they touch."""
    band_rows, band_columns = min(max(rows // 3, 1), BAND), min(max(columns // 3, 1), BAND)
    return [
        (0, rows, 0, columns),
        (0, band_rows, 0, columns),
        (rows - band_rows, rows, 0, columns),
        (0, rows, 0, band_columns),
        (0, rows, columns - band_columns, columns),
        (0, 1, 0, 1),
        (0, 1, columns - 1, columns),
        (rows - 1, rows, 0, 1),
        (rows - 1, rows, columns - 1, columns),
        (rows // 2, rows // 2 + 1, columns // 2, columns // 2 + 1),
        (rows // 4, rows - rows // 3, columns // 4 + 1, columns - columns // 5),
    ]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the malformed files
def test_grayscale_file_equals_pydicom(grayscale_file):
    try:
        expected = pydicom.pixels.pixel_array(grayscale_file)
    except Exception:  # what pydicom cannot decode, the reader must refuse
        assert_refused(grayscale_file)
        return
    dataset = pydicom.dcmread(grayscale_file, stop_before_pixels=True)
    rows, columns = dataset.Rows, dataset.Columns
    header = read_header(grayscale_file)
    assert (header.rows, header.columns, header.number_of_frames) == (
        rows,
        columns,
        int(dataset.get("NumberOfFrames") or 1),
    )
    expected = expected.reshape(-1, rows, columns)  # single frames come without the axis
    low_pass = header.transfer_syntax_uid.startswith(JPEG_2000_PREFIX)
    for index, want in enumerate(expected[:MAX_FRAMES]):
        for factor in FACTORS:
            with ImageReader(grayscale_file) as reader:  # new: no frame decoded and kept yet
                what = f"frame {index} downsampled by {factor}"
                assert_view(reader.downsampled(index, factor), want, factor, low_pass, what)
        with ImageReader(grayscale_file) as reader:
            for y0, y1, x0, x1 in windows(rows, columns):
                what = f"frame {index} region [{y0}:{y1}, {x0}:{x1}]"
                assert_same(reader.region(index, y0, y1, x0, x1), want[y0:y1, x0:x1], what)
            assert_same(reader.frame(index), want, f"frame {index}")


def test_colour_or_float_file_refused(refused_file):
    assert_refused(refused_file)


def item_length_offsets(path: Path) -> tuple[int, int]:
    """File offsets of the length of the Basic Offset Table item and of the first fragment's."""
    data = path.read_bytes()
    with path.open("rb") as file:
        pydicom.dcmread(file, stop_before_pixels=True)
        element = file.tell()
    # (7FE0,0010), VR OB (or OW), 2 reserved bytes, undefined length: always little endian
    assert data[element : element + 4] == b"\xe0\x7f\x10\x00"
    assert data[element + 6 : element + 12] == b"\x00\x00\xff\xff\xff\xff"
    table = element + 12
    assert data[table : table + 4] == ITEM_TAG
    (table_length,) = struct.unpack_from("<L", data, table + 4)
    fragment = table + 8 + table_length
    assert data[fragment : fragment + 4] == ITEM_TAG
    return table + 4, fragment + 4


def damages(path: Path) -> dict[str, tuple[str, object]]:
    """The damaged copies made of `path`, by label: (kind, argument) for `damaged`."""
    size = path.stat().st_size
    cases = {CONTROL: ("set", None)}
    for percent in (10, 50, 90):
        cases[f"truncated-{percent}%"] = ("truncate", size * percent // 100)
    for cut in (1, 10):
        cases[f"truncated-last-{cut}B"] = ("truncate", size - cut)
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    if dataset.file_meta.TransferSyntaxUID.is_encapsulated:
        items = zip(("offset-table", "fragment"), item_length_offsets(path), strict=True)
        for item, offset in items:
            for length in HUGE_LENGTHS:
                cases[f"{item}-length-{length:08X}"] = ("patch", (offset, length))
    frames = [-5, 0, 10**9] + ([2] if int(dataset.get("NumberOfFrames") or 1) == 1 else [])
    for value in frames:
        cases[f"frames={value}"] = ("set", ("NumberOfFrames", value))
    for keyword in ("Rows", "Columns"):
        for value in (0, 65535):
            cases[f"{keyword.lower()}={value}"] = ("set", (keyword, value))
    return cases


def damaged(path: Path, kind: str, argument: object) -> bytes:
    """The bytes of `path` damaged: truncated, a 4-byte length overwritten, or an attribute
    set (None: only written again) by pydicom."""
    data = path.read_bytes()
    if kind == "truncate":
        return data[:argument]
    if kind == "patch":
        offset, length = argument
        return data[:offset] + struct.pack("<L", length) + data[offset + 4 :]
    dataset = pydicom.dcmread(path)
    if argument is not None:
        keyword, value = argument
        setattr(dataset, keyword, value)
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def address_space() -> int:
    """Bytes of address space this process uses now."""
    return int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:300]


def caused_by_memory(error: BaseException | None) -> bool:
    """Whether `error` is, or was raised while handling, a MemoryError."""
    while error is not None:
        if isinstance(error, MemoryError):
            return True
        error = error.__cause__ or error.__context__
    return False


def judged(
    what: str, got: np.ndarray | Exception, want: np.ndarray | None, refusable: bool
) -> str | None:
    """What is wrong with a read that gave `got`: None for the intact pixels `want` or, if
    `refusable`, an ImageError (not from a MemoryError); `want` None: there is no such frame."""
    if isinstance(got, Exception):
        refused = refusable and isinstance(got, ImageError) and not caused_by_memory(got)
        return None if refused else f"{what}: {one_line(got)}"
    if want is None:
        return f"{what}: pixels of a frame the intact file lacks"
    same_type = (got.dtype.kind, got.dtype.itemsize) == (want.dtype.kind, want.dtype.itemsize)
    if not (same_type and got.shape == want.shape and np.array_equal(got, want)):
        return f"{what}: {got.dtype} {got.shape}, not the intact pixels"
    return None


def read_problems(path: str, intact: np.ndarray, views: np.ndarray, refusable: bool) -> list[str]:
    """What is wrong with reading `path`: three readers read each frame, one a window of it,
    one a reduced view, one the whole frame (new readers: nothing decoded and kept yet).

    A reader that raises no ImageError must give the intact file's pixels, and for the view
    `views`: the intact file's, as the reader gives them (JPEG 2000's are low-pass; that they
    fit pydicom's frames is test_grayscale_file_equals_pydicom's part).
    """
    count, rows, columns = intact.shape
    y0, y1, x0, x1 = rows // 4, rows - rows // 3, columns // 4 + 1, columns - columns // 5
    reads = [
        ("region", ImageReader.region, (y0, y1, x0, x1), intact[:, y0:y1, x0:x1]),
        ("downsampled by 2", ImageReader.downsampled, (2,), views),
        ("frame", ImageReader.frame, (), intact),
    ]
    outcomes, problems = [], []  # outcomes: (what, pixels or exception, intact pixels)
    for name, method, arguments, wanted in reads:
        try:
            reader = ImageReader(path)
        except Exception as error:
            outcomes.append(("open", error, None))
            continue
        with reader:
            frames, read = reader.header.number_of_frames, []
            for index in range(min(frames, count + 1)):
                try:
                    got = method(reader, index, *arguments)
                except Exception as error:
                    got = error
                want = wanted[index] if index < count else None
                read.append((f"frame {index} {name}", got, want))
        if frames < count and not any(isinstance(got, ImageError) for _, got, _ in read):
            problems.append(f"{name}: read {frames} frames, the intact file has {count}")
        outcomes += read
    problems += [judged(*outcome, refusable) for outcome in outcomes]
    return list(dict.fromkeys(problem for problem in problems if problem))


def check_copies(cases: list[tuple[str, str, str, bool]]) -> None:
    """Child process: one JSON line per (id, intact file, damaged copy, refusable), in order:
    {"case": id, "problems": [...]}."""
    intact, views = {}, {}
    for source in dict.fromkeys(source for _, source, _, _ in cases):
        pixels = pydicom.pixels.pixel_array(source)
        intact[source] = pixels.reshape(-1, *pixels.shape[-2:])
        with ImageReader(source) as reader:
            views[source] = np.stack([reader.downsampled(i, 2) for i in range(len(intact[source]))])
    limit = address_space() + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    for case, source, copy, refusable in cases:
        start = time.process_time()  # CPU time: a machine busy with other work does not count
        problems = read_problems(copy, intact[source], views[source], refusable)
        seconds = time.process_time() - start
        if seconds > CASE_SECONDS:
            problems.append(f"took {seconds:.2f} s of CPU")
        print(json.dumps({"case": case, "problems": problems}), flush=True)


def run_children(cases: list[tuple[str, str, str, bool]]) -> dict[str, list[str]]:
    """The problems of each case (see `check_copies`), read by a child process; if it dies,
    the case it died on gets that as its problem and a new child reads the cases after it."""
    verdicts = {}
    while cases:
        try:
            child = subprocess.run(
                [sys.executable, __file__],
                input=json.dumps(cases),
                capture_output=True,
                text=True,
                timeout=10 + 2 * CASE_SECONDS * len(cases),
            )
            output = child.stdout
            death = f"the child died (exit {child.returncode}): {child.stderr[-500:]}"
        except subprocess.TimeoutExpired as timeout:
            output, death = (timeout.stdout or b"").decode(), "the child hung"
        for line in output.splitlines():
            verdict = json.loads(line)
            verdicts[verdict["case"]] = verdict["problems"]
        cases = [case for case in cases if case[0] not in verdicts]
        if cases:
            verdicts[cases.pop(0)[0]] = [death]
    return verdicts


@pytest.fixture(scope="module")
def hostile_verdicts(tmp_path_factory):
    """The problems found reading each damaged copy, by its id: all read by one child."""
    cases = []
    for name, copies in hostile_cases().items():
        source = Path(get_testdata_file(name))
        folder = tmp_path_factory.mktemp(name)
        for label, (kind, argument) in copies.items():
            copy = folder / f"{label}.dcm"
            copy.write_bytes(damaged(source, kind, argument))
            cases.append((f"{name}/{label}", str(source), str(copy), label != CONTROL))
    return run_children(cases)


def test_damaged_copy_refused_or_intact(hostile_verdicts, damaged_copy):
    problems = hostile_verdicts[damaged_copy]
    assert not problems, "; ".join(problems)


if __name__ == "__main__":
    check_copies(json.load(sys.stdin))
