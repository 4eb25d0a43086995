"""Tiny data and a tiny model for the ML unit tests, made from the schema alone.

The table has the columns steps/data_schema.py declares: numeric features drawn from a normal
distribution, categorical ones from three made-up values per column, and a label (the
schema's two classes, as text). The label follows a known signal: the first feature decides
it strongly, the others weakly, up to some noise (`signal`). Nothing here knows the sample
data set, so the tests hold for any table the schema describes, however many features.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from {{ cookiecutter.package_name }} import local
from {{ cookiecutter.package_name }}.steps import data_schema

TINY_ROWS = 300
FEATURES = list(data_schema.FEATURES)
NUMERIC = [name for name, kind in data_schema.FEATURES.items() if kind == data_schema.NUMERIC]
CATEGORICAL = [
    name for name, kind in data_schema.FEATURES.items() if kind == data_schema.CATEGORICAL
]
POSITIVE, NEGATIVE = str(data_schema.POSITIVE_CLASS), str(data_schema.NEGATIVE_CLASS)
# The weight of each feature in the label's signal: the first decides, the rest nudge.
WEIGHTS = {name: 2.0 if number == 0 else 0.2 for number, name in enumerate(FEATURES)}
NOISE = 0.3


def categories(name: str) -> list[str]:
    """The three values a tiny categorical column takes."""
    return [f"{name}-{letter}" for letter in "abc"]


def signal(table: pd.DataFrame) -> np.ndarray:
    """The noise-free score the label follows: each feature's value (a category's position
    among its three values, centred) times its weight. A perfect model ranks rows by it."""
    total = np.zeros(len(table))
    for name in FEATURES:
        if name in NUMERIC:
            values = pd.to_numeric(table[name]).to_numpy()
        else:
            values = table[name].map(categories(name).index).to_numpy() - 1
        total = total + WEIGHTS[name] * values
    return total


def tiny_table(rows: int = TINY_ROWS, seed: int = 0) -> pd.DataFrame:
    """The schema's features and label; the label is the sign of signal() plus noise."""
    rng = np.random.RandomState(seed)
    table = pd.DataFrame(index=range(rows))
    for name in FEATURES:
        if name in NUMERIC:
            table[name] = rng.normal(size=rows).round(4)
        else:
            table[name] = np.asarray(categories(name))[rng.randint(0, 3, size=rows)]
    effect = signal(table) + rng.normal(scale=NOISE, size=rows)
    table[data_schema.LABEL] = np.where(effect > 0, POSITIVE, NEGATIVE)
    return table


def csv_lines(table: pd.DataFrame) -> list[str]:
    """The feature values of each row as one text/csv request line (schema order)."""
    return [",".join(str(value) for value in row) for row in table[FEATURES].to_numpy()]


def write_tiny_dataset(directory: Path, table: pd.DataFrame | None = None) -> Path:
    """The tiny table as a CSV with a header, like `make data` writes the real one."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tiny.csv"
    (tiny_table() if table is None else table).to_csv(path, index=False)
    return path


def train_tiny_model(workdir: Path) -> local.LocalRun:
    """The local runner on the tiny table, with a few shallow trees."""
    write_tiny_dataset(workdir / "data")
    return local.run_local_pipeline(
        workdir / "data",
        workdir / "build",
        echo=lambda _: None,
        hyperparameters={"num_round": 20, "max_depth": 2},
    )
