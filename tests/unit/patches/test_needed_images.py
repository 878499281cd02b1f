"""The list of images a run will read, decided from stage 1's table alone."""

import pandas as pd

from embedpatch.patches.needed_images import needed_images, write_needed_images
from embedpatch.patches.negative_images import NegativeChoice, sample_without_rois

BUCKET = "s3://embed/images"


def filtered_table() -> pd.DataFrame:
    rows = [
        ("2D", 1, "[[1, 2, 3, 4]]", "a.dcm"),
        ("2D", 0, "[]", "b.dcm"),
        ("cview", None, "", "c.dcm"),
        ("3D", 1, "[[5, 6, 7, 8]]", "d.dcm"),
        ("3D", 1, "[[5, 6, 7, 8]]", "d.dcm"),  # the same image twice: listed once
    ]
    table = pd.DataFrame(rows, columns=["FinalImageType", "num_ROI", "ROI_coords", "name"])
    table["dicom_path"] = BUCKET + "/" + table.pop("name")
    table["ROI_frames"] = None
    return table


def test_only_images_with_rois_without_negatives():
    assert needed_images(filtered_table(), 0) == [f"{BUCKET}/a.dcm", f"{BUCKET}/d.dcm"]


def test_every_2d_and_cview_image_with_negatives():
    expected = [f"{BUCKET}/{name}.dcm" for name in "abcd"]
    assert needed_images(filtered_table(), 2) == expected


def test_written_one_a_line(tmp_path):
    path = tmp_path / "filtered.parquet"
    table = filtered_table()
    for column in ["empi_anon", "acc_anon", "anon_dicom_path"]:
        table[column] = 1 if column != "anon_dicom_path" else table["dicom_path"]
    table.to_parquet(path)
    assert write_needed_images(str(path), str(tmp_path / "needed.txt"), 0) == 2
    assert (tmp_path / "needed.txt").read_text() == f"{BUCKET}/a.dcm\n{BUCKET}/d.dcm\n"


def test_a_sample_lists_exactly_the_images_stage_3_samples():
    names = [f"{number}.dcm" for number in range(60)]
    table = pd.DataFrame(
        {
            "FinalImageType": "2D",
            "num_ROI": [1] * 5 + [0] * 55,
            "ROI_coords": ["[[1, 2, 3, 4]]"] * 5 + ["[]"] * 55,
            "ROI_frames": None,
            "anon_dicom_path": names,
            "dicom_path": [f"{BUCKET}/{name}" for name in names],
            "ImageLateralityFinal": "L",
            "ViewPosition": "CC",
        }
    )
    choice = NegativeChoice(without_rois="sample", sample_count=7)
    sampled = sample_without_rois(table.iloc[5:], choice, seed=4)
    expected = sorted([f"{BUCKET}/{name}" for name in names[:5]] + list(sampled["dicom_path"]))
    assert needed_images(table, 1, choice, seed=4) == expected
    assert len(expected) == 12
