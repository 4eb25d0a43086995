"""The SageMaker Pipelines API calls, against a botocore Stubber (real request shapes)."""

import datetime

import boto3
import pytest
from botocore.stub import Stubber

from {{ cookiecutter.package_name }} import config, pipeline_service

EXECUTION_ARN = (
    f"arn:aws:sagemaker:{config.AWS_REGION}:123456789012:pipeline/"
    f"{config.SAGEMAKER_PIPELINE_NAME}/execution/abc123"
)
COMMIT_ID = "c0ffee" + "1" * 34
NOW = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture
def client():
    """A SageMaker client whose every call must be one the test expects."""
    sagemaker = boto3.client("sagemaker", region_name=config.AWS_REGION)
    with Stubber(sagemaker) as stubber:
        sagemaker.stubber = stubber
        yield sagemaker
        stubber.assert_no_pending_responses()


def expect_poll(client, status: str, steps: list[dict], failure: str | None = None) -> None:
    """One describe + list-steps round."""
    description = {"PipelineExecutionArn": EXECUTION_ARN, "PipelineExecutionStatus": status}
    if failure:
        description["FailureReason"] = failure
    client.stubber.add_response(
        "describe_pipeline_execution", description, {"PipelineExecutionArn": EXECUTION_ARN}
    )
    client.stubber.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": steps},
        {"PipelineExecutionArn": EXECUTION_ARN, "SortOrder": "Ascending"},
    )


def step(name: str, status: str, **extra) -> dict:
    return {"StepName": name, "StepStatus": status, "StartTime": NOW, **extra}


def test_start_passes_the_commit_as_a_parameter(client):
    client.stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION_ARN},
        {
            "PipelineName": config.SAGEMAKER_PIPELINE_NAME,
            "PipelineExecutionDisplayName": f"commit-{COMMIT_ID[:12]}",
            "PipelineExecutionDescription": f"{config.PROJECT_NAME} at commit {COMMIT_ID}",
            "PipelineParameters": [{"Name": "CommitId", "Value": COMMIT_ID}],
        },
    )
    arn = pipeline_service.start_execution(client, COMMIT_ID, config.SAGEMAKER_PIPELINE_NAME)
    assert arn == EXECUTION_ARN


def test_start_passes_the_data_uri_when_given(client):
    data_url = "s3://bucket/incoming-data/2025-01-01/"
    client.stubber.add_response(
        "start_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION_ARN},
        {
            "PipelineName": config.SAGEMAKER_PIPELINE_NAME,
            "PipelineExecutionDisplayName": f"commit-{COMMIT_ID[:12]}",
            "PipelineExecutionDescription": f"{config.PROJECT_NAME} at commit {COMMIT_ID}",
            "PipelineParameters": [
                {"Name": "CommitId", "Value": COMMIT_ID},
                {"Name": "InputDataUrl", "Value": data_url},
            ],
        },
    )
    arn = pipeline_service.start_execution(
        client, COMMIT_ID, config.SAGEMAKER_PIPELINE_NAME, input_data_url=data_url
    )
    assert arn == EXECUTION_ARN


def expect_executions(client, executions: list[tuple[str, datetime.datetime, list]]) -> None:
    """One list-executions page, then the parameters of each execution, newest first."""
    client.stubber.add_response(
        "list_pipeline_executions",
        {
            "PipelineExecutionSummaries": [
                {"PipelineExecutionArn": arn, "StartTime": started}
                for arn, started, _ in executions
            ]
        },
        {
            "PipelineName": config.SAGEMAKER_PIPELINE_NAME,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
        },
    )
    for arn, _, parameters in sorted(executions, key=lambda item: item[1], reverse=True):
        client.stubber.add_response(
            "list_pipeline_parameters_for_execution",
            {"PipelineParameters": parameters},
            {"PipelineExecutionArn": arn},
        )
        if any(parameter["Name"] == "InputDataUrl" for parameter in parameters):
            break


def test_previous_data_is_the_newest_executions_data_uri(client):
    older = ("arn:older", NOW - datetime.timedelta(hours=1), [_data("s3://b/old/")])
    newer = ("arn:newer", NOW, [{"Name": "CommitId", "Value": COMMIT_ID}, _data("s3://b/new/")])
    expect_executions(client, [older, newer])
    previous = pipeline_service.previous_input_data_url(client, config.SAGEMAKER_PIPELINE_NAME)
    assert previous == "s3://b/new/"


def test_previous_data_skips_executions_started_without_one(client):
    with_data = ("arn:with-data", NOW - datetime.timedelta(hours=1), [_data("s3://b/landed/")])
    without = ("arn:without", NOW, [{"Name": "CommitId", "Value": COMMIT_ID}])
    expect_executions(client, [without, with_data])
    previous = pipeline_service.previous_input_data_url(client, config.SAGEMAKER_PIPELINE_NAME)
    assert previous == "s3://b/landed/"


def test_no_previous_execution_means_no_previous_data(client):
    expect_executions(client, [])
    assert pipeline_service.previous_input_data_url(client, config.SAGEMAKER_PIPELINE_NAME) is None


def _data(url: str) -> dict:
    return {"Name": "InputDataUrl", "Value": url}


def test_wait_prints_each_change_once_and_returns_on_success(client):
    expect_poll(client, "Executing", [step("PreprocessData", "Executing")])
    expect_poll(client, "Executing", [step("PreprocessData", "Executing")])
    expect_poll(
        client,
        "Succeeded",
        [
            step(
                "PreprocessData",
                "Succeeded",
                CacheHitResult={"SourcePipelineExecutionArn": EXECUTION_ARN[:-6] + "old123"},
            ),
            step("TrainModel", "Succeeded"),
        ],
    )
    lines, sleeps = [], []
    pipeline_service.wait_for_execution(
        client, EXECUTION_ARN, 5, echo=lines.append, sleep=sleeps.append
    )
    assert lines == [
        "  PreprocessData: Executing",
        "  PreprocessData: Succeeded (cached)",
        "  TrainModel: Succeeded",
        f"Pipeline execution Succeeded: {EXECUTION_ARN}",
    ]
    assert sleeps == [5, 5]


def test_wait_fails_with_the_failing_steps_reason(client):
    reason = "Quality gate failed: auc 0.61 is below the threshold 0.8"
    expect_poll(
        client,
        "Failed",
        [
            step("CheckModelQuality", "Succeeded"),
            step("FailQualityGate", "Failed", FailureReason=reason),
        ],
        failure="Step failure: One or multiple steps failed.",
    )
    with pytest.raises(
        pipeline_service.ExecutionFailedError, match=f"step FailQualityGate failed: {reason}"
    ):
        pipeline_service.wait_for_execution(
            client, EXECUTION_ARN, 1, echo=lambda _: None, sleep=None
        )


def test_wait_follows_the_execution_when_steps_cannot_be_listed(client):
    client.stubber.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION_ARN, "PipelineExecutionStatus": "Stopped"},
        {"PipelineExecutionArn": EXECUTION_ARN},
    )
    client.stubber.add_client_error("list_pipeline_execution_steps", "AccessDeniedException")
    lines = []
    with pytest.raises(pipeline_service.ExecutionFailedError, match="pipeline execution Stopped"):
        pipeline_service.wait_for_execution(client, EXECUTION_ARN, 1, echo=lines.append)
    assert lines[0] == "  (step details unavailable: AccessDeniedException)"


def test_wait_ends_on_completed_with_failures(client):
    expect_poll(client, "CompletedWithFailures", [step("TrainModel", "Failed")])
    with pytest.raises(pipeline_service.ExecutionFailedError, match="CompletedWithFailures"):
        pipeline_service.wait_for_execution(client, EXECUTION_ARN, 1, echo=lambda _: None)


def test_wait_reports_a_fail_steps_rendered_message(client):
    message = "auc 0.61 is below the threshold 0.8"
    gate = step("FailQualityGate", "Failed", Metadata={"Fail": {"ErrorMessage": message}})
    expect_poll(client, "Failed", [gate])
    lines = []
    with pytest.raises(pipeline_service.ExecutionFailedError, match=f"failed: {message}"):
        pipeline_service.wait_for_execution(client, EXECUTION_ARN, 1, echo=lines.append)
    assert lines[0] == f"  FailQualityGate: Failed: {message}"


def test_throttled_step_listing_skips_one_poll_only(client):
    client.stubber.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionArn": EXECUTION_ARN, "PipelineExecutionStatus": "Executing"},
        {"PipelineExecutionArn": EXECUTION_ARN},
    )
    client.stubber.add_client_error("list_pipeline_execution_steps", "ThrottlingException")
    expect_poll(client, "Succeeded", [step("TrainModel", "Succeeded")])
    lines = []
    pipeline_service.wait_for_execution(
        client, EXECUTION_ARN, 1, echo=lines.append, sleep=lambda _: None
    )
    assert lines[:2] == [
        "  (step details unavailable: ThrottlingException)",
        "  TrainModel: Succeeded",
    ]


PIPELINE_ARN = (
    f"arn:aws:sagemaker:{config.AWS_REGION}:123456789012:pipeline/{config.SAGEMAKER_PIPELINE_NAME}"
)
ROLE_ARN = "arn:aws:iam::123456789012:role/sagemaker-execution"
UPSERT = {
    "PipelineName": config.SAGEMAKER_PIPELINE_NAME,
    "PipelineDefinition": '{"Version": "2020-12-01"}',
    "RoleArn": ROLE_ARN,
    "PipelineDescription": "description",
}


def expect_listing(client, names: list[str]) -> None:
    client.stubber.add_response(
        "list_pipelines",
        {"PipelineSummaries": [{"PipelineName": name} for name in names]},
        {"PipelineNamePrefix": config.SAGEMAKER_PIPELINE_NAME},
    )


def upsert(client) -> str:
    return pipeline_service.upsert_pipeline(
        client,
        config.SAGEMAKER_PIPELINE_NAME,
        UPSERT["PipelineDefinition"],
        role_arn=ROLE_ARN,
        description="description",
        tags=config.TAGS,
    )


def test_upsert_creates_a_missing_pipeline_with_tags(client):
    # A longer name with the same prefix is another pipeline.
    expect_listing(client, [f"{config.SAGEMAKER_PIPELINE_NAME}-experiment"])
    client.stubber.add_response(
        "create_pipeline", {"PipelineArn": PIPELINE_ARN}, {**UPSERT, "Tags": config.TAGS}
    )
    assert upsert(client) == PIPELINE_ARN


def test_upsert_updates_an_existing_pipeline_and_its_tags(client):
    expect_listing(client, [config.SAGEMAKER_PIPELINE_NAME])
    client.stubber.add_response("update_pipeline", {"PipelineArn": PIPELINE_ARN}, UPSERT)
    client.stubber.add_response("add_tags", {}, {"ResourceArn": PIPELINE_ARN, "Tags": config.TAGS})
    assert upsert(client) == PIPELINE_ARN
