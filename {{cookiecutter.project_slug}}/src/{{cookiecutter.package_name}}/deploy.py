"""Deployment steps that infra/infra.mk runs, as `python -m <package>.deploy <command>`.

stage-config           resolve the Approved model package of the commit being deployed and
                       write build/deploy/<stage>.json (a CloudFormation template
                       configuration: infra/config/<stage>.json plus the package ARN)
overrides              print a stage file's parameters (or tags) as Key=Value words for
                       `aws cloudformation deploy`
prepare-stack          before deploying a stack: save the template and parameters in
                       service (to restore them if the smoke test fails), or delete a stack
                       whose first creation failed (ROLLBACK_COMPLETE), which cannot be updated
package-lambda         zip a Lambda folder reproducibly; print its S3 key
empty-bucket           delete every object version of a bucket (teardown)
delete-model-packages  delete every package of the model package group (teardown)
"""

import argparse
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.package_name }}.registry import latest_approved_package

STAGES = ("staging", "prod")
CONFIG_DIR = Path("infra/config")
DEPLOY_DIR = Path("build/deploy")
LAMBDA_KEY_PREFIX = "lambda/"
# Where the commit being deployed comes from, in order: the deploy pipeline passes
# COMMIT_ID; CodeBuild sets CODEBUILD_RESOLVED_SOURCE_VERSION; locally, git HEAD.
COMMIT_ENV_VARS = ("COMMIT_ID", "CODEBUILD_RESOLVED_SOURCE_VERSION")
# Fixed zip entry time, so that the same sources always give the same zip and S3 key.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ENV_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# A stack whose first creation failed and rolled back: it serves nothing, and CloudFormation
# refuses to update it; it can only be deleted.
FAILED_FIRST_CREATE = "ROLLBACK_COMPLETE"
# What a stack in service had before this deploy: prepare-stack writes, deploy-prod restores.
PREVIOUS_SUFFIX = "-previous"


class DeployError(Exception):
    """A problem the user can fix; main() prints it as one line."""


def resolve_commit_id(commit_id: str | None = None) -> str:
    """The commit being deployed: the option, then COMMIT_ID / CodeBuild's, then git HEAD."""
    if commit_id:
        return commit_id
    for name in COMMIT_ENV_VARS:
        if os.environ.get(name):
            return os.environ[name]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as error:
        raise DeployError(
            "no commit to deploy: pass --commit-id or set COMMIT_ID (not in a git checkout)"
        ) from error
    return head.stdout.strip()


def expand_environment(value: str, source: Path) -> str:
    """Replace ${NAME} with the environment variable NAME; a missing one is a DeployError."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise DeployError(
                f"{source} needs the environment variable {name} (the deploy pipeline's"
                " CodeBuild projects set it; export it to run locally)"
            )
        return os.environ[name]

    return ENV_REFERENCE.sub(lookup, value)


def load_stage_config(config_dir: Path, stage: str) -> dict[str, Any]:
    """Read <config_dir>/<stage>.json ({"Parameters": {...}, "Tags": {...}})."""
    path = config_dir / f"{stage}.json"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise DeployError(f"{path} not found: run `make stage-config` first") from error
    except json.JSONDecodeError as error:
        raise DeployError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(document.get("Parameters"), dict):
        raise DeployError(f'{path} has no "Parameters" object')
    return document


def stage_template_configuration(
    stage_config: dict[str, Any], source: Path, model_package_arn: str, commit_id: str
) -> dict[str, Any]:
    """The CloudFormation template configuration of one stage for infra/endpoint.yml."""
    parameters = {
        key: expand_environment(str(value), source)
        for key, value in stage_config["Parameters"].items()
    }
    parameters["ModelPackageArn"] = model_package_arn
    tags = {key: str(value) for key, value in stage_config.get("Tags", {}).items()}
    tags["commit"] = commit_id
    return {"Parameters": parameters, "Tags": tags}


def write_stage_configs(
    sagemaker_client: Any,
    commit_id: str,
    config_dir: Path = CONFIG_DIR,
    output_dir: Path = DEPLOY_DIR,
    group_name: str = config.MODEL_PACKAGE_GROUP_NAME,
) -> dict[str, Path]:
    """Resolve the commit's Approved package and write <output_dir>/<stage>.json per stage."""
    package = latest_approved_package(sagemaker_client, group_name, commit_id)
    package_arn = package["ModelPackageArn"]
    output_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for stage in STAGES:
        source = config_dir / f"{stage}.json"
        document = stage_template_configuration(
            load_stage_config(config_dir, stage), source, package_arn, commit_id
        )
        path = output_dir / f"{stage}.json"
        path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        written[stage] = path
    return written


def key_value_words(mapping: dict[str, str]) -> str:
    """Key=Value words for `aws cloudformation deploy --parameter-overrides/--tags`."""
    for key, value in mapping.items():
        if not value or any(character.isspace() for character in value):
            raise DeployError(
                f"{key}={value!r} is empty or has whitespace, which the AWS CLI cannot take"
            )
    return " ".join(f"{key}={value}" for key, value in mapping.items())


def package_lambda(source_dir: Path, output_dir: Path) -> str:
    """Zip the top-level .py files of source_dir reproducibly; return the zip's S3 key."""
    sources = sorted(source_dir.glob("*.py"))
    if not sources:
        raise DeployError(f"{source_dir} has no .py files to package")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sources:
            entry = zipfile.ZipInfo(path.name, date_time=ZIP_DATE_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, path.read_bytes())
    content = buffer.getvalue()
    name = f"{source_dir.name}-{hashlib.sha256(content).hexdigest()[:16]}.zip"
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / name).write_bytes(content)
    return LAMBDA_KEY_PREFIX + name


def empty_bucket(s3_resource: Any, bucket_name: str) -> int:
    """Delete every object version and delete marker of the bucket; return how many."""
    bucket = s3_resource.Bucket(bucket_name)
    deleted = 0
    for response in bucket.object_versions.delete():
        deleted += len(response.get("Deleted", []))
        if response.get("Errors"):
            first = response["Errors"][0]
            raise DeployError(
                f"could not delete s3://{bucket_name}/{first['Key']}: {first['Message']}"
            )
    return deleted


def delete_model_packages(sagemaker_client: Any, group_name: str) -> int:
    """Delete every model package of the group (CloudFormation then deletes the group)."""
    arns = []
    paginator = sagemaker_client.get_paginator("list_model_packages")
    for page in paginator.paginate(ModelPackageGroupName=group_name):
        arns.extend(summary["ModelPackageArn"] for summary in page["ModelPackageSummaryList"])
    for arn in arns:
        sagemaker_client.delete_model_package(ModelPackageName=arn)
    return len(arns)


def describe_stack(cloudformation: Any, stack_name: str) -> dict[str, Any] | None:
    """The stack, or None when it does not exist."""
    try:
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", "")
        if error.response.get("Error", {}).get("Code") == "ValidationError" and (
            "does not exist" in message
        ):
            return None
        raise
    return stack


def prepare_stack(
    cloudformation: Any, stack_name: str, output_dir: Path, name: str
) -> tuple[str, Path | None]:
    """Get a stack ready for `aws cloudformation deploy`; (what was done, saved file or None).

    A stack in service has its template and parameters saved as <name>-previous.yml/.json
    (the restore point); a stack whose first creation failed is deleted, so that the deploy
    creates it again instead of failing; no stack needs nothing.
    """
    template_path = output_dir / f"{name}{PREVIOUS_SUFFIX}.yml"
    config_path = output_dir / f"{name}{PREVIOUS_SUFFIX}.json"
    for path in (template_path, config_path):
        path.unlink(missing_ok=True)
    stack = describe_stack(cloudformation, stack_name)
    if stack is None:
        return f"{stack_name} does not exist yet: the deploy creates it", None
    status = stack["StackStatus"]
    if status == FAILED_FIRST_CREATE:
        cloudformation.delete_stack(StackName=stack_name)
        cloudformation.get_waiter("stack_delete_complete").wait(StackName=stack_name)
        return (
            f"{stack_name} was {status} (its first creation failed; it served nothing):"
            " deleted, the deploy creates it again",
            None,
        )
    if not status.endswith("_COMPLETE"):
        raise DeployError(
            f"{stack_name} is {status}: wait until CloudFormation is done with it (or resolve"
            " the failure in the console), then rerun the action"
        )
    body = cloudformation.get_template(StackName=stack_name, TemplateStage="Original")[
        "TemplateBody"
    ]
    output_dir.mkdir(parents=True, exist_ok=True)
    # botocore hands back a JSON template already parsed; YAML stays text.
    template_path.write_text(body if isinstance(body, str) else json.dumps(body, indent=2))
    document = {
        "Parameters": {
            item["ParameterKey"]: item["ParameterValue"] for item in stack.get("Parameters", [])
        },
        "Tags": {tag["Key"]: tag["Value"] for tag in stack.get("Tags", [])},
    }
    config_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return f"{stack_name} is {status}: its template and parameters saved to restore", config_path


def sagemaker_client() -> Any:
    """A SageMaker client in the project's region."""
    return boto3.client("sagemaker", region_name=config.AWS_REGION)


def run(args: argparse.Namespace) -> None:
    """Run one parsed command."""
    if args.command == "stage-config":
        commit_id = resolve_commit_id(args.commit_id)
        written = write_stage_configs(
            sagemaker_client(), commit_id, args.config_dir, args.output_dir
        )
        for stage, path in written.items():
            arn = json.loads(path.read_text())["Parameters"]["ModelPackageArn"]
            print(f"{stage}: {arn} (commit {commit_id}) -> {path}")
    elif args.command == "prepare-stack":
        cloudformation = boto3.client("cloudformation", region_name=config.AWS_REGION)
        done, _ = prepare_stack(cloudformation, args.stack, args.output_dir, args.name)
        print(done)
    elif args.command == "overrides":
        document = load_stage_config(args.config_dir, args.stage)
        print(key_value_words(document.get("Tags", {}) if args.tags else document["Parameters"]))
    elif args.command == "package-lambda":
        print(package_lambda(args.source, args.output_dir))
    elif args.command == "empty-bucket":
        count = empty_bucket(boto3.resource("s3", region_name=config.AWS_REGION), args.bucket)
        print(f"deleted {count} object versions from s3://{args.bucket}")
    elif args.command == "delete-model-packages":
        count = delete_model_packages(sagemaker_client(), args.group)
        print(f"deleted {count} model packages from {args.group}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m {{ cookiecutter.package_name }}.deploy",
        description=__doc__.splitlines()[0],
    )
    commands = parser.add_subparsers(dest="command", required=True)

    stage = commands.add_parser("stage-config", help="write build/deploy/<stage>.json")
    stage.add_argument(
        "--commit-id", help="commit being deployed (default: COMMIT_ID, CodeBuild's, git HEAD)"
    )
    stage.add_argument("--config-dir", type=Path, default=CONFIG_DIR)
    stage.add_argument("--output-dir", type=Path, default=DEPLOY_DIR)

    prepare = commands.add_parser("prepare-stack", help="save or recover a stack before a deploy")
    prepare.add_argument("--stack", required=True, help="the stack's name")
    prepare.add_argument(
        "--name", choices=STAGES, required=True, help="the stage: names the saved files"
    )
    prepare.add_argument("--output-dir", type=Path, default=DEPLOY_DIR)

    overrides = commands.add_parser("overrides", help="print a stage's Key=Value words")
    overrides.add_argument(
        "--stage",
        choices=[*STAGES, *(stage + PREVIOUS_SUFFIX for stage in STAGES)],
        required=True,
        help="<stage> or <stage>-previous (written by prepare-stack)",
    )
    overrides.add_argument("--config-dir", type=Path, default=DEPLOY_DIR)
    overrides.add_argument(
        "--tags", action="store_true", help="print the tags instead of the parameters"
    )

    package = commands.add_parser("package-lambda", help="zip a Lambda folder, print its S3 key")
    package.add_argument("--source", type=Path, required=True)
    package.add_argument("--output-dir", type=Path, default=Path("build"))

    bucket = commands.add_parser("empty-bucket", help="delete every object version of a bucket")
    bucket.add_argument("--bucket", required=True)

    packages = commands.add_parser("delete-model-packages", help="delete the group's packages")
    packages.add_argument("--group", default=config.MODEL_PACKAGE_GROUP_NAME)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: 0 on success, 1 with one line on stderr for a problem."""
    args = parse_args(argv)
    try:
        run(args)
    except (DeployError, LookupError) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(
            f"{args.command}: AWS call failed: {error} (check credentials and region)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
