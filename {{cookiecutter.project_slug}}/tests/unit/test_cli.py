"""The command line: one parser for both packages, one-line errors (exit status 2) for bad
arguments and missing AWS settings, heavy libraries imported only by the commands that need
them, and the commands that need no AWS (data, local, latest-approved against moto)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from ml_support import write_tiny_dataset
from moto import mock_aws
from registry_support import register_package

from {{ cookiecutter.package_name }} import config, data
from {{ cookiecutter.__ops_package_name }} import cli

ROOT = Path(__file__).resolve().parents[2]
ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-execution"
COMMIT_ID = "c0ffee" + "2" * 34
SETTINGS_ENV = ("SAGEMAKER_ROLE_ARN", "ARTIFACT_BUCKET", "CODEBUILD_RESOLVED_SOURCE_VERSION")
# What the deploy actions do not install (test_buildspecs.py), nor `--help` imports.
HEAVY_MODULES = ("moto", "numpy", "pandas", "sagemaker", "sklearn", "xgboost")


@pytest.fixture(autouse=True)
def no_cloud_settings(monkeypatch):
    """No setting comes from the environment unless a test sets it."""
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of one command (argparse exits are caught too)."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_request:
        status = exit_request.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["upsert"], ["--role-arn", "SAGEMAKER_ROLE_ARN", "--bucket", "ARTIFACT_BUCKET"]),
        (["upsert", "--role-arn", ROLE_ARN], ["--bucket", "ARTIFACT_BUCKET"]),
        (["upsert", "--role-arn", "sagemaker-role", "--bucket", "b"], ["not an IAM role ARN"]),
        (["upsert", "--role-arn", ROLE_ARN, "--bucket", "s3://b"], ["not a bucket name"]),
        (["definition"], ["--role-arn", "SAGEMAKER_ROLE_ARN"]),
        (["start", "--commit-id", COMMIT_ID, "--input-data-url", "https://b/x"], ["s3://<bucket>"]),
        (["start", "--commit-id", COMMIT_ID, "--input-data-url", "s3://b1/a%20b/"], ["_ .:/=+@-"]),
        (["start", "--commit-id", COMMIT_ID, "--input-data-url", "s3://b1/" + "x" * 250], ["256"]),
        (["start", "--commit-id", "c0ffee"], ["'c0ffee' (from --commit-id)", "40 hexadecimal"]),
        (["stage-config", "--commit-id", "HEAD"], ["'HEAD' (from --commit-id)"]),
    ],
)
def test_missing_or_bad_settings_are_one_line(capsys, argv, fragments):
    with mock_aws():  # no build stack in this account
        status, _, err = run(capsys, *argv)
    assert status == 2
    assert_one_line_error(err, *fragments)


def test_every_missing_setting_is_reported_at_once(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    with mock_aws():
        status, _, err = run(capsys, "upsert")
    assert status == 2
    assert_one_line_error(
        err,
        "the SageMaker execution role (--role-arn, SAGEMAKER_ROLE_ARN, or output "
        f"SageMakerExecutionRoleArn of stack {config.BUILD_STACK_NAME})",
        "the artifact bucket (--bucket, ARTIFACT_BUCKET, or output ArtifactBucketName",
        "the git commit id (--commit-id",
        f"[stack {config.BUILD_STACK_NAME} does not exist in {config.AWS_REGION}: "
        "run make bootstrap]",
    )


def test_missing_commit_outside_git_names_option_and_variable(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    status, _, err = run(capsys, "start")
    assert status == 2
    assert_one_line_error(err, "--commit-id", "CODEBUILD_RESOLVED_SOURCE_VERSION")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["deploy"], "invalid choice"),
        (["serve", "--port", "99999"], "not a port number"),
        (["start", "--poll-seconds", "-1"], "not a positive number"),
        (["local", "--threshold", "high"], "invalid float value"),
    ],
)
def test_bad_arguments_are_one_line(capsys, argv, fragment):
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert_one_line_error(err, fragment, "--help")


def test_serve_without_a_model_is_one_line(capsys, tmp_path):
    status, _, err = run(capsys, "serve", "--model", str(tmp_path / "missing.tar.gz"))
    assert status == 2
    assert_one_line_error(err, "no model archive", "make local-pipeline")


def test_data_writes_the_csv(capsys, tmp_path):
    status, out, _ = run(capsys, "data", "--output-dir", str(tmp_path / "data"))
    assert status == 0
    assert (tmp_path / "data" / data.DATASET_FILE_NAME).is_file()
    assert data.DATASET_FILE_NAME in out


def test_data_into_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "data").write_text("")
    status, _, err = run(capsys, "data", "--output-dir", str(tmp_path / "data"))
    assert status == 2
    assert_one_line_error(err, "is a file")


def test_data_from_a_source_says_where_ci_finds_data(capsys, tmp_path):
    source = tmp_path / "mine.csv"
    source.write_bytes(data.dataset_csv_bytes())
    argv = ["data", "--output-dir", str(tmp_path / "data"), "--source", str(source)]
    status, out, _ = run(capsys, *argv)
    assert status == 0
    assert (tmp_path / "data" / data.DATASET_FILE_NAME).read_bytes() == source.read_bytes()
    assert f"from {source}" in out and "s3://" in out


def test_data_from_a_missing_source_is_one_line(capsys, tmp_path):
    missing = tmp_path / "nowhere.csv"
    status, _, err = run(capsys, "data", "--source", str(missing))
    assert status == 2
    assert_one_line_error(err, str(missing), "no such file")


def test_data_check_counts_the_rows_and_writes_nothing(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, _ = run(capsys, "data", "--check")
    assert status == 0
    rows = len(data.load_dataset())
    assert f"load_dataset() gives {rows} rows" in out
    assert not (tmp_path / "data").exists()


def test_data_check_of_a_loader_without_its_file_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(data, "load_dataset", lambda: pd.read_csv("exports/missing.csv"))
    status, _, err = run(capsys, "data", "--check")
    assert status == 2
    assert_one_line_error(err, "exports/missing.csv", "commit the file")


@pytest.mark.parametrize(("threshold", "expected_status"), [("0.5", 0), ("1.01", 1)])
def test_local_applies_the_quality_gate(capsys, tmp_path, threshold, expected_status):
    write_tiny_dataset(tmp_path / "data")
    argv = ["local", "--data-dir", str(tmp_path / "data"), "--build-dir", str(tmp_path / "b")]
    status, out, err = run(capsys, *argv, "--threshold", threshold)
    assert status == expected_status
    assert "Timing: preprocess" in out
    if expected_status:
        assert_one_line_error(err, f"quality gate failed: {config.QUALITY_METRIC}", "1.0100")
    else:
        assert f"Quality gate passed: {config.QUALITY_METRIC}" in out


def test_local_keeps_a_passing_model_as_the_next_runs_champion_and_warns_on_a_loose_gate(
    capsys, tmp_path
):
    write_tiny_dataset(tmp_path / "data")
    build = tmp_path / "b"
    argv = ["local", "--data-dir", str(tmp_path / "data"), "--build-dir", str(build)]
    status, out, _ = run(capsys, *argv, "--champion", "none", "--threshold", "0.0")
    assert status == 0
    assert f"Report: {build / 'report.html'}" in out and (build / "report.html").is_file()
    assert "no production model to compare with" in out
    kept = cli.kept_champion(build)
    assert kept.read_bytes() == (build / "model" / "model.tar.gz").read_bytes()
    # Any model that learnt something clears a threshold of 0 by more than the margin.
    assert f"warning: {config.QUALITY_METRIC} " in out and "QUALITY_THRESHOLD" in out
    value = json.loads((build / "evaluation" / "evaluation.json").read_text())[
        "binary_classification_metrics"
    ][config.QUALITY_METRIC]["value"]

    # The next run compares with the kept model: the same code on the same rows, as good.
    threshold = str(value - cli.LOOSE_GATE_MARGIN / 2)
    status, out, _ = run(capsys, *argv, "--threshold", threshold)
    assert status == 0
    assert "the production model's" in out and "warning:" not in out


def test_local_with_a_champion_that_does_not_exist_is_one_line(capsys, tmp_path):
    argv = ["local", "--data-dir", str(tmp_path), "--champion", str(tmp_path / "none.tar.gz")]
    status, _, err = run(capsys, *argv)
    assert status == 2
    assert_one_line_error(err, "none.tar.gz", "no such file")
    assert not list(tmp_path.iterdir())


@mock_aws
def test_latest_approved_prints_the_newest_approved_package(capsys):
    import boto3

    client = boto3.client("sagemaker", region_name=config.AWS_REGION)
    client.create_model_package_group(ModelPackageGroupName=config.MODEL_PACKAGE_GROUP_NAME)
    arns = [
        register_package(client, "0" * 40, status)
        for status in ("Approved", "Approved", "PendingManualApproval")
    ]
    status, out, _ = run(capsys, "latest-approved")
    assert status == 0
    assert out.strip() == arns[1]


@mock_aws
def test_latest_approved_without_any_is_one_line(capsys):
    import boto3

    boto3.client("sagemaker", region_name=config.AWS_REGION).create_model_package_group(
        ModelPackageGroupName=config.MODEL_PACKAGE_GROUP_NAME
    )
    status, _, err = run(capsys, "latest-approved")
    assert status == 1
    assert_one_line_error(err, config.MODEL_PACKAGE_GROUP_NAME)


def test_user_errors_name_the_command(capsys):
    status, _, err = run(capsys, "stage-config", "--commit-id", "HEAD")
    assert status == 2
    assert err.startswith("stage-config: error: ")


def subcommands(parser) -> set[str]:
    """The names of a parser's subcommands."""
    (action,) = [
        action for action in parser._actions if action.choices and action.dest == "command"
    ]
    return set(action.choices)


def test_every_command_the_make_targets_run_is_a_command():
    recipes = "".join((ROOT / name).read_text() for name in ("Makefile", "infra/infra.mk"))
    called = set(re.findall(r"-m \$\(CLI\) ([a-z-]+)", recipes))
    assert {"data", "local", "definition", "upsert", "start", "serve", "rollback"} <= called
    assert {"stage-config", "overrides", "prepare-stack", "package-lambda"} <= called
    assert called <= subcommands(cli.build_parser())
{%- if cookiecutter.source_provider != 'codecommit' %}
    assert "connection" in called
{%- endif %}


def run_module(*argv: str, preamble: str = "") -> subprocess.CompletedProcess:
    """`python -m <cli package> <argv>` in a new process, after the preamble's code."""
    code = f"{preamble}\nimport runpy, sys\nsys.argv = ['cli', *{list(argv)!r}]\n"
    code += f"runpy.run_module({cli.__package__!r}, run_name='__main__')"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "AWS_MAX_ATTEMPTS": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )


def test_help_lists_every_command_and_imports_no_library():
    imported = "import atexit, sys; atexit.register(lambda: print(*sorted(sys.modules)))"
    result = run_module("--help", preamble=imported)
    assert result.returncode == 0, result.stderr
    for command in subcommands(cli.build_parser()):
        assert command in result.stdout
    modules = {name.split(".")[0] for name in result.stdout.splitlines()[-1].split()}
    assert not modules & {"boto3", "botocore", *HEAVY_MODULES}


# Makes an import of the libraries the deploy actions do not install fail.
BLOCK_HEAVY_IMPORTS = f"""
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HEAVY_MODULES!r}:
            raise ImportError(name + " is not installed in the deploy actions")
sys.meta_path.insert(0, Blocker())
"""


def test_stage_config_runs_with_boto3_alone(tmp_path):
    # Nothing listens on that port: the command gets as far as its first AWS call.
    env_url = "import os; os.environ['AWS_ENDPOINT_URL'] = 'http://127.0.0.1:9'"
    result = run_module(
        "stage-config",
        "--commit-id",
        COMMIT_ID,
        "--output-dir",
        str(tmp_path),
        preamble=BLOCK_HEAVY_IMPORTS + env_url,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("stage-config: error: cannot reach AWS"), result.stderr
