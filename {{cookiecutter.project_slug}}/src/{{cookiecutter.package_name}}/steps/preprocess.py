"""Preprocess step: clean the raw table and split it into train, validation and test CSVs.

Runs as a SageMaker Processing job (the default paths are the Processing contract) and, with
the paths given as options, as a plain process on a laptop. SageMaker uploads this file alone:
it imports nothing from the project package.

Output files have no header and the label in the first column, the CSV layout the SageMaker
XGBoost container expects; the rows are shuffled with a fixed seed, so the split is the same
on every run.
"""

# The container's Python may be older than the project's: keep annotations unevaluated.
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

LABEL_COLUMN = "malignant"
SPLIT_SEED = 42
TRAIN_FRACTION = 0.70
VALIDATION_FRACTION = 0.15  # the rest is the test split
SPLIT_FILE_NAMES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}
PROCESSING_DIR = "/opt/ml/processing"


def read_input(input_dir: Path) -> pd.DataFrame:
    """Every CSV under input_dir (sorted by name) as one table; header row expected."""
    files = sorted(Path(input_dir).rglob("*.csv"))
    if not files:
        raise ValueError(f"no CSV file under {input_dir}: write the data set there first")
    return pd.concat([pd.read_csv(path) for path in files], ignore_index=True)


def clean(table: pd.DataFrame, label_column: str = LABEL_COLUMN) -> pd.DataFrame:
    """Numeric columns only, no missing values, no duplicate rows, a 0/1 label in front."""
    if label_column not in table.columns:
        raise ValueError(
            f"the input has no {label_column!r} column (columns: {', '.join(table.columns)})"
        )
    numeric = table.apply(pd.to_numeric, errors="coerce").dropna().drop_duplicates()
    numeric = numeric[numeric[label_column].isin([0, 1])]
    if numeric.empty:
        raise ValueError("no usable row left after dropping non-numeric and incomplete rows")
    features = [column for column in numeric.columns if column != label_column]
    cleaned = numeric[[label_column, *features]].reset_index(drop=True)
    cleaned[label_column] = cleaned[label_column].astype(int)
    return cleaned


def split(table: pd.DataFrame, seed: int = SPLIT_SEED) -> dict[str, pd.DataFrame]:
    """Shuffle with a fixed seed and cut into train, validation and test tables."""
    order = np.random.RandomState(seed).permutation(len(table))
    train_end = round(len(table) * TRAIN_FRACTION)
    validation_end = train_end + round(len(table) * VALIDATION_FRACTION)
    parts = {
        "train": order[:train_end],
        "validation": order[train_end:validation_end],
        "test": order[validation_end:],
    }
    return {name: table.iloc[rows].reset_index(drop=True) for name, rows in parts.items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults are the SageMaker Processing paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", type=Path, default=Path(PROCESSING_DIR, "input"))
    for name in SPLIT_FILE_NAMES:
        parser.add_argument(f"--{name}-dir", type=Path, default=Path(PROCESSING_DIR, name))
    parser.add_argument("--label-column", default=LABEL_COLUMN)
    parser.add_argument("--seed", type=int, default=SPLIT_SEED)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Read, clean, split and write the three CSVs."""
    args = parse_args(argv)
    try:
        table = clean(read_input(args.input_dir), args.label_column)
    except ValueError as error:
        print(f"preprocess: {error}", file=sys.stderr)
        return 1
    for name, part in split(table, args.seed).items():
        output_dir = getattr(args, f"{name}_dir")
        output_dir.mkdir(parents=True, exist_ok=True)
        part.to_csv(output_dir / SPLIT_FILE_NAMES[name], header=False, index=False)
        print(
            f"preprocess: {name}: {len(part)} rows, {part[args.label_column].mean():.1%} positive"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
