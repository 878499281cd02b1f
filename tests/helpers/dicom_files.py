"""Small DICOM files written by pydicom, one per transfer syntax, and pydicom's own decode."""

import math

import numpy as np
import pydicom
import pydicom.pixels
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import JPEG2000, ExplicitVRLittleEndian, generate_uid

MAMMO_2D = "1.2.840.10008.5.1.4.1.1.1.2"
DBT = "1.2.840.10008.5.1.4.1.1.13.1.3"
ROWS, COLUMNS = 72, 56  # J2K's 5 default decompositions need >= 32 pixels


def pixels(frames: int | None, seed: int = 0, dtype=np.uint16, bits: int = 12) -> np.ndarray:
    """Smooth ramps plus noise in `bits` bits: compressible, and every value distinct enough."""
    rng = np.random.default_rng(seed)
    shape = (ROWS, COLUMNS) if frames is None else (frames, ROWS, COLUMNS)
    ramp = np.indices(shape).sum(axis=0) * 7
    low = -(1 << bits - 1) if np.dtype(dtype).kind == "i" else 0
    values = low + (ramp + rng.integers(0, 200, shape)) % (1 << bits)
    return values.astype(dtype)


def write_dicom(path, array, syntax=ExplicitVRLittleEndian, photometric="MONOCHROME2", bits=12):
    """A minimal mammography (2D array) or DBT (3D array) DICOM file in `syntax`."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = DBT if array.ndim == 3 else MAMMO_2D
    ds.SOPInstanceUID = generate_uid()
    ds.set_pixel_data(array, photometric, bits, generate_instance_uid=False)
    ds.WindowCenter, ds.WindowWidth = [2048, 1500], [4096, 3000]
    if syntax.is_compressed:
        ds.compress(syntax, j2k_cr=[8] if syntax == JPEG2000 else None)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)
    return path


def reference(path, frame):
    """What the pipeline must match: pydicom's own decode of that frame."""
    decoded = pydicom.pixels.pixel_array(path)
    return decoded[frame] if decoded.ndim == 3 else decoded


def block_means(frame, factor):
    """The mean of the factor x factor block centred on each strided pixel of `frame` (its
    edge pixels repeated outside it): what a JPEG 2000 reduced view is close to."""
    half, (rows, columns) = factor // 2, frame.shape
    cells = math.ceil(rows / factor), math.ceil(columns / factor)
    padded = np.pad(frame.astype(np.float64), ((half, factor), (half, factor)), mode="edge")
    padded = padded[: cells[0] * factor, : cells[1] * factor]
    return padded.reshape(cells[0], factor, cells[1], factor).mean(axis=(1, 3))
