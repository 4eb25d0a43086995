"""The step scripts on tiny data: preprocess, train, evaluate, and the local runner."""

import ast
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from ml_support import (
    TINY_FEATURES,
    tiny_booster,
    tiny_table,
    write_model_archive,
    write_tiny_dataset,
)

from {{ cookiecutter.package_name }} import local
from {{ cookiecutter.package_name }}.steps import evaluate, preprocess, train

STEPS_DIR = Path(preprocess.__file__).parent
SCRIPTS = ["preprocess.py", "train.py", "evaluate.py"]
# What the SageMaker XGBoost image provides besides the standard library.
CONTAINER_PACKAGES = {"numpy", "pandas", "xgboost", "sklearn"}
LABEL = preprocess.LABEL_COLUMN


@pytest.mark.parametrize("script", SCRIPTS)
def test_step_script_imports_only_what_the_container_has(script):
    tree = ast.parse((STEPS_DIR / script).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{script} has a relative import; SageMaker uploads it alone"
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= CONTAINER_PACKAGES


def test_clean_drops_bad_rows_and_puts_the_label_first():
    table = tiny_table(rows=10)
    table.loc[0, "f0"] = np.nan
    table["f1"] = table["f1"].astype(object)
    table.loc[1, "f1"] = "not a number"
    table.loc[2, LABEL] = 7
    table = pd.concat([table, table.iloc[[5]]], ignore_index=True)
    cleaned = preprocess.clean(table)
    assert list(cleaned.columns) == [LABEL, "f0", "f1", "f2", "f3"]
    assert len(cleaned) == 7
    assert set(cleaned[LABEL]) <= {0, 1}


def test_clean_names_a_missing_label_column():
    with pytest.raises(ValueError, match=f"no '{LABEL}' column"):
        preprocess.clean(tiny_table().drop(columns=LABEL))


def test_split_is_disjoint_complete_and_seeded():
    table = preprocess.clean(tiny_table())
    parts = preprocess.split(table)
    assert [len(parts[name]) for name in ("train", "validation", "test")] == [56, 12, 12]
    rows = pd.concat(parts.values())
    assert len(rows.drop_duplicates()) == len(table)
    again = preprocess.split(table)
    assert all(parts[name].equals(again[name]) for name in parts)
    assert not parts["test"].equals(preprocess.split(table, seed=7)["test"])


def test_preprocess_without_input_fails_with_one_line(tmp_path, capsys):
    assert preprocess.main(["--input-dir", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "no CSV file" in error


@pytest.fixture
def splits(tmp_path):
    """The tiny data set preprocessed into train/validation/test directories."""
    write_tiny_dataset(tmp_path / "input")
    dirs = {name: tmp_path / name for name in ("train", "validation", "test")}
    argv = ["--input-dir", str(tmp_path / "input")]
    argv += [arg for name, path in dirs.items() for arg in (f"--{name}-dir", str(path))]
    assert preprocess.main(argv) == 0
    return dirs


def test_preprocess_writes_three_headerless_csvs_label_first(splits):
    for name, directory in splits.items():
        split = pd.read_csv(directory / f"{name}.csv", header=None)
        assert split.shape[1] == TINY_FEATURES + 1
        assert set(split[0]) <= {0, 1}


def test_train_reads_the_sagemaker_environment_and_saves_only_the_model(
    splits, tmp_path, monkeypatch
):
    model_dir = tmp_path / "model"
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(splits["train"]))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(splits["validation"]))
    monkeypatch.setenv("SM_MODEL_DIR", str(model_dir))
    assert train.main(["--num_round", "5", "--max_depth", "2"]) == 0
    # The XGBoost container loads every file in the model directory as a model.
    assert [path.name for path in model_dir.iterdir()] == [train.MODEL_FILE_NAME]
    booster = xgb.Booster()
    booster.load_model(str(model_dir / train.MODEL_FILE_NAME))
    assert booster.num_features() == TINY_FEATURES
    assert 1 <= booster.num_boosted_rounds() <= 5


def test_train_without_channels_names_the_variables(monkeypatch, capsys):
    for name in ("SM_CHANNEL_TRAIN", "SM_CHANNEL_VALIDATION", "SM_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert train.main([]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "SM_CHANNEL_TRAIN" in error


def test_quality_report_values_and_format():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    report = evaluate.quality_report(labels, scores)["binary_classification_metrics"]
    assert report["auc"] == {"value": 0.75, "standard_deviation": "NaN"}
    assert report["accuracy"]["value"] == 0.75
    assert report["precision"]["value"] == 1.0
    assert report["recall"]["value"] == 0.5
    assert report["f1"]["value"] == pytest.approx(2 / 3)


def test_evaluate_scores_the_archive_and_writes_the_report(splits, tmp_path):
    write_model_archive(tmp_path / "model", tiny_booster())
    argv = ["--model-dir", str(tmp_path / "model"), "--test-dir", str(splits["test"])]
    assert evaluate.main([*argv, "--output-dir", str(tmp_path / "evaluation")]) == 0
    report = json.loads((tmp_path / "evaluation" / evaluate.EVALUATION_FILE_NAME).read_text())
    metrics = report["binary_classification_metrics"]
    assert set(metrics) == {"auc", "accuracy", "f1", "precision", "recall"}
    assert metrics["auc"]["value"] > 0.8


def test_evaluate_rejects_an_archive_without_the_model(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / evaluate.MODEL_ARCHIVE_NAME).write_bytes(b"not a tar file")
    assert evaluate.main(["--model-dir", str(tmp_path / "model")]) == 1
    assert "is not a model.tar.gz archive" in capsys.readouterr().err


def test_local_runner_maps_the_sagemaker_paths_under_the_build_dir(tmp_path):
    write_tiny_dataset(tmp_path / "data")
    messages = []
    run = local.run_local_pipeline(
        tmp_path / "data",
        tmp_path / "build",
        echo=messages.append,
        hyperparameters={"num_round": 3},
    )
    assert run.model_archive == tmp_path / "build" / "model" / "model.tar.gz"
    assert run.evaluation_file == tmp_path / "build" / "evaluation" / "evaluation.json"
    # The hyperparameters reach the train script as --name value.
    assert evaluate.load_booster(run.model_archive).num_boosted_rounds() <= 3
    assert 0 <= local.metric_value(run.report(), "auc") <= 1
    assert list(run.timings) == ["preprocess", "train", "evaluate"]
    assert [message.split(":")[0] for message in messages] == list(run.timings)


def test_local_runner_reports_the_failing_step(tmp_path):
    (tmp_path / "data").mkdir()
    tiny_table().drop(columns=LABEL).to_csv(tmp_path / "data" / "bad.csv", index=False)
    with pytest.raises(local.StepFailedError, match="the preprocess step failed"):
        local.run_local_pipeline(tmp_path / "data", tmp_path / "build", echo=lambda _: None)
