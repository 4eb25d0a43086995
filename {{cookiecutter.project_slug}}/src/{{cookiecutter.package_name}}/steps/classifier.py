"""The classifier: XGBoost, and the SageMaker framework image that trains and serves it.

This is the one module that knows the machine-learning library. train.py fits the
classifier on the encoded train split, early-stopped on validation, and saves it;
inference.py loads it and scores encoded records, on the endpoint and in the evaluate step.
Both hand it the features as a float matrix in the schema's order: a number as it is, a
category as its code (its position in transform.json), a missing value as NaN.

To train another algorithm, replace this file with one that defines the same names: the
pipeline then runs the three jobs and serves the model on the image named below
(docs/change-the-model.md). SageMaker runs this file next to train.py in the training job
and next to inference.py on the endpoint: it imports nothing from the project package.
"""

# The container's Python may be older than the project's: keep annotations unevaluated.
from __future__ import annotations

from pathlib import Path

import numpy as np
import xgboost as xgb

# The image: image_uris.retrieve(FRAMEWORK, region, FRAMEWORK_VERSION). The SageMaker XGBoost
# {{ cookiecutter.__xgboost_framework_version }} image runs xgboost {{ cookiecutter.__xgboost_version }} on Python 3.10; the project pins xgboost-cpu to it.
FRAMEWORK = "xgboost"
FRAMEWORK_VERSION = "{{ cookiecutter.__xgboost_framework_version }}"
# What the model package says it holds, in the model registry.
DESCRIPTION = "XGBoost binary classifier"
# The single place the hyperparameters live: the SageMaker pipeline passes these values to
# the training job and the local runner uses them as defaults (numbers and text only: the
# train script reads each one as --name value).
HYPERPARAMETERS = {
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
MODEL_FILE_NAME = "xgboost-model"


def matrix(x: np.ndarray, feature_names: list[str], categorical: list[bool], y=None):
    """An XGBoost DMatrix of encoded features (categories as codes, NaN as missing)."""
    return xgb.DMatrix(
        x,
        label=y,
        missing=np.nan,
        feature_names=feature_names,
        feature_types=["c" if is_category else "q" for is_category in categorical],
        enable_categorical=True,
    )


def fit(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    feature_names: list[str],
    categorical: list[bool],
    hyperparameters: dict,
) -> xgb.Booster:
    """Boost on (features, 0/1 labels) until validation stops improving; keep the best trees."""
    (x_train, y_train), (x_validation, y_validation) = train, validation
    train_data = matrix(x_train, feature_names, categorical, y=y_train)
    validation_data = matrix(x_validation, feature_names, categorical, y=y_validation)
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


def summary(booster: xgb.Booster) -> str:
    """What was fitted, for the training log."""
    return f"{booster.num_boosted_rounds()} trees"


def save(booster: xgb.Booster, model_dir: Path) -> None:
    """Write the booster into the model directory (SageMaker tars it into model.tar.gz)."""
    # save_raw with an explicit format: the file name has no extension to pick one from.
    (Path(model_dir) / MODEL_FILE_NAME).write_bytes(booster.save_raw("ubj"))


def load(model_dir: Path) -> xgb.Booster:
    """The booster `save` wrote, with its feature names and types."""
    booster = xgb.Booster()
    booster.load_model(bytearray((Path(model_dir) / MODEL_FILE_NAME).read_bytes()))
    # As the image does in algorithm mode: one thread per prediction call.
    booster.set_param("nthread", 1)
    return booster


def predict(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """The probability of the positive class for each row of encoded features."""
    categorical = [kind == "c" for kind in booster.feature_types]
    return booster.predict(matrix(x, booster.feature_names, categorical))
