"""Reading EMBED tables: exact identifiers, deliberate types, legacy ROI count column."""

import gzip

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from embedpatch.io import tables
from embedpatch.io.tables import (
    TableError,
    batch_share,
    column_names,
    open_batches,
    read_csv_head,
    read_table,
    require_columns,
)

BIG_ACC = 9_876_543_210_987_653  # above 2**53: float64 cannot hold it


def test_float64_would_lose_the_big_identifier():
    assert int(float(BIG_ACC)) != BIG_ACC


@pytest.fixture
def csv_path(tmp_path):
    path = tmp_path / "metadata.csv"
    path.write_text(
        "empi_anon,acc_anon,num_ROI,spot_mag,Rows,study_date_anon,odd\n"
        f"12345678,{BIG_ACC},1,,3328,2015-01-02,x\n"
        f",{BIG_ACC + 2},,1.0,2457.0,,007\n"
        f"12345679,{BIG_ACC + 4}.0,0,NaN,,NA,\n"
    )
    return path


def test_csv_identifiers_are_exact_int64_despite_missing_values(csv_path):
    table = read_table(csv_path, ["empi_anon", "acc_anon"])
    assert table.schema.types == [pa.int64(), pa.int64()]
    assert table["acc_anon"].to_pylist() == [BIG_ACC, BIG_ACC + 2, BIG_ACC + 4]
    assert table["empi_anon"].to_pylist() == [12345678, None, 12345679]


def test_known_columns_are_cast_and_unknown_ones_stay_strings(csv_path):
    table = read_table(csv_path, ["num_ROI", "spot_mag", "Rows", "study_date_anon", "odd"])
    assert table.schema.types == [pa.int64(), pa.float64(), pa.int64(), pa.string(), pa.string()]
    assert table["Rows"].to_pylist() == [3328, 2457, None]
    assert table["spot_mag"].to_pylist() == [None, 1.0, None]
    assert table["odd"].to_pylist() == ["x", "007", None]


def test_only_the_requested_columns_are_read(csv_path):
    assert read_table(csv_path, ["odd", "acc_anon"]).column_names == ["odd", "acc_anon"]


def test_non_integer_identifier_is_a_one_line_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("acc_anon\n1\n9.876543210987653e+15\n")
    with pytest.raises(TableError, match=r"column 'acc_anon' has 1 non-integer.*e\+15") as error:
        read_table(path, ["acc_anon"])
    assert "\n" not in str(error.value)


def test_missing_columns_are_named(csv_path):
    with pytest.raises(ValueError, match=r"missing required column.*: FinalImageType, ROI_coords"):
        require_columns(csv_path, ["acc_anon", "FinalImageType", "ROI_coords"])
    with pytest.raises(TableError, match="Manufacturer"):
        read_table(csv_path, ["Manufacturer"])


def test_legacy_num_roi_is_read_as_the_current_name(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("acc_anon,num_roi\n1,2\n")
    assert column_names(path) == ["acc_anon", "num_ROI"]
    assert read_table(path, ["num_ROI"])["num_ROI"].to_pylist() == [2]


def test_both_roi_count_columns_is_an_error(tmp_path):
    path = tmp_path / "both.csv"
    path.write_text("num_ROI,num_roi\n1,1\n")
    with pytest.raises(TableError, match="both 'num_ROI' and legacy 'num_roi'"):
        column_names(path)


def test_parquet_keeps_stored_types_and_casts_known_columns(tmp_path):
    path = tmp_path / "metadata.parquet"
    table = pa.table(
        {
            "acc_anon": pa.array([BIG_ACC, None], pa.int64()),
            "Rows": pa.array([3328, 2457], pa.int32()),
            "FinalImageType": pa.array(["2D", "3D"]).dictionary_encode(),
            "WindowWidth": pa.array([4095.0, None]),
            "num_roi": pa.array([1.0, float("nan")]),
        }
    )
    pq.write_table(table, path)
    read = read_table(path, ["acc_anon", "Rows", "FinalImageType", "WindowWidth", "num_ROI"])
    assert read.schema.types == [pa.int64(), pa.int64(), pa.string(), pa.float64(), pa.int64()]
    assert read["acc_anon"].to_pylist() == [BIG_ACC, None]
    assert read["num_ROI"].to_pylist() == [1, None]


def test_parquet_identifier_stored_as_unsafe_float_is_refused(tmp_path):
    path = tmp_path / "float.parquet"
    pq.write_table(pa.table({"acc_anon": pa.array([float(BIG_ACC), 1.0])}), path)
    with pytest.raises(TableError, match=r"acc_anon.*not exact integers"):
        read_table(path, ["acc_anon"])


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_batches_cover_every_row_in_order(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(tables, "CSV_BLOCK_BYTES", 64)
    monkeypatch.setattr(tables, "PARQUET_BATCH_ROWS", 3)
    data = pa.table({"acc_anon": [str(BIG_ACC + i) for i in range(20)], "x": ["v"] * 20})
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        pq.write_table(data, path)
    else:
        pacsv.write_csv(data, tmp_path / "t.csv")
        if suffix == ".csv.gz":
            path.write_bytes(gzip.compress((tmp_path / "t.csv").read_bytes()))
    schema, batches = open_batches(path)
    batches = list(batches)
    assert len(batches) > 2
    assert schema.field("acc_anon").type == pa.int64()
    rows = pa.Table.from_batches(batches, schema)["acc_anon"].to_pylist()
    assert rows == [BIG_ACC + i for i in range(20)]


def test_header_only_csv_has_a_schema_and_no_rows(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("empi_anon,odd\n")
    schema, batches = open_batches(path)
    assert schema.types == [pa.int64(), pa.string()]
    assert sum(batch.num_rows for batch in batches) == 0


def test_the_batches_of_a_table_add_up_to_its_whole_share(tmp_path):
    """Progress lines of stage 1 count batches times batch_share: about 1 at the end."""
    rows = pd.DataFrame({"anon_dicom_path": [f"/mnt/x/{i:08d}/image.dcm" for i in range(300_000)]})
    csv_path, parquet_path = tmp_path / "t.csv", tmp_path / "t.parquet"
    rows.to_csv(csv_path, index=False)
    rows.to_parquet(parquet_path, index=False)
    for path in (csv_path, parquet_path):
        batches = sum(1 for _ in open_batches(path)[1])
        assert batches > 1
        assert (batches - 1) * batch_share(path) < 1 <= batches * batch_share(path) * 1.01
    rows.iloc[0:0].to_parquet(tmp_path / "empty.parquet", index=False)
    assert batch_share(tmp_path / "empty.parquet") is None


def test_the_head_of_a_csv_is_its_first_whole_lines(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("acc_anon,note\n" + "".join(f"{i},row {i}\n" for i in range(1000)))
    head, whole = read_csv_head(path, ["acc_anon"], 100)
    assert not whole and head.column_names == ["acc_anon"]
    assert head["acc_anon"].to_pylist() == list(range(len(head))) and 0 < len(head) < 20
    everything, whole = read_csv_head(path, ["acc_anon"], 1 << 20)
    assert whole and everything["acc_anon"].to_pylist() == list(range(1000))
    quoted = tmp_path / "quoted.csv"
    quoted.write_text('acc_anon,note\n1,x\n2,"a note\nover two lines"\n3,short\n')
    head, whole = read_csv_head(quoted, ["acc_anon"], 30)  # cut inside row 2's note
    assert not whole and head["acc_anon"].to_pylist() == [1]  # the cut row is left out
    first = tmp_path / "quoted_first.csv"
    first.write_text('note,acc_anon\n"a note\nover two lines",1\nshort,2\n')
    head, whole = read_csv_head(first, ["acc_anon"], 30)  # a cut the parser refuses
    assert whole and head["acc_anon"].to_pylist() == [1, 2]  # read whole instead
    with pytest.raises(TableError, match="missing required column"):
        read_csv_head(path, ["anon_dicom_path"], 100)


def test_frame_records_are_to_dict_records_with_every_missing_value_none():
    frame = pd.DataFrame(
        {
            "acc_anon": pd.array([BIG_ACC, None], dtype="Int64"),
            "path": pd.array(["a.dcm", None], dtype="string"),
            "frames": [[1, 2], []],
            "flag": pd.array([True, None], dtype="boolean"),
        }
    ).reindex(columns=["acc_anon", "path", "frames", "flag", "absent"])  # absent: NaN
    expected = [
        {name: None if pd.api.types.is_scalar(value) and pd.isna(value) else value
         for name, value in row.items()}
        for row in frame.to_dict("records")
    ]  # fmt: skip
    records = tables.frame_records(frame, ["acc_anon", "path", "frames", "flag", "absent"])
    assert records == expected
    assert records[0]["acc_anon"] == BIG_ACC and records[1] == {
        "acc_anon": None, "path": None, "frames": [], "flag": None, "absent": None
    }  # fmt: skip
    assert tables.frame_records(frame, ["path"]) == [{"path": "a.dcm"}, {"path": None}]


def test_frame_records_keep_the_cells_of_a_column_of_mixed_kinds():
    frame = pd.DataFrame({"num_ROI": pd.Series([1, "", None, [2]], dtype=object)})
    assert tables.frame_records(frame, ["num_ROI"]) == [
        {"num_ROI": 1}, {"num_ROI": ""}, {"num_ROI": None}, {"num_ROI": [2]}
    ]  # fmt: skip
