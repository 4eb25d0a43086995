"""The sample data set: scikit-learn's bundled Wisconsin breast-cancer table, as one CSV.

The table ships inside the scikit-learn wheel, so nothing is downloaded. It has 569 rows and
30 numeric features; the label `malignant` is 1 for a malignant tumour and 0 for a benign one
(scikit-learn's own `target` is the opposite, so it is flipped here to make the positive class
the one worth detecting).
"""

from pathlib import Path

import pandas as pd

from .steps.preprocess import LABEL_COLUMN

DATASET_FILE_NAME = "breast_cancer.csv"


def load_dataset() -> pd.DataFrame:
    """The sample data set: snake_case feature columns, then the label column."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    features = bunch.data.rename(columns=lambda name: name.strip().replace(" ", "_"))
    labels = (bunch.target == 0).astype(int).rename(LABEL_COLUMN)
    return pd.concat([features, labels], axis=1)


def dataset_csv_bytes() -> bytes:
    """The sample data set as CSV bytes with a header row (identical on every run)."""
    return load_dataset().to_csv(index=False).encode()


def write_dataset(output_dir: Path) -> Path:
    """Write the CSV into output_dir (created if missing) and return its path."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"{output_dir} is a file: pass a directory to --output-dir")
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / DATASET_FILE_NAME
    path.write_bytes(dataset_csv_bytes())
    return path
