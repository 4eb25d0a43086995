"""The pull-request check's measurements: the definition diff, the model comparison, the result."""

import json
from typing import Any

import pytest

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import pull_request as check


def step(name: str, arguments: Any = None, cached: bool = True, **extra: Any) -> dict[str, Any]:
    """A pipeline step as the SDK writes it."""
    found = {"Name": name, "Type": "Processing", "Arguments": arguments or {"image": name}}
    if cached:
        found["CacheConfig"] = {"Enabled": True, "ExpireAfter": "P30D"}
    return {**found, **extra}


def reads(name: str) -> dict[str, Any]:
    """Arguments that read another step's output, as {"Get": "Steps.<name>..."}."""
    return {"input": {"Get": f"Steps.{name}.ProcessingOutputConfig.Outputs['train'].S3Output"}}


def definition(*steps: dict[str, Any], commit: str = "a" * 40) -> dict[str, Any]:
    return {
        "Version": "2020-12-01",
        "Parameters": [
            {"Name": "CommitId", "Type": "String", "DefaultValue": commit},
            {"Name": "InputDataUrl", "Type": "String", "DefaultValue": "s3://b/input/x.csv"},
        ],
        "Steps": list(steps),
    }


DEV = definition(
    step("Prepare"),
    step("Train", reads("Prepare")),
    step("Evaluate", reads("Train")),
    step(
        "Gate",
        {"Conditions": [], "IfSteps": [step("Register", reads("Train"), cached=False)]},
        cached=False,
        Type="Condition",
    ),
)


def test_an_unchanged_definition_is_all_cache_hits_but_the_uncached_steps() -> None:
    diff = check.definition_diff(definition(*DEV["Steps"], commit="b" * 40), DEV)
    assert diff["changed"] == diff["added"] == diff["removed"] == []
    assert diff["cache_hits"] == ["Evaluate", "Prepare", "Train"]
    # The commit differs on every pull request: not a change worth reporting.
    assert diff["parameters_changed"] == []


def test_a_changed_step_makes_every_step_that_reads_it_a_miss() -> None:
    head = json.loads(json.dumps(DEV))
    head["Steps"][1]["Arguments"]["image"] = "new-trainer"
    diff = check.definition_diff(head, DEV)
    assert diff["changed"] == ["Train"]
    assert diff["cache_hits"] == ["Prepare"]


def test_a_step_that_waits_for_a_changed_one_is_a_miss_too() -> None:
    head = json.loads(json.dumps(DEV))
    head["Steps"][0]["Arguments"]["image"] = "new-prepare"
    head["Steps"].append(step("Report", {"x": 1}, DependsOn=["Evaluate"]))
    dev = json.loads(json.dumps(DEV))
    dev["Steps"].append(step("Report", {"x": 1}, DependsOn=["Evaluate"]))
    diff = check.definition_diff(head, dev)
    assert diff["changed"] == ["Prepare"]
    assert diff["cache_hits"] == []


def test_steps_added_removed_and_in_a_condition_branch_are_named() -> None:
    head = json.loads(json.dumps(DEV))
    head["Steps"] = [s for s in head["Steps"] if s["Name"] != "Evaluate"]
    head["Steps"][-1]["Arguments"]["IfSteps"].append(step("Notify", cached=False))
    head["Parameters"][1]["DefaultValue"] = "s3://b/input/y.csv"
    diff = check.definition_diff(head, DEV)
    assert diff["removed"] == ["Evaluate"]
    assert diff["added"] == ["Notify"]
    assert "Gate" in diff["changed"]
    assert diff["parameters_changed"] == ["InputDataUrl"]


def test_without_a_dev_pipeline_every_step_is_new() -> None:
    diff = check.definition_diff(DEV, None)
    assert diff["dev"] is False
    assert diff["added"] == ["Evaluate", "Gate", "Prepare", "Register", "Train"]


def report(value: float, champion: float | None, floor: float | None = None) -> dict[str, Any]:
    """An evaluation report as the evaluate step writes it."""
    metric = config.QUALITY_METRIC
    measured = None if champion is None else {"model": "s3://m", "metrics": {metric: champion}}
    return {
        "binary_classification_metrics": {metric: {"value": value}},
        "champion": measured,
        "quality_gate": {metric: {"champion_floor": floor if floor is not None else 0.0}},
        "evaluation": {"test_rows": 120},
    }


@pytest.mark.parametrize(
    ("value", "champion", "floor", "passed"),
    [(0.8, 0.81, 0.79, True), (0.78, 0.81, 0.79, False), (0.6, None, None, True)],
)
def test_the_model_passes_within_the_margin_of_production(
    value: float, champion: float | None, floor: float | None, passed: bool
) -> None:
    compared = check.model_comparison(report(value, champion, floor), config.QUALITY_METRIC)
    assert compared["passed"] is passed
    assert compared["candidate"] == value and compared["production"] == champion
    assert compared["floor"] == floor and compared["test_rows"] == 120


def test_a_production_model_that_cannot_score_the_rows_is_said_so() -> None:
    found = report(0.8, None)
    found["champion"] = {"model": "s3://m", "metrics": None, "not_comparable": "a new feature"}
    compared = check.model_comparison(found, config.QUALITY_METRIC)
    assert compared["production"] is None and compared["passed"] is True
    assert compared["not_comparable"] == "a new feature"


@pytest.mark.parametrize(
    ("tests_passed", "model_passed", "model_missing", "passed"),
    [
        (True, True, False, True),
        (False, True, False, False),
        (True, False, False, False),
        (True, True, True, False),
    ],
)
def test_the_result_passes_only_when_the_tests_and_the_model_do(
    tests_passed: bool, model_passed: bool, model_missing: bool, passed: bool
) -> None:
    model = None if model_missing else {"passed": model_passed}
    document = check.result_document(
        "c" * 40,
        tests_passed,
        "log",
        definition=None,
        definition_error="x",
        model=model,
        model_error="y" if model_missing else None,
        sample="s",
    )
    assert document["passed"] is passed
    assert document["tests"]["log_tail"] == ("" if tests_passed else "log")
    assert check.result_key("c" * 40) == f"{check.RESULT_PREFIX}{'c' * 40}.json"
