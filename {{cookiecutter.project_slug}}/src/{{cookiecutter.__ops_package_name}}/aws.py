"""Where the cloud commands get their settings, the commit they build or deploy, and an
offline stand-in for AWS.

Role and bucket come from a command-line option, else from the environment CodeBuild
provides, else from the outputs of the build stack `make bootstrap` deployed; whatever is
still missing is one `UserError` naming every source of every missing setting. The commit is
resolved in one place, `resolve_commit_id`. `offline_aws()` runs a block against moto's
in-process AWS, which is all `definition --offline` needs.
"""

import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any, NamedTuple

from {{ cookiecutter.package_name }} import config

from .errors import UserError

ROLE_ARN_ENV = "SAGEMAKER_ROLE_ARN"
BUCKET_ENV = "ARTIFACT_BUCKET"
# CodeBuild sets it to the commit of the source it checked out.
COMMIT_ID_ENV = "CODEBUILD_RESOLVED_SOURCE_VERSION"
# A full commit id, as `git rev-parse HEAD` prints it (what the model package records and
# the deploy pipeline compares).
COMMIT_ID_PATTERN = re.compile(r"[0-9a-f]{40}")
COMMIT_ID_SOURCES = f"--commit-id, {COMMIT_ID_ENV}, or a git checkout with a commit"
# Outputs of the build stack (infra/model-build-pipeline.yml) that hold the settings.
ROLE_OUTPUT = "SageMakerExecutionRoleArn"
BUCKET_OUTPUT = "ArtifactBucketName"
INPUT_DATA_URL_ENV = "INPUT_DATA_URL"
# The build pipeline's InputDataUrl variable defaults to this word: train on the data the
# previous SageMaker pipeline execution used (CodePipeline variables cannot be empty).
PREVIOUS_DATA = "previous"
# An s3:// URI the model registry can record: SageMaker's CustomerMetadataProperties values
# are at most 256 letters, digits, spaces and _.:/=+-@ (botocore's CustomerMetadataValue).
INPUT_DATA_URL_PATTERN = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[\w .:/=+@-]*$")
INPUT_DATA_URL_MAX_LENGTH = 256

# moto's default account; the offline definition uses the names the real ones would have.
OFFLINE_ACCOUNT_ID = "123456789012"
OFFLINE_ROLE_ARN = f"arn:aws:iam::{OFFLINE_ACCOUNT_ID}:role/{config.SAGEMAKER_ROLE_NAME}"
OFFLINE_BUCKET = f"{config.ARTIFACT_BUCKET_PREFIX}-{OFFLINE_ACCOUNT_ID}"
OFFLINE_COMMIT_ID = "0" * 40


def role_arn_problem(arn: str) -> str | None:
    """Why arn is not an IAM role ARN, or None."""
    if not arn.startswith("arn:") or ":role/" not in arn:
        return f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
    return None


def bucket_problem(bucket: str) -> str | None:
    """Why bucket is not a bucket name, or None."""
    if bucket.startswith("s3://") or "/" in bucket:
        return f"{bucket!r} is not a bucket name: pass the name alone, no s3:// or /"
    return None


class CloudSettings(NamedTuple):
    """What the commands that build or run the SageMaker pipeline in AWS need."""

    role_arn: str
    bucket: str
    commit_id: str


def build_stack_outputs(cloudformation: Any) -> tuple[dict[str, str], str | None]:
    """The build stack's outputs, or ({}, why they could not be read)."""
    from botocore.exceptions import BotoCoreError, ClientError

    stack = config.BUILD_STACK_NAME
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return {}, f"stack {stack} does not exist in {config.AWS_REGION}: run make bootstrap"
        return {}, f"cannot read stack {stack}: {str(error).splitlines()[0]}"
    except BotoCoreError as error:
        return {}, f"cannot read stack {stack}: {error}"
    outputs = stacks[0].get("Outputs", []) if stacks else []
    return {item["OutputKey"]: item["OutputValue"] for item in outputs}, None


def cloud_settings(
    role_value: str | None,
    bucket_value: str | None,
    commit_value: str | None,
    cloudformation: Any = None,
) -> CloudSettings:
    """Role, bucket and commit: options, environment, then the build stack's outputs (role and
    bucket) or git (the commit).

    Every missing or invalid setting is reported at once, in one UserError.
    """
    role = role_value or os.environ.get(ROLE_ARN_ENV)
    bucket = bucket_value or os.environ.get(BUCKET_ENV)
    stack_problem = None
    if not role or not bucket:
        if cloudformation is None:
            import boto3

            cloudformation = boto3.client("cloudformation", region_name=config.AWS_REGION)
        outputs, stack_problem = build_stack_outputs(cloudformation)
        role = role or outputs.get(ROLE_OUTPUT)
        bucket = bucket or outputs.get(BUCKET_OUTPUT)
    stack = config.BUILD_STACK_NAME
    problems = []
    if not role:
        problems.append(
            f"missing the SageMaker execution role (--role-arn, {ROLE_ARN_ENV}, or output "
            f"{ROLE_OUTPUT} of stack {stack})"
        )
    elif role_arn_problem(role):
        problems.append(role_arn_problem(role))
    if not bucket:
        problems.append(
            f"missing the artifact bucket (--bucket, {BUCKET_ENV}, or output {BUCKET_OUTPUT} of "
            f"stack {stack})"
        )
    elif bucket_problem(bucket):
        problems.append(bucket_problem(bucket))
    try:
        commit = resolve_commit_id(commit_value)
    except UserError as error:
        problems.append(str(error))
    if problems:
        reason = f" [{stack_problem}]" if stack_problem else ""
        raise UserError(f"{'; '.join(problems)}{reason}")
    return CloudSettings(role, bucket, commit)


{% if cookiecutter.prod_account_id -%}
def artifact_bucket(value: str | None = None, cloudformation: Any = None) -> str:
    """The artifact bucket alone: the option, ARTIFACT_BUCKET, else the build stack's output
    (what the champion record and the production record need); UserError when none."""
    bucket = value or os.environ.get(BUCKET_ENV)
    stack_problem = None
    if not bucket:
        if cloudformation is None:
            import boto3

            cloudformation = boto3.client("cloudformation", region_name=config.AWS_REGION)
        outputs, stack_problem = build_stack_outputs(cloudformation)
        bucket = outputs.get(BUCKET_OUTPUT)
    if not bucket:
        raise UserError(
            f"missing the artifact bucket (--bucket, {BUCKET_ENV}, or output {BUCKET_OUTPUT} of"
            f" stack {config.BUILD_STACK_NAME})" + (f" [{stack_problem}]" if stack_problem else "")
        )
    problem = bucket_problem(bucket)
    if problem:
        raise UserError(problem)
    return bucket


{% endif -%}
def resolve_commit_id(value: str | None = None, fallback: str | None = None) -> str:
    """The git commit being built or deployed: value (--commit-id), else
    CODEBUILD_RESOLVED_SOURCE_VERSION, else `git rev-parse HEAD`, else fallback (if given).

    A UserError when there is none, or when it is not a full commit id (40 hex digits).
    """
    if value:
        commit, source = value, "--commit-id"
    elif os.environ.get(COMMIT_ID_ENV):
        commit, source = os.environ[COMMIT_ID_ENV], COMMIT_ID_ENV
    else:
        commit, source = _git_head() or fallback, "git rev-parse HEAD"
    if not commit:
        raise UserError(f"missing the git commit id ({COMMIT_ID_SOURCES})")
    if not COMMIT_ID_PATTERN.fullmatch(commit.lower()):
        raise UserError(
            f"the git commit id {commit!r} (from {source}) is not 40 hexadecimal digits: give"
            " the full id, as `git rev-parse HEAD` prints it"
        )
    return commit.lower()


def input_data_url(value: str | None) -> str | None:
    """The training data URI (--input-data-url or INPUT_DATA_URL); None for the previous data.

    Empty or "previous" means: the data the previous pipeline execution used.
    """
    resolved = value or os.environ.get(INPUT_DATA_URL_ENV) or PREVIOUS_DATA
    if resolved == PREVIOUS_DATA:
        return None
    if len(resolved) > INPUT_DATA_URL_MAX_LENGTH or not INPUT_DATA_URL_PATTERN.match(resolved):
        raise UserError(
            f"input data URL {resolved!r} must be s3://<bucket>/<prefix> of at most "
            f"{INPUT_DATA_URL_MAX_LENGTH} characters, using letters, digits and _ .:/=+@- "
            f"(the characters the model registry records), or {PREVIOUS_DATA!r}"
        )
    return resolved


def _git_head() -> str | None:
    """The commit HEAD points at, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


@contextlib.contextmanager
def offline_aws() -> Iterator[None]:
    """Run the block against moto's in-process AWS with fake credentials (nothing leaves)."""
    try:
        from moto import mock_aws
    except ImportError as error:
        raise UserError(
            "--offline needs moto, from the dev dependency group: run `make install`"
        ) from error
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    # AWS_ENDPOINT_URL and the per-service AWS_ENDPOINT_URL_<SERVICE> ones.
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
        os.environ.pop(name)
    # No telemetry opt-out file here: under mock_aws the SDK's telemetry request goes to an
    # S3 address that moto answers, and a loaded config file makes the SDK validate it
    # against its JSON schema at every lookup (about 4 s per definition).
    os.environ.pop("SAGEMAKER_USER_CONFIG_OVERRIDE", None)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "offline",
            "AWS_SECRET_ACCESS_KEY": "offline",
            "AWS_SESSION_TOKEN": "offline",
            "AWS_REGION": config.AWS_REGION,
            "AWS_DEFAULT_REGION": config.AWS_REGION,
            # Otherwise the SDK checks the role with iam:SimulatePrincipalPolicy.
            "SAGEMAKER_VALIDATE_ROLE": "false",
        }
    )
    try:
        with mock_aws():
            yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
