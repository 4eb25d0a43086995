"""The environment of a rehearsal: this process's AWS settings, and what every build gets."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

# The SageMaker Python SDK's config file (SAGEMAKER_USER_CONFIG_OVERRIDE) with its usage
# telemetry turned off: the builds run offline.
SDK_CONFIG_TELEMETRY_OPT_OUT = (
    "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
)

# Variables of the caller's environment a build keeps; everything else is CodeBuild's.
PASSED_THROUGH = ("HOME", "USER", "LOGNAME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
# What a rehearsal changes in a build's environment compared with CodeBuild's, and why.
DIFFERENCES_FROM_CODEBUILD = (
    "PYTHON: the interpreter running the rehearsal (install phases are skipped)",
    "AWS_ENDPOINT_URL: moto; AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME: the runtime stand-in;"
    " AWS_ENDPOINT_URL_CLOUDFORMATION: the stand-in for the bootstrap and pipeline stacks",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI: rehearsal credentials, served as CodeBuild serves them",
    "SAGEMAKER_USER_CONFIG_OVERRIDE: SageMaker SDK telemetry off (offline)",
    "SAGEMAKER_VALIDATE_ROLE=false: moto has no iam:SimulatePrincipalPolicy",
    "BC_SKIP_MAPPING, CKV_SKIP_PACKAGE_UPDATE_CHECK: checkov downloads nothing",
    "PATH: `aws` runs the AWS CLI (awscli) with PYTHON, against moto",
    "PYTHONPATH: a hook that checks and records each AWS call against the build's role",
    "HOME: a folder of the rehearsal's own, as empty as a new build container's home (the AWS"
    " CLI keeps assumed-role credentials under ~/.aws/cli/cache, which another moto never issued)",
)
# Credentials of this process: every client it makes talks to moto or is stubbed.
PROCESS_KEY = "rehearsal"


@contextlib.contextmanager
def process_environment(moto_url: str, region: str) -> Iterator[None]:
    """This process's AWS settings while rehearsing: moto, fake keys, no profile or file."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        del os.environ[name]
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": PROCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": PROCESS_KEY,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build_environment(
    python: str,
    region: str,
    moto_url: str,
    runtime_url: str,
    credentials_uri: str,
    bin_dir: Path,
    sdk_config: Path,
    cloudformation_url: str | None = None,
) -> dict[str, str]:
    """The environment every build starts from; CodeBuild's own variables come on top.

    Nothing of the caller's AWS settings passes: no profile, key or config file reaches a
    build, and every AWS endpoint is moto or a stand-in.
    """
    sdk_config.write_text(SDK_CONFIG_TELEMETRY_OPT_OUT)
    home = bin_dir.parent / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env["PATH"] = os.pathsep.join((str(bin_dir), os.environ.get("PATH", os.defpath)))
    env.update(
        {
            "PYTHON": python,
            "HOME": str(home),
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": moto_url,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": runtime_url,
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": credentials_uri,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sdk_config),
            "SAGEMAKER_VALIDATE_ROLE": "false",
            "BC_SKIP_MAPPING": "TRUE",
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true",
        }
    )
    if cloudformation_url:
        env["AWS_ENDPOINT_URL_CLOUDFORMATION"] = cloudformation_url
    return env


def write_aws_cli(bin_dir: Path, python: str) -> Path:
    """An `aws` script for the builds' PATH: the AWS CLI (the awscli package) run by python,
    which talks to moto through AWS_ENDPOINT_URL."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "aws"
    script.write_text(f'#!/bin/sh\nexec "{python}" -m awscli "$@"\n')
    script.chmod(0o755)
    return script
