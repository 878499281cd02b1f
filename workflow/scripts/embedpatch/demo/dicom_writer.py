"""Write one synthetic mammography DICOM file in a chosen transfer syntax."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
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
    JPEG2000_LOSSLESS = uid.JPEG2000Lossless
    RLE_LOSSLESS = uid.RLELossless
    JPEGLS_LOSSLESS = uid.JPEGLSLossless


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


def write_dicom(path: Path, pixels: np.ndarray, header: DicomHeader, encoding: Encoding) -> None:
    """Write `pixels` ((rows, cols) or (frames, rows, cols) uint16, bright = dense) to `path`."""
    ds = _dataset(header)
    ds.set_pixel_data(
        stored_values(pixels, header.photometric),
        header.photometric,
        BITS_STORED,
        generate_instance_uid=False,
    )
    if encoding is not Encoding.UNCOMPRESSED:
        ds.compress(encoding.value, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
