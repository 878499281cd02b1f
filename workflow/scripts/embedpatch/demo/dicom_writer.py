"""Write one synthetic mammography DICOM file in a chosen transfer syntax and pixel type."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path

import numpy as np
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset

from embedpatch.demo.phantom import MAX_VALUE

MAMMO_FOR_PRESENTATION = uid.DigitalMammographyXRayImageStorageForPresentation
BREAST_TOMOSYNTHESIS = uid.BreastTomosynthesisImageStorage
BITS_STORED = 12


class Encoding(StrEnum):
    """Transfer syntaxes the demo cohort uses; values are the transfer syntax UIDs."""

    UNCOMPRESSED = uid.ExplicitVRLittleEndian
    BIG_ENDIAN = uid.ExplicitVRBigEndian  # retired, still found in archives; uncompressed
    JPEG2000_LOSSLESS = uid.JPEG2000Lossless
    RLE_LOSSLESS = uid.RLELossless
    JPEGLS_LOSSLESS = uid.JPEGLSLossless


SIGNED_OFFSET = 1 << (BITS_STORED - 1)  # 2048: 12-bit values 0..4095 stored as -2048..2047
EIGHT_BIT_SHIFT = BITS_STORED - 8  # 12-bit values stored in 8 bits: value >> 4


class PixelType(Enum):
    """How an image stores the phantom's 12-bit values (bright = dense, 0..4095)."""

    UINT16 = "uint16"  # as they are: Bits Stored 12 of 16, unsigned (PixelRepresentation 0)
    INT16 = "int16"  # value - 2048: Bits Stored 12 of 16, signed (PixelRepresentation 1)
    UINT8 = "uint8"  # value >> 4: Bits Stored 8 of 8, unsigned

    @property
    def bits_stored(self) -> int:
        return 8 if self is PixelType.UINT8 else BITS_STORED

    def encode(self, values: np.ndarray) -> np.ndarray:
        """12-bit values (uint16) as this type stores them."""
        if self is PixelType.INT16:
            return (values.astype(np.int16) - SIGNED_OFFSET).astype(np.int16)
        if self is PixelType.UINT8:
            return (values >> EIGHT_BIT_SHIFT).astype(np.uint8)
        return values

    def decode(self, stored: np.ndarray) -> np.ndarray:
        """Stored values back on the 12-bit scale (int64; 8-bit data to within 15)."""
        values = stored.astype(np.int64)
        if self is PixelType.INT16:
            return values + SIGNED_OFFSET
        return values << EIGHT_BIT_SHIFT if self is PixelType.UINT8 else values

    def window(self, centre: float, width: float) -> tuple[float, float]:
        """A window (centre, width) on the 12-bit values, in this type's stored values."""
        if self is PixelType.INT16:
            return centre - SIGNED_OFFSET, width
        if self is PixelType.UINT8:
            scale = float(1 << EIGHT_BIT_SHIFT)
            return centre / scale, width / scale
        return centre, width


@dataclass(frozen=True)
class DicomHeader:
    """The identifying and descriptive attributes of one image (already anonymized)."""

    sop_class_uid: str
    study_uid: str
    series_uid: str
    sop_uid: str
    patient_id: str
    accession_number: str
    study_date: str  # YYYYMMDD
    study_description: str
    series_description: str
    series_number: int
    manufacturer: str
    model: str
    laterality: str
    view_position: str
    patient_orientation: tuple[str, str]
    window: tuple[float, float]  # centre, width, in stored values
    photometric: str  # MONOCHROME1 or MONOCHROME2
    pixel_type: PixelType = PixelType.UINT16


def stored_values(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """Pixels (bright = dense) as stored: MONOCHROME1 stores them inverted."""
    return MAX_VALUE - pixels if photometric == "MONOCHROME1" else pixels


def _dataset(header: DicomHeader) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = header.sop_class_uid
    ds.SOPInstanceUID = header.sop_uid
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.Modality = "MG"
    ds.PatientID = header.patient_id
    ds.AccessionNumber = header.accession_number
    ds.StudyDate = header.study_date
    ds.StudyDescription = header.study_description
    ds.SeriesDescription = header.series_description
    ds.SeriesNumber = header.series_number
    ds.InstanceNumber = 1
    ds.Manufacturer = header.manufacturer
    ds.ManufacturerModelName = header.model
    ds.BodyPartExamined = "BREAST"
    ds.ImageLaterality = header.laterality
    ds.ViewPosition = header.view_position
    ds.PatientOrientation = list(header.patient_orientation)
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.WindowCenter, ds.WindowWidth = header.window
    ds.LossyImageCompression = "00"
    return ds


def _big_endian(ds: Dataset, stored: np.ndarray) -> None:
    """Make `ds` Explicit VR Big Endian: the transfer syntax, and Pixel Data byte-swapped
    (pydicom writes the other elements in the transfer syntax's byte order)."""
    ds.file_meta.TransferSyntaxUID = uid.ExplicitVRBigEndian
    ds.PixelData = stored.astype(stored.dtype.newbyteorder(">")).tobytes()


def write_dicom(path: Path, pixels: np.ndarray, header: DicomHeader, encoding: Encoding) -> None:
    """Write `pixels` ((rows, cols) or (frames, rows, cols) uint16, bright = dense) to `path`,
    stored as `header.pixel_type`."""
    ds = _dataset(header)
    stored = header.pixel_type.encode(stored_values(pixels, header.photometric))
    ds.set_pixel_data(
        stored, header.photometric, header.pixel_type.bits_stored, generate_instance_uid=False
    )
    if encoding is Encoding.BIG_ENDIAN:
        _big_endian(ds, stored)
    elif encoding is not Encoding.UNCOMPRESSED:
        ds.compress(encoding.value, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
