"""Step caching: one commit gives one pipeline definition, and each kind of change reruns
exactly the jobs it should.

SageMaker reuses a cached step when the attributes it keys the cache on are unchanged (the
"Default cache key attributes by pipeline step type" page of the SageMaker developer guide);
a step whose input is the output of a step that ran again gets new input URIs, so it runs
again too. The tests below apply that rule to definitions built offline (moto).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import aws

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT_ID = "c0ffee" + "0" * 34
BUCKET = aws.OFFLINE_BUCKET
# The package whose `python -m` is the project's command line.
CLI = "{{ cookiecutter.__ops_package_name }}"
# What SageMaker compares, per step type, to decide whether a cached run can be reused.
CACHE_KEY_ATTRIBUTES = {
    "Processing": ["AppSpecification", "Environment", "ProcessingInputs"],
    "Training": [
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ],
}
PREPROCESS, TRAIN, EVALUATE = "PreprocessData", "TrainModel", "EvaluateModel"
# Not the repository's own outputs, caches or virtual environment.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", "build", "__pycache__", ".pytest_cache", ".ruff_cache"
)


def copy_repo(destination: Path) -> Path:
    """The repository's source files copied to destination (a new checkout path)."""
    shutil.copytree(REPO_ROOT, destination, ignore=NOT_SOURCE)
    return destination


def start_definition(checkout: Path) -> subprocess.Popen:
    """`definition --offline` run from checkout with checkout's own src/ on the path."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "SAGEMAKER_", "CODEBUILD_"))
    }
    env["PYTHONPATH"] = str(checkout / "src")
    argv = [sys.executable, "-m", CLI, "definition", "--offline"]
    argv += ["--commit-id", COMMIT_ID, "--output", "build/pipeline-definition.json"]
    return subprocess.Popen(
        argv, cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def build_definition():
    """A function building the definition in-process (moto), as `definition --offline`
    writes it, from this checkout; a data set's bytes may replace the sample's."""
    from {{ cookiecutter.package_name }} import data
    from {{ cookiecutter.__ops_package_name }} import pipeline_service

    with aws.offline_aws():
        pipeline_service.create_bucket(boto3.client("s3", region_name=config.AWS_REGION), BUCKET)

        def build(dataset: bytes | None = None) -> str:
            with pytest.MonkeyPatch.context() as patch:
                if dataset is not None:
                    patch.setattr(data, "dataset_csv_bytes", lambda: dataset)
                definition = pipeline_service.pipeline_definition
                return definition(aws.OFFLINE_ROLE_ARN, BUCKET, COMMIT_ID) + "\n"

        yield build


@pytest.fixture(scope="module")
def baseline(build_definition) -> str:
    """The definition of this checkout as it is."""
    return build_definition()


def test_one_commit_gives_one_definition_whatever_the_checkout_path(baseline, tmp_path):
    # Another path (as CodeBuild's /codebuild/output/src<N>/src), another build time (every
    # file with a new modification time) and another deploy configuration.
    checkout = copy_repo(tmp_path / "codebuild" / "output" / "src1234" / "src")
    for path in checkout.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    prod = checkout / "infra" / "config" / "prod.json"
    settings = json.loads(prod.read_text())
    settings["Parameters"]["InitialInstanceCount"] = "2"
    prod.write_text(json.dumps(settings, indent=2) + "\n")
    endpoint = checkout / "infra" / "endpoint.yml"
    endpoint.write_text(endpoint.read_text() + "# a deploy-only change\n")

    run = start_definition(checkout)
    output, _ = run.communicate(timeout=300)
    assert run.returncode == 0, output
    assert (checkout / "build" / "pipeline-definition.json").read_text() == baseline


def all_steps(definition: dict) -> dict[str, dict]:
    """Every step by name, the condition's branches included."""
    found = {}
    for step in definition["Steps"]:
        found[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            found.update({inner["Name"]: inner for inner in step["Arguments"].get(branch, [])})
    return found


def resolve_parameters(value, defaults: dict):
    """value with every pipeline parameter replaced by its default (what an execution gets)."""
    if isinstance(value, dict):
        if set(value) == {"Get"} and value["Get"].startswith("Parameters."):
            return defaults[value["Get"].removeprefix("Parameters.")]
        return {key: resolve_parameters(item, defaults) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_parameters(item, defaults) for item in value]
    return value


def cache_key(step: dict, defaults: dict) -> str:
    """The attributes SageMaker keys a cached step on, as an execution would see them."""
    attributes = CACHE_KEY_ATTRIBUTES[step["Type"]]
    key = {name: step["Arguments"].get(name) for name in attributes}
    return json.dumps(resolve_parameters(key, defaults), sort_keys=True)


def jobs_that_run(
    before: dict, after: dict, values_before: dict | None = None, values_after: dict | None = None
) -> set[str]:
    """The cached job steps of `after` that run again after an execution of `before`; each
    execution started with its parameters' defaults, except for the values given."""
    defaults = {param["Name"]: param.get("DefaultValue") for param in after["Parameters"]}
    old_defaults = {param["Name"]: param.get("DefaultValue") for param in before["Parameters"]}
    defaults.update(values_after or {})
    old_defaults.update(values_before or {})
    old_steps, new_steps = all_steps(before), all_steps(after)
    rerun: set[str] = set()
    for name, step in new_steps.items():  # the definition lists steps in run order
        if step["Type"] not in CACHE_KEY_ATTRIBUTES:
            continue
        assert step.get("CacheConfig", {}).get("Enabled"), f"{name} is not cached"
        arguments = json.dumps(step["Arguments"])
        upstream_ran = any(f'"Steps.{other}.' in arguments for other in rerun)
        changed = cache_key(step, defaults) != cache_key(old_steps[name], old_defaults)
        if changed or upstream_ran:
            rerun.add(name)
    return rerun


def changed_script(monkeypatch, tmp_path, pipeline, script: str) -> None:
    """Point the pipeline at a copy of the step scripts where `script` has one more line."""
    steps_dir = tmp_path / "steps"
    shutil.copytree(pipeline.STEPS_DIR, steps_dir, ignore=NOT_SOURCE)
    with (steps_dir / script).open("a") as file:
        file.write("# changed\n")
    monkeypatch.setattr(pipeline, "STEPS_DIR", steps_dir)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("nothing", set()),
        ("data", {PREPROCESS, TRAIN, EVALUATE}),
        ("preprocess code", {PREPROCESS, TRAIN, EVALUATE}),
        ("training code", {TRAIN, EVALUATE}),
        # The training job copies the inference module and the classifier into model.tar.gz.
        ("inference code", {TRAIN, EVALUATE}),
        ("classifier code", {TRAIN, EVALUATE}),
        ("hyperparameters", {TRAIN, EVALUATE}),
        ("evaluation code", {EVALUATE}),
        ("quality threshold", set()),
        ("training instance type", set()),
        ("champion margin", {EVALUATE}),
        # Start passes the production model as ChampionModelUrl, and the commit: a push
        # with production unchanged reuses every job, a new production model re-evaluates.
        ("another commit, the same production model", set()),
        ("a new production model", {EVALUATE}),
    ],
)
def test_each_change_reruns_only_the_jobs_it_affects(
    change, expected, baseline, build_definition, monkeypatch, tmp_path
):
    from {{ cookiecutter.package_name }} import pipeline
    from {{ cookiecutter.package_name }}.data import dataset_csv_bytes
    from {{ cookiecutter.package_name }}.steps import classifier

    dataset = None
    if change == "data":
        dataset = dataset_csv_bytes() + dataset_csv_bytes().splitlines(keepends=True)[-1]
    elif change == "preprocess code":
        changed_script(monkeypatch, tmp_path, pipeline, "preprocess.py")
    elif change == "training code":
        changed_script(monkeypatch, tmp_path, pipeline, "train.py")
    elif change == "inference code":
        changed_script(monkeypatch, tmp_path, pipeline, "inference.py")
    elif change == "classifier code":
        changed_script(monkeypatch, tmp_path, pipeline, "classifier.py")
    elif change == "evaluation code":
        changed_script(monkeypatch, tmp_path, pipeline, "evaluate.py")
    elif change == "hyperparameters":
        name, value = next(iter(classifier.HYPERPARAMETERS.items()))
        changed = value + 1 if isinstance(value, int | float) else f"{value}-changed"
        monkeypatch.setitem(classifier.HYPERPARAMETERS, name, changed)
    elif change == "quality threshold":
        monkeypatch.setattr(config, "QUALITY_THRESHOLD", config.QUALITY_THRESHOLD / 2)
    elif change == "training instance type":
        monkeypatch.setattr(config, "TRAINING_INSTANCE_TYPE", "ml.m5.xlarge")
    elif change == "champion margin":
        monkeypatch.setattr(config, "CHAMPION_MARGIN", config.CHAMPION_MARGIN * 2)
    after = build_definition(dataset)
    champion = "s3://models/model-build/1/output/model.tar.gz"
    before_values = {"CommitId": "1" * 40, "ChampionModelUrl": champion}
    # What the execution after is started with differs, not the definition.
    started_with = {
        "another commit, the same production model": {"CommitId": "2" * 40},
        "a new production model": {"ChampionModelUrl": champion.replace("/1/", "/2/")},
    }
    after_values = {**before_values, **started_with.get(change, {})}

    assert (after != baseline) == (change not in ("nothing", *started_with))
    ran = jobs_that_run(json.loads(baseline), json.loads(after), before_values, after_values)
    assert ran == expected
