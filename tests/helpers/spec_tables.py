"""Small stage-2 tables (accepted ROIs, images) for the tests of the exams' specifications."""

import pandas as pd


def image(path: str, acc: int, kind: str = "2D") -> dict:
    return {
        "acc_anon": acc,
        "empi_anon": 10000001,
        "anon_dicom_path": path,
        "dicom_path": f"/local/{path}",
        "FinalImageType": kind,
        "ImageLateralityFinal": "L",
        "ViewPosition": "CC",
    }


def roi(path: str, acc: int, index: int, box=(10, 20, 30, 40), **flags) -> dict:
    ymin, xmin, ymax, xmax = box
    return image(path, acc) | {
        "roi_index": index,
        "ymin": ymin,
        "xmin": xmin,
        "ymax": ymax,
        "xmax": xmax,
        "frames": flags.pop("frames", []),
        "rows": 120,
        "columns": 100,
        "suspect_flip": flags.pop("suspect_flip", False),
        "mirror": flags.pop("mirror", "x"),
        "flip_fixed": flags.pop("flip_fixed", False),
    }


ACC_A, ACC_B = 1234567890123456, 9876543210987654
ROIS = pd.DataFrame(
    [roi("a/1.dcm", ACC_A, 0), roi("a/1.dcm", ACC_A, 1, (50, 60, 70, 80)), roi("b/1.dcm", ACC_B, 0)]
)
IMAGES = pd.DataFrame([image("a/1.dcm", ACC_A), image("a/2.dcm", ACC_A), image("c/1.dcm", 42)])
