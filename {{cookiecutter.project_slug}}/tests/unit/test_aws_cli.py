"""The AWS CLI the make targets run: v1 (the venv's, which `make rehearse` runs) or v2
(CodeBuild's image), with the same commands and options in both."""

import os
import re
import subprocess
from pathlib import Path

import pytest
from awscli.customizations.cloudformation.deploy import DeployCommand

ROOT = Path(__file__).resolve().parents[2]
# The argument names of `aws cloudformation deploy` in the AWS CLI v2: aws/aws-cli, branch
# v2 at 2.36.7 (commit 73fb33bb), awscli/customizations/cloudformation/deploy.py ARG_TABLE.
V2_DEPLOY_ARGUMENTS = {
    "template-file",
    "stack-name",
    "s3-bucket",
    "s3-prefix",
    "kms-key-id",
    "parameter-overrides",
    "capabilities",
    "no-execute-changeset",
    "disable-rollback",
    "no-disable-rollback",
    "role-arn",
    "notification-arns",
    "fail-on-empty-changeset",
    "no-fail-on-empty-changeset",
    "tags",
}


def deploy_options() -> set[str]:
    """Every --option the make targets pass to `aws cloudformation deploy`."""
    text = (ROOT / "infra" / "infra.mk").read_text().replace("\\\n", " ")
    commands = re.findall(r"cloudformation deploy ([^;\n]*)", text)
    assert len(commands) >= 3, "bootstrap's two deploys and deploy-prod's"
    return {option for command in commands for option in re.findall(r"--([a-z-]+)", command)}


def test_deploy_options_mean_the_same_in_v1_and_v2() -> None:
    used = deploy_options()
    v1 = {argument["name"] for argument in DeployCommand.ARG_TABLE}
    assert used <= v1, sorted(used - v1)
    assert used <= V2_DEPLOY_ARGUMENTS, sorted(used - V2_DEPLOY_ARGUMENTS)


def run_aws_cli_check(version_line: str, directory: Path) -> subprocess.CompletedProcess:
    """`make aws-cli` with an `aws` on PATH that prints version_line (a shell word list)."""
    fake = directory / "aws"
    fake.write_text(f'#!/bin/sh\necho "{version_line}"\n')
    fake.chmod(0o755)
    environment = {
        **os.environ,
        "PATH": f"{directory}{os.pathsep}{os.environ['PATH']}",
        "AWS_PAGER": "less",
    }
    return subprocess.run(
        ["make", "--no-print-directory", "aws-cli"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("aws-cli/2.31.4 Python/3.13.7 Linux/6.8 exe/x86_64.ubuntu.24", True),
        ("aws-cli/1.46.3 Python/3.12.3 Linux/6.8 botocore/1.40.3", True),
        ("aws-cli/1.42.0 Python/3.11.7 Linux/6.8 botocore/1.40.0", True),
        ("aws-cli/1.18.69 Python/3.8.10 Linux/5.4 botocore/1.16.19", False),
        ("aws-cli/1.4.2 Python/2.7.18 Linux/4.4 botocore/1.1.0", False),
    ],
)
def test_bootstrap_checks_the_aws_cli_version_first(
    version: str, accepted: bool, tmp_path: Path
) -> None:
    result = run_aws_cli_check(version, tmp_path)
    assert (result.returncode == 0) is accepted, result.stderr
    if not accepted:
        assert "v1 1.42 or later" in result.stderr and version in result.stderr


def test_the_aws_targets_never_page(tmp_path: Path) -> None:
    """v2 pipes its output through a pager on a terminal; the targets clear AWS_PAGER."""
    result = run_aws_cli_check("aws-cli/2.31.4 pager=[$AWS_PAGER]", tmp_path)
    assert "pager=[]" in result.stdout, result.stdout + result.stderr
