"""The SageMaker Pipelines API: create or update the pipeline, start an execution, follow it.

Plain boto3 calls on a SageMaker client, so they can be tested against a Stubber or moto.
"""

import time
from collections.abc import Callable

from . import config

TERMINAL_STATUSES = {"Succeeded", "Failed", "Stopped"}
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


def describe_step(step: dict) -> str:
    """One line for a step's status: cache hits and failure reasons included."""
    line = f"  {step['StepName']}: {step['StepStatus']}"
    if step.get("CacheHitResult") is not None:
        line += " (cached)"
    if step.get("FailureReason"):
        line += f": {step['FailureReason']}"
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
    steps_visible = True
    while True:
        execution = sagemaker_client.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        status = execution["PipelineExecutionStatus"]
        steps: list[dict] = []
        if steps_visible:
            try:
                steps = list_steps(sagemaker_client, execution_arn)
            except ClientError as error:
                # A role without sagemaker:ListPipelineExecutionSteps can still follow the
                # execution as a whole.
                steps_visible = False
                echo(f"  (step details unavailable: {error.response['Error'].get('Code')})")
        for step in steps:
            key = f"{step['StepName']}/{step['StepStatus']}"
            if seen.get(step["StepName"]) != key:
                seen[step["StepName"]] = key
                echo(describe_step(step))
        if status in TERMINAL_STATUSES:
            break
        sleep(poll_seconds)
    echo(f"Pipeline execution {status}: {execution_arn}")
    if status != "Succeeded":
        failed = [step for step in steps if step.get("StepStatus") == "Failed"]
        reason = (
            f"step {failed[0]['StepName']} failed: {failed[0].get('FailureReason', 'no reason')}"
            if failed
            else execution.get("FailureReason") or "no reason given"
        )
        raise ExecutionFailedError(f"pipeline execution {status}: {reason}")
