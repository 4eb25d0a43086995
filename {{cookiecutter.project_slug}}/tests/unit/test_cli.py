"""The command line: one-line errors for bad arguments and missing AWS settings, and the
commands that need no AWS (data, local, latest-approved against moto)."""

import json

import boto3
import pytest
from ml_support import write_tiny_dataset
from moto import mock_aws
from registry_support import register_package

from {{ cookiecutter.package_name }} import aws, cli, config, data

ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-execution"
SETTINGS_ENV = ("SAGEMAKER_ROLE_ARN", "ARTIFACT_BUCKET", "CODEBUILD_RESOLVED_SOURCE_VERSION")


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
        (["start", "--commit-id", "c", "--input-data-url", "https://b/x"], ["s3://<bucket>"]),
        (["start", "--commit-id", "c", "--input-data-url", "s3://b1/a%20b/"], ["_ .:/=+@-"]),
        (["start", "--commit-id", "c", "--input-data-url", "s3://b1/" + "x" * 250], ["256"]),
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


def test_role_and_bucket_come_from_the_build_stack_outputs():
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {
            "SageMakerExecutionRoleArn": {"Value": ROLE_ARN},
            "ArtifactBucketName": {"Value": "artifacts-123456789012"},
        },
    }
    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name=config.AWS_REGION)
        cloudformation.create_stack(
            StackName=config.BUILD_STACK_NAME, TemplateBody=json.dumps(template)
        )
        settings = aws.cloud_settings(None, None, "abc123")
        given = aws.cloud_settings(None, "my-bucket", "abc123")
    assert settings == aws.CloudSettings(ROLE_ARN, "artifacts-123456789012", "abc123")
    assert given.bucket == "my-bucket" and given.role_arn == ROLE_ARN


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
