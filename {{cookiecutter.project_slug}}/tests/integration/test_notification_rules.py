"""The notification rules on a moto event bus, fed with events in the shapes AWS documents.

Each failure kind (either pipeline failing, the SageMaker pipeline failing, a model waiting
for approval, an endpoint's rollback alarm, the merge failing) reaches exactly its own rule,
and no success reaches any. The messages name what failed, the commit where the event
carries it, and where to look.

Event shapes: CodePipeline User Guide, "Monitoring CodePipeline events"; SageMaker Developer
Guide, "Events that Amazon SageMaker AI sends to Amazon EventBridge"; CloudWatch User Guide,
"Alarm events and EventBridge".
"""

import json
import uuid
from typing import Any

import boto3
import pytest
from rule_support import ACCOUNT_ID, render, rule, template

from {{ cookiecutter.package_name }} import config

REGION = config.AWS_REGION
BUILD_TEMPLATE = "model-build-pipeline.yml"
DEPLOY_TEMPLATE = "model-deploy-pipeline.yml"
BUILD_PIPELINE = template(BUILD_TEMPLATE)["Parameters"]["BuildPipelineName"]["Default"]
DEPLOY_PIPELINE = template(DEPLOY_TEMPLATE)["Parameters"]["DeployPipelineName"]["Default"]
BUILD_STACK = template(DEPLOY_TEMPLATE)["Parameters"]["BuildStackName"]["Default"]
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:notifications"
COMMIT_ID = "4f1c2a9e0b7d3c5a6e8f9a0b1c2d3e4f5a6b7c8d"
PIPELINE_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:pipeline/{config.SAGEMAKER_PIPELINE_NAME}"
RULES = {
    "PipelineFailedRule": BUILD_TEMPLATE,
    "TrainingFailedRule": BUILD_TEMPLATE,
    "ApprovalWaitingRule": BUILD_TEMPLATE,
    "EndpointAlarmRule": DEPLOY_TEMPLATE,
    "MergeFailedRule": DEPLOY_TEMPLATE,
}


def notification_rule(logical_id: str) -> dict[str, Any]:
    """A notification rule, its names resolved; its target must be the project's topic."""
    names = {"NotificationTopic": TOPIC_ARN, f"{BUILD_STACK}-NotificationTopicArn": TOPIC_ARN}
    return rule(RULES[logical_id], logical_id, names)


def envelope(detail_type: str, source: str, resources: list[str], detail: dict) -> dict:
    """An event as EventBridge delivers it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT_ID,
        "time": "2025-03-15T16:10:11Z",
        "region": REGION,
        "resources": resources,
        "detail": detail,
    }


def pipeline_execution(pipeline: str, state: str) -> dict:
    """CodePipeline Pipeline Execution State Change."""
    return envelope(
        "CodePipeline Pipeline Execution State Change",
        "aws.codepipeline",
        [f"arn:aws:codepipeline:{REGION}:{ACCOUNT_ID}:{pipeline}"],
        {
            "pipeline": pipeline,
            "execution-id": "12345678-1234-5678-abcd-12345678abcd",
            "execution-trigger": {
                "trigger-type": "StartPipelineExecution",
                "trigger-detail": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/Admin/my-user",
            },
            "state": state,
            "version": 1,
            "pipeline-execution-attempt": 1,
        },
    )


def action_execution(pipeline: str, stage: str, action: str, state: str) -> dict:
    """CodePipeline Action Execution State Change (a Lambda invoke action)."""
    detail = {
        "pipeline": pipeline,
        "execution-id": "12345678-1234-5678-abcd-12345678abcd",
        "stage": stage,
        "action": action,
        "state": state,
        "region": REGION,
        "type": {"owner": "AWS", "provider": "Lambda", "category": "Invoke", "version": "1"},
        "version": 3,
        "pipeline-execution-attempt": 1,
    }
    if state == "FAILED":
        detail["execution-result"] = {
            "external-execution-summary": (
                f"{config.MAIN_BRANCH} has commits {config.DEV_BRANCH} does not: merge it into"
                f" {config.DEV_BRANCH}, then retry"
            ),
            "external-execution-id": "2f1b6a7c-0000-4c1d-9d55-6b5c2d1f0e2a",
            "error-code": "JobFailed",
        }
    return envelope(
        "CodePipeline Action Execution State Change",
        "aws.codepipeline",
        [f"arn:aws:codepipeline:{REGION}:{ACCOUNT_ID}:{pipeline}"],
        detail,
    )


def sagemaker_execution(pipeline_arn: str, status: str) -> dict:
    """SageMaker Model Building Pipeline Execution Status Change."""
    execution_arn = f"{pipeline_arn}/execution/p4jn9xou8a8s"
    return envelope(
        "SageMaker Model Building Pipeline Execution Status Change",
        "aws.sagemaker",
        [pipeline_arn, execution_arn],
        {
            "pipelineExecutionDisplayName": f"commit-{COMMIT_ID[:12]}",
            "currentPipelineExecutionStatus": status,
            "previousPipelineExecutionStatus": "Executing",
            "executionStartTime": "2025-03-15T16:03:13Z",
            "executionEndTime": "2025-03-15T16:10:10Z",
            "pipelineExecutionDescription": f"{config.PROJECT_NAME} at commit {COMMIT_ID}",
            "pipelineArn": pipeline_arn,
            "pipelineExecutionArn": execution_arn,
        },
    )


def model_package(group: str, approval_status: str) -> dict:
    """SageMaker Model Package State Change."""
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:model-package/{group}/2"
    return envelope(
        "SageMaker Model Package State Change",
        "aws.sagemaker",
        [arn],
        {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": 2,
            "ModelPackageArn": arn,
            "CreationTime": "2025-03-15T16:10:00Z",
            "ModelPackageStatus": "Completed",
            "ModelApprovalStatus": approval_status,
            "MetadataProperties": {
                "CommitId": COMMIT_ID,
                "GeneratedBy": f"{PIPELINE_ARN}/execution/p4jn9xou8a8s",
            },
            "LastModifiedTime": "2025-03-15T16:10:00Z",
        },
    )


def alarm(name: str, state: str) -> dict:
    """CloudWatch Alarm State Change."""
    previous = "OK" if state == "ALARM" else "ALARM"
    return envelope(
        "CloudWatch Alarm State Change",
        "aws.cloudwatch",
        [f"arn:aws:cloudwatch:{REGION}:{ACCOUNT_ID}:alarm:{name}"],
        {
            "alarmName": name,
            "state": {
                "value": state,
                "reason": "Threshold Crossed: 2 out of the last 2 datapoints were greater than"
                " the threshold (5.0).",
                "timestamp": "2025-03-15T16:10:11.000+0000",
            },
            "previousState": {
                "value": previous,
                "reason": "Threshold Crossed",
                "timestamp": "2025-03-15T15:10:11.000+0000",
            },
            "configuration": {"description": "The endpoint answers with server errors."},
        },
    )


PROD_ERROR_ALARM = f"{config.PROD_ENDPOINT_NAME}-invocation-5xx-errors"
STAGING_LATENCY_ALARM = f"{config.STAGING_ENDPOINT_NAME}-model-latency"
FAILURES = {
    "build pipeline failed": (pipeline_execution(BUILD_PIPELINE, "FAILED"), "PipelineFailedRule"),
    "deploy pipeline failed": (
        pipeline_execution(DEPLOY_PIPELINE, "FAILED"),
        "PipelineFailedRule",
    ),
    "SageMaker pipeline failed": (
        sagemaker_execution(PIPELINE_ARN, "Failed"),
        "TrainingFailedRule",
    ),
    "model waits for approval": (
        model_package(config.MODEL_PACKAGE_GROUP_NAME, "PendingManualApproval"),
        "ApprovalWaitingRule",
    ),
    "production rollback alarm": (alarm(PROD_ERROR_ALARM, "ALARM"), "EndpointAlarmRule"),
    "staging rollback alarm": (alarm(STAGING_LATENCY_ALARM, "ALARM"), "EndpointAlarmRule"),
    "merge failed": (
        action_execution(DEPLOY_PIPELINE, "MergeDevToMaster", "MergeDevToMaster", "FAILED"),
        "MergeFailedRule",
    ),
}
NOT_NOTIFIED = {
    "build pipeline succeeded": pipeline_execution(BUILD_PIPELINE, "SUCCEEDED"),
    "build run superseded by newer data": pipeline_execution(BUILD_PIPELINE, "SUPERSEDED"),
    "deploy pipeline started": pipeline_execution(DEPLOY_PIPELINE, "STARTED"),
    "deploy pipeline stopped": pipeline_execution(DEPLOY_PIPELINE, "STOPPED"),
    "another pipeline failed": pipeline_execution("someone-elses-pipeline", "FAILED"),
    "SageMaker pipeline succeeded": sagemaker_execution(PIPELINE_ARN, "Succeeded"),
    "SageMaker pipeline executing": sagemaker_execution(PIPELINE_ARN, "Executing"),
    "another SageMaker pipeline failed": sagemaker_execution(
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT_ID}:pipeline/other-training", "Failed"
    ),
    "model approved": model_package(config.MODEL_PACKAGE_GROUP_NAME, "Approved"),
    "model rejected": model_package(config.MODEL_PACKAGE_GROUP_NAME, "Rejected"),
    "another group's model waits": model_package("other-models", "PendingManualApproval"),
    "rollback alarm back to OK": alarm(PROD_ERROR_ALARM, "OK"),
    "another alarm fired": alarm("unrelated-service-errors", "ALARM"),
    "merge succeeded": action_execution(
        DEPLOY_PIPELINE, "MergeDevToMaster", "MergeDevToMaster", "SUCCEEDED"
    ),
    "merge started": action_execution(
        DEPLOY_PIPELINE, "MergeDevToMaster", "MergeDevToMaster", "STARTED"
    ),
}


@pytest.fixture(scope="module")
def bus(moto_endpoint: str) -> dict[str, Any]:
    """Every notification rule on one moto event bus, each delivering to its own queue."""
    events = boto3.client("events", endpoint_url=moto_endpoint, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name=REGION)
    name = f"notifications-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=name)
    queues = {}
    for logical_id in RULES:
        properties = notification_rule(logical_id)
        queue_url = sqs.create_queue(QueueName=f"{name}-{logical_id}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name=f"{name}-{logical_id}",
            EventBusName=name,
            EventPattern=json.dumps(properties["EventPattern"]),
        )
        # The real target is the topic with an input transformer; the queue receives the
        # matched event itself, and render() applies the transformer.
        events.put_targets(
            Rule=f"{name}-{logical_id}",
            EventBusName=name,
            Targets=[{"Id": "queue", "Arn": queue_arn}],
        )
        queues[logical_id] = queue_url
    return {"events": events, "sqs": sqs, "name": name, "queues": queues}


def matching_rules(bus: dict[str, Any], event: dict[str, Any]) -> set[str]:
    """Put the event on the bus; the rules whose queue received it."""
    response = bus["events"].put_events(
        Entries=[
            {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Resources": event["resources"],
                "Detail": json.dumps(event["detail"]),
                "EventBusName": bus["name"],
            }
        ]
    )
    assert response["FailedEntryCount"] == 0
    matched = set()
    for logical_id, queue_url in bus["queues"].items():
        messages = bus["sqs"].receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        for message in messages.get("Messages", []):
            bus["sqs"].delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            assert json.loads(message["Body"])["detail"] == event["detail"]
            matched.add(logical_id)
    return matched


@pytest.mark.parametrize("kind", FAILURES)
def test_each_failure_reaches_exactly_its_rule(bus: dict[str, Any], kind: str) -> None:
    event, expected_rule = FAILURES[kind]
    assert matching_rules(bus, event) == {expected_rule}


@pytest.mark.parametrize("kind", NOT_NOTIFIED)
def test_no_success_or_foreign_event_reaches_any_rule(bus: dict[str, Any], kind: str) -> None:
    assert matching_rules(bus, NOT_NOTIFIED[kind]) == set()


@pytest.mark.parametrize("logical_id", RULES)
def test_every_rule_publishes_to_the_topic_through_an_input_transformer(logical_id: str) -> None:
    (target,) = notification_rule(logical_id)["Targets"]
    assert target["Arn"] == TOPIC_ARN
    # SNS targets use the topic policy; a role would break delivery to an encrypted topic.
    assert "RoleArn" not in target
    assert set(target["InputTransformer"]) == {"InputPathsMap", "InputTemplate"}


def message(kind: str) -> str:
    """The notification the failure's rule sends, rendered from the documented event."""
    event, logical_id = FAILURES[kind]
    (target,) = notification_rule(logical_id)["Targets"]
    return render(target["InputTransformer"], event)


def console(region_path: str) -> str:
    return f"https://{REGION}.console.aws.amazon.com/{region_path}"


def test_pipeline_failure_message_names_the_pipeline_and_links_the_execution() -> None:
    text = message("deploy pipeline failed")
    assert f"CodePipeline {DEPLOY_PIPELINE} failed" in text
    assert (
        console(f"codesuite/codepipeline/pipelines/{DEPLOY_PIPELINE}/executions/")
        + "12345678-1234-5678-abcd-12345678abcd/timeline"
    ) in text


def test_training_failure_message_names_the_commit_and_the_command_to_see_why() -> None:
    text = message("SageMaker pipeline failed")
    assert COMMIT_ID in text
    assert f"--pipeline-execution-arn {PIPELINE_ARN}/execution/p4jn9xou8a8s" in text


def test_approval_message_names_version_commit_and_the_approve_command() -> None:
    text = message("model waits for approval")
    assert "version 2" in text
    assert f"commit {COMMIT_ID}" in text
    assert "--model-approval-status Approved" in text
    assert f"model-package/{config.MODEL_PACKAGE_GROUP_NAME}/2" in text


def test_alarm_message_names_the_alarm_its_reason_and_both_roads_back() -> None:
    text = message("production rollback alarm")
    assert PROD_ERROR_ALARM in text
    assert "Threshold Crossed" in text
    assert "make rollback" in text
    assert console(f"cloudwatch/home?region={REGION}#alarmsV2:alarm/{PROD_ERROR_ALARM}") in text


def test_merge_failure_message_carries_the_functions_reason_and_the_retry_link() -> None:
    text = message("merge failed")
    assert "merge it into" in text
    assert f"{config.MAIN_BRANCH} was not moved" in text
    assert console(f"codesuite/codepipeline/pipelines/{DEPLOY_PIPELINE}/executions/") in text
