"""Train step: fit an XGBoost binary classifier on the train split, early-stopped on validation.

Runs in script mode on the SageMaker XGBoost framework image (the SageMaker Training contract:
SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION, SM_MODEL_DIR, hyperparameters as --name value) and,
with those variables pointing at local folders, as a plain process on a laptop. SageMaker
uploads this file alone: it imports nothing from the project package.

The booster is saved as `xgboost-model` and is the only file in the model directory, so the
same image serves model.tar.gz in algorithm mode, with no inference script.
"""

# The container's Python may be older than the project's: keep annotations unevaluated.
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
import xgboost as xgb

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
# The SageMaker XGBoost container's default model file name; it loads every file it finds.
MODEL_FILE_NAME = "xgboost-model"
BOOSTING_OPTIONS = ("num_round", "early_stopping_rounds")


def read_split(channel_dir: Path) -> xgb.DMatrix:
    """Every headerless CSV in a channel directory (label first) as one DMatrix."""
    files = sorted(Path(channel_dir).glob("*.csv"))
    if not files:
        raise ValueError(f"no CSV file in {channel_dir}")
    table = pd.concat([pd.read_csv(path, header=None) for path in files], ignore_index=True)
    return xgb.DMatrix(table.iloc[:, 1:].to_numpy(), label=table.iloc[:, 0].to_numpy())


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
    try:
        train_data, validation_data = read_split(args.train), read_split(args.validation)
    except ValueError as error:
        print(f"train: {error}", file=sys.stderr)
        return 1
    hyperparameters = {name: getattr(args, name) for name in DEFAULT_HYPERPARAMETERS}
    booster = train(train_data, validation_data, hyperparameters)
    args.model_dir.mkdir(parents=True, exist_ok=True)
    # save_raw with an explicit format: the file name has no extension to pick one from.
    (args.model_dir / MODEL_FILE_NAME).write_bytes(booster.save_raw("ubj"))
    print(
        f"train: {booster.num_boosted_rounds()} trees on {train_data.num_row()} rows "
        f"x {train_data.num_col()} features"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
