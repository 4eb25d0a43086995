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
