"""The SageMaker Pipelines API calls, against a botocore Stubber (real request shapes)."""

import datetime

import boto3
import pytest
from botocore.stub import Stubber

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import pipeline_service

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


LISTING = {
    "PipelineName": config.SAGEMAKER_PIPELINE_NAME,
    "SortBy": "CreationTime",
    "SortOrder": "Descending",
    "MaxResults": pipeline_service.EXECUTIONS_PAGE_SIZE,
}


def summary(arn: str, hours_ago: float, status: str = "Succeeded") -> dict:
    """One ListPipelineExecutions summary."""
    started = NOW - datetime.timedelta(hours=hours_ago)
    return {"PipelineExecutionArn": arn, "StartTime": started, "PipelineExecutionStatus": status}


def expect_pages(client, *pages: list[dict], more: bool = False) -> None:
    """The list-executions pages, each but the last (unless more) with a token to the next."""
    for number, summaries in enumerate(pages):
        request = dict(LISTING, NextToken=f"page-{number}") if number else LISTING
        response = {"PipelineExecutionSummaries": summaries}
        if more or number < len(pages) - 1:
            response["NextToken"] = f"page-{number + 1}"
        client.stubber.add_response("list_pipeline_executions", response, request)


def expect_parameters(client, arn: str, *parameters: dict) -> None:
    """The parameters one execution was started with (the only execution read next)."""
    client.stubber.add_response(
        "list_pipeline_parameters_for_execution",
        {"PipelineParameters": list(parameters)},
        {"PipelineExecutionArn": arn},
    )


def previous(client) -> str | None:
    return pipeline_service.previous_input_data_url(client, config.SAGEMAKER_PIPELINE_NAME)


def test_previous_data_is_the_newest_succeeded_executions_data_uri(client):
    # Oldest first, as moto answers: the newest is found whatever the page's order.
    expect_pages(client, [summary("arn:older", 1), summary("arn:newer", 0)])
    expect_parameters(client, "arn:newer", _commit(), _data("s3://b/new/"))
    assert previous(client) == "s3://b/new/"


def test_a_failed_batch_is_not_reused(client):
    # The newest run trained on a broken batch and failed: the push before it succeeded.
    expect_pages(
        client,
        [
            summary("arn:broken", 0, "Failed"),
            summary("arn:stopped", 1, "Stopped"),
            summary("arn:good", 2),
        ],
    )
    expect_parameters(client, "arn:good", _commit(), _data("s3://b/good/"))
    assert previous(client) == "s3://b/good/"


def test_previous_data_skips_executions_started_without_one(client):
    expect_pages(client, [summary("arn:without", 0), summary("arn:with-data", 1)])
    expect_parameters(client, "arn:without", _commit())
    expect_parameters(client, "arn:with-data", _data("s3://b/landed/"))
    assert previous(client) == "s3://b/landed/"


def test_no_succeeded_execution_means_no_previous_data(client):
    statuses = ["Executing", "Stopping", "Stopped", "Failed", "CompletedWithFailures"]
    summaries = [summary(f"arn:{name}", hours, name) for hours, name in enumerate(statuses)]
    expect_pages(client, summaries)
    assert previous(client) is None


def test_no_previous_execution_means_no_previous_data(client):
    expect_pages(client, [])
    assert previous(client) is None


def test_the_success_can_be_on_a_later_page(client):
    expect_pages(
        client,
        [summary(f"arn:failed-{hours}", hours, "Failed") for hours in range(3)],
        [summary("arn:failed-3", 3, "Failed"), summary("arn:good", 4)],
    )
    expect_parameters(client, "arn:good", _data("s3://b/good/"))
    assert previous(client) == "s3://b/good/"


def test_a_long_failing_history_costs_a_bounded_number_of_calls(client):
    size = pipeline_service.EXECUTIONS_PAGE_SIZE
    pages = pipeline_service.MAX_EXECUTIONS_SCANNED // size
    failed = [
        [summary(f"arn:failed-{page}-{item}", page * size + item, "Failed") for item in range(size)]
        for page in range(pages)
    ]
    # The last page read still has a token to older executions: they are not listed.
    expect_pages(client, *failed, more=True)
    assert previous(client) is None


def test_at_most_a_bounded_number_of_successes_are_read(client):
    count = pipeline_service.MAX_SUCCEEDED_READ
    expect_pages(client, [summary(f"arn:sample-{hours}", hours) for hours in range(count + 1)])
    for hours in range(count):
        expect_parameters(client, f"arn:sample-{hours}", _commit())
    assert previous(client) is None


def _commit() -> dict:
    return {"Name": "CommitId", "Value": COMMIT_ID}


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
