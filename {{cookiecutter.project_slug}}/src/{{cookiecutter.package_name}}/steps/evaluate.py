"""Evaluate step: score the trained model on the test split and write evaluation.json.

Runs as a SageMaker Processing job (the default paths are the Processing contract) and, with
the paths given as options, as a plain process on a laptop. SageMaker uploads this file alone:
it imports nothing from the project package.

evaluation.json is in the SageMaker Model Registry model-quality format, so the pipeline both
gates on it (a PropertyFile) and attaches it to the registered model package.
"""

# The container's Python may be older than the project's: keep annotations unevaluated.
from __future__ import annotations

import argparse
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn import metrics

MODEL_ARCHIVE_NAME = "model.tar.gz"
MODEL_FILE_NAME = "xgboost-model"
EVALUATION_FILE_NAME = "evaluation.json"
DECISION_THRESHOLD = 0.5
PROCESSING_DIR = "/opt/ml/processing"


def load_booster(archive: Path) -> xgb.Booster:
    """The booster inside a model.tar.gz, as a training job leaves it."""
    if not Path(archive).is_file():
        raise ValueError(f"no model archive at {archive}")
    try:
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            member = tar.extractfile(MODEL_FILE_NAME) if MODEL_FILE_NAME in names else None
            if member is None:
                raise ValueError(f"{archive} has no {MODEL_FILE_NAME} file")
            raw_model = member.read()
    except tarfile.TarError as error:
        raise ValueError(f"{archive} is not a model.tar.gz archive ({error})") from error
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw_model))
    except xgb.core.XGBoostError as error:
        raise ValueError(f"{MODEL_FILE_NAME} in {archive} is not an XGBoost model") from error
    # As the SageMaker XGBoost container does: one thread per prediction call.
    booster.set_param("nthread", 1)
    return booster


def read_test_split(test_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of every headerless CSV in test_dir (label first)."""
    files = sorted(Path(test_dir).glob("*.csv"))
    if not files:
        raise ValueError(f"no CSV file in {test_dir}: run the preprocess step first")
    table = pd.concat([pd.read_csv(path, header=None) for path in files], ignore_index=True)
    return table.iloc[:, 1:].to_numpy(), table.iloc[:, 0].to_numpy().astype(int)


def quality_report(labels: np.ndarray, scores: np.ndarray) -> dict:
    """Binary-classification metrics in the Model Registry model-quality format."""
    predicted = (scores >= DECISION_THRESHOLD).astype(int)
    values = {
        "auc": metrics.roc_auc_score(labels, scores),
        "accuracy": metrics.accuracy_score(labels, predicted),
        "f1": metrics.f1_score(labels, predicted, zero_division=0),
        "precision": metrics.precision_score(labels, predicted, zero_division=0),
        "recall": metrics.recall_score(labels, predicted, zero_division=0),
    }
    return {
        "binary_classification_metrics": {
            name: {"value": float(value), "standard_deviation": "NaN"}
            for name, value in values.items()
        }
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults are the SageMaker Processing paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path(PROCESSING_DIR, "model"))
    parser.add_argument("--test-dir", type=Path, default=Path(PROCESSING_DIR, "test"))
    parser.add_argument("--output-dir", type=Path, default=Path(PROCESSING_DIR, "evaluation"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Score the test split and write the report."""
    args = parse_args(argv)
    try:
        booster = load_booster(args.model_dir / MODEL_ARCHIVE_NAME)
        features, labels = read_test_split(args.test_dir)
    except ValueError as error:
        print(f"evaluate: {error}", file=sys.stderr)
        return 1
    if len(np.unique(labels)) < 2:
        print("evaluate: the test split holds a single class; AUC is undefined", file=sys.stderr)
        return 1
    report = quality_report(labels, booster.predict(xgb.DMatrix(features)))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / EVALUATION_FILE_NAME).write_text(json.dumps(report, indent=2) + "\n")
    summary = ", ".join(
        f"{name} {metric['value']:.4f}"
        for name, metric in report["binary_classification_metrics"].items()
    )
    print(f"evaluate: {len(labels)} test rows: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
