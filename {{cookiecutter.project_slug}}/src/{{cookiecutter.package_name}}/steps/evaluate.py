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
Studio plots it. Beside that section it holds what the gate compares the model with, on the
same test rows:
- `majority_class_baseline`: every metric of a model that always answers the majority class
  (AUC 0.5; accuracy, precision, recall and f1 as class balance makes them);
- `champion`: every metric of the production model (the champion archive given as input),
  scored through its own inference code, or null when there is none;
- `quality_gate`: per metric, the floors the model must reach: the baseline plus its margin,
  the champion minus its margin (0 with no champion), and one sentence that says so;
- `evaluation`: test rows, class balance, decision threshold, and the permutation importance
  of each feature (how much AUC drops when its column is shuffled).
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


def score(inference, model, table: pd.DataFrame) -> np.ndarray:
    """The model's scores of the raw test records, through predict_fn as on the endpoint."""
    missing = [name for name in model.features if name not in table.columns]
    if missing:
        raise ValueError(f"the test split has no {', '.join(map(repr, missing))} column")
    scores = inference.predict_fn(table[model.features].to_numpy().tolist(), model)
    if isinstance(scores, inference.Rejection):
        raise ValueError(f"the model refused the test split: {scores.message}")
    return np.asarray(scores, dtype=float)


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


def metric_values(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUC on the scores; accuracy, f1, precision and recall at DECISION_THRESHOLD."""
    predicted = (scores >= DECISION_THRESHOLD).astype(int)
    return {
        "auc": float(metrics.roc_auc_score(labels, scores)),
        "accuracy": float(metrics.accuracy_score(labels, predicted)),
        "f1": float(metrics.f1_score(labels, predicted, zero_division=0)),
        "precision": float(metrics.precision_score(labels, predicted, zero_division=0)),
        "recall": float(metrics.recall_score(labels, predicted, zero_division=0)),
    }


def majority_class_baseline(labels: np.ndarray) -> dict[str, float]:
    """Every metric of a model that gives each record the majority class's score (a tie: the
    positive class): what a model learns from class balance alone."""
    majority = 1.0 if 2 * labels.sum() >= len(labels) else 0.0
    return metric_values(labels, np.full(len(labels), majority))


def permutation_importance(
    labels: np.ndarray, table: pd.DataFrame, scorer, seed: int = 0
) -> dict[str, float]:
    """Per feature, the AUC lost when its column is shuffled (the others kept): what the
    model relies on, measured through the served code, whatever the classifier."""
    reference = metrics.roc_auc_score(labels, scorer(table))
    rng = np.random.RandomState(seed)
    drops = {}
    for name in table.columns:
        shuffled = table.copy()
        shuffled[name] = rng.permutation(shuffled[name].to_numpy())
        drops[name] = float(reference - metrics.roc_auc_score(labels, scorer(shuffled)))
    return drops


def gate_floors(
    baseline: dict[str, float],
    champion: dict[str, float] | None,
    baseline_margin: float,
    champion_margin: float,
    no_champion: str | None = None,
) -> dict[str, dict]:
    """Per metric, the floors the gate compares the model with, and a sentence saying why
    (no_champion: why there is no production model's score, when there is none)."""
    floors = {}
    for name, base in baseline.items():
        reasons = [
            f"the majority-class baseline {base:.4f} + margin {baseline_margin:.4f}"
            f" = {base + baseline_margin:.4f}"
        ]
        if champion is None:
            reasons.append(no_champion or "no production model to compare with")
            champion_floor = 0.0
        else:
            champion_floor = champion[name] - champion_margin
            reasons.append(
                f"the production model's {champion[name]:.4f} - margin {champion_margin:.4f}"
                f" = {champion_floor:.4f}"
            )
        floors[name] = {
            "baseline_floor": base + baseline_margin,
            "champion_floor": champion_floor,
            "explanation": "; ".join(reasons),
        }
    return floors


def quality_report(
    labels: np.ndarray, scores: np.ndarray, classes: tuple[str, str] = ("0", "1")
) -> dict:
    """Binary-classification metrics, confusion matrix and curves, model-quality format.

    classes names the negative and the positive class in the confusion matrix.
    """
    predicted = (scores >= DECISION_THRESHOLD).astype(int)
    values = metric_values(labels, scores)
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
    # The production model: a directory holding its model.tar.gz, or none (then the gate
    # has only the threshold and the baseline). --champion-url only names it in the report.
    parser.add_argument("--champion-dir", type=Path, default=Path(PROCESSING_DIR, "champion"))
    parser.add_argument("--champion-url", default="")
    parser.add_argument("--baseline-margin", type=float, default=0.05)
    parser.add_argument("--champion-margin", type=float, default=0.02)
    return parser.parse_args(argv)


def evaluate(args: argparse.Namespace, work_dir: Path) -> dict:
    """Score the test split with the model and the champion; the evaluation.json document."""
    inference, model = unpack_model(args.model_dir / MODEL_ARCHIVE_NAME, work_dir / "model")
    table = read_test_split(args.test_dir)
    transform = model.transform
    if transform["label"] not in table.columns:
        raise ValueError(f"the test split has no label column {transform['label']!r}")
    labels = table[transform["label"]].astype(int).to_numpy()
    if len(np.unique(labels)) < 2:
        raise ValueError("the test split holds a single class; AUC is undefined")
    scores = score(inference, model, table)
    report = quality_report(
        labels, scores, (transform["negative_class"], transform["positive_class"])
    )
    baseline = majority_class_baseline(labels)
    champion = None
    champion_archive = args.champion_dir / MODEL_ARCHIVE_NAME
    if champion_archive.is_file():
        champion_code, champion_model = unpack_model(champion_archive, work_dir / "champion")
        champion = {"model": args.champion_url or str(champion_archive), "metrics": None}
        try:
            champion_scores = score(champion_code, champion_model, table)
        except ValueError as error:
            # Another schema (a feature added or removed): no comparison on the same rows.
            champion["not_comparable"] = f"the production model cannot score these rows: {error}"
        else:
            champion["metrics"] = metric_values(labels, champion_scores)
    features = table[model.features]
    report.update(
        majority_class_baseline=baseline,
        champion=champion,
        quality_gate=gate_floors(
            baseline,
            champion and champion["metrics"],
            args.baseline_margin,
            args.champion_margin,
            champion and champion.get("not_comparable"),
        ),
        evaluation={
            "test_rows": len(labels),
            "class_balance": {
                transform["negative_class"]: int((labels == 0).sum()),
                transform["positive_class"]: int((labels == 1).sum()),
            },
            "decision_threshold": DECISION_THRESHOLD,
            "baseline_margin": args.baseline_margin,
            "champion_margin": args.champion_margin,
            "feature_importance": permutation_importance(
                labels, features, lambda rows: score(inference, model, rows)
            ),
        },
    )
    return report


def main(argv: list[str] | None = None) -> int:
    """Score the test split and write the report."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as work_dir:
        try:
            report = evaluate(args, Path(work_dir))
        except (ValueError, KeyError) as error:
            print(f"evaluate: {error}", file=sys.stderr)
            return 1
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / EVALUATION_FILE_NAME).write_text(json.dumps(report, indent=2) + "\n")
    summary = ", ".join(
        f"{name} {metric['value']:.4f}"
        for name, metric in report["binary_classification_metrics"].items()
        if "value" in metric
    )
    print(f"evaluate: {report['evaluation']['test_rows']} test rows: {summary}")
    if report["champion"] and report["champion"]["metrics"]:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in report["champion"]["metrics"].items())
        print(f"evaluate: the production model on the same rows: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
