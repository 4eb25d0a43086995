"""The SageMaker Pipelines API: create or update the pipeline, start an execution, follow it.

Plain boto3 calls on a SageMaker client, so they can be tested against a Stubber or moto.
"""

import time
from collections.abc import Callable

from . import config

# Every other status (Succeeded, Failed, Stopped, CompletedWithFailures) is final.
RUNNING_STATUSES = {"Executing", "Stopping"}
# A role without sagemaker:ListPipelineExecutionSteps can still follow the execution.
ACCESS_DENIED_CODES = {"AccessDenied", "AccessDeniedException"}
DEFAULT_POLL_SECONDS = 30.0


class ExecutionFailedError(Exception):
    """The pipeline execution ended in another status than Succeeded."""


def pipeline_exists(sagemaker_client, pipeline_name: str) -> bool:
    """Whether a pipeline of exactly this name exists in the account and region."""
    paginator = sagemaker_client.get_paginator("list_pipelines")
    return any(
        summary["PipelineName"] == pipeline_name
        for page in paginator.paginate(PipelineNamePrefix=pipeline_name)
        for summary in page["PipelineSummaries"]
    )


def upsert_pipeline(
    sagemaker_client,
    pipeline_name: str,
    definition: str,
    role_arn: str,
    description: str,
    tags: list[dict[str, str]],
) -> str:
    """Create the pipeline, or update its definition and tags; return its ARN.

    (The SDK's Pipeline.upsert compiles the definition once more per call it tries.)
    """
    arguments = {
        "PipelineName": pipeline_name,
        "PipelineDefinition": definition,
        "RoleArn": role_arn,
        "PipelineDescription": description,
    }
    if not pipeline_exists(sagemaker_client, pipeline_name):
        return sagemaker_client.create_pipeline(**arguments, Tags=tags)["PipelineArn"]
    arn = sagemaker_client.update_pipeline(**arguments)["PipelineArn"]
    sagemaker_client.add_tags(ResourceArn=arn, Tags=tags)
    return arn


def start_execution(sagemaker_client, commit_id: str, pipeline_name: str) -> str:
    """Start the pipeline for one commit and return the execution ARN.

    The commit id becomes the CommitId parameter, which the registered model package records.
    """
    response = sagemaker_client.start_pipeline_execution(
        PipelineName=pipeline_name,
        PipelineExecutionDisplayName=f"commit-{commit_id[:12]}",
        PipelineExecutionDescription=f"{config.PROJECT_NAME} at commit {commit_id}",
        PipelineParameters=[{"Name": "CommitId", "Value": commit_id}],
    )
    return response["PipelineExecutionArn"]


def list_steps(sagemaker_client, execution_arn: str) -> list[dict]:
    """Every step of the execution so far, oldest first."""
    steps: list[dict] = []
    paginator = sagemaker_client.get_paginator("list_pipeline_execution_steps")
    for page in paginator.paginate(PipelineExecutionArn=execution_arn, SortOrder="Ascending"):
        steps.extend(page["PipelineExecutionSteps"])
    return steps


def failure_reason(step: dict) -> str | None:
    """A step's failure reason, or the message a Fail step rendered."""
    return step.get("FailureReason") or step.get("Metadata", {}).get("Fail", {}).get("ErrorMessage")


def describe_step(step: dict) -> str:
    """One line for a step's status: cache hits and failure reasons included."""
    line = f"  {step['StepName']}: {step['StepStatus']}"
    if step.get("CacheHitResult") is not None:
        line += " (cached)"
    if reason := failure_reason(step):
        line += f": {reason}"
    return line


def wait_for_execution(
    sagemaker_client,
    execution_arn: str,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print each step's status as it changes; raise ExecutionFailedError unless Succeeded."""
    from botocore.exceptions import ClientError

    seen: dict[str, str] = {}
    steps: list[dict] = []
    steps_visible = True
    reported_errors: set[str] = set()
    while True:
        execution = sagemaker_client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        status = execution["PipelineExecutionStatus"]
        if steps_visible:
            try:
                steps = list_steps(sagemaker_client, execution_arn)
            except ClientError as error:
                # Access denied hides step details for good; any other error (throttling
                # past boto's retries) only skips this poll, keeping the last steps seen.
                code = error.response["Error"].get("Code", "")
                steps_visible = code not in ACCESS_DENIED_CODES
                if code not in reported_errors:
                    reported_errors.add(code)
                    echo(f"  (step details unavailable: {code})")
        for step in steps:
            key = f"{step['StepName']}/{step['StepStatus']}"
            if seen.get(step["StepName"]) != key:
                seen[step["StepName"]] = key
                echo(describe_step(step))
        if status not in RUNNING_STATUSES:
            break
        sleep(poll_seconds)
    echo(f"Pipeline execution {status}: {execution_arn}")
    if status != "Succeeded":
        failed = [step for step in steps if step.get("StepStatus") == "Failed"]
        reason = (
            f"step {failed[0]['StepName']} failed: {failure_reason(failed[0]) or 'no reason'}"
            if failed
            else execution.get("FailureReason") or "no reason given"
        )
        raise ExecutionFailedError(f"pipeline execution {status}: {reason}")
