"""The data loader: the columns the schema declares, a label of its two classes, determinism."""

import gzip
import re

import boto3
import pandas as pd
import pytest
from moto import mock_aws

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


def test_a_label_value_the_schema_does_not_name_is_one_clear_error(monkeypatch, table):
    relabelled = table.assign(**{data_schema.LABEL: table[data_schema.LABEL].astype(str) + "!"})
    monkeypatch.setattr(data, "load_dataset", lambda: relabelled)
    with pytest.raises(ValueError, match="set POSITIVE_CLASS and NEGATIVE_CLASS") as error:
        data.dataset_csv_bytes()
    assert f"{data_schema.LABEL!r} holds" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_file_the_loader_cannot_find_names_the_file_and_where_data_lives(monkeypatch):
    def load_missing():
        return pd.read_csv("exports/not-committed.csv")

    monkeypatch.setattr(data, "load_dataset", load_missing)
    with pytest.raises(ValueError) as error:
        data.dataset_csv_bytes()
    message = str(error.value)
    assert "exports/not-committed.csv" in message and "\n" not in message
    assert "commit the file" in message and "new-data prefix" in message


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_write_dataset_copies_a_file_given_as_source(tmp_path, table, suffix):
    source = tmp_path / f"mine{suffix}"
    table.to_csv(source, index=False)
    path = data.write_dataset(tmp_path / "data", str(source))
    assert pd.read_csv(path).equals(pd.read_csv(source))


def test_write_dataset_reads_an_s3_object_or_every_csv_under_a_prefix(tmp_path, table):
    body = table.to_csv(index=False).encode()
    half = len(table) // 2
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="my-data")
        s3.put_object(Bucket="my-data", Key="one/all.csv", Body=body)
        parts = {"a.csv": table[:half].to_csv(index=False).encode()}
        parts["b.csv.gz"] = gzip.compress(table[half:].to_csv(index=False).encode())
        for name, part in parts.items():
            s3.put_object(Bucket="my-data", Key=f"batch/{name}", Body=part)
        s3.put_object(Bucket="my-data", Key="batch/_READY", Body=b"")
        single = data.write_dataset(tmp_path / "single", "s3://my-data/one/all.csv")
        joined = data.write_dataset(tmp_path / "joined", "s3://my-data/batch/")
        with pytest.raises(FileNotFoundError, match=r"no \.csv or \.csv\.gz object under"):
            data.read_table("s3://my-data/empty/")
    assert single.read_bytes() == body
    assert pd.read_csv(joined).equals(pd.read_csv(single))


def test_a_source_without_the_schema_columns_names_the_source(tmp_path, table):
    source = tmp_path / "other.csv"
    table.drop(columns=data_schema.LABEL).to_csv(source, index=False)
    with pytest.raises(
        ValueError, match=re.escape(f"{source} returned no '{data_schema.LABEL}' column")
    ):
        data.write_dataset(tmp_path / "data", str(source))
