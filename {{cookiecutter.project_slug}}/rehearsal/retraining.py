"""Retraining and notifications, as AWS would route them.

New data: S3 sends the artifact bucket's events to EventBridge (the bucket's
NotificationConfiguration); the template's new-data rule, on moto's default bus with an SQS
queue as its target, must pass a batch's ready marker and none of the batch's files, and its
inline starter function must start the model build pipeline with the batch's URI as a
pipeline variable.

Schedule: the template's EventBridge Scheduler schedule (when there is one) must target the
model build pipeline, templated, so a tick starts it with its default variables, and its role
must be allowed to.

Notifications: events in the shapes AWS documents, built from what the rehearsal did and the
failures it provoked, go to a moto bus holding every notification rule of both templates (the
rules whose targets carry an input transformer): each failure must reach exactly one rule and
no success any.
"""

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .cloudformation import Stack, resources_of_type

OBJECT_CREATED = "Object Created"
SQS_WAIT_SECONDS = 5.0
SQS_POLL_SECONDS = 0.1
ACCOUNT_ID = "123456789012"


class RetrainingFailed(Exception):
    """New data, the schedule or a notification rule did not behave; the message says how."""


@dataclass(frozen=True)
class DataLanding:
    """Where a batch lands and what marks it ready, read from the new-data rule."""

    rule_id: str
    prefix: str
    marker: str


def data_landing(stack: Stack) -> DataLanding:
    """The new-data rule: the one on S3 Object Created events, its key wildcard
    `<prefix>*/<marker>`."""
    for logical_id, rule in resources_of_type(stack.template, "AWS::Events::Rule").items():
        pattern = stack.resolve(rule["Properties"].get("EventPattern", {}))
        if OBJECT_CREATED not in pattern.get("detail-type", []):
            continue
        keys = pattern.get("detail", {}).get("object", {}).get("key", [])
        wildcards = [
            item["wildcard"] for item in keys if isinstance(item, dict) and "wildcard" in item
        ]
        if len(wildcards) == 1 and "*/" in wildcards[0]:
            prefix, _, marker = wildcards[0].partition("*/")
            return DataLanding(logical_id, prefix, marker)
        raise RetrainingFailed(
            f"rule {logical_id}: its object key pattern {keys} is not one wildcard"
            " <prefix>*/<marker>, which the rehearsal plays"
        )
    raise RetrainingFailed(f"{stack.name}: no EventBridge rule on S3 {OBJECT_CREATED!r} events")


def enable_bucket_events(s3: Any, stack: Stack, bucket: str) -> None:
    """What the bucket's EventBridgeEnabled sets, in the S3 API's shape."""
    for resource in resources_of_type(stack.template, "AWS::S3::Bucket").values():
        configuration = resource["Properties"].get("NotificationConfiguration", {})
        if configuration.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled") is True:
            s3.put_bucket_notification_configuration(
                Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
            )
            return
    raise RetrainingFailed(
        f"{stack.name}: no bucket sends its events to EventBridge (EventBridgeEnabled)"
    )


def watch_rule(events: Any, sqs: Any, stack: Stack, rule_id: str, name: str) -> str:
    """The rule on moto's default bus (where S3 sends), delivering to a new queue; its URL."""
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    pattern = stack.resolve(stack.resource(rule_id)["Properties"]["EventPattern"])
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "rehearsal", "Arn": queue_arn}])
    return queue_url


def land_batch(
    s3: Any, sqs: Any, queue_url: str, bucket: str, landing: DataLanding, batch: str, files: dict
) -> dict[str, Any]:
    """Upload the batch's files, then its marker; the one event the rule must deliver."""
    folder = f"{landing.prefix}{batch}"
    for name, body in files.items():
        s3.put_object(Bucket=bucket, Key=f"{folder}/{name}", Body=body)
    s3.put_object(Bucket=bucket, Key=f"{folder}/{landing.marker}", Body=b"")
    delivered = [json.loads(message["Body"]) for message in receive(sqs, queue_url)]
    keys = [event["detail"]["object"]["key"] for event in delivered]
    if keys != [f"{folder}/{landing.marker}"]:
        raise RetrainingFailed(
            f"rule {landing.rule_id} delivered {keys or 'nothing'} for {len(files)} files and"
            f" the marker of {folder}/: it must deliver the marker alone"
        )
    return delivered[0]


def receive(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """The messages that arrive in the queue within a short wait (deleted once read)."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + SQS_WAIT_SECONDS
    while time.monotonic() < deadline:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        for message in batch:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        messages.extend(batch)
        if messages and not batch:
            break
        if not batch:
            time.sleep(SQS_POLL_SECONDS)
    return messages


def pipeline_arn(region: str, name: str) -> str:
    """A CodePipeline pipeline's ARN in the rehearsal's account."""
    return f"arn:aws:codepipeline:{region}:{ACCOUNT_ID}:{name}"


def check_schedule(stack: Stack, pipeline_name: str, region: str) -> str | None:
    """The schedule's target is the build pipeline, templated, and its role may start it;
    what it is, or None when the template has no schedule."""
    schedules = resources_of_type(stack.template, "AWS::Scheduler::Schedule")
    if not schedules:
        return None
    (logical_id, schedule), *others = schedules.items()
    if others:
        raise RetrainingFailed(f"{stack.name}: more than one schedule; the rehearsal plays one")
    properties = schedule["Properties"]
    target = properties["Target"]
    arn = stack.resolve(target["Arn"])
    expected = pipeline_arn(region, pipeline_name)
    if arn != expected:
        raise RetrainingFailed(f"schedule {logical_id} targets {arn}, not {expected}")
    if "Input" in target:
        raise RetrainingFailed(
            f"schedule {logical_id} sends an Input: a tick must start {pipeline_name} with its"
            " default variables (the previous run's data)"
        )
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    statements = [
        statement
        for policy in stack.resource(role_id)["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    allowed = any(
        statement["Effect"] == "Allow"
        and "codepipeline:StartPipelineExecution" in _as_list(statement["Action"])
        and expected in [stack.resolve(item) for item in _as_list(statement["Resource"])]
        for statement in statements
    )
    if not allowed:
        raise RetrainingFailed(
            f"schedule {logical_id}: role {role_id} may not start {pipeline_name}"
        )
    return f"{properties['ScheduleExpression']} starts {pipeline_name} with its default variables"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- notification events


def envelope(detail_type: str, source: str, region: str, resources: list, detail: dict) -> dict:
    """A put_events entry for an event of an AWS service."""
    return {
        "Source": source,
        "DetailType": detail_type,
        "Resources": resources,
        "Detail": json.dumps(detail, default=str),
        "_region": region,
    }


def as_delivered(entry: dict[str, Any], account_id: str) -> dict[str, Any]:
    """The event a rule's target receives for a put_events entry (EventBridge's envelope)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": entry.get("_region", ""),
        "resources": entry.get("Resources", []),
        "detail": json.loads(entry["Detail"]),
    }


def pipeline_execution_event(
    region: str,
    pipeline: str,
    execution_id: str,
    state: str,
    trigger: str | None = "StartPipelineExecution",
) -> dict:
    """CodePipeline Pipeline Execution State Change (execution-trigger: the trigger type, as
    the CodePipeline user guide's event examples show it; None leaves it out)."""
    detail: dict[str, Any] = {"pipeline": pipeline, "execution-id": execution_id}
    if trigger is not None:
        detail["execution-trigger"] = {"trigger-type": trigger}
    detail.update({"state": state, "version": 1, "pipeline-execution-attempt": 1})
    return envelope(
        "CodePipeline Pipeline Execution State Change",
        "aws.codepipeline",
        region,
        [pipeline_arn(region, pipeline)],
        detail,
    )


def action_execution_event(
    region: str, pipeline: str, execution_id: str, stage: str, action: str, state: str
) -> dict:
    """CodePipeline Action Execution State Change."""
    return envelope(
        "CodePipeline Action Execution State Change",
        "aws.codepipeline",
        region,
        [pipeline_arn(region, pipeline)],
        {
            "pipeline": pipeline,
            "execution-id": execution_id,
            "stage": stage,
            "action": action,
            "state": state,
            "region": region,
            "type": {"owner": "AWS", "provider": "Lambda", "category": "Invoke", "version": "1"},
            "version": 1,
        },
    )


def sagemaker_execution_event(region: str, execution: dict[str, Any]) -> dict:
    """SageMaker Model Building Pipeline Execution Status Change, from DescribePipelineExecution."""
    return envelope(
        "SageMaker Model Building Pipeline Execution Status Change",
        "aws.sagemaker",
        region,
        [execution["PipelineArn"], execution["PipelineExecutionArn"]],
        {
            "pipelineExecutionDisplayName": execution.get("PipelineExecutionDisplayName", ""),
            "currentPipelineExecutionStatus": execution["PipelineExecutionStatus"],
            "previousPipelineExecutionStatus": "Executing",
            "pipelineExecutionDescription": execution.get("PipelineExecutionDescription", ""),
            "pipelineArn": execution["PipelineArn"],
            "pipelineExecutionArn": execution["PipelineExecutionArn"],
        },
    )


def model_package_event(region: str, package: dict[str, Any]) -> dict:
    """SageMaker Model Package State Change, from DescribeModelPackage."""
    detail = {
        key: package[key]
        for key in (
            "ModelPackageGroupName",
            "ModelPackageVersion",
            "ModelPackageArn",
            "ModelApprovalStatus",
            "ModelPackageStatus",
            "MetadataProperties",
            "CustomerMetadataProperties",
        )
        if key in package
    }
    return envelope(
        "SageMaker Model Package State Change",
        "aws.sagemaker",
        region,
        [package["ModelPackageArn"]],
        detail,
    )


def alarm_event(region: str, alarm: dict[str, Any]) -> dict:
    """CloudWatch Alarm State Change, from DescribeAlarms."""
    return envelope(
        "CloudWatch Alarm State Change",
        "aws.cloudwatch",
        region,
        [alarm["AlarmArn"]],
        {
            "alarmName": alarm["AlarmName"],
            "state": {"value": alarm["StateValue"], "reason": alarm.get("StateReason", "")},
            "previousState": {"value": "OK", "reason": ""},
            "configuration": {"description": alarm.get("AlarmDescription", "")},
        },
    )


def notification_rules(stacks: list[Stack]) -> dict[str, dict[str, Any]]:
    """Every rule whose targets transform the event into a message: name -> resolved pattern."""
    rules = {}
    for stack in stacks:
        for logical_id, rule in resources_of_type(stack.template, "AWS::Events::Rule").items():
            targets = rule["Properties"].get("Targets", [])
            if targets and all("InputTransformer" in target for target in targets):
                name = rule["Properties"].get("Name", logical_id)
                rules[name] = stack.resolve(rule["Properties"]["EventPattern"])
    return rules


def route(
    events: Any, sqs: Any, rules: dict[str, dict[str, Any]], entries: dict[str, dict], bus: str
) -> dict[str, list[str]]:
    """Put each event on a moto bus holding every rule; the rules each one reached."""
    events.create_event_bus(Name=bus)
    queues = {}
    for number, (name, pattern) in enumerate(rules.items()):
        queue_url = sqs.create_queue(QueueName=f"{bus}-{number}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(Name=f"{bus}-{number}", EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(
            Rule=f"{bus}-{number}",
            EventBusName=bus,
            Targets=[{"Id": "rehearsal", "Arn": queue_arn}],
        )
        queues[name] = queue_url
    reached = {}
    for label, entry in entries.items():
        request = {key: value for key, value in entry.items() if not key.startswith("_")}
        response = events.put_events(Entries=[{**request, "EventBusName": bus}])
        if response["FailedEntryCount"]:
            raise RetrainingFailed(f"moto refused the {label} event: {response['Entries']}")
        reached[label] = [name for name, queue_url in queues.items() if receive_now(sqs, queue_url)]
    return reached


def receive_now(sqs: Any, queue_url: str) -> bool:
    """Whether the queue holds a message now (emptied)."""
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bool(messages)
