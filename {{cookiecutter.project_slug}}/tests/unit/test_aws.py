"""The settings of the cloud commands: the build stack's outputs, and the one place that says
which commit a command builds or deploys."""

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import aws
from {{ cookiecutter.__ops_package_name }}.errors import UserError

ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-execution"
OPTION, CODEBUILD, HEAD = "a" * 40, "b" * 40, "c" * 40
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


@pytest.fixture
def outside_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory in no git checkout, without CodeBuild's commit variable."""
    monkeypatch.delenv(aws.COMMIT_ID_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    return tmp_path


@pytest.fixture
def git_checkout(outside_git: Path) -> str:
    """A git checkout with one commit as the working directory; that commit's id."""
    env = {**os.environ, **GIT_IDENTITY}
    for command in (["init", "--quiet"], ["commit", "--quiet", "--allow-empty", "-m", "One"]):
        subprocess.run(["git", *command], cwd=outside_git, env=env, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=outside_git, capture_output=True, text=True, check=True
    )
    return head.stdout.strip()


def test_the_commit_is_the_option_then_codebuilds_then_git_head(monkeypatch, git_checkout):
    assert aws.resolve_commit_id() == git_checkout
    monkeypatch.setenv(aws.COMMIT_ID_ENV, CODEBUILD)
    assert aws.resolve_commit_id() == CODEBUILD
    assert aws.resolve_commit_id(OPTION) == OPTION
    assert aws.resolve_commit_id(OPTION.upper()) == OPTION


def test_the_fallback_comes_last(monkeypatch, outside_git):
    assert aws.resolve_commit_id(fallback=aws.OFFLINE_COMMIT_ID) == aws.OFFLINE_COMMIT_ID
    monkeypatch.setenv(aws.COMMIT_ID_ENV, CODEBUILD)
    assert aws.resolve_commit_id(fallback=aws.OFFLINE_COMMIT_ID) == CODEBUILD


def test_no_commit_outside_git_names_every_source(outside_git):
    with pytest.raises(UserError) as error:
        aws.resolve_commit_id()
    assert str(error.value) == (
        "missing the git commit id (--commit-id, CODEBUILD_RESOLVED_SOURCE_VERSION,"
        " or a git checkout with a commit)"
    )


@pytest.mark.parametrize("value", ["c0ffee", "HEAD", "g" * 40, "a" * 41, " " + "a" * 40])
def test_a_commit_id_is_40_hex_digits(outside_git, value):
    with pytest.raises(UserError, match=r"from --commit-id\) is not 40 hexadecimal digits"):
        aws.resolve_commit_id(value)


def test_a_bad_codebuild_commit_names_its_variable(monkeypatch, outside_git):
    monkeypatch.setenv(aws.COMMIT_ID_ENV, "main")
    with pytest.raises(UserError, match=f"'main' \\(from {aws.COMMIT_ID_ENV}\\)"):
        aws.resolve_commit_id()


def test_role_and_bucket_come_from_the_build_stack_outputs(monkeypatch):
    for name in (aws.ROLE_ARN_ENV, aws.BUCKET_ENV):
        monkeypatch.delenv(name, raising=False)
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
        settings = aws.cloud_settings(None, None, OPTION)
        given = aws.cloud_settings(None, "my-bucket", OPTION)
    assert settings == aws.CloudSettings(ROLE_ARN, "artifacts-123456789012", OPTION)
    assert given.bucket == "my-bucket" and given.role_arn == ROLE_ARN


def test_a_bad_commit_is_reported_with_the_other_settings(outside_git):
    with pytest.raises(UserError) as error:
        aws.cloud_settings("sagemaker-role", "s3://b", "c0ffee")
    message = str(error.value)
    assert "'sagemaker-role' is not an IAM role ARN" in message
    assert "'s3://b' is not a bucket name" in message
    assert "'c0ffee' (from --commit-id) is not 40 hexadecimal digits" in message
