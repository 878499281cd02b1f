"""Stage 1 metadata filter: keep/drop semantics, one reason per dropped row, outputs."""

import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from embedpatch.config import validate_config
from embedpatch.filter import stage as filtering
from embedpatch.filter.stage import (
    CHECK_ORDER,
    DROPPED_SCHEMA,
    filter_metadata,
    manufacturer_key,
    required_columns,
)
from embedpatch.filter.stage import FilterOptions as Options
from embedpatch.io import tables
from embedpatch.io.tables import TableError
from embedpatch.reasons import FilterReason
from helpers.snakemake_runner import run_snakemake

NAS = "/mnt/NAS2/mammo/anon_dicom/"
ROOT = "/data/embed"
BIG_ACC = 9_876_543_210_987_653  # above 2**53: float64 cannot hold it
BASE = {
    "empi_anon": "12345678",
    "acc_anon": str(BIG_ACC),
    "anon_dicom_path": NAS + "cohort_1/12345678/1.2/1.3/1.4.dcm",
    "FinalImageType": "2D",
    "num_ROI": "0",
    "ROI_coords": "[]",
    "ROI_frames": "[]",
    "spot_mag": None,
    "ViewPosition": "CC",
    "ImageLateralityFinal": "L",
    "Manufacturer": "HOLOGIC",
    "Rows": "3328",
    "label": None,
}
BOX = "[[1401, 980, 1510, 1148]]"

# label -> (changes to BASE, expected reason; None: kept) under the default config.
CASES = {
    "2d": ({}, None),
    "2d with roi": ({"num_ROI": "1", "ROI_coords": BOX}, None),
    "cview": ({"FinalImageType": "cview"}, None),
    "3d with roi": ({"FinalImageType": "3D", "num_ROI": "1", "ROI_coords": BOX}, None),
    "3d coords, count 0": ({"FinalImageType": "3D", "ROI_coords": "((1, 2, 3, 4),)"}, None),
    "3d coords, no count": ({"FinalImageType": "3D", "num_ROI": None, "ROI_coords": BOX}, None),
    "3d []": ({"FinalImageType": "3D"}, FilterReason.DBT_WITHOUT_ROI),
    "3d ()": ({"FinalImageType": "3D", "ROI_coords": " () "}, FilterReason.DBT_WITHOUT_ROI),
    "3d none": (
        {"FinalImageType": "3D", "num_ROI": None, "ROI_coords": None},
        FilterReason.DBT_WITHOUT_ROI,
    ),
    "3d frames only": ({"FinalImageType": "3D", "ROI_frames": "[[3]]"}, None),
    "3d count -1": ({"FinalImageType": "3D", "num_ROI": "-1"}, None),
    "roi_ssc": ({"FinalImageType": "ROI_SSC"}, FilterReason.IMAGE_TYPE),
    "roi_ss": ({"FinalImageType": "ROI_SS"}, FilterReason.IMAGE_TYPE),
    "other": ({"FinalImageType": "other"}, FilterReason.IMAGE_TYPE),
    "no type": ({"FinalImageType": None}, FilterReason.IMAGE_TYPE),
    "spot mag": ({"spot_mag": "1.0"}, FilterReason.SPOT_MAG),
    "spot mag 3d no roi": ({"spot_mag": "1", "FinalImageType": "3D"}, FilterReason.DBT_WITHOUT_ROI),
    "no path": ({"anon_dicom_path": None}, FilterReason.PATH_MISSING),
    "blank path": ({"anon_dicom_path": "   "}, FilterReason.PATH_MISSING),
    "escape": ({"anon_dicom_path": NAS + "../../../etc/x.dcm"}, FilterReason.PATH_OUTSIDE_ROOT),
    "elsewhere": ({"anon_dicom_path": "/other/x.dcm"}, FilterReason.PATH_OUTSIDE_ROOT),
    "other, no path": (
        {"FinalImageType": "other", "anon_dicom_path": None},
        FilterReason.IMAGE_TYPE,
    ),
    "no patient id": ({"empi_anon": None}, FilterReason.ID_INVALID),
}


def path_of(index):
    """A distinct anon_dicom_path per row (index 0: BASE's); a repeated path is dropped."""
    return NAS + f"cohort_1/12345678/1.2/1.3/1.{4 + index}.dcm"


def rows_for(cases, first=0):
    """One row per case, each its own exam and image: acc_anon tells the dropped rows apart."""
    return [
        {**BASE, "anon_dicom_path": path_of(index), **changes, "label": label}
        | {"acc_anon": str(BIG_ACC + index)}
        for index, (label, (changes, _)) in enumerate(cases.items(), start=first)
    ]


def dropped_reasons(dropped, rows):
    """label -> reason of each dropped row."""
    label_of = {int(row["acc_anon"]): row["label"] for row in rows}
    return {
        label_of[acc]: reason
        for acc, reason in zip(
            dropped["acc_anon"].to_pylist(), dropped["reason"].to_pylist(), strict=True
        )
    }


def write_table(path, rows, drop=()):
    table = pa.Table.from_pylist(rows).drop_columns(list(drop))
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


def run(tmp_path, rows, suffix=".csv", clinical=None, drop=(), **filter_changes):
    """Filter `rows` with the default config changed by `filter_changes`; read the outputs."""
    metadata = write_table(tmp_path / f"metadata{suffix}", rows, drop)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    summary = filter_metadata(
        metadata,
        out / "filtered.parquet",
        out / "dropped.parquet",
        out / "summary.json",
        filter_config=validate_config({"filter": filter_changes})["filter"],
        dicom_root=ROOT,
        path_rewrite=[(NAS, ROOT + "/")],
        clinical=clinical,
    )
    assert json.loads((out / "summary.json").read_text()) == summary
    assert sorted(p.name for p in out.iterdir()) == [
        "dropped.parquet",
        "filtered.parquet",
        "summary.json",
    ]
    return pq.read_table(out / "filtered.parquet"), pq.read_table(out / "dropped.parquet"), summary


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_each_row_is_kept_or_dropped_with_its_first_failing_reason(tmp_path, suffix):
    rows = rows_for(CASES)
    filtered, dropped, summary = run(tmp_path, rows, suffix)
    kept = filtered["label"].to_pylist()
    assert kept == [label for label, (_, reason) in CASES.items() if reason is None]
    assert dropped_reasons(dropped, rows) == {
        label: reason for label, (_, reason) in CASES.items() if reason is not None
    }
    assert dropped["acc_anon"].to_pylist() == sorted(dropped["acc_anon"].to_pylist())
    assert summary["rows_in"] == len(CASES)
    assert summary["rows_kept"] == len(filtered)
    assert summary["rows_dropped"] == len(dropped)
    assert summary["kept_by_image_type"] == {"2D": 2, "3D": 5, "cview": 1}
    assert summary["kept_3d_without_num_roi"] == 4  # count 0, missing or negative
    assert list(summary["dropped_by_reason"]) == [reason.value for reason in CHECK_ORDER]
    assert sum(summary["dropped_by_reason"].values()) == len(dropped)


def test_every_original_column_is_kept_typed_and_in_order(tmp_path):
    rows = rows_for(CASES)
    filtered, _, _ = run(tmp_path, rows)
    assert filtered.column_names == [*BASE, "dicom_path", "coords_column"]
    assert set(filtered["coords_column"].to_pylist()) == {"ROI_coords"}
    assert filtered.schema.field("acc_anon").type == pa.int64()
    assert filtered.schema.field("Rows").type == pa.int64()
    assert filtered.schema.field("label").type == pa.string()
    assert filtered["acc_anon"].to_pylist()[:2] == [BIG_ACC, BIG_ACC + 1]
    assert filtered["dicom_path"][0].as_py() == ROOT + "/cohort_1/12345678/1.2/1.3/1.4.dcm"


def test_dropped_table_identifies_each_row_exactly(tmp_path):
    rows = [{**BASE, "FinalImageType": "other", "acc_anon": str(BIG_ACC + i)} for i in range(3)]
    rows[1]["empi_anon"] = None
    _, dropped, _ = run(tmp_path, rows)
    assert dropped.schema == DROPPED_SCHEMA
    assert dropped["acc_anon"].to_pylist() == [BIG_ACC, BIG_ACC + 1, BIG_ACC + 2]
    assert dropped["empi_anon"].to_pylist() == [12345678, None, 12345678]


VARIED = [
    {**BASE, "label": "cc-l-hologic"},
    {
        **BASE,
        "label": "mlo-r-ge",
        "ViewPosition": "MLO",
        "ImageLateralityFinal": "R",
        "Manufacturer": "GE MEDICAL SYSTEMS",
    },
    {
        **BASE,
        "label": "none",
        "ViewPosition": None,
        "ImageLateralityFinal": None,
        "Manufacturer": None,
    },
    {**BASE, "label": "cview spaced", "FinalImageType": "cview", "Manufacturer": " Hologic "},
    {**BASE, "label": "spot", "spot_mag": "1.0", "ViewPosition": "XCCL", "Manufacturer": "x"},
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, {"spot": "spot_mag"}),
        ({"cview_as_2d": False}, {"cview spaced": "cview_excluded", "spot": "spot_mag"}),
        ({"keep_spot_mag": True}, {}),
        (
            {"view_positions": ["CC"]},
            {"mlo-r-ge": "view_position", "none": "view_position", "spot": "spot_mag"},
        ),
        (
            {"lateralities": ["L"], "keep_spot_mag": True},
            {"mlo-r-ge": "laterality", "none": "laterality"},
        ),
        (
            {"manufacturers": ["hologic"], "keep_spot_mag": True},
            {"mlo-r-ge": "manufacturer", "none": "manufacturer", "spot": "manufacturer"},
        ),
        (
            {"manufacturers": ["GE Medical Systems", "X"]},
            {
                "cc-l-hologic": "manufacturer",
                "none": "manufacturer",
                "cview spaced": "manufacturer",
                "spot": "spot_mag",
            },
        ),
        (
            {"view_positions": ["CC"], "lateralities": ["R"], "manufacturers": ["GE"]},
            {
                "cc-l-hologic": "laterality",
                "mlo-r-ge": "view_position",
                "none": "view_position",
                "cview spaced": "laterality",
                "spot": "spot_mag",
            },
        ),
    ],
)
def test_config_options(tmp_path, changes, expected):
    rows = [
        {**row, "acc_anon": str(BIG_ACC + index), "anon_dicom_path": path_of(index)}
        for index, row in enumerate(VARIED)
    ]
    filtered, dropped, _ = run(tmp_path, rows, **changes)
    assert dropped_reasons(dropped, rows) == expected
    assert filtered["label"].to_pylist() == [
        r["label"] for r in VARIED if r["label"] not in expected
    ]


def test_legacy_num_roi_column_is_accepted_and_renamed(tmp_path):
    rows = [{**BASE, "FinalImageType": "3D", "num_roi": "2", "ROI_coords": "[]"}]
    rows.append({**rows[0], "num_roi": "0"})
    filtered, dropped, _ = run(tmp_path, rows, drop=["num_ROI"])
    assert "num_roi" not in filtered.column_names
    assert filtered["num_ROI"].to_pylist() == [2]
    assert dropped["reason"].to_pylist() == ["3d_without_roi"]


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        (("ROI_coords", "DCM_ROI_coords", "PNG_ROI_coords"), "DCM_ROI_coords"),
        (("ROI_coords", "PNG_ROI_coords"), "ROI_coords"),
        (("PNG_ROI_coords",), "PNG_ROI_coords"),
    ],
)
def test_the_coordinate_column_is_read_as_roi_coords_and_named(tmp_path, present, chosen):
    boxes = {name: f"[[{i}, {i}, 9, 9]]" for i, name in enumerate(present)}
    rows = [{**BASE, "FinalImageType": "3D", "num_ROI": "1"} | boxes]
    drop = [] if "ROI_coords" in present else ["ROI_coords"]
    filtered, _, summary = run(tmp_path, rows, drop=drop)
    assert filtered["ROI_coords"].to_pylist() == [boxes[chosen]]
    assert filtered["coords_column"].to_pylist() == [chosen]
    assert summary["coords_column"] == chosen
    assert not {"DCM_ROI_coords", "PNG_ROI_coords"} & set(filtered.column_names)


def test_both_roi_count_columns_are_refused(tmp_path):
    with pytest.raises(TableError, match="both 'num_ROI' and legacy 'num_roi'"):
        run(tmp_path, [{**BASE, "num_roi": "0"}])


def test_missing_required_columns_are_named(tmp_path):
    with pytest.raises(
        TableError, match=r"missing required column\(s\): FinalImageType, ROI_coords"
    ):
        run(tmp_path, [BASE], drop=["FinalImageType", "ROI_coords", "Manufacturer"])


def test_columns_needed_only_by_an_option_are_required_only_with_it(tmp_path):
    run(tmp_path, [BASE], drop=["Manufacturer", "ViewPosition"], keep_spot_mag=True)
    with pytest.raises(TableError, match=r"missing required column\(s\): Manufacturer$"):
        run(tmp_path, [BASE], drop=["Manufacturer"], manufacturers=["GE"])
    options = Options.from_config(validate_config({})["filter"])
    assert "ImageLateralityFinal" not in required_columns(options, with_clinical=False)
    assert "ImageLateralityFinal" in required_columns(options, with_clinical=True)


def test_an_input_column_named_like_an_output_is_refused(tmp_path):
    with pytest.raises(TableError, match="dicom_path would be overwritten"):
        run(tmp_path, [{**BASE, "dicom_path": "/x"}])


def test_streaming_in_small_batches_gives_the_same_result(tmp_path, monkeypatch):
    rows = [row for copy in range(7) for row in rows_for(CASES, copy * len(CASES))]
    for folder in ("whole", "small"):
        (tmp_path / folder).mkdir()
    whole = run(tmp_path / "whole", rows)
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 512)
    monkeypatch.setattr(filtering, "ROW_GROUP_ROWS", 10)
    small = run(tmp_path / "small", rows)
    assert small[0].equals(whole[0])
    assert small[1].equals(whole[1])
    assert small[2]["rows_in"] == len(rows)
    assert pq.ParquetFile(tmp_path / "small/out/filtered.parquet").num_row_groups > 1


def test_header_only_table_gives_empty_outputs(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text(",".join(BASE) + "\n")
    out = tmp_path / "out"
    out.mkdir()
    summary = filter_metadata(
        path,
        out / "f.parquet",
        out / "d.parquet",
        out / "s.json",
        filter_config=validate_config({})["filter"],
        dicom_root=ROOT,
    )
    assert summary["rows_in"] == summary["rows_kept"] == 0
    filtered = pq.read_table(out / "f.parquet")
    assert filtered.num_rows == 0
    assert filtered.schema.field("acc_anon").type == pa.int64()
    assert pq.read_table(out / "d.parquet").schema == DROPPED_SCHEMA


def test_clinical_join_adds_clin_columns_one_row_per_image(tmp_path):
    clinical = tmp_path / "clinical.csv"
    clinical.write_text(
        "acc_anon,side,asses,path_severity,tissueden,desc,massshape,calcfind,age_at_study\n"
        f"{BIG_ACC},L,A,,3,mass,oval,,55\n"
        f"{BIG_ACC},L,B,,3,calc,,fine,55\n"
        f"{BIG_ACC},R,S,0,3,mass,spic,,55\n"
    )
    rows = [
        BASE,
        {**BASE, "ImageLateralityFinal": "R", "anon_dicom_path": path_of(1)},
        {**BASE, "acc_anon": "1", "anon_dicom_path": path_of(2)},
    ]
    filtered, _, summary = run(tmp_path, rows, clinical=clinical)
    assert filtered.num_rows == 3
    assert filtered["clin_n_findings"].to_pylist() == [2, 1, 0]
    assert filtered["clin_asses_worst"].to_pylist() == ["A", "S", None]
    assert filtered["clin_massshape"].to_pylist() == [None, "spic", None]
    assert filtered["clin_tissueden"].to_pylist() == [3, 3, None]
    assert summary["clinical"] == {
        "joined": True,
        "table": str(clinical),
        "clinical_rows": 3,
        "clinical_exams": 1,
        "kept_images_with_findings": 2,
        "kept_images_without_findings": 1,
    }
    filtered, _, summary = run(tmp_path, rows, clinical=clinical, join_clinical=False)
    assert not any(name.startswith("clin_") for name in filtered.column_names)
    assert summary["clinical"]["joined"] is False


@pytest.mark.workflow
def test_snakemake_rule_runs_on_a_user_table(tmp_path):
    rows = rows_for(CASES)
    write_table(tmp_path / "metadata.csv", rows)
    (tmp_path / "clinical.csv").write_text(
        "acc_anon,side,asses,path_severity,tissueden,desc,massshape,calcfind,age_at_study\n"
        f"{BIG_ACC},L,A,,3,mass,oval,,55\n"
    )
    config = {
        "metadata": str(tmp_path / "metadata.csv"),
        "clinical": str(tmp_path / "clinical.csv"),
        "dicom_root": ROOT,
        "path_rewrite": [{"from": NAS, "to": ROOT + "/"}],
        # Stage 1 alone, on paths to images that do not exist: the path check would stop it.
        "checks": {"paths": False},
    }
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    result = run_snakemake(
        tmp_path,
        "results/metadata/filtered.parquet",
        configfiles=(tmp_path / "config.yaml",),
        cores=1,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    filtered = pq.read_table(tmp_path / "results/metadata/filtered.parquet")
    assert filtered["clin_n_findings"].to_pylist()[0] == 1
    assert (tmp_path / "results/metadata/dropped.parquet").is_file()
    assert "rows in" in (tmp_path / "results/logs/filter_metadata.log").read_text()


def test_manufacturer_matches_on_first_word_case_insensitive():
    names = pa.array(
        ["HOLOGIC, Inc.", " Hologic ", "GE MEDICAL SYSTEMS", "FUJIFILM Corporation", None]
    )
    assert manufacturer_key(names).to_pylist() == ["HOLOGIC", "HOLOGIC", "GE", "FUJIFILM", None]
    options = Options.from_config(
        validate_config({"filter": {"manufacturers": ["Hologic", "GE Medical Systems"]}})["filter"]
    )
    assert options.manufacturers == frozenset({"HOLOGIC", "GE"})
