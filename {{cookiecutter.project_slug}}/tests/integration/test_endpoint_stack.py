"""infra/endpoint.yml deployed to moto's CloudFormation, serverless and instance-backed.

The parameters are the stage configurations as the deploy pipeline writes them
(infra/config/<stage>.json + the package ARN). moto creates the SageMaker model, endpoint
configuration and endpoint; it skips the CloudWatch alarms, which the unit tests assert.
"""

import itertools
from pathlib import Path
from typing import Any

import boto3
import pytest

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import deploy

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = (ROOT / "infra" / "endpoint.yml").read_text()
ACCOUNT = "123456789012"
SAGEMAKER_ARN_PREFIX = f"arn:aws:sagemaker:{config.AWS_REGION}:{ACCOUNT}"
PACKAGE_ARN = f"{SAGEMAKER_ARN_PREFIX}:model-package/{config.MODEL_PACKAGE_GROUP_NAME}/"
KEY_ID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
PIPELINE_ENVIRONMENT = {
    "SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/{config.SAGEMAKER_ROLE_NAME}",
    "ARTIFACT_KEY_ARN": f"arn:aws:kms:{config.AWS_REGION}:{ACCOUNT}:key/{KEY_ID}",
    "ARTIFACT_BUCKET": f"{config.ARTIFACT_BUCKET_PREFIX}-{ACCOUNT}",
}
# moto skips the alarms (the unit tests assert them) and says so.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse AWS..CloudWatch..Alarm:UserWarning")
STAGING_ENDPOINT_TYPE = "{{ cookiecutter.staging_endpoint }}"
STACK_NUMBERS = itertools.count()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """CloudFormation and SageMaker clients on the moto server."""
    for name, value in PIPELINE_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    return {
        service: boto3.client(service, endpoint_url=moto_endpoint)
        for service in ("cloudformation", "sagemaker")
    }


def stage_parameters(
    stage: str, endpoint_type: str | None = None, version: int = 1
) -> dict[str, str]:
    """The parameters the deploy pipeline gives the stage's stack (optionally another type)."""
    source = ROOT / "infra" / "config" / f"{stage}.json"
    document = deploy.stage_template_configuration(
        deploy.load_stage_config(source.parent, stage), source, f"{PACKAGE_ARN}{version}", "c" * 40
    )
    parameters = document["Parameters"]
    if endpoint_type:
        parameters["EndpointType"] = endpoint_type
    return parameters


def as_cfn(parameters: dict[str, str]) -> list[dict[str, str]]:
    """CloudFormation's parameter list."""
    return [{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()]


def deployed(aws: dict[str, Any], stack_name: str) -> dict[str, Any]:
    """The stack's outputs, endpoint, endpoint configuration and model, as moto has them."""
    (stack,) = aws["cloudformation"].describe_stacks(StackName=stack_name)["Stacks"]
    assert stack["StackStatus"] in {"CREATE_COMPLETE", "UPDATE_COMPLETE"}, stack.get(
        "StackStatusReason"
    )
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}
    sagemaker = aws["sagemaker"]
    endpoint = sagemaker.describe_endpoint(EndpointName=outputs["EndpointName"])
    endpoint_config = sagemaker.describe_endpoint_config(
        EndpointConfigName=endpoint["EndpointConfigName"]
    )
    (variant,) = endpoint_config["ProductionVariants"]
    model = sagemaker.describe_model(ModelName=variant["ModelName"])
    return {"outputs": outputs, "endpoint": endpoint, "variant": variant, "model": model}


def create(aws: dict[str, Any], parameters: dict[str, str]) -> str:
    """Create a stack of infra/endpoint.yml; return its name."""
    stack_name = f"{{ cookiecutter.project_slug }}-endpoint-test-{next(STACK_NUMBERS)}"
    aws["cloudformation"].create_stack(
        StackName=stack_name, TemplateBody=TEMPLATE, Parameters=as_cfn(parameters)
    )
    return stack_name


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_serverless_endpoint_stack(aws: dict[str, Any], stage: str) -> None:
    parameters = stage_parameters(stage, "serverless")
    result = deployed(aws, create(aws, parameters))
    assert result["endpoint"]["EndpointStatus"] == "InService"
    assert result["variant"]["VariantName"] == "AllTraffic"
    assert result["variant"]["ServerlessConfig"] == {
        "MemorySizeInMB": int(parameters.get("ServerlessMemorySizeInMB", 2048)),
        "MaxConcurrency": int(parameters.get("ServerlessMaxConcurrency", 5)),
    }
    assert "InstanceType" not in result["variant"]
    assert result["model"]["PrimaryContainer"] == {"ModelPackageName": f"{PACKAGE_ARN}1"}
{%- if cookiecutter.prod_account_id %}
    # The stage account's endpoint role, as the stage file names it.
    assert result["model"]["ExecutionRoleArn"] == parameters["ExecutionRoleArn"]
    assert result["model"]["ExecutionRoleArn"].endswith(f"/{config.PROJECT_SLUG}-{stage}-endpoint")
{%- else %}
    assert result["model"]["ExecutionRoleArn"] == PIPELINE_ENVIRONMENT["SAGEMAKER_ROLE_ARN"]
{%- endif %}


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_instance_endpoint_stack(aws: dict[str, Any], stage: str) -> None:
    parameters = stage_parameters(stage, "instance")
    result = deployed(aws, create(aws, parameters))
    assert result["endpoint"]["EndpointStatus"] == "InService"
    assert result["variant"]["InstanceType"] == config.ENDPOINT_INSTANCE_TYPE
    assert result["variant"]["InitialInstanceCount"] == int(
        parameters.get("InitialInstanceCount", 1)
    )
    assert "ServerlessConfig" not in result["variant"]
    assert result["outputs"]["ModelPackageArn"] == f"{PACKAGE_ARN}1"


def test_the_configured_staging_variant_deploys(aws: dict[str, Any]) -> None:
    result = deployed(aws, create(aws, stage_parameters("staging")))
    expected_key = "ServerlessConfig" if STAGING_ENDPOINT_TYPE == "serverless" else "InstanceType"
    assert expected_key in result["variant"]
    assert result["outputs"]["EndpointName"] == result["endpoint"]["EndpointName"]


def stack_model(aws: dict[str, Any], stack_name: str) -> dict[str, Any]:
    """The SageMaker model the stack's Model resource currently is."""
    resources = aws["cloudformation"].list_stack_resources(StackName=stack_name)
    (model_arn,) = (
        resource["PhysicalResourceId"]
        for resource in resources["StackResourceSummaries"]
        if resource["LogicalResourceId"] == "Model"
    )
    return aws["sagemaker"].describe_model(ModelName=model_arn.rsplit("/", 1)[-1])


def test_a_new_package_replaces_the_model_of_the_same_stack(aws: dict[str, Any]) -> None:
    # moto replaces the model but does not cascade the replacement to the endpoint
    # configuration, so only the model is compared here.
    stack_name = create(aws, stage_parameters("prod", "instance", version=1))
    before = stack_model(aws, stack_name)
    aws["cloudformation"].update_stack(
        StackName=stack_name,
        TemplateBody=TEMPLATE,
        Parameters=as_cfn(stage_parameters("prod", "instance", version=2)),
    )
    after = stack_model(aws, stack_name)
    assert before["PrimaryContainer"] == {"ModelPackageName": f"{PACKAGE_ARN}1"}
    assert after["PrimaryContainer"] == {"ModelPackageName": f"{PACKAGE_ARN}2"}
    assert after["ModelName"] != before["ModelName"]
