"""The pull-request check: what a pull request into the dev branch would change, measured
before it merges.

`make pull-request-check` runs in the check pipeline's CodeBuild action, as a role that can
read but not train, register or deploy. It writes one result document, which the pull-request
function (lambdas/merge_dev_to_master/review.py, trusted code that holds the git host's
credentials) turns into the comment and the pass or fail state on the pull request:

- tests: the Build action's checks (`make ci-build`: data, lint, unit tests, templates, the
  offline definition), passed or failed, with the end of their log;
- definition: the SageMaker pipeline definition of the pull request's head against the one
  the dev branch last upserted (DescribePipeline): the steps added, removed and changed, and
  the steps that will be cache hits (unchanged, cached, and every step they read from a hit);
- model: the local runner trains on a small sample (the CSVs under
  s3://<artifact bucket>/{{ cookiecutter.__pull_request_sample_prefix }}, else load_dataset()'s table) and
  evaluates the candidate and the production model on the same held-out rows; a candidate
  below production's metric by more than CHAMPION_MARGIN fails the check.
"""

import json
import re
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }} import config

RESULT_VERSION = 1
RESULT_PREFIX = "{{ cookiecutter.__pull_request_result_prefix }}"
SAMPLE_PREFIX = "{{ cookiecutter.__pull_request_sample_prefix }}"
LOG_TAIL_LINES = 25
# A step reads another step's outputs through {"Get": "Steps.<name>..."} or waits for it.
STEP_REFERENCE = re.compile(r'"Get": "Steps\.([A-Za-z0-9-]+)[."]')


def result_key(execution_id: str) -> str:
    """Where a check pipeline execution's Check action leaves its result (the Report
    action of the same execution reads it)."""
    return f"{RESULT_PREFIX}{execution_id}.json"


def _steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The definition's steps by name, with the steps of a Condition's branches."""
    found: dict[str, dict[str, Any]] = {}

    def walk(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            found[step["Name"]] = step
            arguments = step.get("Arguments", {})
            walk(arguments.get("IfSteps", []) if isinstance(arguments, dict) else [])
            walk(arguments.get("ElseSteps", []) if isinstance(arguments, dict) else [])

    walk(definition.get("Steps", []))
    return found


def _upstream(step: dict[str, Any]) -> set[str]:
    """The steps a step reads from or waits for."""
    return set(STEP_REFERENCE.findall(json.dumps(step))) | set(step.get("DependsOn", []))


def definition_diff(head: dict[str, Any], dev: dict[str, Any] | None) -> dict[str, Any]:
    """The steps of head added, removed and changed against dev's definition, and which of
    head's steps SageMaker will answer from its step cache.

    A step is a cache hit when it is unchanged, has caching enabled, and every step it reads
    from or waits for is a hit too: a re-run upstream step writes new outputs, which change
    the downstream step's resolved arguments.
    """
    head_steps = _steps(head)
    if dev is None:
        return {
            "dev": False,
            "added": sorted(head_steps),
            "removed": [],
            "changed": [],
            "cache_hits": [],
            "parameters_changed": [],
        }
    dev_steps = _steps(dev)
    changed = sorted(
        name for name in head_steps.keys() & dev_steps.keys() if head_steps[name] != dev_steps[name]
    )
    hits: set[str] = set()
    pending = [
        name
        for name in head_steps.keys() & dev_steps.keys()
        if name not in changed and head_steps[name].get("CacheConfig", {}).get("Enabled")
    ]
    # Settle the hits in dependency order: a step is a hit once all its upstream ones are.
    while True:
        settled = [name for name in pending if _upstream(head_steps[name]) <= hits]
        if not settled:
            break
        hits.update(settled)
        pending = [name for name in pending if name not in settled]
    dev_parameters = {p["Name"]: p for p in dev.get("Parameters", [])}
    parameters_changed = sorted(
        p["Name"]
        for p in head.get("Parameters", [])
        # CommitId's default is the commit itself: it differs on every pull request.
        if p["Name"] != "CommitId" and dev_parameters.get(p["Name"]) != p
    )
    return {
        "dev": True,
        "added": sorted(head_steps.keys() - dev_steps.keys()),
        "removed": sorted(dev_steps.keys() - head_steps.keys()),
        "changed": changed,
        "cache_hits": sorted(hits),
        "parameters_changed": parameters_changed,
    }


def dev_definition(sagemaker_client: Any, pipeline_name: str) -> dict[str, Any] | None:
    """The definition the dev branch last upserted; None before the first build."""
    from botocore.exceptions import ClientError

    try:
        described = sagemaker_client.describe_pipeline(PipelineName=pipeline_name)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code in ("ResourceNotFound", "ValidationException"):
            return None
        raise
    return json.loads(described["PipelineDefinition"])


def model_comparison(report: dict[str, Any], metric: str) -> dict[str, Any]:
    """The candidate's metric and production's on the same held-out rows, from the
    evaluation report of a local run, and whether the candidate stays within the margin."""
    value = float(report["binary_classification_metrics"][metric]["value"])
    champion = report.get("champion") or {}
    production = (champion.get("metrics") or {}).get(metric)
    production_value = None if production is None else float(production)
    floor = None if production is None else report["quality_gate"][metric]["champion_floor"]
    return {
        "metric": metric,
        "candidate": value,
        "production": production_value,
        "floor": floor,
        "margin": config.CHAMPION_MARGIN,
        "not_comparable": champion.get("not_comparable"),
        "passed": floor is None or value >= floor,
        "test_rows": report["evaluation"]["test_rows"],
    }


def error_line(error: BaseException) -> str:
    """An error as one line for the comment: its type and the first line of its text."""
    text = str(error).splitlines()[0][:300] if str(error) else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log, for the comment of a failed check."""
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def result_document(
    commit_id: str,
    tests_passed: bool,
    tests_log: str,
    definition: dict[str, Any] | None,
    definition_error: str | None,
    model: dict[str, Any] | None,
    model_error: str | None,
    sample: str,
) -> dict[str, Any]:
    """The result the pull-request function reports; passed only when the tests pass, the
    model could be compared, and it is within the margin of production's."""
    model_passed = model is not None and model["passed"]
    return {
        "version": RESULT_VERSION,
        "commit_id": commit_id,
        "passed": tests_passed and model_passed,
        "tests": {"passed": tests_passed, "log_tail": "" if tests_passed else tests_log},
        "definition": definition,
        "definition_error": definition_error,
        "model": model,
        "model_error": model_error,
        "sample": sample,
    }
