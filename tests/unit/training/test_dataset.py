"""PatchDataset: filters, items equal to the shards, caching, pickling, fork and torch workers,
images of several pixel types (uint8, uint16, int16, big-endian)."""

import contextlib
import functools
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset

from embedpatch.patches.batch_job import extract_exam_shard
from embedpatch.patches.extract import (
    INFO_COLUMNS,
    INFO_INT_COLUMNS,
    REJECTION_COLUMNS,
    REJECTION_INT_COLUMNS,
    typed_table,
)
from embedpatch.patches.manifest import manifest_from_batch_tables
from embedpatch.patches.shards import ExamPatches, read_shard, read_shard_tables, write_shard
from embedpatch.training.dataset import PatchDataset, as_torch, torch_dataset
from embedpatch.training.splits import DEFAULT_FRACTIONS, write_splits
from helpers.pipeline_manifest import build_manifest
from helpers.reference_patches import decoded, reference_dtype, reference_origin, reference_patch

SIZE = 16
IMAGES = [  # FinalImageType, ImageLateralityFinal, ViewPosition, frames
    ("2D", "L", "CC", [-1]),
    ("2D", "R", "MLO", [-1]),
    ("cview", "L", "MLO", [-1]),
    ("3D", "R", "CC", [3, 4]),
    ("2D", None, "XCCL", [-1]),
]


def image_records(rng: np.random.Generator, empi: int, acc: int, image: int) -> list[dict]:
    """Info rows of one image: each padding of each ROI frame, and a negative on flat images."""
    image_type, laterality, view, frames = IMAGES[image % len(IMAGES)]
    fields = {
        "empi_anon": empi,
        "acc_anon": acc,
        "anon_dicom_path": f"/mnt/NAS2/mammo/anon_dicom/cohort_1/{empi}/{acc}/{image}.dcm",
        "FinalImageType": image_type,
        "ImageLateralityFinal": laterality,
        "ViewPosition": view,
        **dict(zip(["ymin", "xmin"], rng.integers(0, 100, 2).tolist(), strict=True)),
        "ymax": 120,
        "xmax": 120,
        "patch_y0": 0,
        "patch_x0": 0,
        "patch_size": SIZE,
    }
    records = [
        {**fields, "roi_index": 0, "frame": frame, "padding": padding, "label": "roi"}
        for frame in frames
        for padding in ("tissue", "black")
    ]
    if image_type != "3D":
        records.append(
            {**fields, "roi_index": -1, "frame": -1, "padding": "tissue", "label": "negative"}
        )
    return records


def write_exam(results: Path, rng: np.random.Generator, empi: int, acc: int) -> Path:
    """A shard of 1 to 3 images of 12-bit noise patches (every patch different)."""
    records = [
        record
        for image in rng.choice(len(IMAGES), rng.integers(1, 4), replace=False)
        for record in image_records(rng, empi, acc, int(image))
    ]
    records = [{**record, "index": index} for index, record in enumerate(records)]
    exam = ExamPatches(
        acc_anon=acc,
        empi_anon=empi,
        patches=rng.integers(0, 4096, (len(records), SIZE, SIZE)).astype(np.uint16),
        info=typed_table(records, INFO_COLUMNS, INFO_INT_COLUMNS),
        rejections=typed_table([], REJECTION_COLUMNS, REJECTION_INT_COLUMNS),
    )
    path = results / "patches" / f"{acc}.h5"
    write_shard(path, exam, {"config_hash": "test", "config": {}})
    return path


def write_results(results: Path, n_patients: int = 24, seed: int = 0) -> Path:
    """A results folder of synthetic shards with manifest.parquet (clinical labels joined)
    and splits.parquet, as the pipeline writes them."""
    rng = np.random.default_rng(seed)
    shards = [
        write_exam(results, rng, 10_000_000 + patient, 5_000_000_000_000_000 + 10 * patient + exam)
        for patient in range(n_patients)
        for exam in range(rng.integers(1, 3))
    ]
    paths = pd.concat([read_shard_tables(shard).info["anon_dicom_path"] for shard in shards])
    paths = paths.drop_duplicates()
    severity = pd.array(rng.integers(0, 6, len(paths)), dtype="Int64")
    severity[rng.random(len(paths)) < 0.5] = pd.NA
    clinical = pd.DataFrame(
        {
            "anon_dicom_path": paths.to_numpy(),
            "clin_asses_worst": pd.array(rng.choice(["N", "B", "A", "S", "M"], len(paths))),
            "clin_path_severity_min": severity,
        }
    )
    clinical.to_parquet(results / "filtered.parquet", index=False)
    manifest, _ = build_manifest(
        [str(s) for s in shards], str(results), results / "filtered.parquet"
    )
    manifest.to_parquet(results / "manifest.parquet", index=False)
    write_splits(results / "manifest.parquet", results / "splits.parquet", DEFAULT_FRACTIONS, 0)
    return results


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return write_results(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def manifest(results) -> pd.DataFrame:
    return pd.read_parquet(results / "manifest.parquet", dtype_backend="numpy_nullable")


@functools.cache
def shard_patches(path: Path) -> np.ndarray:
    return read_shard(path).patches


def stored_patch(results: Path, row: dict) -> np.ndarray:
    return shard_patches(results / row["shard"])[row["index"]]


def all_patches(dataset) -> np.ndarray:
    return np.stack([dataset[i][0] for i in range(len(dataset))])


def test_every_item_is_its_stored_patch_and_manifest_row(results, manifest):
    dataset = PatchDataset(results)
    assert len(dataset) == len(manifest) > 100
    assert dataset.manifest["shard"].nunique() > 20
    for position, expected in enumerate(manifest.astype(object).to_dict("records")):
        patch, row = dataset[position]
        expected = {name: None if pd.isna(value) else value for name, value in expected.items()}
        assert row == expected
        assert all(type(value) in (int, float, str, type(None)) for value in row.values())
        np.testing.assert_array_equal(patch, stored_patch(results, row))
        assert patch.dtype == np.uint16


def test_the_manifest_file_is_a_source_too(results):
    assert len(PatchDataset(results / "manifest.parquet")) == len(PatchDataset(results))


@pytest.mark.parametrize(
    ("option", "column", "value"),
    [
        ("label", "label", "negative"),
        ("image_type", "FinalImageType", "3D"),
        ("image_type", "FinalImageType", ["2D", "cview"]),
        ("padding", "padding", "black"),
        ("view", "ViewPosition", "MLO"),
        ("laterality", "ImageLateralityFinal", "L"),
        ("split", "split", "validation"),
        ("split", "split", ["train", "test"]),
    ],
)
def test_each_filter_keeps_exactly_the_matching_rows(results, option, column, value):
    dataset = PatchDataset(results, **{option: value})
    everything = PatchDataset(results, split=["train", "validation", "test"]).manifest
    wanted = [value] if isinstance(value, str) else value
    expected = everything[everything[column].isin(wanted)]
    assert 0 < len(dataset) < len(everything)
    assert list(dataset.manifest["shard"] + ":" + dataset.manifest["index"].astype(str)) == list(
        expected["shard"] + ":" + expected["index"].astype(str)
    )
    assert {dataset[i][1][column] for i in range(len(dataset))} == set(wanted)


def test_filters_combine(results, manifest):
    dataset = PatchDataset(results, label="roi", image_type="2D", padding="tissue", view="CC")
    rows = manifest[
        (manifest["label"] == "roi")
        & (manifest["FinalImageType"] == "2D")
        & (manifest["padding"] == "tissue")
        & (manifest["ViewPosition"] == "CC")
    ]
    assert len(dataset) == len(rows) > 0


@pytest.mark.parametrize(
    "where",
    [
        "clin_asses_worst in ['S', 'M'] and clin_path_severity_min <= 2",
        lambda m: m["clin_asses_worst"].isin(["S", "M"]) & (m["clin_path_severity_min"] <= 2),
    ],
    ids=["query", "callable"],
)
def test_where_selects_on_clinical_labels_and_drops_missing(results, manifest, where):
    dataset = PatchDataset(results, where=where)
    severity = manifest["clin_path_severity_min"]
    expected = manifest["clin_asses_worst"].isin(["S", "M"]) & severity.le(2).fillna(False)
    assert len(dataset) == expected.sum() > 0
    assert dataset.manifest["clin_path_severity_min"].notna().all()


def test_an_unknown_filter_value_is_an_error(results):
    with pytest.raises(ValueError, match="ROI"):
        PatchDataset(results, label="ROI")
    with pytest.raises(ValueError, match="valid"):
        PatchDataset(results, split="valid")


def test_split_needs_the_splits_table(tmp_path, results):
    (tmp_path / "manifest.parquet").write_bytes((results / "manifest.parquet").read_bytes())
    assert len(PatchDataset(tmp_path)) > 0
    with pytest.raises(FileNotFoundError, match="make_splits"):
        PatchDataset(tmp_path, split="train")


def test_transform_is_applied_to_the_patch(results):
    dataset = PatchDataset(results, transform=lambda patch: patch[:4, :4] / 4095)
    patch, row = dataset[3]
    np.testing.assert_array_equal(patch, stored_patch(results, row)[:4, :4] / 4095)


def open_shard_files(results: Path) -> int:
    """How many file descriptors of this process point into the results' shards."""
    folder = str(results / "patches")
    targets = []
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            targets.append(str(fd.readlink()))
    return sum(target.startswith(folder) for target in targets)


def test_open_shards_are_few_and_closed_on_request(results):
    dataset = PatchDataset(results, cache_size=3)
    assert open_shard_files(results) == 0  # lazy
    for position in range(len(dataset)):
        dataset[position]
    assert open_shard_files(results) == 3
    dataset.close()
    assert open_shard_files(results) == 0
    with pytest.raises(ValueError, match="cache_size"):
        PatchDataset(results, cache_size=0)


def test_pickling_with_open_handles(results):
    dataset = PatchDataset(results, label="roi")
    expected = all_patches(dataset)  # every shard read, handles open
    copy = pickle.loads(pickle.dumps(dataset))
    assert open_shard_files(results) > 0
    np.testing.assert_array_equal(all_patches(copy), expected)
    np.testing.assert_array_equal(all_patches(dataset), expected)
    pd.testing.assert_frame_equal(copy.manifest, dataset.manifest)
    copy.close()
    dataset.close()


def test_a_shard_opens_with_plain_h5py_beside_an_open_dataset(results):
    """A user opens a shard by hand (the README's example) while the dataset holds it
    open, and the dataset goes on reading: HDF5 refuses a second open with other
    locking flags, so both must use the same (HDF5's defaults)."""
    dataset = PatchDataset(results)
    expected = all_patches(dataset)  # every shard now open in the dataset's cache
    row = dataset.manifest.iloc[0]
    with h5py.File(results / row["shard"], "r") as shard:  # the README's example
        np.testing.assert_array_equal(shard["patches"][row["index"]], expected[0])
    assert len(read_shard_tables(results / row["shard"]).info) > 0
    np.testing.assert_array_equal(all_patches(dataset), expected)
    dataset.close()
    explicit = PatchDataset(results, locking=False)  # the user's choice, kept
    np.testing.assert_array_equal(explicit.patch(0), expected[0])
    with pytest.raises(OSError, match="locking"):
        h5py.File(results / row["shard"], "r")
    explicit.close()


FORKED = {}  # what forked children inherit (not pickled to them)


def read_in_child(position: int) -> tuple[np.ndarray, int]:
    return FORKED["dataset"][position][0], os.getpid()


def test_forked_processes_read_exactly_the_serial_patches(results):
    dataset = FORKED["dataset"] = PatchDataset(results, cache_size=4)
    expected = all_patches(dataset)  # the parent holds open shards when it forks
    with multiprocessing.get_context("fork").Pool(2) as pool:
        read = pool.map(read_in_child, range(len(dataset)), chunksize=7)
    np.testing.assert_array_equal(np.stack([patch for patch, _ in read]), expected)
    assert os.getpid() not in {pid for _, pid in read}
    np.testing.assert_array_equal(all_patches(dataset), expected)  # the parent's still work


def test_module_and_dataset_work_without_torch(results):
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now fails
        "from embedpatch.training.dataset import PatchDataset\n"
        f"dataset = PatchDataset({str(results)!r}, split='train')\n"
        "print(len(dataset), dataset[0][0].shape)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[1:] == [f"({SIZE},", f"{SIZE})"]


ALIASES = """
import warnings
warnings.simplefilter("error", DeprecationWarning)
for name in ("embedpatch.dataset", "embedpatch.combine"):
    try:
        __import__(name)
    except DeprecationWarning as warning:
        print(name, "warns:", warning)
warnings.simplefilter("ignore", DeprecationWarning)
import embedpatch.training, embedpatch.dataset, embedpatch.combine
print(embedpatch.dataset.PatchDataset is embedpatch.training.PatchDataset,
      embedpatch.dataset.torch_dataset is embedpatch.training.torch_dataset,
      embedpatch.combine.open_combined is embedpatch.training.open_combined)
"""


def test_the_0_2_import_paths_still_work_and_warn():
    """embedpatch.dataset and embedpatch.combine are aliases of embedpatch.training until 0.4."""
    result = subprocess.run(
        [sys.executable, "-c", ALIASES], capture_output=True, text=True, check=True
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("embedpatch.dataset warns: embedpatch.dataset moved")
    assert lines[1].startswith("embedpatch.combine warns: embedpatch.combine moved")
    assert lines[2] == "True True True"


def loader_batches(dataset, num_workers: int, context: str | None = None) -> tuple:
    torch = pytest.importorskip("torch")
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=5, num_workers=num_workers, multiprocessing_context=context
    )
    batches = list(loader)
    patches = torch.cat([patch for patch, _ in batches]).numpy()
    shards = [shard for _, metadata in batches for shard in metadata["shard"]]
    indexes = torch.cat([metadata["index"] for _, metadata in batches]).tolist()
    return patches, shards, indexes


@pytest.mark.slow
@pytest.mark.parametrize(
    ("num_workers", "context"),
    [(0, None), (2, "fork"), (2, "spawn"), (2, "forkserver")],
    ids=str,
)
def test_torch_loader_returns_exactly_the_serial_patches(results, num_workers, context):
    pytest.importorskip("torch")
    dataset = PatchDataset(results, image_type=["2D", "3D"])
    expected = all_patches(dataset)  # handles open before the workers start
    patches, shards, indexes = loader_batches(as_torch(dataset), num_workers, context)
    assert patches.dtype == np.float32 and patches.shape == (len(dataset), 1, SIZE, SIZE)
    np.testing.assert_array_equal(patches[:, 0], expected)
    assert shards == list(dataset.manifest["shard"])
    assert indexes == list(dataset.manifest["index"])


def test_torch_metadata_fills_missing_values(results):
    torch = pytest.importorskip("torch")
    dataset = torch_dataset(
        results, view="XCCL", columns=["ImageLateralityFinal", "clin_path_severity_min"]
    )
    assert dataset.dataset.manifest["clin_path_severity_min"].isna().any()
    loader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset))
    _, metadata = next(iter(loader))
    assert set(metadata) == {"ImageLateralityFinal", "clin_path_severity_min"}
    assert set(metadata["ImageLateralityFinal"]) == {""}
    severity = dataset.dataset.manifest["clin_path_severity_min"].fillna(-1)
    assert metadata["clin_path_severity_min"].tolist() == severity.tolist()


# ---- images of several pixel types ------------------------------------------------------------

MIXED_SIZE = 16
PIXEL_TYPES = {  # name: stored dtype, Bits Stored, transfer syntax of the DICOM file
    "uint16": (np.uint16, 12, uid.ExplicitVRLittleEndian),
    "int16": (np.int16, 12, uid.ExplicitVRLittleEndian),
    "int16_big_endian": (np.int16, 12, uid.ExplicitVRBigEndian),
    "uint8": (np.uint8, 8, uid.ExplicitVRLittleEndian),
    "int16_rle": (np.int16, 16, uid.RLELossless),
}
MIXED_EXAMS = {  # acc_anon: the pixel types of its images, one image each
    7_000_000_000_000_001: ["uint16"],
    7_000_000_000_000_002: ["int16_big_endian"],
    7_000_000_000_000_003: ["uint8"],
    7_000_000_000_000_004: ["int16_rle", "int16"],
    7_000_000_000_000_005: ["uint16", "int16_big_endian"],  # int32 in the shard
    7_000_000_000_000_006: ["uint8", "uint16"],  # uint16 in the shard
}
MIXED_SETTINGS = {
    "size": MIXED_SIZE,
    "padding": ["tissue", "black"],
    "dbt_frames": "all",
    "negative_margin": 0,
    "seed": 0,
    "pixel_values": "stored",
}
MIXED_BOXES = [[2, 3, 12, 9], [18, 34, 30, 44]]  # in the 30 x 44 images; the second at a corner


def write_image(path: Path, pixel_type: str, seed: int) -> np.ndarray:
    """A 30 x 44 DICOM image of random values over its whole stored range, written by pydicom;
    the values (as written, native byte order)."""
    dtype, bits, syntax = PIXEL_TYPES[pixel_type]
    signed = np.dtype(dtype).kind == "i"
    low, high = (-(1 << bits - 1), 1 << bits - 1) if signed else (0, 1 << bits)
    values = np.random.default_rng(seed).integers(low, high, (30, 44)).astype(dtype)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = uid.DigitalMammographyXRayImageStorageForPresentation
    ds.SOPInstanceUID = uid.generate_uid(entropy_srcs=[str(path)])
    ds.set_pixel_data(values, "MONOCHROME2", bits, generate_instance_uid=False)
    if syntax == uid.ExplicitVRBigEndian:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = values.astype(values.dtype.newbyteorder(">")).tobytes()
    elif syntax != uid.ExplicitVRLittleEndian:
        ds.compress(syntax, generate_instance_uid=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return values


def mixed_spec(acc: int, empi: int, paths: list[Path]) -> dict:
    """The exam's specification: both boxes on every image, no negatives."""
    rois = [
        dict(zip(["ymin", "xmin", "ymax", "xmax"], box, strict=True))
        | {"roi_index": index, "frames": []}
        for index, box in enumerate(MIXED_BOXES)
    ]
    images = [
        {
            "anon_dicom_path": f"/mnt/NAS2/mammo/anon_dicom/cohort_1/{empi}/{acc}/{path.name}",
            "dicom_path": str(path),
            "FinalImageType": "2D",
            "ImageLateralityFinal": "L",
            "ViewPosition": "CC",
            "rois": rois,
            "negatives": 0,
            "avoid": [],
        }
        for path in paths
    ]
    return {"acc_anon": acc, "empi_anon": empi, "images": images}


def write_mixed_results(results: Path) -> Path:
    """A results folder from real DICOMs of several pixel types (MIXED_EXAMS): shards cut by
    the extraction job, manifest.parquet, splits.parquet, and images/ with the files."""
    shards = []
    for number, (acc, types) in enumerate(MIXED_EXAMS.items()):
        empi = 20_000_000 + number
        paths = [results / "images" / f"{acc}_{i}_{name}.dcm" for i, name in enumerate(types)]
        for i, (path, name) in enumerate(zip(paths, types, strict=True)):
            write_image(path, name, seed=10 * number + i)
        shards.append(results / "patches" / f"{acc}.h5")
        spec = json.dumps(mixed_spec(acc, empi, paths))
        extract_exam_shard(spec, json.dumps(MIXED_SETTINGS), str(shards[-1]))
    filtered = results / "filtered.parquet"
    pd.DataFrame({"anon_dicom_path": pd.Series([], dtype="string")}).to_parquet(filtered)
    manifest, rejected = build_manifest([str(s) for s in shards], str(results), str(filtered))
    assert rejected.empty
    manifest.to_parquet(results / "manifest.parquet", index=False)
    write_splits(results / "manifest.parquet", results / "splits.parquet", DEFAULT_FRACTIONS, 0)
    return results


def image_path(results: Path, row: dict) -> Path:
    return results / "images" / Path(row["anon_dicom_path"]).name


def exam_dtype(results: Path, acc: int) -> np.dtype:
    """What the exam's shard must hold: numpy's result type of its images' pydicom dtypes,
    native byte order; an image's own dtype when it is alone."""
    return reference_dtype(sorted((results / "images").glob(f"{acc}_*.dcm")))


def reference(results: Path, row: dict) -> np.ndarray:
    """The patch from pydicom's whole-image decode (reference_patches), in pydicom's dtype."""
    values = decoded(str(image_path(results, row)))[0]
    box = (row["ymin"], row["xmin"], row["ymax"], row["xmax"])
    origin, kept = reference_origin(box, *values.shape, row["patch_size"], row["padding"])
    return reference_patch(values, origin, kept, row["patch_size"])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    return write_mixed_results(tmp_path_factory.mktemp("mixed"))


def test_mixed_pixel_types_are_served_with_their_values_and_dtypes(mixed):
    dataset = PatchDataset(mixed)
    assert dataset.dtype is None and len(dataset) == 2 * 2 * 9  # boxes x paddings x images
    assert set(dataset.manifest["dtype"]) == {"uint16", "int16", "uint8", "int32"}
    decoded_kinds = set()
    for position in range(len(dataset)):
        patch, row = dataset[position]
        image = decoded(str(image_path(mixed, row)))
        decoded_kinds.add((image.dtype.kind, image.dtype.itemsize, image.dtype.isnative))
        expected = reference(mixed, row)
        assert patch.dtype == exam_dtype(mixed, row["acc_anon"]) == np.dtype(row["dtype"])
        assert patch.dtype.isnative
        if len(MIXED_EXAMS[row["acc_anon"]]) == 1:  # alone in its exam: the image's dtype
            assert (patch.dtype.kind, patch.dtype.itemsize) == (
                image.dtype.kind,
                image.dtype.itemsize,
            )
        np.testing.assert_array_equal(patch, expected, err_msg=str(row))
        assert np.array_equal(patch.astype(image.dtype), expected)  # casts back exactly
    assert {("u", 2, True), ("i", 2, True), ("u", 1, True), ("i", 2, False)} <= decoded_kinds


def test_the_manifest_records_each_patch_dtype(mixed):
    manifest = pd.read_parquet(mixed / "manifest.parquet")
    by_exam = manifest.groupby("acc_anon")["dtype"].unique()
    assert {acc: list(dtypes) for acc, dtypes in by_exam.items()} == {
        acc: [exam_dtype(mixed, acc).name] for acc in MIXED_EXAMS
    }
    for shard, rows in manifest.groupby("shard"):
        assert set(rows["dtype"]) == {read_shard(mixed / shard).patches.dtype.name}


def test_batch_tables_without_dtypes_get_them_from_their_shards(mixed, tmp_path):
    """Batch tables written before the dtype column: the manifest reads it from the shards."""
    table = pd.read_parquet(mixed / "patches/batches/b0.parquet")
    table.drop(columns="dtype").to_parquet(tmp_path / "old.parquet")
    table.iloc[:5].to_parquet(tmp_path / "new.parquet")
    tables = [str(tmp_path / "new.parquet"), str(tmp_path / "old.parquet")]
    manifest = manifest_from_batch_tables(tables, str(mixed), str(mixed / "filtered.parquet"))
    assert len(manifest) == len(table) + 5 and manifest["dtype"].notna().all()
    for shard, rows in manifest.groupby("shard"):
        assert set(rows["dtype"]) == {read_shard(mixed / shard).patches.dtype.name}


def test_a_common_or_chosen_dtype_holds_every_patch_exactly(mixed):
    stored = PatchDataset(mixed)
    common = PatchDataset(mixed, dtype="common")
    assert common.dtype == np.int32
    for position in range(len(stored)):
        patch = common[position][0]
        assert patch.dtype == np.int32
        np.testing.assert_array_equal(patch, stored[position][0])
    assert PatchDataset(mixed, dtype=np.float64)[0][0].dtype == np.float64
    unsigned = PatchDataset(mixed, where="dtype in ['uint8', 'uint16']", dtype="common")
    assert unsigned.dtype == np.uint16 and len(unsigned) > 0


@pytest.mark.parametrize(
    ("dtype", "refused"), [(np.int16, ["int32", "uint16"]), (np.float32, ["int32"])]
)
def test_a_dtype_that_would_lose_values_is_refused(mixed, dtype, refused):
    with pytest.raises(ValueError, match="exactly") as error:
        PatchDataset(mixed, dtype=dtype)
    named = {name for name in ["int32", "uint16", "int16", "uint8"] if f"'{name}'" in str(error)}
    assert named == set(refused)


def test_torch_loader_serves_every_pixel_type_as_float32(mixed):
    torch = pytest.importorskip("torch")
    dataset = PatchDataset(mixed)
    loader = torch.utils.data.DataLoader(as_torch(dataset, columns=["dtype"]), batch_size=7)
    patches = torch.cat([batch for batch, _ in loader]).numpy()
    assert patches.dtype == np.float32
    expected = np.stack([dataset[i][0].astype(np.int64) for i in range(len(dataset))])
    np.testing.assert_array_equal(patches[:, 0], expected)
