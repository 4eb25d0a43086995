"""The data loader: the columns the schema declares, a label of its two classes, determinism."""

import pandas as pd
import pytest

from {{ cookiecutter.package_name }} import data
from {{ cookiecutter.package_name }}.steps import data_schema


@pytest.fixture(scope="module")
def table():
    return data.load_dataset()


def test_the_table_has_every_schema_column(table):
    assert set(data_schema.FEATURES) | {data_schema.LABEL} <= set(table.columns)


def test_the_label_holds_both_classes_and_nothing_else(table):
    classes = set(table[data_schema.LABEL].astype(str).str.strip())
    assert classes == {str(data_schema.POSITIVE_CLASS), str(data_schema.NEGATIVE_CLASS)}


def test_numeric_features_are_numbers_or_missing(table):
    for name, kind in data_schema.FEATURES.items():
        if kind == data_schema.NUMERIC:
            values = table[name].dropna()
            assert pd.to_numeric(values, errors="coerce").notna().all(), name


def test_csv_is_identical_on_every_call_and_has_a_header(table):
    first, second = data.dataset_csv_bytes(), data.dataset_csv_bytes()
    assert first == second
    assert first.decode().splitlines()[0].split(",") == list(table.columns)


def test_a_loader_without_a_schema_column_is_one_clear_error(monkeypatch, table):
    monkeypatch.setattr(data, "load_dataset", lambda: table.drop(columns=data_schema.LABEL))
    with pytest.raises(ValueError, match=f"returned no '{data_schema.LABEL}' column"):
        data.dataset_csv_bytes()


def test_write_dataset_creates_the_directory(tmp_path):
    path = data.write_dataset(tmp_path / "new" / "data")
    assert path == tmp_path / "new" / "data" / data.DATASET_FILE_NAME
    assert path.read_bytes() == data.dataset_csv_bytes()


def test_write_dataset_refuses_a_file_as_directory(tmp_path):
    target = tmp_path / "data"
    target.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="pass a directory"):
        data.write_dataset(target)
