"""No patient data from the DICOM headers reaches any output.

Copies of two demo exams get distinctive identifying values (the patient's name, IDs,
birth date, address, institution, physicians, free text), one copy is also cut short
so that a rejection message is written about it; the whole workflow (tables, shards,
figures, report inputs, logs) runs on them. None of the values may appear in any byte
the run writes.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pydicom
import pytest
import yaml

from helpers.user_mode import clean_rows, copy_images, exams_with, relative, set_up_run, snakemake

pytestmark = pytest.mark.workflow

# Header keyword -> a value found nowhere else (long enough not to occur by chance).
PATIENT_DATA = {
    "PatientName": "Zoë^Müllerová-QXZ7731",
    "PatientID": "PID-QXZ-55821907",
    "OtherPatientIDs": "OPID-QXZ-99120",
    "PatientBirthDate": "19230417",
    "PatientAddress": "17 Rue Quixotique QXZ",
    "PatientTelephoneNumbers": "+33-1-7731-5582",
    "InstitutionName": "Hôpital Saint-QXZ-Imagerie",
    "InstitutionAddress": "42 Boulevard QXZ-Sein",
    "ReferringPhysicianName": "Dr^Referrer-QXZ4410",
    "PerformingPhysicianName": "Dr^Performer-QXZ4411",
    "OperatorsName": "Tech^Operator-QXZ4412",
    "AccessionNumber": "ACC-QXZ-3141592",
    "StudyID": "STUDY-QXZ-2718",
    "StationName": "STN-QXZ-MAMMO7",
    "DeviceSerialNumber": "SN-QXZ-00042",
    "ImageComments": "known to Mrs Quixotic QXZ, see chart",
}


def add_patient_data(path: Path) -> None:
    """Write PATIENT_DATA into the DICOM at `path` (UTF-8 character set)."""
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword, value in PATIENT_DATA.items():
        setattr(ds, keyword, value)
    ds.save_as(path)


def encodings(value: str) -> set[bytes]:
    """How a value may be written: UTF-8, Latin-1 where possible, DICOM's '^' as a space."""
    forms = {value, value.replace("^", " ")}
    found = {form.encode() for form in forms}
    for form in forms:
        with contextlib.suppress(UnicodeEncodeError):
            found.add(form.encode("latin-1"))
    return found


@pytest.fixture(scope="module")
def private_run(demo_cohort, tmp_path_factory) -> Path:
    clean = clean_rows(demo_cohort)
    exam_a = exams_with(clean, "2D", "3D", "negative")[0]
    exam_b = next(acc for acc in exams_with(clean, "2D") if acc != exam_a)
    table = clean[clean["acc_anon"].isin([exam_a, exam_b])]
    root = tmp_path_factory.mktemp("private_inputs") / "images"
    copy_images(table, demo_cohort, root)
    for path in root.rglob("*.dcm"):
        add_patient_data(path)
    cut = root / relative(table["anon_dicom_path"].iloc[0])
    cut.write_bytes(cut.read_bytes()[:-4000])
    workdir = set_up_run(tmp_path_factory.mktemp("private_run"), table, root)
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_the_inputs_do_carry_the_patient_data(private_run):
    root = Path(yaml.safe_load((private_run / "config.yaml").read_text())["dicom_root"])
    header = pydicom.dcmread(next(root.rglob("*.dcm")), stop_before_pixels=True)
    assert str(header.PatientName) == PATIENT_DATA["PatientName"]


def test_no_patient_data_in_any_output(private_run):
    files = [path for path in private_run.rglob("*") if path.is_file()]
    kinds = {path.suffix for path in files}
    assert {".h5", ".parquet", ".csv", ".json", ".png", ".log"} <= kinds, kinds
    wanted = {form: keyword for keyword, v in PATIENT_DATA.items() for form in encodings(v)}
    leaks = [
        (str(path.relative_to(private_run)), wanted[form])
        for path in files
        for data in [path.read_bytes()]
        for form in wanted
        if form in data
    ]
    assert not leaks
    rejected = (private_run / "results/rois/rejected.csv").read_text()
    assert "truncated" in rejected  # a message was written about a file holding them
