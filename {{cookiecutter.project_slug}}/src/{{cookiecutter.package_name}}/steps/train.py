"""Train step: fit the feature transform and an XGBoost binary classifier on the train split,
early-stopped on validation.

Runs in script mode on the SageMaker XGBoost framework image (the SageMaker Training contract:
SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION, SM_MODEL_DIR, hyperparameters as --name value) and,
with those variables pointing at local folders, as a plain process on a laptop. SageMaker
runs it from the training code archive, next to data_schema.py and inference.py: it imports
nothing from the project package.

The transform is fitted on the train split only: the schema's feature order and kinds, and
the categories of each categorical column (XGBoost's native categorical support learns from
their codes). The model directory, which SageMaker tars into model.tar.gz, holds:
  xgboost-model        the booster
  transform.json       the fitted transform, the label column and its classes
  code/inference.py    the inference module the endpoint runs (SAGEMAKER_PROGRAM)
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
import xgboost as xgb

if __package__:  # imported from the project package (the pipeline reads the hyperparameters)
    from . import data_schema, inference
else:  # run as a script, next to them (SageMaker's training code archive, the local runner)
    import data_schema
    import inference

# The single place the hyperparameters live: the SageMaker pipeline passes these values to
# the training job and the local runner uses them as defaults.
DEFAULT_HYPERPARAMETERS = {
    "num_round": 200,
    "early_stopping_rounds": 20,
    "max_depth": 4,
    "eta": 0.1,
    "subsample": 0.8,
    "min_child_weight": 1.0,
    "objective": "binary:logistic",
    "eval_metric": "auc",
    "seed": 42,
    # The sample data is small: one thread beats coordinating several. Raise it for big data.
    "nthread": 1,
}
BOOSTING_OPTIONS = ("num_round", "early_stopping_rounds")
CODE_DIR_NAME = "code"
INFERENCE_SCRIPT = Path(inference.__file__).name


def read_split(channel_dir: Path) -> pd.DataFrame:
    """Every CSV in a channel directory (header row, label first, values as text) as one table."""
    files = sorted(Path(channel_dir).glob("*.csv"))
    if not files:
        raise ValueError(f"no CSV file in {channel_dir}")
    return pd.concat(
        [pd.read_csv(path, dtype=str, keep_default_na=False) for path in files],
        ignore_index=True,
    )


def check_features(table: pd.DataFrame, split_name: str) -> None:
    """Every schema feature is a column, and every numeric one holds numbers or blanks."""
    missing = [name for name in data_schema.FEATURES if name not in table.columns]
    if missing:
        raise ValueError(
            f"the {split_name} split has no column {', '.join(map(repr, missing))} that "
            f"steps/data_schema.py declares (columns: {', '.join(table.columns)})"
        )
    for name, kind in data_schema.FEATURES.items():
        if kind != data_schema.NUMERIC:
            continue
        values = table[name].str.strip()
        bad = values[(values != "") & pd.to_numeric(values, errors="coerce").isna()]
        if len(bad):
            raise ValueError(
                f"{name!r} is declared numeric in steps/data_schema.py but the {split_name} split "
                f"holds {bad.iloc[0]!r} ({len(bad)} rows): declare it categorical or fix the data"
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


def to_dmatrix(table: pd.DataFrame, model: inference.Model) -> xgb.DMatrix:
    """The encoded features and the 0/1 label of a split."""
    records = table[model.features].to_numpy().tolist()
    matrix = model.encode(records)
    if isinstance(matrix, inference.Rejection):
        raise ValueError(matrix.message)
    return xgb.DMatrix(
        matrix,
        label=table[data_schema.LABEL].astype(int).to_numpy(),
        missing=np.nan,
        feature_names=model.features,
        feature_types=["c" if kind == data_schema.CATEGORICAL else "q" for kind in model.kinds],
        enable_categorical=True,
    )


def train(
    train_data: xgb.DMatrix, validation_data: xgb.DMatrix, hyperparameters: dict
) -> xgb.Booster:
    """Boost until validation stops improving; keep only the trees up to the best round."""
    params = {k: v for k, v in hyperparameters.items() if k not in BOOSTING_OPTIONS}
    booster = xgb.train(
        params,
        train_data,
        num_boost_round=hyperparameters["num_round"],
        evals=[(train_data, "train"), (validation_data, "validation")],
        early_stopping_rounds=hyperparameters["early_stopping_rounds"],
        verbose_eval=False,
    )
    # Slicing makes the served model and the evaluated model the same trees, whatever
    # iteration range a server would otherwise pick.
    return booster[: booster.best_iteration + 1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Hyperparameters (as --name value) and the SageMaker Training paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in DEFAULT_HYPERPARAMETERS.items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    parser.add_argument("--train", type=Path, default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", type=Path, default=os.environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--model-dir", type=Path, default=os.environ.get("SM_MODEL_DIR"))
    # The training toolkit may pass options of its own: ignore what is not ours.
    args, _ = parser.parse_known_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    """Train on the train channel and save the booster into the model directory."""
    args = parse_args(argv)
    missing = [name for name in ("train", "validation", "model_dir") if not getattr(args, name)]
    if missing:
        print(
            f"train: no path for {', '.join(missing)}: set SM_CHANNEL_TRAIN, "
            "SM_CHANNEL_VALIDATION and SM_MODEL_DIR (or pass --train, --validation, --model-dir)",
            file=sys.stderr,
        )
        return 1
    problems = data_schema.problems()
    if problems:
        print(f"train: steps/data_schema.py: {'; '.join(problems)}", file=sys.stderr)
        return 1
    try:
        tables = {"train": read_split(args.train), "validation": read_split(args.validation)}
        for name, table in tables.items():
            check_features(table, name)
        transform = fit_transform(tables["train"])
        encoder = inference.Model(None, transform)
        train_data = to_dmatrix(tables["train"], encoder)
        validation_data = to_dmatrix(tables["validation"], encoder)
    except ValueError as error:
        print(f"train: {error}", file=sys.stderr)
        return 1
    hyperparameters = {name: getattr(args, name) for name in DEFAULT_HYPERPARAMETERS}
    booster = train(train_data, validation_data, hyperparameters)
    args.model_dir.mkdir(parents=True, exist_ok=True)
    # save_raw with an explicit format: the file name has no extension to pick one from.
    (args.model_dir / inference.MODEL_FILE_NAME).write_bytes(booster.save_raw("ubj"))
    (args.model_dir / inference.TRANSFORM_FILE_NAME).write_text(
        json.dumps(transform, indent=2) + "\n"
    )
    code_dir = args.model_dir / CODE_DIR_NAME
    code_dir.mkdir(exist_ok=True)
    shutil.copyfile(inference.__file__, code_dir / INFERENCE_SCRIPT)
    print(
        f"train: {booster.num_boosted_rounds()} trees on {train_data.num_row()} rows "
        f"x {train_data.num_col()} features"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
