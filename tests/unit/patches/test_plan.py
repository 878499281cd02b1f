"""The extraction plan: tables read, batches planned and published, a job reading its own."""

import json
import logging
import os
from dataclasses import replace

import pandas as pd

from embedpatch.config import validate_config
from embedpatch.patches.batches import BatchLayout
from embedpatch.patches.negative_images import NegativeChoice
from embedpatch.patches.plan import (
    DIGESTS,
    SpecInputs,
    extraction_settings,
    job_batch_specs,
    load_exam_specs,
    negative_candidates,
    negatives_per_image,
    plan_batches,
    publication_key,
)
from embedpatch.patches.spec import PatchSettings
from helpers.spec_tables import IMAGES, ROIS, image


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
    assert sorted(path.stem for path in published.glob("b*.json")) == sorted(batches)
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


def test_the_next_plan_builds_only_the_exams_whose_rows_changed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="embedpatch.patches.plan")
    inputs = stage2_tables(tmp_path)
    folder, layout = tmp_path / "specs", tmp_path / "layout.json"
    plan_batches(inputs, layout, folder)
    assert "2 of 2 exams built" in caplog.text  # c/1.dcm is refused: exam 42 has no work
    rois = pd.read_parquet(inputs.rois)
    new = rois.iloc[[0]].assign(acc_anon=99, anon_dicom_path="z/1.dcm", dicom_path="/local/z/1.dcm")
    pd.concat([rois, new]).to_parquet(inputs.rois)
    after = plan_batches(inputs, layout, folder)
    assert "1 of 3 exams built" in caplog.text
    assert after == BatchLayout.read(layout).group(load_exam_specs(inputs))
    # Digests that cannot be read: every exam is built again, the same plan.
    (folder / publication_key(inputs, layout) / DIGESTS).write_text("not JSON")
    os.utime(inputs.rois, ns=(1, 1))
    assert plan_batches(inputs, layout, folder) == after
    assert "unreadable, building all" in caplog.text and "3 of 3 exams built" in caplog.text
    # JSON of another shape is unreadable too.
    (folder / publication_key(inputs, layout) / DIGESTS).write_text("[1, 2]")
    os.utime(inputs.rois, ns=(2, 2))
    assert plan_batches(inputs, layout, folder) == after
    assert "exam_digests.json is not an object of texts" in caplog.text


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
