"""Deployment steps that infra/infra.mk runs through the command line (cli.py).

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

The standard library at import, boto3 in the calls: the deploy actions install nothing else.
"""

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }} import config

from .errors import UserError
from .registry import latest_approved_package

STAGES = ("staging", "prod")
CONFIG_DIR = Path("infra/config")
DEPLOY_DIR = Path("build/deploy")
LAMBDA_KEY_PREFIX = "lambda/"
# Fixed zip entry time, so that the same sources always give the same zip and S3 key.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ENV_REFERENCE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# A stack whose first creation failed and rolled back: it serves nothing, and CloudFormation
# refuses to update it; it can only be deleted.
FAILED_FIRST_CREATE = "ROLLBACK_COMPLETE"
# What a stack in service had before this deploy: prepare-stack writes, deploy-prod restores.
PREVIOUS_SUFFIX = "-previous"


def expand_environment(value: str, source: Path) -> str:
    """Replace ${NAME} with the environment variable NAME; a missing one is a UserError."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise UserError(
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
        raise UserError(f"{path} not found: run `make stage-config` first") from error
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(document.get("Parameters"), dict):
        raise UserError(f'{path} has no "Parameters" object')
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
            raise UserError(
                f"{key}={value!r} is empty or has whitespace, which the AWS CLI cannot take"
            )
    return " ".join(f"{key}={value}" for key, value in mapping.items())


def package_lambda(source_dir: Path, output_dir: Path) -> str:
    """Zip the top-level .py files of source_dir reproducibly; return the zip's S3 key."""
    sources = sorted(source_dir.glob("*.py"))
    if not sources:
        raise UserError(f"{source_dir} has no .py files to package")
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
            raise UserError(
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
    from botocore.exceptions import ClientError

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
        raise UserError(
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
