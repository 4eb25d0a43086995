"""Where the cloud commands get their AWS settings, and an offline stand-in for AWS.

Each setting comes from a command-line option, else from the environment CodeBuild
provides, else (role and bucket) from the outputs of the build stack `make bootstrap`
deployed. Whatever is still missing is one `SettingError` naming every source of every
missing setting. `offline_aws()` runs a block against moto's in-process AWS, which is all
`definition --offline` needs.
"""

import contextlib
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any, NamedTuple

from . import config

ROLE_ARN_ENV = "SAGEMAKER_ROLE_ARN"
BUCKET_ENV = "ARTIFACT_BUCKET"
COMMIT_ID_ENV = "CODEBUILD_RESOLVED_SOURCE_VERSION"
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
# The SageMaker SDK reports usage over the internet unless its config file opts out.
SDK_CONFIG_TELEMETRY_OPT_OUT = (
    "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
)


class SettingError(Exception):
    """A setting the command needs is missing or invalid (the message says how to fix it)."""


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
    """Role, bucket and commit: options, environment, then the build stack's outputs.

    Every missing or invalid setting is reported at once, in one SettingError.
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
    commit = commit_value or os.environ.get(COMMIT_ID_ENV) or _git_head()
    stack = config.BUILD_STACK_NAME
    problems = []
    if not role:
        problems.append(
            f"the SageMaker execution role (--role-arn, {ROLE_ARN_ENV}, or output "
            f"{ROLE_OUTPUT} of stack {stack})"
        )
    elif role_arn_problem(role):
        problems.append(role_arn_problem(role))
    if not bucket:
        problems.append(
            f"the artifact bucket (--bucket, {BUCKET_ENV}, or output {BUCKET_OUTPUT} of "
            f"stack {stack})"
        )
    elif bucket_problem(bucket):
        problems.append(bucket_problem(bucket))
    if not commit:
        problems.append(
            f"the git commit id (--commit-id, {COMMIT_ID_ENV}, or a git checkout with a commit)"
        )
    if problems:
        reason = f" [{stack_problem}]" if stack_problem else ""
        raise SettingError(f"missing or invalid: {'; '.join(problems)}{reason}")
    return CloudSettings(role, bucket, commit)


def commit_id(value: str | None, fallback: str | None = None) -> str:
    """The git commit being built: --commit-id, CODEBUILD_RESOLVED_SOURCE_VERSION, git HEAD,
    else fallback (when given)."""
    resolved = value or os.environ.get(COMMIT_ID_ENV) or _git_head() or fallback
    if not resolved:
        raise SettingError(
            f"missing the git commit id: pass --commit-id or set {COMMIT_ID_ENV} "
            "(or run inside a git checkout with at least one commit)"
        )
    return resolved


def input_data_url(value: str | None) -> str | None:
    """The training data URI (--input-data-url or INPUT_DATA_URL); None for the previous data.

    Empty or "previous" means: the data the previous pipeline execution used.
    """
    resolved = value or os.environ.get(INPUT_DATA_URL_ENV) or PREVIOUS_DATA
    if resolved == PREVIOUS_DATA:
        return None
    if len(resolved) > INPUT_DATA_URL_MAX_LENGTH or not INPUT_DATA_URL_PATTERN.match(resolved):
        raise SettingError(
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


def publish_dataset(s3_client, bucket: str, csv_bytes: bytes, file_name: str) -> str:
    """Upload the data set under a key holding its content hash; return its S3 URI.

    A new data set gets a new URI, so the cached preprocess step reruns exactly when the
    data changes.
    """
    digest = hashlib.sha256(csv_bytes).hexdigest()[:16]
    key = f"{config.SAGEMAKER_PIPELINE_NAME}/input/{digest}/{file_name}"
    s3_client.put_object(Bucket=bucket, Key=key, Body=csv_bytes)
    return f"s3://{bucket}/{key}"


@contextlib.contextmanager
def offline_aws() -> Iterator[None]:
    """Run the block against moto's in-process AWS with fake credentials (nothing leaves)."""
    try:
        from moto import mock_aws
    except ImportError as error:
        raise SettingError(
            "--offline needs moto, from the dev dependency group: run `make install`"
        ) from error
    saved = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
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
