"""The deployment steps of infra/infra.mk (deploy.py, through the command line), on moto."""

import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from registry_support import register_package

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import aws, cli, deploy
from {{ cookiecutter.__ops_package_name }}.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
COMMIT_ID = "c0ffee" + "0" * 34
ROLE_ARN = "arn:aws:iam::123456789012:role/{{ cookiecutter.__sagemaker_role_name }}"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
BUCKET = "{{ cookiecutter.__artifact_bucket_prefix }}-123456789012"
PROD_STACK = "{{ cookiecutter.__prod_stack_name }}"
PIPELINE_ENVIRONMENT = {
    "SAGEMAKER_ROLE_ARN": ROLE_ARN,
    "ARTIFACT_KEY_ARN": KEY_ARN,
    "ARTIFACT_BUCKET": BUCKET,
}


@pytest.fixture
def pipeline_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the deploy pipeline's CodeBuild projects set."""
    for name, value in PIPELINE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(aws.COMMIT_ID_ENV, raising=False)


@pytest.fixture
def sagemaker() -> Iterator[Any]:
    """A SageMaker client on moto with this project's model package group."""
    with mock_aws():
        client = boto3.client("sagemaker")
        client.create_model_package_group(ModelPackageGroupName=config.MODEL_PACKAGE_GROUP_NAME)
        yield client


def test_stage_config_writes_both_stages_for_the_commits_package(
    sagemaker: Any, pipeline_environment: None, tmp_path: Path
) -> None:
    package_arn = register_package(sagemaker, COMMIT_ID)
    register_package(sagemaker, "f" * 40)
    written = deploy.write_stage_configs(sagemaker, COMMIT_ID, ROOT / "infra" / "config", tmp_path)
    assert set(written) == {"staging", "prod"}
    for stage in ("staging", "prod"):
        source = json.loads((ROOT / "infra" / "config" / f"{stage}.json").read_text())
        document = json.loads((tmp_path / f"{stage}.json").read_text())
        parameters = document["Parameters"]
        assert parameters["ModelPackageArn"] == package_arn
{%- if cookiecutter.prod_account_id %}
        # Each stage's endpoint runs as its own account's endpoint role.
        account = config.STAGING_ACCOUNT_ID if stage == "staging" else config.PROD_ACCOUNT_ID
        slug = config.PROJECT_SLUG
        role = f"arn:aws:iam::{account}:role/{slug}/{slug}-{stage}-endpoint"
        assert parameters["ExecutionRoleArn"] == role
        if "KmsKeyArn" in parameters:
            alias = f"arn:aws:kms:{config.AWS_REGION}:{account}:alias/"
            assert parameters["KmsKeyArn"].startswith(alias)
{%- else %}
        assert parameters["ExecutionRoleArn"] == ROLE_ARN
{%- endif %}
        assert set(parameters) == set(source["Parameters"]) | {"ModelPackageArn"}
        assert all(isinstance(value, str) and "${" not in value for value in parameters.values())
        assert document["Tags"] == {**source["Tags"], "commit": COMMIT_ID}
    prod = json.loads((tmp_path / "prod.json").read_text())["Parameters"]
{%- if cookiecutter.prod_account_id %}
    # Production's captured data stays in the production account's bucket.
    capture_bucket = f"{config.ARTIFACT_BUCKET_PREFIX}-{config.PROD_ACCOUNT_ID}"
    assert prod["DataCaptureS3Uri"] == f"s3://{capture_bucket}/data-capture/prod"
{%- else %}
    assert prod["DataCaptureS3Uri"] == f"s3://{BUCKET}/data-capture/prod"
{%- endif %}
    assert prod["EndpointName"] == config.PROD_ENDPOINT_NAME


def test_stage_config_command_uses_the_pipelines_commit(
    sagemaker: Any,
    pipeline_environment: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    package_arn = register_package(sagemaker, COMMIT_ID)
    monkeypatch.setenv(aws.COMMIT_ID_ENV, COMMIT_ID)
    status = cli.main(
        [
            "stage-config",
            "--config-dir",
            str(ROOT / "infra" / "config"),
            "--output-dir",
            str(tmp_path),
        ]
    )
    assert status == 0
    assert f"staging: {package_arn} (commit {COMMIT_ID})" in capsys.readouterr().out


def test_a_commit_without_an_approved_package_is_one_line(
    sagemaker: Any, pipeline_environment: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_package(sagemaker, COMMIT_ID, status="PendingManualApproval")
    status = cli.main(["stage-config", "--commit-id", COMMIT_ID, "--output-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 1
    assert error.count("\n") == 1 and COMMIT_ID in error
    assert not (tmp_path / "staging.json").exists()


{%- if not cookiecutter.prod_account_id %}


def test_missing_pipeline_variable_names_the_variable_and_the_file(
    sagemaker: Any,
    pipeline_environment: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    register_package(sagemaker, COMMIT_ID)
    monkeypatch.delenv("SAGEMAKER_ROLE_ARN")
    status = cli.main(["stage-config", "--commit-id", COMMIT_ID, "--output-dir", str(tmp_path)])
    error = capsys.readouterr().err
    assert status == 2
    assert "SAGEMAKER_ROLE_ARN" in error and "staging.json" in error
    assert error.count("\n") == 1
{%- endif %}


def test_overrides_print_key_value_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = {
        "Parameters": {"EndpointName": "e", "ModelPackageArn": "arn:x"},
        "Tags": {"stage": "prod"},
    }
    (tmp_path / "prod.json").write_text(json.dumps(document))
    assert cli.main(["overrides", "--stage", "prod", "--config-dir", str(tmp_path)]) == 0
    assert cli.main(["overrides", "--stage", "prod", "--config-dir", str(tmp_path), "--tags"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "EndpointName=e ModelPackageArn=arn:x",
        "stage=prod",
    ]


def test_overrides_refuse_values_the_cli_would_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "prod.json").write_text(json.dumps({"Parameters": {"EndpointName": "a b"}}))
    assert cli.main(["overrides", "--stage", "prod", "--config-dir", str(tmp_path)]) == 2
    assert "EndpointName" in capsys.readouterr().err


def test_overrides_without_stage_config_say_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["overrides", "--stage", "prod", "--config-dir", str(tmp_path)]) == 2
    assert "make stage-config" in capsys.readouterr().err


def test_lambda_zip_is_reproducible_and_keyed_by_content(tmp_path: Path) -> None:
    source = tmp_path / "merge_dev_to_master"
    source.mkdir()
    (source / "app.py").write_text("def handler(event, context):\n    return 1\n")
    (source / "notes.txt").write_text("not packaged")
    first = deploy.package_lambda(source, tmp_path / "out1")
    second = deploy.package_lambda(source, tmp_path / "out2")
    assert first == second
    assert first.startswith("lambda/merge_dev_to_master-") and first.endswith(".zip")
    with zipfile.ZipFile(tmp_path / "out1" / first.removeprefix("lambda/")) as archive:
        assert archive.namelist() == ["app.py"]
    (source / "app.py").write_text("def handler(event, context):\n    return 2\n")
    assert deploy.package_lambda(source, tmp_path / "out3") != first


def test_the_merge_function_folder_packages_at_the_zip_root(tmp_path: Path) -> None:
    key = deploy.package_lambda(ROOT / "lambdas" / "merge_dev_to_master", tmp_path)
    with zipfile.ZipFile(tmp_path / key.removeprefix("lambda/")) as archive:
        names = archive.namelist()
    assert "app.py" in names and all("/" not in name for name in names)


def test_empty_bucket_deletes_every_version_and_marker() -> None:
    with mock_aws():
        s3 = boto3.resource("s3", region_name="us-east-1")
        bucket = s3.create_bucket(Bucket=BUCKET)
        bucket.Versioning().enable()
        for body in (b"1", b"2"):
            bucket.put_object(Key="a.json", Body=body)
        bucket.Object("a.json").delete()
        assert deploy.empty_bucket(s3, BUCKET) == 3
        assert list(bucket.object_versions.all()) == []
        bucket.delete()


def test_delete_model_packages_deletes_every_version_of_the_group() -> None:
    # moto has no DeleteModelPackage: the Stubber checks the calls against the service model.
    client = boto3.client("sagemaker")
    arns = [
        f"arn:aws:sagemaker:us-east-1:123456789012:model-package/{config.MODEL_PACKAGE_GROUP_NAME}/{n}"
        for n in (1, 2)
    ]
    summaries = [
        {
            "ModelPackageArn": arn,
            "ModelPackageName": config.MODEL_PACKAGE_GROUP_NAME,
            "CreationTime": "2024-01-01T00:00:00Z",
            "ModelPackageStatus": "Completed",
        }
        for arn in arns
    ]
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_model_packages",
            {"ModelPackageSummaryList": summaries},
            {"ModelPackageGroupName": config.MODEL_PACKAGE_GROUP_NAME},
        )
        for arn in arns:
            stubber.add_response("delete_model_package", {}, {"ModelPackageName": arn})
        assert deploy.delete_model_packages(client, config.MODEL_PACKAGE_GROUP_NAME) == 2
        stubber.assert_no_pending_responses()


# ---------------------------------------------------------------- production deploy


@pytest.fixture
def cloudformation(pipeline_environment: None) -> Iterator[Any]:
    """A CloudFormation client on moto."""
    with mock_aws():
        yield boto3.client("cloudformation")


def prod_stack(cloudformation: Any, version: int) -> dict[str, str]:
    """Create the production endpoint stack on moto with package version; its parameters."""
    source = ROOT / "infra" / "config" / "prod.json"
    package_arn = (
        f"arn:aws:sagemaker:{config.AWS_REGION}:123456789012:model-package/"
        f"{config.MODEL_PACKAGE_GROUP_NAME}/{version}"
    )
    document = deploy.stage_template_configuration(
        deploy.load_stage_config(source.parent, "prod"), source, package_arn, COMMIT_ID
    )
    cloudformation.create_stack(
        StackName=PROD_STACK,
        TemplateBody=(ROOT / "infra" / "endpoint.yml").read_text(),
        Parameters=[
            {"ParameterKey": key, "ParameterValue": value}
            for key, value in document["Parameters"].items()
        ],
        Tags=[{"Key": key, "Value": value} for key, value in document["Tags"].items()],
    )
    return document["Parameters"]


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning")
def test_prepare_saves_the_template_and_parameters_production_serves(
    cloudformation: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    served = prod_stack(cloudformation, version=4)
    done, saved = deploy.prepare_stack(cloudformation, PROD_STACK, tmp_path, "prod")
    assert "saved to restore" in done
    assert saved == tmp_path / "prod-previous.json"
    document = json.loads(saved.read_text())
    assert document["Parameters"]["ModelPackageArn"] == served["ModelPackageArn"]
    # DescribeStacks lists the defaulted parameters too: the restore pins them.
    assert served.items() <= document["Parameters"].items()
    assert document["Tags"]["commit"] == COMMIT_ID
    template = (tmp_path / "prod-previous.yml").read_text()
    assert template == (ROOT / "infra" / "endpoint.yml").read_text()
    # The restore deploys exactly those values with the AWS CLI.
    overrides = ["overrides", "--stage", "prod-previous", "--config-dir", str(tmp_path)]
    assert cli.main(overrides) == 0
    words = capsys.readouterr().out.split()
    assert f"ModelPackageArn={served['ModelPackageArn']}" in words


def test_prepare_without_a_stack_saves_nothing_and_clears_an_old_save(
    cloudformation: Any, tmp_path: Path
) -> None:
    stale = tmp_path / "prod-previous.json"
    stale.write_text("{}")
    done, saved = deploy.prepare_stack(cloudformation, PROD_STACK, tmp_path, "prod")
    assert saved is None and "does not exist yet" in done
    assert not stale.exists()


def stack_description(status: str) -> dict[str, Any]:
    """A DescribeStacks response for the production stack in a status."""
    return {
        "Stacks": [
            {
                "StackName": PROD_STACK,
                "StackId": f"arn:aws:cloudformation:us-east-1:123456789012:stack/{PROD_STACK}/1",
                "CreationTime": "2024-01-01T00:00:00Z",
                "StackStatus": status,
            }
        ]
    }


def test_a_failed_first_creation_is_deleted_so_the_deploy_creates_it_again(
    tmp_path: Path,
) -> None:
    """ROLLBACK_COMPLETE: CloudFormation can only delete the stack; it served nothing."""
    client = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response(
            "describe_stacks", stack_description("ROLLBACK_COMPLETE"), {"StackName": PROD_STACK}
        )
        stubber.add_response("delete_stack", {}, {"StackName": PROD_STACK})
        # The stack_delete_complete waiter: a deleted stack is no longer found.
        stubber.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message=f"Stack with id {PROD_STACK} does not exist",
            expected_params={"StackName": PROD_STACK},
        )
        done, saved = deploy.prepare_stack(client, PROD_STACK, tmp_path, "prod")
        stubber.assert_no_pending_responses()
    assert saved is None
    assert "ROLLBACK_COMPLETE" in done and "deleted" in done


def test_a_stack_still_changing_is_left_alone_with_one_line(tmp_path: Path) -> None:
    client = boto3.client("cloudformation", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response("describe_stacks", stack_description("UPDATE_IN_PROGRESS"))
        with pytest.raises(UserError, match="is UPDATE_IN_PROGRESS: wait until"):
            deploy.prepare_stack(client, PROD_STACK, tmp_path, "prod")


FAKE_AWS = """#!/bin/sh
echo "aws $*" >> "$CALLS"
case "$*" in *describe-stacks*) echo "{{ cookiecutter.__prod_endpoint_name }}";; esac
"""
# Stands in for the interpreter: records each command; the smoke test exits with SMOKE.
FAKE_PYTHON = """#!/bin/sh
echo "python $*" >> "$CALLS"
case "$*" in
  *prepare-stack*) [ -z "$PREVIOUS" ] || echo '{}' > build/deploy/prod-previous.json;;
  *overrides*) echo "Key=value";;
  *pytest*) exit "$SMOKE";;
esac
"""


def run_deploy_prod(tmp_path: Path, smoke_status: int, previous: bool) -> tuple[int, list[str]]:
    """`make deploy-prod` with stand-ins for aws and the interpreter; (status, calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("aws", FAKE_AWS), ("python", FAKE_PYTHON)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.log"
    (ROOT / "build" / "deploy").mkdir(parents=True, exist_ok=True)
    (ROOT / "build" / "deploy" / "prod-previous.json").unlink(missing_ok=True)
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "deploy-prod",
            f"PYTHON={bin_dir / 'python'}",
            f"AWS={bin_dir / 'aws'}",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "CALLS": str(calls),
            "SMOKE": str(smoke_status),
            "PREVIOUS": "yes" if previous else "",
        },
        capture_output=True,
        text=True,
    )
    (ROOT / "build" / "deploy" / "prod-previous.json").unlink(missing_ok=True)
    return result.returncode, calls.read_text().splitlines()


def deploys(calls: list[str]) -> list[str]:
    """The template file of each `cloudformation deploy` call."""
    return [call.split("--template-file ")[1].split()[0] for call in calls if " deploy " in call]


def test_deploy_prod_restores_the_previous_model_when_the_smoke_test_fails(
    tmp_path: Path,
) -> None:
    status, calls = run_deploy_prod(tmp_path, smoke_status=1, previous=True)
    assert status != 0
    assert deploys(calls) == ["infra/endpoint.yml", "build/deploy/prod-previous.yml"]
    smoke = next(index for index, call in enumerate(calls) if "pytest" in call)
    assert "prepare-stack" in calls[0]
    assert calls.index(next(c for c in calls if "prod-previous.yml" in c)) > smoke


@pytest.mark.parametrize(("smoke_status", "expected_status"), [(0, 0), (1, 2)])
def test_deploy_prod_without_a_failed_smoke_test_or_a_previous_model_deploys_once(
    tmp_path: Path, smoke_status: int, expected_status: int
) -> None:
    status, calls = run_deploy_prod(tmp_path, smoke_status, previous=smoke_status == 0)
    assert status == expected_status
    assert deploys(calls) == ["infra/endpoint.yml"]
