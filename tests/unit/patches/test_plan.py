"""Per-exam specifications: canonical, complete, and unchanged by row order."""

import json
import os
from dataclasses import replace

import pandas as pd

from embedpatch.config import validate_config
from embedpatch.patches.batches import BatchLayout
from embedpatch.patches.negative_images import NegativeChoice
from embedpatch.patches.plan import (
    SpecInputs,
    build_exam_specs,
    extraction_settings,
    job_batch_specs,
    load_exam_specs,
    negative_candidates,
    negatives_per_image,
    plan_batches,
    publication_key,
)
from embedpatch.patches.spec import PatchSettings


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


def test_one_spec_per_exam_with_rois():
    specs = build_exam_specs(ROIS, IMAGES.iloc[0:0], 0)
    assert sorted(specs) == sorted([str(ACC_A), str(ACC_B)])
    exam = json.loads(specs[str(ACC_A)])
    assert exam["acc_anon"] == ACC_A  # 16 digits, exact
    assert [r["roi_index"] for r in exam["images"][0]["rois"]] == [0, 1]
    assert exam["images"][0]["avoid"] == [[10, 20, 30, 40], [50, 60, 70, 80]]


def test_specs_do_not_depend_on_row_order():
    shuffled = ROIS.sample(frac=1, random_state=3)
    assert build_exam_specs(shuffled, IMAGES, 2) == build_exam_specs(ROIS, IMAGES, 2)


def test_negatives_add_images_and_exams_without_rois():
    specs = build_exam_specs(ROIS, IMAGES, 2)
    assert str(42) in specs
    exam = json.loads(specs[str(ACC_A)])
    assert [(i["anon_dicom_path"], i["negatives"]) for i in exam["images"]] == [
        ("a/1.dcm", 2),
        ("a/2.dcm", 2),
    ]
    exam_b = json.loads(specs[str(ACC_B)])
    assert exam_b["images"][0]["negatives"] == 0  # not a candidate


def test_suspect_flip_keeps_negatives_off_its_mirror_too():
    flipped = pd.DataFrame([roi("a/1.dcm", ACC_A, 0, (10, 20, 30, 40), suspect_flip=True)])
    exam = json.loads(build_exam_specs(flipped, IMAGES.iloc[0:0], 0)[str(ACC_A)])
    assert exam["images"][0]["avoid"] == [[10, 20, 30, 40], [10, 60, 30, 80]]
    upside_down = flipped.assign(mirror="y")
    exam = json.loads(build_exam_specs(upside_down, IMAGES.iloc[0:0], 0)[str(ACC_A)])
    assert exam["images"][0]["avoid"] == [[10, 20, 30, 40], [90, 20, 110, 40]]


def test_images_with_refused_rois_give_no_negatives():
    rejected = pd.DataFrame({"anon_dicom_path": ["a/2.dcm"]})
    candidates = negative_candidates(
        pd.concat([IMAGES, pd.DataFrame([image("d.dcm", 7, "3D")])]), rejected
    )
    assert list(candidates["anon_dicom_path"]) == ["a/1.dcm", "c/1.dcm"]


def stage2_tables(folder) -> SpecInputs:
    """rois / rejected / filtered parquet files of the tables above, as a run leaves them."""
    paths = {name: str(folder / f"{name}.parquet") for name in ("rois", "rejected", "filtered")}
    ROIS.to_parquet(paths["rois"])
    pd.DataFrame({"anon_dicom_path": ["c/1.dcm"]}).to_parquet(paths["rejected"])
    pd.concat([IMAGES, ROIS[IMAGES.columns]]).drop_duplicates().to_parquet(paths["filtered"])
    return SpecInputs(
        **paths,
        negatives_per_image=1,
        negative_choice=NegativeChoice(),
        seed=0,
        n_batches=3,
    )


def test_a_batch_job_reads_only_its_published_specifications(tmp_path):
    inputs = stage2_tables(tmp_path)
    folder, layout = tmp_path / "specs", tmp_path / "layout.json"
    batches = plan_batches(inputs, layout, folder)
    assert sorted(acc for specs in batches.values() for acc in specs) == sorted(
        load_exam_specs(inputs)
    )
    assert BatchLayout.read(layout).group(load_exam_specs(inputs)) == batches  # saved
    (published,) = folder.iterdir()
    assert sorted(path.stem for path in published.glob("*.json")) == sorted(batches)
    for batch, specs in batches.items():
        assert job_batch_specs(inputs, batch, layout, folder) == specs
    # The job reads the published file, not the tables.
    batch = next(iter(batches))
    (published / f"{batch}.json").write_text("{}")
    assert job_batch_specs(inputs, batch, layout, folder) == {}
    os.utime(inputs.rois, ns=(1, 1))  # a new version of the ROI table: another key
    assert job_batch_specs(inputs, batch, layout, folder) == batches[batch]
    assert plan_batches(inputs, layout, folder) == batches
    assert [path.name for path in folder.iterdir()] == [publication_key(inputs, layout)]
    assert job_batch_specs(inputs, batch, layout, folder) == batches[batch]


def test_a_new_exam_gets_a_batch_of_its_own_and_is_published(tmp_path):
    inputs = stage2_tables(tmp_path)
    folder, layout = tmp_path / "specs", tmp_path / "layout.json"
    before = plan_batches(inputs, layout, folder)
    rois = pd.read_parquet(inputs.rois)
    new = rois.iloc[[0]].assign(acc_anon=99, anon_dicom_path="z/1.dcm", dicom_path="/local/z/1.dcm")
    pd.concat([rois, new]).to_parquet(inputs.rois)
    after = plan_batches(inputs, layout, folder)
    assert {batch: specs for batch, specs in after.items() if batch in before} == before
    assert [list(specs) for batch, specs in after.items() if batch not in before] == [["99"]]
    (added,) = after.keys() - before.keys()
    assert int(added[1:]) >= inputs.n_batches
    assert job_batch_specs(inputs, added, layout, folder) == after[added]
    # Without the published files, a job builds them and groups them by the saved layout.
    assert job_batch_specs(inputs, added, layout, tmp_path / "nothing published") == after[added]


def test_the_chosen_images_without_rois_get_negatives(tmp_path):
    inputs = stage2_tables(tmp_path)
    only_rois = replace(inputs, negative_choice=NegativeChoice(without_rois="none"))
    specs = load_exam_specs(only_rois)
    negatives = {
        image["anon_dicom_path"]: image["negatives"]
        for spec in specs.values()
        for image in json.loads(spec)["images"]
    }
    assert negatives == {"a/1.dcm": 1, "b/1.dcm": 1}  # a/2.dcm has no ROI, c/1.dcm refused


def test_a_job_without_published_specifications_says_so(tmp_path, caplog):
    inputs = stage2_tables(tmp_path)
    batch = next(iter(plan_batches(inputs, tmp_path / "layout.json", tmp_path / "specs")))
    job_batch_specs(inputs, batch, tmp_path / "layout.json", tmp_path / "nothing published")
    assert f"no published specifications for {batch}" in caplog.text


def test_negatives_default_on_for_demo_off_for_user_data():
    assert negatives_per_image(validate_config({})) == 2
    user = validate_config({"metadata": "m.csv", "dicom_root": "/data"})
    assert negatives_per_image(user) == 0
    chosen = {"metadata": "m.csv", "dicom_root": "/d", "patches": {"negatives_per_image": 3}}
    assert negatives_per_image(validate_config(chosen)) == 3


def test_extraction_settings_are_canonical_and_complete():
    settings = json.loads(extraction_settings(validate_config({})))
    assert "negatives_per_image" not in settings
    assert PatchSettings.from_dict(settings).size == 512
    reordered = validate_config({"patches": {"seed": 0, "size": 512}})
    assert extraction_settings(reordered) == extraction_settings(validate_config({}))
