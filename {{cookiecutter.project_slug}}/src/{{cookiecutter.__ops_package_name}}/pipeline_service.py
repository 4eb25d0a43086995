"""The SageMaker pipeline in AWS: its definition built from the ML package (with the data set
published to the artifact bucket), then create or update it, start an execution, follow it.

The service calls are plain boto3 calls on a SageMaker client, so they can be tested against
a Stubber or moto. The SageMaker SDK is imported only to build the definition.
"""

import datetime
import hashlib
import itertools
import os
import time
from collections.abc import Callable, Iterator

from {{ cookiecutter.package_name }} import config

# Every other status (Succeeded, Failed, Stopped, CompletedWithFailures) is final.
RUNNING_STATUSES = {"Executing", "Stopping"}
# A role without sagemaker:ListPipelineExecutionSteps can still follow the execution.
ACCESS_DENIED_CODES = {"AccessDenied", "AccessDeniedException"}
DEFAULT_POLL_SECONDS = 30.0
# The SageMaker pipeline parameters holding the S3 URI of the training data, and of the
# production model's model.tar.gz (the champion the gate compares with).
INPUT_DATA_PARAMETER = "InputDataUrl"
CHAMPION_PARAMETER = "ChampionModelUrl"
SUCCEEDED = "Succeeded"
# How far back a push looks for the data of a successful run: the newest 1,000 executions
# (10 ListPipelineExecutions calls of 100, the most one returns), and the parameters of the
# newest 10 successes (one ListPipelineParametersForExecution call each). Past that it
# trains on the pipeline's default data set; `make retrain INPUT_DATA_URL=...` names data.
EXECUTIONS_PAGE_SIZE = 100
MAX_EXECUTIONS_SCANNED = 1000
MAX_SUCCEEDED_READ = 10
# An execution summary without a StartTime sorts last.
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class ExecutionFailedError(Exception):
    """The pipeline execution ended in another status than Succeeded."""


def publish_dataset(s3_client, bucket: str, csv_bytes: bytes, file_name: str) -> str:
    """Upload the data set under a key holding its content hash; return its S3 URI.

    A new data set gets a new URI, so the cached preprocess step reruns exactly when the
    data changes.
    """
    digest = hashlib.sha256(csv_bytes).hexdigest()[:16]
    key = f"{config.SAGEMAKER_PIPELINE_NAME}/input/{digest}/{file_name}"
    s3_client.put_object(Bucket=bucket, Key=key, Body=csv_bytes)
    return f"s3://{bucket}/{key}"


def create_bucket(s3_client, bucket: str) -> None:
    """Create the bucket (offline, in moto); us-east-1 takes no location constraint."""
    if config.AWS_REGION == "us-east-1":
        s3_client.create_bucket(Bucket=bucket)
    else:
        s3_client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": config.AWS_REGION}
        )


def build_pipeline(role_arn: str, bucket: str, commit_id: str, create_bucket_first=False):
    """The ML package's SageMaker pipeline, with the data set published to the bucket."""
    import boto3

    from {{ cookiecutter.package_name }}.data import DATASET_FILE_NAME, dataset_csv_bytes

    # The SDK creates a SageMaker client when it is imported, in the default region.
    os.environ.setdefault("AWS_DEFAULT_REGION", config.AWS_REGION)
    from {{ cookiecutter.package_name }}.pipeline import get_pipeline

    boto_session = boto3.Session(region_name=config.AWS_REGION)
    s3_client = boto_session.client("s3")
    if create_bucket_first:
        create_bucket(s3_client, bucket)
    input_data_uri = publish_dataset(s3_client, bucket, dataset_csv_bytes(), DATASET_FILE_NAME)
    return get_pipeline(
        role_arn=role_arn,
        bucket=bucket,
        input_data_uri=input_data_uri,
        commit_id=commit_id,
        boto_session=boto_session,
    )


def pipeline_definition(
    role_arn: str, bucket: str, commit_id: str, create_bucket_first=False
) -> str:
    """The pipeline definition as indented JSON, keys sorted (the data set published)."""
    import json

    pipeline = build_pipeline(role_arn, bucket, commit_id, create_bucket_first)
    return json.dumps(json.loads(pipeline.definition()), indent=2, sort_keys=True)


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


def start_execution(
    sagemaker_client,
    commit_id: str,
    pipeline_name: str,
    input_data_url: str | None = None,
    champion_url: str | None = None,
) -> str:
    """Start the pipeline for one commit (and data URI, and champion, if given); return the
    execution ARN.

    The commit id becomes the CommitId parameter, the data URI the InputDataUrl parameter
    and the champion's model.tar.gz the ChampionModelUrl parameter; the registered model
    package records the first two. Without a data URI the pipeline's default (the sample
    data set) is used; without a champion, the gate has only the threshold and the baseline.
    """
    parameters = [{"Name": "CommitId", "Value": commit_id}]
    if input_data_url:
        parameters.append({"Name": INPUT_DATA_PARAMETER, "Value": input_data_url})
    if champion_url:
        parameters.append({"Name": CHAMPION_PARAMETER, "Value": champion_url})
    response = sagemaker_client.start_pipeline_execution(
        PipelineName=pipeline_name,
        PipelineExecutionDisplayName=f"commit-{commit_id[:12]}",
        PipelineExecutionDescription=f"{config.PROJECT_NAME} at commit {commit_id}",
        PipelineParameters=parameters,
    )
    return response["PipelineExecutionArn"]


def succeeded_executions(sagemaker_client, pipeline_name: str) -> Iterator[str]:
    """The ARNs of the pipeline's Succeeded executions, newest first, among its newest
    MAX_EXECUTIONS_SCANNED executions.

    ListPipelineExecutions filters by creation time and version alias, not by status, so the
    status is checked here; pages are fetched as they are read, so a recent success costs one call.
    """
    paginator = sagemaker_client.get_paginator("list_pipeline_executions")
    pages = paginator.paginate(
        PipelineName=pipeline_name,
        SortBy="CreationTime",
        SortOrder="Descending",
        PaginationConfig={"PageSize": EXECUTIONS_PAGE_SIZE, "MaxItems": MAX_EXECUTIONS_SCANNED},
    )
    for page in pages:
        # Sorted within the page as well: moto ignores SortOrder and answers oldest first.
        summaries = sorted(
            page["PipelineExecutionSummaries"],
            key=lambda summary: summary.get("StartTime", EPOCH),
            reverse=True,
        )
        for summary in summaries:
            if summary.get("PipelineExecutionStatus") == SUCCEEDED:
                yield summary["PipelineExecutionArn"]


def input_data_url(sagemaker_client, execution_arn: str) -> str | None:
    """The InputDataUrl an execution was started with; None if it was started without one."""
    paginator = sagemaker_client.get_paginator("list_pipeline_parameters_for_execution")
    for page in paginator.paginate(PipelineExecutionArn=execution_arn):
        for parameter in page["PipelineParameters"]:
            if parameter["Name"] == INPUT_DATA_PARAMETER:
                return parameter["Value"]
    return None


def previous_input_data_url(sagemaker_client, pipeline_name: str) -> str | None:
    """The InputDataUrl of the newest Succeeded execution that was started with one, if any.

    A push to the dev branch trains on this data: the data a new-data run brought in stays
    in use until other data lands, and a batch whose run failed (or is still running) is
    never reused, so one broken batch does not fail every later push. Executions started
    without a data URI are skipped. None (the pipeline's default data set) when none of the
    newest MAX_EXECUTIONS_SCANNED executions succeeded with one, or when the newest
    MAX_SUCCEEDED_READ successes were all started without one: at most
    MAX_EXECUTIONS_SCANNED / EXECUTIONS_PAGE_SIZE + MAX_SUCCEEDED_READ calls, however long
    the pipeline's history.
    """
    successes = succeeded_executions(sagemaker_client, pipeline_name)
    for execution_arn in itertools.islice(successes, MAX_SUCCEEDED_READ):
        if (url := input_data_url(sagemaker_client, execution_arn)) is not None:
            return url
    return None


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
