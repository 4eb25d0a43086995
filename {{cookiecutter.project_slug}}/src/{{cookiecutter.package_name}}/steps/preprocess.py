"""Preprocess step: check the label, map it to 1/0 and split the table into train, validation
and test CSVs.

Runs as a SageMaker Processing job (the default paths are the Processing contract) and, with
the paths given as options, as a plain process on a laptop. SageMaker uploads this file alone:
it imports nothing from the project package; the pipeline passes the schema's label column
and classes as options.

Every CSV under the input directory is one part of the table: each has a header row with the
same columns. The output files keep that header, with the label (1 for the positive class,
0 for the negative one) as the first column; the feature columns stay raw (the training job
fits the feature transform on the train split only). The rows are shuffled with a fixed seed,
so the split is the same on every run.
"""

# The container's Python may be older than the project's: keep annotations unevaluated.
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SPLIT_SEED = 42
TRAIN_FRACTION = 0.70
VALIDATION_FRACTION = 0.15  # the rest is the test split
SPLIT_FILE_NAMES = {"train": "train.csv", "validation": "validation.csv", "test": "test.csv"}
PROCESSING_DIR = "/opt/ml/processing"


def read_csv_text(source) -> pd.DataFrame:
    """A CSV (a path or a file object) with a header row, every value kept as text (an empty
    field stays empty)."""
    return pd.read_csv(source, dtype=str, keep_default_na=False)


def read_input(input_dir: Path) -> pd.DataFrame:
    """Every CSV under input_dir (sorted by name) as one table; each has the same header."""
    files = sorted(Path(input_dir).rglob("*.csv"))
    if not files:
        raise ValueError(f"no CSV file under {input_dir}: write the data set there first")
    tables = []
    header: list[str] = []
    for path in files:
        try:
            table = read_csv_text(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise ValueError(
                f"{path.name} is not a CSV file with a header row ({error})"
            ) from error
        if not tables:
            header = list(table.columns)
        elif list(table.columns) != header:
            raise ValueError(
                f"{path.name} has the columns {list(table.columns)}, {files[0].name} has "
                f"{header}: every file under the input prefix is one table"
            )
        tables.append(table.assign(_source=path.name))
    return pd.concat(tables, ignore_index=True)


def label_rows(
    table: pd.DataFrame, label_column: str, positive_class: str, negative_class: str
) -> pd.DataFrame:
    """The label as 1 (positive class) or 0 (negative class), first; duplicates dropped."""
    if label_column not in table.columns:
        columns = ", ".join(column for column in table.columns if column != "_source")
        raise ValueError(f"the input has no {label_column!r} column (columns: {columns})")
    values = table[label_column].str.strip()
    known = values.isin([positive_class, negative_class])
    if not known.all():
        first = table.index[~known][0]
        source = table.loc[first, "_source"] if "_source" in table.columns else "the input"
        raise ValueError(
            f"{source}: {label_column!r} is {table.loc[first, label_column]!r} in "
            f"{(~known).sum()} rows; the schema allows only {positive_class!r} (positive) "
            f"and {negative_class!r} (negative)"
        )
    features = [column for column in table.columns if column not in (label_column, "_source")]
    labelled = table[features].copy()
    labelled.insert(0, label_column, (values == positive_class).astype(int))
    return labelled.drop_duplicates().reset_index(drop=True)


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


def label_options(data_schema) -> list[str]:
    """The options that pass a schema module's label column and classes to this script."""
    values = {
        "label-column": data_schema.LABEL,
        "positive-class": data_schema.POSITIVE_CLASS,
        "negative-class": data_schema.NEGATIVE_CLASS,
    }
    return [arg for name, value in values.items() for arg in (f"--{name}", str(value))]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults are the SageMaker Processing paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", type=Path, default=Path(PROCESSING_DIR, "input"))
    for name in SPLIT_FILE_NAMES:
        parser.add_argument(f"--{name}-dir", type=Path, default=Path(PROCESSING_DIR, name))
    parser.add_argument("--label-column", required=True)
    parser.add_argument("--positive-class", required=True)
    parser.add_argument("--negative-class", required=True)
    parser.add_argument("--seed", type=int, default=SPLIT_SEED)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Read, label, split and write the three CSVs."""
    args = parse_args(argv)
    try:
        table = label_rows(
            read_input(args.input_dir), args.label_column, args.positive_class, args.negative_class
        )
    except ValueError as error:
        print(f"preprocess: {error}", file=sys.stderr)
        return 1
    parts = split(table, args.seed)
    if any(parts[name][args.label_column].nunique() < 2 for name in ("train", "test")):
        print(
            f"preprocess: {len(table)} rows are too few: the train and test splits each need "
            f"both {args.positive_class!r} and {args.negative_class!r} rows",
            file=sys.stderr,
        )
        return 1
    for name, part in parts.items():
        output_dir = getattr(args, f"{name}_dir")
        output_dir.mkdir(parents=True, exist_ok=True)
        part.to_csv(output_dir / SPLIT_FILE_NAMES[name], index=False)
        print(
            f"preprocess: {name}: {len(part)} rows, {part[args.label_column].mean():.1%} positive"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
