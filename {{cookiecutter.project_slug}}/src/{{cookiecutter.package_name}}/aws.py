"""Where the cloud commands get their AWS settings, and an offline stand-in for AWS.

Each setting comes from a command-line option or from the environment CodeBuild provides;
a missing one is a `SettingError` whose message names both. `offline_aws()` runs a block
against moto's in-process AWS, which is all `definition --offline` needs.
"""

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator

from . import config

ROLE_ARN_ENV = "SAGEMAKER_ROLE_ARN"
BUCKET_ENV = "ARTIFACT_BUCKET"
COMMIT_ID_ENV = "CODEBUILD_RESOLVED_SOURCE_VERSION"

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


def required_setting(value: str | None, option: str, env_var: str, what: str) -> str:
    """The option's value, else the environment variable's, else a SettingError naming both."""
    resolved = value or os.environ.get(env_var)
    if not resolved:
        raise SettingError(f"missing {what}: pass {option} or set {env_var}")
    return resolved


def role_arn(value: str | None) -> str:
    """The SageMaker execution role ARN (--role-arn or SAGEMAKER_ROLE_ARN)."""
    arn = required_setting(value, "--role-arn", ROLE_ARN_ENV, "the SageMaker execution role")
    if not arn.startswith("arn:") or ":role/" not in arn:
        raise SettingError(f"{arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return arn


def artifact_bucket(value: str | None) -> str:
    """The artifact bucket name (--bucket or ARTIFACT_BUCKET)."""
    bucket = required_setting(value, "--bucket", BUCKET_ENV, "the artifact bucket")
    if bucket.startswith("s3://") or "/" in bucket:
        raise SettingError(f"{bucket!r} is not a bucket name: pass the name alone, no s3:// or /")
    return bucket


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
