"""Tiny data and a tiny model for the ML unit tests: fast to make, same shapes as the real ones.

The table has the sample data set's layout (feature columns, then the label column) with a
few features and rows, and a label that the features predict well.
"""

import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from {{ cookiecutter.package_name }}.steps.preprocess import LABEL_COLUMN
from {{ cookiecutter.package_name }}.steps.train import MODEL_FILE_NAME

TINY_ROWS = 80
TINY_FEATURES = 4


def tiny_table(rows: int = TINY_ROWS, seed: int = 0) -> pd.DataFrame:
    """Feature columns f0..f3 and a 0/1 label mostly decided by f0 + f1."""
    rng = np.random.RandomState(seed)
    features = rng.normal(size=(rows, TINY_FEATURES))
    noise = rng.normal(scale=0.3, size=rows)
    table = pd.DataFrame(features, columns=[f"f{i}" for i in range(TINY_FEATURES)])
    table[LABEL_COLUMN] = (features[:, 0] + features[:, 1] + noise > 0).astype(int)
    return table


def write_tiny_dataset(directory: Path) -> Path:
    """The tiny table as a CSV with a header, like `make data` writes the real one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tiny.csv"
    tiny_table().to_csv(path, index=False)
    return path


def tiny_booster() -> xgb.Booster:
    """A few trees fitted on the tiny table."""
    table = tiny_table()
    data = xgb.DMatrix(table.drop(columns=LABEL_COLUMN).to_numpy(), label=table[LABEL_COLUMN])
    params = {"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "seed": 0}
    return xgb.train(params, data, num_boost_round=5)


def write_model_archive(directory: Path, booster: xgb.Booster) -> Path:
    """model.tar.gz holding the booster as `xgboost-model`, as a training job leaves it."""
    directory.mkdir(parents=True, exist_ok=True)
    model_file = directory / MODEL_FILE_NAME
    model_file.write_bytes(booster.save_raw("ubj"))
    archive = directory / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(model_file, arcname=MODEL_FILE_NAME)
    return archive
