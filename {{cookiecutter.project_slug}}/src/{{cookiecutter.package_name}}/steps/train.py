"""Train step: fit the feature transform and the classifier on the train split, early-stopped
on validation.

Runs in script mode on the SageMaker framework image that classifier.py names (the SageMaker
Training contract: SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION, SM_MODEL_DIR, hyperparameters as
--name value) and, with those variables pointing at local folders, as a plain process on a
laptop. SageMaker runs it from the training code archive, next to data_schema.py,
inference.py and classifier.py: it imports nothing from the project package.

The transform is fitted on the train split only: the schema's feature order and kinds, and
the categories of each categorical column (the classifier learns from their codes). The
model directory, which SageMaker tars into model.tar.gz, holds:
  what classifier.save writes   the fitted classifier (XGBoost: xgboost-model)
  transform.json                the fitted transform, the label column and its classes
  code/inference.py             the inference module the endpoint runs (SAGEMAKER_PROGRAM)
  code/classifier.py            the module it loads and scores the classifier with
"""

# The container's Python may be older than the project's: keep annotations unevaluated.
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

if __package__:  # imported from the project package (the tests)
    from . import classifier, data_schema, inference
else:  # run as a script, next to them (SageMaker's training code archive, the local runner)
    import classifier
    import data_schema
    import inference

CODE_DIR_NAME = "code"
# What the endpoint imports from code/ in model.tar.gz.
SERVING_MODULES = (inference, classifier)


def read_split(channel_dir: Path) -> pd.DataFrame:
    """Every CSV in a channel directory (header row, label first, values as text) as one table."""
    files = sorted(Path(channel_dir).glob("*.csv"))
    if not files:
        raise ValueError(f"no CSV file in {channel_dir}")
    return pd.concat(
        [pd.read_csv(path, dtype=str, keep_default_na=False) for path in files],
        ignore_index=True,
    )


def check_columns(table: pd.DataFrame, split_name: str) -> None:
    """Every schema feature is a column of the split."""
    missing = [name for name in data_schema.FEATURES if name not in table.columns]
    if missing:
        raise ValueError(
            f"the {split_name} split has no column {', '.join(map(repr, missing))} that "
            f"steps/data_schema.py declares (columns: {', '.join(table.columns)})"
        )


def fit_transform(table: pd.DataFrame) -> dict:
    """The feature transform fitted on one table: order, kinds, categories; label classes."""
    features = []
    for name, kind in data_schema.FEATURES.items():
        feature = {"name": name, "kind": kind}
        if kind == data_schema.CATEGORICAL:
            values = table[name].str.strip()
            feature["categories"] = sorted(set(values[values != ""]))
        features.append(feature)
    return {
        "features": features,
        "label": data_schema.LABEL,
        "positive_class": str(data_schema.POSITIVE_CLASS),
        "negative_class": str(data_schema.NEGATIVE_CLASS),
    }


def encoded(
    table: pd.DataFrame, encoder: inference.Model, split_name: str
) -> tuple[np.ndarray, np.ndarray]:
    """The encoded features and the 0/1 label of a split."""
    # The endpoint's encoding decides what a number is: training refuses what it would refuse.
    matrix = encoder.encode(table[encoder.features].to_numpy().tolist())
    if isinstance(matrix, inference.Rejection):
        raise ValueError(
            f"the {split_name} split, {matrix.message} (steps/data_schema.py declares it "
            "numeric): declare it categorical or fix the data"
        )
    return matrix, table[data_schema.LABEL].astype(int).to_numpy()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Hyperparameters (as --name value) and the SageMaker Training paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in classifier.HYPERPARAMETERS.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument("--train", type=Path, default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", type=Path, default=os.environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--model-dir", type=Path, default=os.environ.get("SM_MODEL_DIR"))
    # The training toolkit may pass options of its own: ignore what is not ours.
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    """Train on the train channel and save the classifier into the model directory."""
    args = parse_args(argv)
    missing = [name for name in ("train", "validation", "model_dir") if not getattr(args, name)]
    problems = data_schema.problems()
    try:
        if missing:
            raise ValueError(
                f"no path for {', '.join(missing)}: set SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION "
                "and SM_MODEL_DIR (or pass --train, --validation, --model-dir)"
            )
        if problems:
            raise ValueError(f"steps/data_schema.py: {'; '.join(problems)}")
        tables = {"train": read_split(args.train), "validation": read_split(args.validation)}
        for name, table in tables.items():
            check_columns(table, name)
        transform = fit_transform(tables["train"])
        encoder = inference.Model(None, transform)
        splits = {name: encoded(table, encoder, name) for name, table in tables.items()}
    except ValueError as error:
        print(f"train: {error}", file=sys.stderr)
        return 1
    hyperparameters = {name: getattr(args, name) for name in classifier.HYPERPARAMETERS}
    categorical = [kind == data_schema.CATEGORICAL for kind in encoder.kinds]
    fitted = classifier.fit(
        splits["train"], splits["validation"], encoder.features, categorical, hyperparameters
    )
    args.model_dir.mkdir(parents=True, exist_ok=True)
    classifier.save(fitted, args.model_dir)
    (args.model_dir / inference.TRANSFORM_FILE_NAME).write_text(
        json.dumps(transform, indent=2) + "\n"
    )
    code_dir = args.model_dir / CODE_DIR_NAME
    code_dir.mkdir(exist_ok=True)
    for module in SERVING_MODULES:
        shutil.copyfile(module.__file__, code_dir / Path(module.__file__).name)
    rows, columns = splits["train"][0].shape
    print(f"train: {classifier.summary(fitted)} on {rows} rows x {columns} features")
    return 0


if __name__ == "__main__":
    sys.exit(main())
