"""Evaluate step: score the test split with the model's own inference code; write evaluation.json.

Runs as a SageMaker Processing job (the default paths are the Processing contract) and, with
the paths given as options, as a plain process on a laptop. SageMaker uploads this file alone:
it imports nothing from the project package. It unpacks model.tar.gz and scores the raw test
records through the inference module inside it (`code/inference.py`), the code the endpoint
runs, so the gate judges what will be served.

evaluation.json is in the SageMaker Model Registry model-quality format (binary
classification: metrics as {"value", "standard_deviation"}, the confusion matrix as
actual -> predicted -> count, the ROC and precision-recall curves), so the pipeline both gates
on it (a PropertyFile) and attaches it to the registered model package, where SageMaker
Studio plots it.
"""

# The container's Python may be older than the project's: keep annotations unevaluated.
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics

MODEL_ARCHIVE_NAME = "model.tar.gz"
INFERENCE_MODULE = Path("code", "inference.py")
EVALUATION_FILE_NAME = "evaluation.json"
DECISION_THRESHOLD = 0.5
# Curves are thinned to at most this many points: enough to plot, small enough to attach.
MAX_CURVE_POINTS = 200
PROCESSING_DIR = "/opt/ml/processing"


def unpack_model(archive: Path, model_dir: Path):
    """Unpack model.tar.gz into model_dir; (its inference module, the model its model_fn loads)."""
    if not Path(archive).is_file():
        raise ValueError(f"no model archive at {archive}")
    try:
        with tarfile.open(archive) as tar:
            # The "data" filter refuses absolute paths and links out of model_dir; Pythons
            # older than 3.10.12 lack filters and extract as before.
            if hasattr(tarfile, "data_filter"):
                tar.extractall(model_dir, filter="data")
            else:
                tar.extractall(model_dir)
    except tarfile.TarError as error:
        raise ValueError(f"{archive} is not a model.tar.gz archive ({error})") from error
    script = Path(model_dir, INFERENCE_MODULE)
    if not script.is_file():
        raise ValueError(f"{archive} has no {INFERENCE_MODULE}: train it with the train step")
    # The inference module imports its neighbours in code/ (classifier.py) by name, as the
    # image's model server lets it: take them from this archive, not from an earlier one
    # loaded in the same process, and forget them once the module holds them.
    code_dir = str(script.parent)
    neighbours = {path.stem for path in script.parent.glob("*.py")}
    earlier = {name: sys.modules.pop(name) for name in neighbours if name in sys.modules}
    sys.path.insert(0, code_dir)
    try:
        # A module of its own, under a name nothing else imports.
        spec = importlib.util.spec_from_file_location("model_inference", script)
        inference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(inference)
        return inference, inference.model_fn(str(model_dir))
    except ImportError as error:
        raise ValueError(f"{archive}: {INFERENCE_MODULE} cannot be imported ({error})") from error
    finally:
        sys.path.remove(code_dir)
        for name in neighbours:
            sys.modules.pop(name, None)
        sys.modules.update(earlier)


def read_test_split(test_dir: Path) -> pd.DataFrame:
    """Every CSV in test_dir (header row, label first, values as text) as one table."""
    files = sorted(Path(test_dir).glob("*.csv"))
    if not files:
        raise ValueError(f"no CSV file in {test_dir}: run the preprocess step first")
    return pd.concat(
        [pd.read_csv(path, dtype=str, keep_default_na=False) for path in files],
        ignore_index=True,
    )


def thin(*curves: np.ndarray) -> list[list[float]]:
    """Every curve sampled at the same at most MAX_CURVE_POINTS indices, ends kept."""
    count = len(curves[0])
    keep = np.unique(np.linspace(0, count - 1, min(count, MAX_CURVE_POINTS)).round().astype(int))
    return [curve[keep].astype(float).tolist() for curve in curves]


def quality_report(
    labels: np.ndarray, scores: np.ndarray, classes: tuple[str, str] = ("0", "1")
) -> dict:
    """Binary-classification metrics, confusion matrix and curves, model-quality format.

    classes names the negative and the positive class in the confusion matrix.
    """
    predicted = (scores >= DECISION_THRESHOLD).astype(int)
    values = {
        "auc": metrics.roc_auc_score(labels, scores),
        "accuracy": metrics.accuracy_score(labels, predicted),
        "f1": metrics.f1_score(labels, predicted, zero_division=0),
        "precision": metrics.precision_score(labels, predicted, zero_division=0),
        "recall": metrics.recall_score(labels, predicted, zero_division=0),
    }
    counts = metrics.confusion_matrix(labels, predicted, labels=[0, 1])
    false_positive_rates, true_positive_rates = thin(*metrics.roc_curve(labels, scores)[:2])
    precisions, recalls = thin(*metrics.precision_recall_curve(labels, scores)[:2])
    return {
        "binary_classification_metrics": {
            **{
                name: {"value": float(value), "standard_deviation": "NaN"}
                for name, value in values.items()
            },
            "confusion_matrix": {
                str(actual): {
                    str(guess): int(counts[row, column]) for column, guess in enumerate(classes)
                }
                for row, actual in enumerate(classes)
            },
            "receiver_operating_characteristic_curve": {
                "false_positive_rates": false_positive_rates,
                "true_positive_rates": true_positive_rates,
            },
            "precision_recall_curve": {"precisions": precisions, "recalls": recalls},
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
    with tempfile.TemporaryDirectory() as model_dir:
        try:
            inference, model = unpack_model(args.model_dir / MODEL_ARCHIVE_NAME, Path(model_dir))
            table = read_test_split(args.test_dir)
            transform = model.transform
            labels = table[transform["label"]].astype(int).to_numpy()
            if len(np.unique(labels)) < 2:
                raise ValueError("the test split holds a single class; AUC is undefined")
            # Through predict_fn, as the endpoint scores a request.
            scores = inference.predict_fn(table[model.features].to_numpy().tolist(), model)
            if isinstance(scores, inference.Rejection):
                raise ValueError(f"the model refused the test split: {scores.message}")
        except (ValueError, KeyError) as error:
            print(f"evaluate: {error}", file=sys.stderr)
            return 1
    classes = (transform["negative_class"], transform["positive_class"])
    report = quality_report(labels, np.asarray(scores), classes)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / EVALUATION_FILE_NAME).write_text(json.dumps(report, indent=2) + "\n")
    summary = ", ".join(
        f"{name} {metric['value']:.4f}"
        for name, metric in report["binary_classification_metrics"].items()
        if "value" in metric
    )
    print(f"evaluate: {len(labels)} test rows: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
