"""The sample data set: shape, label, determinism, and where `make data` writes it."""

import pytest

from {{ cookiecutter.package_name }} import data
from {{ cookiecutter.package_name }}.steps.preprocess import LABEL_COLUMN


@pytest.fixture(scope="module")
def table():
    return data.load_dataset()


def test_dataset_is_the_breast_cancer_table_with_malignant_as_positive(table):
    assert table.shape == (569, 31)
    assert table.columns[-1] == LABEL_COLUMN
    # scikit-learn's table has 212 malignant and 357 benign tumours.
    assert table[LABEL_COLUMN].value_counts().to_dict() == {0: 357, 1: 212}


def test_feature_names_are_snake_case_and_complete(table):
    features = [column for column in table.columns if column != LABEL_COLUMN]
    assert "mean_radius" in features
    assert all(" " not in name for name in features)
    assert not table.isna().any().any()


def test_csv_is_identical_on_every_call_and_has_a_header():
    first, second = data.dataset_csv_bytes(), data.dataset_csv_bytes()
    assert first == second
    header = first.decode().splitlines()[0].split(",")
    assert header[0] == "mean_radius"
    assert header[-1] == LABEL_COLUMN


def test_write_dataset_creates_the_directory(tmp_path):
    path = data.write_dataset(tmp_path / "new" / "data")
    assert path == tmp_path / "new" / "data" / data.DATASET_FILE_NAME
    assert path.read_bytes() == data.dataset_csv_bytes()


def test_write_dataset_refuses_a_file_as_directory(tmp_path):
    target = tmp_path / "data"
    target.write_text("not a directory")
    with pytest.raises(NotADirectoryError, match="pass a directory"):
        data.write_dataset(target)
