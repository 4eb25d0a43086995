"""New data on a moto server: S3 sends its events to EventBridge, the new-data rule passes
the batch's ready marker alone, and StartBuildFunction starts the build pipeline with the
batch's URI as its InputDataUrl variable."""

import importlib.util
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from rule_support import rule, template

from {{ cookiecutter.package_name }} import config

REGION = config.AWS_REGION
BUILD_TEMPLATE = "model-build-pipeline.yml"
FILES_PER_BATCH = 5


@pytest.fixture
def landing(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An artifact bucket sending events to EventBridge, and the rule delivering to a queue."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    suffix = uuid.uuid4().hex[:8]
    bucket = f"{config.PROJECT_SLUG[:40]}-data-{suffix}"
    s3 = boto3.client("s3", region_name=REGION)
    if REGION == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    # What the template's EventBridgeEnabled sets, in the S3 API's shape.
    properties = template(BUILD_TEMPLATE)["Resources"]["ArtifactBucket"]["Properties"]
    assert properties["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True
    }
    s3.put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
    )
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName=f"new-data-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    pattern = rule(BUILD_TEMPLATE, "NewDataRule", {"ArtifactBucket": bucket})["EventPattern"]
    events = boto3.client("events", region_name=REGION)
    events.put_rule(Name=f"new-data-{suffix}", EventPattern=json.dumps(pattern))
    events.put_targets(Rule=f"new-data-{suffix}", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return {"s3": s3, "sqs": sqs, "bucket": bucket, "queue_url": queue_url}


def delivered(landing: dict[str, Any]) -> list[dict[str, Any]]:
    """The events the rule delivered so far."""
    messages = landing["sqs"].receive_message(QueueUrl=landing["queue_url"], MaxNumberOfMessages=10)
    return [json.loads(message["Body"]) for message in messages.get("Messages", [])]


def upload_batch(landing: dict[str, Any], batch: str) -> None:
    """A burst of CSV files, then the ready marker."""
    folder = f"{config.DATA_PREFIX}{batch}"
    for number in range(FILES_PER_BATCH):
        landing["s3"].put_object(
            Bucket=landing["bucket"], Key=f"{folder}/part-{number:04d}.csv", Body=b"a,b\n1,2\n"
        )
    landing["s3"].put_object(Bucket=landing["bucket"], Key=f"{folder}/{config.DATA_READY_MARKER}")


def test_a_burst_of_uploads_delivers_one_event_the_marker(landing: dict[str, Any]) -> None:
    upload_batch(landing, "2025-03-15")
    (event,) = delivered(landing)
    assert event["detail"]["object"]["key"] == (
        f"{config.DATA_PREFIX}2025-03-15/{config.DATA_READY_MARKER}"
    )


def test_files_outside_the_data_prefix_deliver_nothing(landing: dict[str, Any]) -> None:
    landing["s3"].put_object(Bucket=landing["bucket"], Key=f"other/x/{config.DATA_READY_MARKER}")
    landing["s3"].put_object(Bucket=landing["bucket"], Key=f"{config.DATA_PREFIX}x/data.csv")
    assert delivered(landing) == []


def build_pipeline(moto_endpoint: str) -> str:
    """A two-stage stand-in of the build pipeline in moto, under its real name."""
    name = template(BUILD_TEMPLATE)["Parameters"]["BuildPipelineName"]["Default"]
    iam = boto3.client("iam", endpoint_url=moto_endpoint)
    role_name = f"build-pipeline-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "codepipeline.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]["Arn"]
    codepipeline = boto3.client("codepipeline", endpoint_url=moto_endpoint, region_name=REGION)
    if name in codepipeline.list_pipelines()["pipelines"]:
        return name
    action = {"category": "Build", "owner": "AWS", "provider": "CodeBuild", "version": "1"}
    codepipeline.create_pipeline(
        pipeline={
            "name": name,
            "roleArn": role_arn,
            "artifactStore": {"type": "S3", "location": "artifacts"},
            "stages": [
                {"name": stage, "actions": [{"name": stage, "actionTypeId": action}]}
                for stage in ("Build", "Train")
            ],
        }
    )
    return name


def test_the_marker_event_starts_the_build_with_the_batch_uri(
    landing: dict[str, Any], moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline_name = build_pipeline(moto_endpoint)
    upload_batch(landing, "batch-7")
    (event,) = delivered(landing)

    function = template(BUILD_TEMPLATE)["Resources"]["StartBuildFunction"]["Properties"]
    for name, value in function["Environment"]["Variables"].items():
        monkeypatch.setenv(name, pipeline_name if isinstance(value, dict) else value)
    (tmp_path / "index.py").write_text(function["Code"]["ZipFile"])
    spec = importlib.util.spec_from_file_location("start_build_moto", tmp_path / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.handler(event, None)

    assert result["started"] is True
    execution = boto3.client("codepipeline", region_name=REGION).get_pipeline_execution(
        pipelineName=pipeline_name, pipelineExecutionId=result["pipelineExecutionId"]
    )["pipelineExecution"]
    expected = f"s3://{landing['bucket']}/{config.DATA_PREFIX}batch-7/"
    assert execution["variables"] == [{"name": "InputDataUrl", "resolvedValue": expected}]
