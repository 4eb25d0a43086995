"""The moto shims the flow calls directly (the patches inside moto_as_aws are exercised by
every whole-flow rehearsal)."""

import json

import boto3
from moto import mock_aws
from rehearsal.moto_shims import execution_failed

ROLE_ARN = "arn:aws:iam::123456789012:role/pipeline"
DEFINITION = {"Version": "2020-12-01", "Parameters": [], "Steps": []}


@mock_aws
def test_a_failed_execution_reads_back_failed_with_its_reason_and_the_others_do_not():
    sagemaker = boto3.client("sagemaker", region_name="eu-west-1")
    sagemaker.create_pipeline(
        PipelineName="churn", PipelineDefinition=json.dumps(DEFINITION), RoleArn=ROLE_ARN
    )
    first, second = (
        sagemaker.start_pipeline_execution(PipelineName="churn")["PipelineExecutionArn"]
        for _ in range(2)
    )
    execution_failed(second, "step FailQualityGate failed")

    described = sagemaker.describe_pipeline_execution(PipelineExecutionArn=second)
    assert described["PipelineExecutionStatus"] == "Failed"
    summaries = sagemaker.list_pipeline_executions(PipelineName="churn")
    statuses = {
        item["PipelineExecutionArn"]: (
            item["PipelineExecutionStatus"],
            item.get("PipelineExecutionFailureReason"),
        )
        for item in summaries["PipelineExecutionSummaries"]
    }
    # moto's DescribePipelineExecution answers an empty FailureReason whatever it holds.
    assert statuses[second] == ("Failed", "step FailQualityGate failed")
    assert statuses[first][0] == "Succeeded"


def test_a_stack_key_with_tags_and_a_policy_object_is_created_as_cloudformation_would():
    from rehearsal.moto_shims import moto_as_aws

    template = {
        "Resources": {
            "Key": {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "KeyPolicy": {"Version": "2012-10-17", "Statement": []},
                    "Tags": [{"Key": "project", "Value": "app"}],
                },
            }
        }
    }
    with mock_aws(), moto_as_aws():
        cloudformation = boto3.client("cloudformation", region_name="us-east-1")
        cloudformation.create_stack(StackName="keys", TemplateBody=json.dumps(template))
        (resource,) = cloudformation.list_stack_resources(StackName="keys")[
            "StackResourceSummaries"
        ]
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = resource["PhysicalResourceId"]
        tags = kms.list_resource_tags(KeyId=key_id)["Tags"]
        policy = json.loads(kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    assert tags == [{"TagKey": "project", "TagValue": "app"}]
    assert policy == {"Version": "2012-10-17", "Statement": []}
