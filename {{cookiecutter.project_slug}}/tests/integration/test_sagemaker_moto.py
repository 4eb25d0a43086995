"""`upsert` and `start --wait` against a moto server, as CodeBuild runs them against AWS."""

import json
import uuid

import boto3
import pytest

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.package_name }}.steps import classifier
from {{ cookiecutter.__ops_package_name }} import cli

ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-execution"
FIRST_COMMIT = "a" * 40
SECOND_COMMIT = "b" * 40


@pytest.fixture
def aws(moto_endpoint, monkeypatch):
    """Every AWS client of this test talks to the moto server; a new artifact bucket exists."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    bucket = f"{config.PROJECT_SLUG}-artifacts-{uuid.uuid4().hex[:8]}"
{%- if cookiecutter.prod_account_id %}
    # start reads the champion's record from the artifact bucket, as the Train action's
    # ARTIFACT_BUCKET names it.
    monkeypatch.setenv("ARTIFACT_BUCKET", bucket)
{%- endif %}
    s3 = boto3.client("s3", region_name=config.AWS_REGION)
    if config.AWS_REGION == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": config.AWS_REGION}
        )
    sagemaker = boto3.client("sagemaker", region_name=config.AWS_REGION)
    return {"s3": s3, "sagemaker": sagemaker, "bucket": bucket}


def test_upsert_creates_then_updates_and_start_waits_for_success(aws, capsys):
    bucket = aws["bucket"]
    settings = ["--role-arn", ROLE_ARN, "--bucket", bucket]
    assert cli.main(["upsert", *settings, "--commit-id", FIRST_COMMIT]) == 0
    assert cli.main(["upsert", *settings, "--commit-id", SECOND_COMMIT]) == 0
    assert capsys.readouterr().out.count("Upserted arn:aws:sagemaker:") == 2

    described = aws["sagemaker"].describe_pipeline(PipelineName=config.SAGEMAKER_PIPELINE_NAME)
    definition = json.loads(described["PipelineDefinition"])
    defaults = {param["Name"]: param["DefaultValue"] for param in definition["Parameters"]}
    assert defaults["CommitId"] == SECOND_COMMIT
    # The data set and the training code the definition points at were uploaded.
    data_key = defaults["InputDataUrl"].removeprefix(f"s3://{bucket}/")
    assert aws["s3"].head_object(Bucket=bucket, Key=data_key)["ContentLength"] > 0
    (train_step,) = [step for step in definition["Steps"] if step["Type"] == "Training"]
    code_uri = json.loads(train_step["Arguments"]["HyperParameters"]["sagemaker_submit_directory"])
    aws["s3"].head_object(Bucket=bucket, Key=code_uri.removeprefix(f"s3://{bucket}/"))

    argv = ["start", "--wait", "--poll-seconds", "0.1", "--commit-id", SECOND_COMMIT]
    assert cli.main(argv) == 0
    assert "Pipeline execution Succeeded" in capsys.readouterr().out
    (execution,) = aws["sagemaker"].list_pipeline_executions(
        PipelineName=config.SAGEMAKER_PIPELINE_NAME
    )["PipelineExecutionSummaries"]
    parameters = aws["sagemaker"].list_pipeline_parameters_for_execution(
        PipelineExecutionArn=execution["PipelineExecutionArn"]
    )["PipelineParameters"]
    assert {"Name": "CommitId", "Value": SECOND_COMMIT} in parameters


def test_start_uses_the_given_data_then_keeps_it_for_the_next_push(aws, capsys, monkeypatch):
    bucket = aws["bucket"]
    settings = ["--role-arn", ROLE_ARN, "--bucket", bucket, "--commit-id", FIRST_COMMIT]
    assert cli.main(["upsert", *settings]) == 0
    sagemaker = aws["sagemaker"]
    earlier = set(execution_arns(sagemaker))
    landed = f"s3://{bucket}/incoming-data/batch-1/"
    assert cli.main(["start", "--commit-id", FIRST_COMMIT, "--input-data-url", landed]) == 0
    # A push: the build pipeline's variable keeps its default, "previous".
    monkeypatch.setenv("INPUT_DATA_URL", "previous")
    assert cli.main(["start", "--commit-id", SECOND_COMMIT]) == 0
    assert capsys.readouterr().out.count(f"data {landed})") == 2
    started = [arn for arn in execution_arns(sagemaker) if arn not in earlier]
    assert len(started) == 2
    for arn in started:
        parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
        assert {"Name": "InputDataUrl", "Value": landed} in parameters["PipelineParameters"]


def execution_arns(sagemaker) -> list[str]:
    """Every execution of the project's pipeline on the moto server."""
    executions = sagemaker.list_pipeline_executions(PipelineName=config.SAGEMAKER_PIPELINE_NAME)
    return [summary["PipelineExecutionArn"] for summary in executions["PipelineExecutionSummaries"]]


def test_upsert_into_a_missing_bucket_is_one_line(aws, capsys):
    argv = ["upsert", "--role-arn", ROLE_ARN, "--bucket", "no-such-bucket"]
    argv += ["--commit-id", FIRST_COMMIT]
    assert cli.main(argv) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "NoSuchBucket" in error


def test_registered_package_runs_the_inference_module(aws):
    """The RegisterModel step's arguments, as CreateModelPackage takes them (botocore checks
    them against the service model): the package's container carries the script-mode
    environment, which an endpoint Model built from the package inherits."""
    from {{ cookiecutter.package_name }} import pipeline

    settings = ["--role-arn", ROLE_ARN, "--bucket", aws["bucket"], "--commit-id", FIRST_COMMIT]
    assert cli.main(["upsert", *settings]) == 0
    described = aws["sagemaker"].describe_pipeline(PipelineName=config.SAGEMAKER_PIPELINE_NAME)
    steps = {
        inner["Name"]: inner
        for step in json.loads(described["PipelineDefinition"])["Steps"]
        for inner in [step, *step["Arguments"].get("IfSteps", [])]
    }
    specification = steps[pipeline.REGISTER_STEP]["Arguments"]["InferenceSpecification"]
    (container,) = specification["Containers"]
    container["ModelDataUrl"] = f"s3://{aws['bucket']}/models/model.tar.gz"
    aws["sagemaker"].create_model_package_group(
        ModelPackageGroupName=config.MODEL_PACKAGE_GROUP_NAME
    )
    arn = aws["sagemaker"].create_model_package(
        ModelPackageGroupName=config.MODEL_PACKAGE_GROUP_NAME,
        InferenceSpecification=specification,
    )["ModelPackageArn"]
    package = aws["sagemaker"].describe_model_package(ModelPackageName=arn)
    (registered,) = package["InferenceSpecification"]["Containers"]
    assert registered["Environment"] == pipeline.INFERENCE_ENVIRONMENT
    from sagemaker.core import image_uris

    assert registered["Image"] == image_uris.retrieve(
        classifier.FRAMEWORK, config.AWS_REGION, classifier.FRAMEWORK_VERSION
    )
