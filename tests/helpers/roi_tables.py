"""Stage-2 tables built in memory for tests of what reads them."""

import pandas as pd


def roi_rows(*rows: dict) -> pd.DataFrame:
    """A rois.parquet-like table; every column has a default."""
    defaults = {
        "acc_anon": 1,
        "anon_dicom_path": "a.dcm",
        "dicom_path": "a.dcm",
        "FinalImageType": "2D",
        "ImageLateralityFinal": "L",
        "ViewPosition": "CC",
        "roi_index": 0,
        "ymin": 10,
        "xmin": 10,
        "ymax": 20,
        "xmax": 30,
        "frames": [],
        "rows": 100,
        "columns": 100,
        "n_frames": 1,
        "coords_space": "dicom",
        "flip_h": False,
        "flip_v": False,
        "clipped": False,
        "near_duplicate_of": pd.NA,
        "axes_swapped": False,
        "axes_fixed": False,
        "frames_on_2d": False,
        "suspect_flip": False,
        "flip_fixed": False,
        "mirror": "x",
        "box_tissue": 1.0,
        "mirror_tissue": 0.0,
        "box_contrast": 0.0,
        "mirror_contrast": 0.0,
    }
    return pd.DataFrame([defaults | row for row in rows], columns=list(defaults))
