"""Reading tables (orchestrator.training.tables, datasets): labels kept as written, columns typed,
and every refusal naming the column and row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestrator.training.datasets import load_dataset
from orchestrator.training.tables import DatasetError, read_table, type_column
from tests.training.data import mixed_rows, write_csv, write_parquet


def csv_file(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(n: int, label=lambda i: "ab"[i % 2], x=lambda i: f"{i}") -> str:
    return "".join(f"{x(i)},{i * 0.5},{label(i)}\n" for i in range(n))


# --- labels: exactly as written -----------------------------------------------------------------

SPELLINGS = ["NA", "None", "001", "1", "1.0", "null", "nan", " x", "N/A", "true"]


def test_every_label_spelling_is_a_class_of_its_own(tmp_path):
    body = "".join(f"{i},{i},{SPELLINGS[i % len(SPELLINGS)]}\n" for i in range(100))
    dataset = load_dataset(str(csv_file(tmp_path, "x,y,target\n" + body)))

    assert sorted(dataset.classes) == sorted(SPELLINGS)
    decoded = [dataset.classes[k] for k in dataset.y]
    assert decoded == [SPELLINGS[i % len(SPELLINGS)] for i in range(100)]


def test_parquet_labels_keep_their_spelling_and_null_is_missing(tmp_path):
    path = tmp_path / "t.parquet"
    ints = pa.array([1, 10, 2] * 10, type=pa.int64())
    pq.write_table(pa.table({"x": np.arange(30.0), "code": ints, "name": ["NA", "001", "1"] * 10}), path)

    assert load_dataset(str(path), "code").classes == ["1", "2", "10"]
    assert load_dataset(str(path), "name").classes == ["001", "1", "NA"]

    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0], "target": ["a", None, "b"]}), path)
    with pytest.raises(DatasetError, match=r"'target' has 1 missing values .* row 2"):
        load_dataset(str(path))


@pytest.mark.parametrize("blank", ["", '""'])
def test_an_empty_label_is_the_only_missing_one(tmp_path, blank):
    text = "x,y,target\n" + rows(20) + f"3,4,{blank}\n"
    with pytest.raises(DatasetError, match=r"target column 'target' has 1 missing values .* row 21"):
        load_dataset(str(csv_file(tmp_path, text)))


# --- feature columns: typed, or refused naming column and row -----------------------------------


def test_text_columns_are_categories_and_blanks_stay_blank(tmp_path):
    text = "n,colour,target\n" + "".join(f"{i},{['red', 'NA', ''][i % 3]},{'ab'[i % 2]}\n" for i in range(30))
    dataset = load_dataset(str(csv_file(tmp_path, text)))

    n, colour = dataset.columns
    assert (n.kind, colour.kind) == ("numeric", "categorical")
    assert colour.values.tolist()[:3] == ["red", "NA", ""]  # "NA" is a category, "" is missing
    assert dataset.layout == "columns"


def test_missing_value_markers_are_missing_only_in_numeric_columns(tmp_path):
    text = "n,target\n" + "".join(
        f"{['1.5', 'NA', '', 'nan', '-2e3', 'NULL'][i % 6]},{'ab'[i % 2]}\n" for i in range(30)
    )
    column = load_dataset(str(csv_file(tmp_path, text))).columns[0]

    assert column.kind == "numeric"
    assert column.values[:6].tolist()[0] == 1.5
    assert np.isnan(column.values[[1, 2, 3, 5]]).all()
    assert column.values[4] == -2000.0


@pytest.mark.parametrize(
    ("cells", "row", "example", "others"),
    [
        (["41", "35", "forty", "22"] * 5, 3, "'forty'", "15 other rows hold numbers"),  # text in numbers
        (["EU", "US", "7", "AS"] * 5, 3, "'7'", "15 other rows hold text"),  # a number in text
        (["1", "2", "1,5", "3"] * 5, 3, "'1,5'", "other rows hold numbers"),  # a decimal comma
        (["1", "2", "0x1F", "3"] * 5, 3, "'0x1F'", "other rows hold numbers"),  # not a decimal number
        (["1", "2", "1_000", "3"] * 5, 3, "'1_000'", "other rows hold numbers"),  # Python-only syntax
    ],
)
def test_a_column_mixing_numbers_and_text_names_column_and_row(tmp_path, cells, row, example, others):
    text = "c,target\n" + "".join(f'"{c}",{"ab"[i % 2]}\n' for i, c in enumerate(cells))

    with pytest.raises(DatasetError) as info:
        load_dataset(str(csv_file(tmp_path, text)))

    message = str(info.value)
    assert "column 'c' mixes numbers and text" in message
    assert f"row {row} holds {example}" in message
    assert others in message
    assert "--categorical c" in message


def test_categorical_reads_codes_as_text_exactly(tmp_path):
    text = "zip,target\n" + "".join(f"{['01234', '1234', 'x9'][i % 3]},{'ab'[i % 2]}\n" for i in range(30))
    dataset = load_dataset(str(csv_file(tmp_path, text)), categorical=["zip"])

    assert dataset.columns[0].kind == "categorical"
    assert dataset.columns[0].values.tolist()[:3] == ["01234", "1234", "x9"]
    with pytest.raises(DatasetError, match="--categorical names 'nope'"):
        load_dataset(str(csv_file(tmp_path, text)), categorical=["nope"])


@pytest.mark.parametrize(("cell", "shown"), [("inf", "'inf'"), ("-Infinity", "'-Infinity'")])
def test_infinite_values_are_refused_by_row(tmp_path, cell, shown):
    text = "x,y,target\n" + rows(10) + f"{cell},1,a\n"
    with pytest.raises(DatasetError, match=rf"column 'x' row 11 holds {shown}, an infinite value"):
        load_dataset(str(csv_file(tmp_path, text)))


def test_a_column_without_any_value_is_refused(tmp_path):
    text = "x,empty,target\n" + "".join(f"{i},,{'ab'[i % 2]}\n" for i in range(10))
    with pytest.raises(DatasetError, match="column 'empty' has no values"):
        load_dataset(str(csv_file(tmp_path, text)))


def test_a_repeated_column_name_is_refused_not_renamed(tmp_path):
    with pytest.raises(DatasetError, match="column 'x' appears twice"):
        read_table(csv_file(tmp_path, "x,x,target\n1,2,a\n"))


def test_parquet_types_that_are_no_model_input_are_refused(tmp_path):
    path = tmp_path / "t.parquet"
    stamps = pa.array([0, 1, 2], type=pa.timestamp("s"))
    pq.write_table(pa.table({"when": stamps, "target": ["a", "b", "a"]}), path)

    with pytest.raises(DatasetError, match="column 'when' has Parquet type timestamp"):
        read_table(path)


def test_parquet_text_is_typed_like_csv_text(tmp_path):
    path = tmp_path / "t.parquet"
    ages = pa.array(["41", "35", "forty"] * 4).dictionary_encode()
    pq.write_table(pa.table({"age": ages, "target": ["a", "b"] * 6}), path)

    with pytest.raises(DatasetError, match=r"column 'age' mixes numbers and text: row 3 holds 'forty'"):
        load_dataset(str(path))


def test_a_forced_kind_names_the_row_that_breaks_it(tmp_path):
    table = read_table(csv_file(tmp_path, "a,b\n1,x\n2,y\nthree,z\n"))

    with pytest.raises(DatasetError, match=r"column 'a' row 3 holds 'three', not a number"):
        type_column(table.path, table.columns["a"], kind="numeric")
    assert type_column(table.path, table.columns["a"], kind="categorical").values.tolist() == [
        "1",
        "2",
        "three",
    ]


def test_csv_and_parquet_of_one_table_are_the_same_dataset(tmp_path):
    data = mixed_rows(120)
    from_csv = load_dataset(str(write_csv(tmp_path / "m.csv", data)), "segment")
    from_parquet = load_dataset(str(write_parquet(tmp_path / "m.parquet", data)), "segment")

    assert from_csv.classes == from_parquet.classes
    assert [c.kind for c in from_csv.columns] == [c.kind for c in from_parquet.columns]
    assert from_csv.sha256 == from_parquet.sha256
    assert (from_csv.source, from_parquet.source) == ("csv", "parquet")


def test_a_file_that_is_neither_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="empty"):
        load_dataset(str(csv_file(tmp_path, "")))
    bogus = tmp_path / "x.parquet"
    bogus.write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match="not a readable Parquet file"):
        load_dataset(str(bogus))
