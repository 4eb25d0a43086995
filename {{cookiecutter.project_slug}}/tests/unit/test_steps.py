"""The step scripts on tiny data: schema, preprocess, train, evaluate, and the local runner."""

import ast
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ml_support import (
    FEATURES,
    NEGATIVE,
    NUMERIC,
    POSITIVE,
    signal,
    tiny_table,
    train_tiny_model,
    write_tiny_dataset,
)
from sklearn import metrics

from {{ cookiecutter.package_name }} import config, local
from {{ cookiecutter.package_name }}.steps import (
    classifier,
    data_schema,
    evaluate,
    inference,
    preprocess,
    train,
)

STEPS_DIR = Path(preprocess.__file__).parent
SCRIPTS = sorted(path.name for path in STEPS_DIR.glob("*.py") if path.name != "__init__.py")
# What each SageMaker framework image the classifier may name provides besides the standard
# library, and its Python: the XGBoost 3.0-5 image (aws/sagemaker-xgboost-container, branch
# release-3.0.5, requirements.txt) and the scikit-learn 1.9-0 image
# (aws/deep-learning-containers, docker/sklearn/1.9-0). scikit-learn brings joblib and
# threadpoolctl.
SCIKIT_LEARN = {"sklearn", "joblib", "threadpoolctl"}
FRAMEWORK_IMAGES = {
    "xgboost": ({"numpy", "pandas", "scipy", "xgboost", *SCIKIT_LEARN}, (3, 10)),
    "sklearn": ({"numpy", "pandas", "scipy", *SCIKIT_LEARN}, (3, 12)),
}
CONTAINER_PACKAGES, CONTAINER_PYTHON = FRAMEWORK_IMAGES[classifier.FRAMEWORK]
# The files a script may import next to it: the training code archive holds them all.
SIBLINGS = {"data_schema", "inference", "classifier"}
LABEL = data_schema.LABEL


@pytest.mark.parametrize("script", SCRIPTS)
def test_step_code_imports_only_what_the_container_has(script):
    # The syntax of the container's Python (or of this one, if it is older).
    python = min(CONTAINER_PYTHON, sys.version_info[:2])
    tree = ast.parse((STEPS_DIR / script).read_text(), feature_version=python)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            # `from . import x` only for a sibling, when imported from the project package.
            assert {alias.name for alias in node.names} <= SIBLINGS, script
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"} - SIBLINGS
    assert third_party <= CONTAINER_PACKAGES


def test_the_declared_schema_is_usable():
    assert data_schema.problems() == []


def test_schema_problems_name_what_is_wrong(monkeypatch):
    monkeypatch.setattr(
        data_schema, "FEATURES", {**data_schema.FEATURES, "x": "text", LABEL: "numeric"}
    )
    monkeypatch.setattr(data_schema, "NEGATIVE_CLASS", data_schema.POSITIVE_CLASS)
    found = " | ".join(data_schema.problems())
    assert "'x' has kind 'text'" in found
    assert f"label column '{LABEL}' is also declared as a feature" in found
    assert "POSITIVE_CLASS and NEGATIVE_CLASS are the same" in found


def test_label_rows_map_the_classes_and_put_the_label_first():
    table = tiny_table(rows=10).astype(str)
    table = pd.concat([table, table.iloc[[3]]], ignore_index=True)
    labelled = preprocess.label_rows(table, LABEL, POSITIVE, NEGATIVE)
    assert list(labelled.columns) == [LABEL, *FEATURES]
    assert len(labelled) == 10  # the duplicate row is gone
    expected = (tiny_table(rows=10)[LABEL] == POSITIVE).astype(int)
    assert labelled[LABEL].tolist() == expected.tolist()


def test_an_unknown_label_value_is_one_clear_error():
    table = tiny_table(rows=10).astype(str).assign(_source="mine.csv")
    table.loc[4, LABEL] = "maybe"
    with pytest.raises(ValueError) as error:
        preprocess.label_rows(table, LABEL, POSITIVE, NEGATIVE)
    message = str(error.value)
    assert message.startswith("mine.csv:")
    assert "'maybe'" in message and repr(POSITIVE) in message and repr(NEGATIVE) in message


def test_a_missing_label_column_is_named():
    with pytest.raises(ValueError, match=f"no '{LABEL}' column"):
        preprocess.label_rows(tiny_table().drop(columns=LABEL).astype(str), LABEL, "1", "0")


def test_files_with_other_columns_are_refused(tmp_path):
    write_tiny_dataset(tmp_path)
    tiny_table().drop(columns=FEATURES[0]).to_csv(tmp_path / "zz-other.csv", index=False)
    with pytest.raises(ValueError, match=r"zz-other\.csv has the columns"):
        preprocess.read_input(tmp_path)


def test_files_with_the_same_header_are_one_table(tmp_path):
    # A batch of new data arrives as several files of one table.
    table = tiny_table()
    half = len(table) // 2
    table.iloc[:half].to_csv(tmp_path / "part-0000.csv", index=False)
    table.iloc[half:].to_csv(tmp_path / "part-0001.csv", index=False)
    combined = preprocess.read_input(tmp_path)
    assert len(combined) == len(table)
    assert set(combined["_source"]) == {"part-0000.csv", "part-0001.csv"}


def test_split_is_disjoint_complete_and_seeded():
    table = preprocess.label_rows(tiny_table().astype(str), LABEL, POSITIVE, NEGATIVE)
    parts = preprocess.split(table)
    sizes = [len(parts[name]) for name in ("train", "validation", "test")]
    assert sizes[0] == round(len(table) * preprocess.TRAIN_FRACTION)
    assert sum(sizes) == len(table)
    rows = pd.concat(parts.values())
    assert len(rows.drop_duplicates()) == len(table)
    again = preprocess.split(table)
    assert all(parts[name].equals(again[name]) for name in parts)
    assert not parts["test"].equals(preprocess.split(table, seed=7)["test"])


def test_preprocess_without_input_fails_with_one_line(tmp_path, capsys):
    argv = ["--input-dir", str(tmp_path), *preprocess.label_options(data_schema)]
    assert preprocess.main(argv) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "no CSV file" in error


@pytest.fixture
def splits(tmp_path):
    """The tiny data set preprocessed into train/validation/test directories."""
    write_tiny_dataset(tmp_path / "input")
    dirs = {name: tmp_path / name for name in ("train", "validation", "test")}
    argv = ["--input-dir", str(tmp_path / "input"), *preprocess.label_options(data_schema)]
    argv += [arg for name, path in dirs.items() for arg in (f"--{name}-dir", str(path))]
    assert preprocess.main(argv) == 0
    return dirs


def test_preprocess_writes_three_csvs_with_a_header_and_a_0_1_label_first(splits):
    for name, directory in splits.items():
        split = pd.read_csv(directory / f"{name}.csv")
        assert list(split.columns) == [LABEL, *FEATURES]
        assert set(split[LABEL]) <= {0, 1}


@pytest.fixture
def channels(splits, monkeypatch, tmp_path):
    """The SageMaker Training environment pointing at the tiny splits."""
    monkeypatch.setenv("SM_CHANNEL_TRAIN", str(splits["train"]))
    monkeypatch.setenv("SM_CHANNEL_VALIDATION", str(splits["validation"]))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    return tmp_path / "model"


def test_train_saves_the_classifier_the_fitted_transform_and_the_inference_code(channels, splits):
    assert train.main([]) == 0
    assert {inference.TRANSFORM_FILE_NAME, train.CODE_DIR_NAME} < {
        path.name for path in channels.iterdir()
    }
    code = channels / train.CODE_DIR_NAME
    assert sorted(path.name for path in code.iterdir()) == ["classifier.py", "inference.py"]
    for path in code.iterdir():
        assert path.read_bytes() == (STEPS_DIR / path.name).read_bytes()
    transform = json.loads((channels / inference.TRANSFORM_FILE_NAME).read_text())
    assert [feature["name"] for feature in transform["features"]] == FEATURES
    training_rows = pd.read_csv(splits["train"] / "train.csv", dtype=str)
    for feature in transform["features"]:
        assert feature["kind"] == data_schema.FEATURES[feature["name"]]
        if feature["kind"] == data_schema.CATEGORICAL:
            # Fitted on the train split only.
            assert feature["categories"] == sorted(set(training_rows[feature["name"]]))
    assert (transform["label"], transform["positive_class"]) == (LABEL, POSITIVE)
    # What was saved loads back, and scores each record with a probability.
    model = inference.model_fn(str(channels))
    test_rows = pd.read_csv(splits["test"] / "test.csv", dtype=str, keep_default_na=False)
    scores = model.predict(model.encode(test_rows[FEATURES].to_numpy().tolist()))
    assert scores.shape == (len(test_rows),)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert len(np.unique(scores)) > 1


@pytest.mark.parametrize("name", list(classifier.HYPERPARAMETERS))
def test_each_hyperparameter_is_an_option_of_the_train_script(name):
    default = classifier.HYPERPARAMETERS[name]
    assert type(default) in (int, float, str), "the training toolkit passes --name value"
    assert getattr(train.parse_args([]), name) == default
    other = default + 1 if isinstance(default, int | float) else f"{default}-other"
    assert getattr(train.parse_args([f"--{name}", str(other)]), name) == other


def test_the_classifier_scores_the_same_once_saved_and_loaded(splits, tmp_path):
    tables = {name: train.read_split(path) for name, path in splits.items()}
    encoder = inference.Model(None, train.fit_transform(tables["train"]))
    categorical = [kind == data_schema.CATEGORICAL for kind in encoder.kinds]
    fitted = classifier.fit(
        train.encoded(tables["train"], encoder, "train"),
        train.encoded(tables["validation"], encoder, "validation"),
        encoder.features,
        categorical,
        dict(classifier.HYPERPARAMETERS),
    )
    classifier.save(fitted, tmp_path)
    test_matrix, _ = train.encoded(tables["test"], encoder, "test")
    loaded = classifier.load(tmp_path)
    assert np.array_equal(
        classifier.predict(loaded, test_matrix), classifier.predict(fitted, test_matrix)
    )


@pytest.mark.skipif(not NUMERIC, reason="the schema declares no numeric feature")
def test_text_in_a_numeric_column_is_one_clear_error(channels, splits, capsys):
    path = splits["train"] / "train.csv"
    table = pd.read_csv(path, dtype=str)
    table.loc[2, NUMERIC[0]] = "n/a"
    table.to_csv(path, index=False)
    assert train.main([]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"'{NUMERIC[0]}' is numeric, got 'n/a'" in error and "data_schema.py" in error


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
    report = evaluate.quality_report(labels, scores, ("no", "yes"))
    found = report["binary_classification_metrics"]
    assert found["auc"] == {"value": 0.75, "standard_deviation": "NaN"}
    assert found["accuracy"]["value"] == 0.75
    assert found["precision"]["value"] == 1.0
    assert found["recall"]["value"] == 0.5
    assert found["f1"]["value"] == pytest.approx(2 / 3)
    # actual -> predicted -> count, at the 0.5 threshold.
    assert found["confusion_matrix"] == {"no": {"no": 2, "yes": 0}, "yes": {"no": 1, "yes": 1}}
    roc = found["receiver_operating_characteristic_curve"]
    assert roc["false_positive_rates"][0] == 0.0 and roc["false_positive_rates"][-1] == 1.0
    assert roc["true_positive_rates"][-1] == 1.0
    curve = found["precision_recall_curve"]
    assert len(curve["precisions"]) == len(curve["recalls"])
    assert curve["recalls"][0] == 1.0 and curve["precisions"][-1] == 1.0
    json.dumps(report, allow_nan=False)


def test_long_curves_are_thinned_with_their_ends_kept():
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 2, size=5000)
    report = evaluate.quality_report(labels, rng.uniform(size=5000))
    roc = report["binary_classification_metrics"]["receiver_operating_characteristic_curve"]
    assert len(roc["false_positive_rates"]) <= evaluate.MAX_CURVE_POINTS
    assert (roc["false_positive_rates"][-1], roc["true_positive_rates"][-1]) == (1.0, 1.0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The local runner's outputs on the tiny table."""
    return train_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_evaluate_scores_the_test_split_through_the_archived_inference_code(tiny_run):
    evaluation = tiny_run.report()
    report = evaluation["binary_classification_metrics"]
    test = pd.read_csv(tiny_run.build_dir / "test" / "test.csv")
    # The expectation comes from the generated data: the noise-free signal's own AUC on the
    # same test rows is the best any model can do; a model that learnt it comes close.
    best = metrics.roc_auc_score(test[LABEL], signal(test))
    assert report["auc"]["value"] > best - 0.15
    assert report["auc"]["value"] > evaluation["quality_gate"]["auc"]["baseline_floor"]
    matrix = report["confusion_matrix"]
    assert list(matrix) == [NEGATIVE, POSITIVE]
    test_rows = len(pd.read_csv(tiny_run.build_dir / "test" / "test.csv"))
    assert sum(sum(row.values()) for row in matrix.values()) == test_rows


def test_evaluate_rejects_a_file_that_is_not_an_archive(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / evaluate.MODEL_ARCHIVE_NAME).write_bytes(b"not a tar file")
    assert evaluate.main(["--model-dir", str(tmp_path / "model")]) == 1
    assert "is not a model.tar.gz archive" in capsys.readouterr().err


def test_evaluate_rejects_an_archive_without_inference_code(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "xgboost-model").write_bytes(b"")
    with tarfile.open(tmp_path / "model" / evaluate.MODEL_ARCHIVE_NAME, "w:gz") as tar:
        tar.add(tmp_path / "xgboost-model", arcname="xgboost-model")
    assert evaluate.main(["--model-dir", str(tmp_path / "model")]) == 1
    assert "has no code/inference.py" in capsys.readouterr().err


def test_local_runner_maps_the_sagemaker_paths_under_the_build_dir(tiny_run):
    build = tiny_run.build_dir
    assert tiny_run.model_archive == build / "model" / "model.tar.gz"
    assert tiny_run.evaluation_file == build / "evaluation" / "evaluation.json"
    with tarfile.open(tiny_run.model_archive) as tar:
        names = set(tar.getnames())
    assert {"transform.json", "code/inference.py", "code/classifier.py"} <= names
    assert list(tiny_run.timings) == ["preprocess", "train", "evaluate"]


def test_local_runner_writes_the_report_with_the_plots(tiny_run):
    page = tiny_run.report_file.read_text()
    assert tiny_run.report_file == tiny_run.build_dir / "report.html"
    # ROC and PR curves with their reference lines, and the permutation importance.
    assert page.count("<svg") == 3
    assert "ROC curve" in page and "Precision-recall curve" in page
    assert ">chance<" in page and ">class balance " in page
    assert f"actual {POSITIVE}" in page
    assert config.PROJECT_NAME.split()[0] in page
    for name in FEATURES:
        assert f">{name}<" in page


def test_local_runner_leaves_no_step_module_behind(tiny_run):
    leaked = [
        name
        for name, module in sys.modules.items()
        if Path(getattr(module, "__file__", None) or "/").parent == STEPS_DIR
        and not name.startswith("{{ cookiecutter.package_name }}.")
    ]
    assert leaked == []


def test_local_runner_reports_the_failing_step(tmp_path):
    (tmp_path / "data").mkdir()
    tiny_table().drop(columns=LABEL).to_csv(tmp_path / "data" / "bad.csv", index=False)
    with pytest.raises(local.StepFailedError, match="the preprocess step failed"):
        local.run_local_pipeline(tmp_path / "data", tmp_path / "build", echo=lambda _: None)


def test_the_majority_class_baseline_is_what_class_balance_alone_scores():
    labels = np.array([1, 1, 1, 0])
    baseline = evaluate.majority_class_baseline(labels)
    assert baseline == {
        "auc": 0.5,
        "accuracy": 0.75,
        "f1": pytest.approx(6 / 7),
        "precision": 0.75,
        "recall": 1.0,
    }
    # Mostly negative: the constant answer is the negative class; nothing is predicted positive.
    assert evaluate.majority_class_baseline(1 - labels)["f1"] == 0.0


def test_gate_floors_add_the_baseline_margin_and_take_off_the_champion_margin():
    baseline = {"auc": 0.5, "f1": 0.8}
    floors = evaluate.gate_floors(baseline, {"auc": 0.9, "f1": 0.85}, 0.05, 0.02)
    assert floors["auc"]["baseline_floor"] == pytest.approx(0.55)
    assert floors["auc"]["champion_floor"] == pytest.approx(0.88)
    assert "production model's 0.9000 - margin 0.0200 = 0.8800" in floors["auc"]["explanation"]
    alone = evaluate.gate_floors(baseline, None, 0.05, 0.02)
    assert alone["f1"]["champion_floor"] == 0.0
    assert "no production model" in alone["f1"]["explanation"]


def test_permutation_importance_finds_the_feature_the_scores_use():
    rng = np.random.RandomState(3)
    table = pd.DataFrame({"used": rng.normal(size=400), "ignored": rng.normal(size=400)})
    labels = (table["used"] > 0).astype(int).to_numpy()
    drops = evaluate.permutation_importance(labels, table, lambda rows: rows["used"].to_numpy())
    assert drops["used"] > 0.3
    assert drops["ignored"] == 0.0


def gate_report(value: float, baseline_floor: float, champion_floor: float) -> dict:
    """An evaluation report with one metric and its floors."""
    return {
        "binary_classification_metrics": {"auc": {"value": value}},
        "quality_gate": {
            "auc": {"baseline_floor": baseline_floor, "champion_floor": champion_floor}
        },
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.90, []),
        (0.82, ["production model"]),
        (0.70, ["threshold", "production model"]),
        (0.54, ["threshold", "majority class", "production model"]),
    ],
)
def test_the_local_gate_refuses_for_each_floor_it_misses(value, expected):
    failures = local.gate_failures(gate_report(value, 0.55, 0.85), "auc", 0.8)
    assert len(failures) == len(expected)
    for failure, word in zip(failures, expected, strict=True):
        assert word in failure


@pytest.fixture(scope="module")
def champion_runs(tmp_path_factory):
    """A model that learned the signal (strong) and one trained on the same columns with
    shuffled labels (weak): whatever the classifier, the weak one has nothing to learn.
    Each is then compared with the other as the champion, on the strong run's test rows."""
    workdir = tmp_path_factory.mktemp("champion")
    table = tiny_table()
    shuffled = table.copy()
    shuffled[LABEL] = np.random.RandomState(1).permutation(table[LABEL])
    write_tiny_dataset(workdir / "data", table)
    write_tiny_dataset(workdir / "shuffled", shuffled)

    def run(name: str, data: str, champion=None):
        return local.run_local_pipeline(
            workdir / data, workdir / name, echo=lambda _: None, champion=champion
        )

    strong = run("strong", "data")
    noise = run("noise", "shuffled")
    # The local runner with a champion: the strong model again, the noise one as champion.
    again = run("again", "data", champion=noise.model_archive)
    # The weak model scored on the strong run's test rows, the strong model as champion.
    weak = local.LocalRun(workdir / "weak")
    arguments = {
        "--model-dir": noise.model_archive.parent,
        "--test-dir": strong.build_dir / "test",
        "--output-dir": weak.evaluation_file.parent,
        "--champion-dir": strong.model_archive.parent,
    }
    assert evaluate.main([str(v) for item in arguments.items() for v in item]) == 0
    return strong, weak, again


def test_a_champion_is_scored_on_the_same_rows_and_sets_the_floor(champion_runs):
    strong, weak, _ = champion_runs
    report = weak.report()
    champion = report["champion"]["metrics"]
    # The champion's numbers on these rows are the strong run's own.
    assert champion == pytest.approx(
        {
            k: v["value"]
            for k, v in strong.report()["binary_classification_metrics"].items()
            if isinstance(v, dict) and "value" in v
        }
    )
    floor = report["quality_gate"]["auc"]["champion_floor"]
    assert floor == pytest.approx(champion["auc"] - config.CHAMPION_MARGIN)
    assert strong.report()["champion"] is None


def test_a_worse_model_than_the_champion_is_refused_and_a_better_one_passes(champion_runs):
    _, weak, again = champion_runs
    weak_value = local.metric_value(weak.report(), "auc")
    assert weak_value < weak.report()["quality_gate"]["auc"]["champion_floor"]
    assert any("production model" in f for f in local.gate_failures(weak.report(), "auc", 0.0))
    assert again.report()["champion"]["metrics"] is not None
    assert not local.gate_failures(again.report(), "auc", 0.0)


def test_a_champion_of_another_schema_is_reported_not_compared(tmp_path, champion_runs):
    strong, _, _ = champion_runs
    # The strong model, with one more feature in its transform than the test split holds.
    unpacked = tmp_path / "unpacked"
    with tarfile.open(strong.model_archive) as tar:
        tar.extractall(unpacked, filter="data")
    transform_file = next(unpacked.rglob(inference.TRANSFORM_FILE_NAME))
    transform = json.loads(transform_file.read_text())
    transform["features"].append({**transform["features"][0], "name": "not_in_the_split"})
    transform_file.write_text(json.dumps(transform))
    champion_dir = tmp_path / "champion"
    local.package_model(unpacked, champion_dir / evaluate.MODEL_ARCHIVE_NAME)
    args = evaluate.parse_args(
        [
            "--model-dir",
            str(strong.model_archive.parent),
            "--test-dir",
            str(strong.build_dir / "test"),
            "--champion-dir",
            str(champion_dir),
        ]
    )
    report = evaluate.evaluate(args, tmp_path / "work")
    assert report["champion"]["metrics"] is None
    assert "'not_in_the_split'" in report["champion"]["not_comparable"]
    assert report["quality_gate"]["auc"]["champion_floor"] == 0.0
    assert "cannot score these rows" in report["quality_gate"]["auc"]["explanation"]
