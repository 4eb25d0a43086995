"""The deploy pipeline's approval rule on a moto event bus, with an SQS queue as its target.

It must pass an Approved state change of this project's model package group, and neither a
Rejected one nor an approval in another group.
"""

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import decode

from {{ cookiecutter.package_name }} import config

ROOT = Path(__file__).resolve().parents[2]
DETAIL_TYPE = "SageMaker Model Package State Change"
OTHER_GROUP = "another-project-models"


def resolve(node: Any, parameters: dict[str, Any]) -> Any:
    """Replace each {"Ref": <parameter>} with the parameter's default."""
    if isinstance(node, dict):
        if set(node) == {"Ref"} and node["Ref"] in parameters:
            return parameters[node["Ref"]]["Default"]
        return {key: resolve(value, parameters) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, parameters) for value in node]
    return node


def approval_rule_pattern() -> dict[str, Any]:
    """The ModelApprovedRule event pattern, its parameters resolved to their defaults."""
    document, problems = decode(str(ROOT / "infra" / "model-deploy-pipeline.yml"))
    assert not problems, problems
    pattern = document["Resources"]["ModelApprovedRule"]["Properties"]["EventPattern"]
    return resolve(pattern, document["Parameters"])


@pytest.fixture
def rule_queue(moto_endpoint: str) -> dict[str, Any]:
    """The rule on a fresh moto event bus, delivering to an SQS queue."""
    events = boto3.client("events", endpoint_url=moto_endpoint)
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint)
    # Unique on the shared moto server (an id() is reused once its object is freed).
    name = f"approval-rule-test-{uuid.uuid4().hex[:8]}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.create_event_bus(Name=name)
    events.put_rule(Name=name, EventBusName=name, EventPattern=json.dumps(approval_rule_pattern()))
    events.put_targets(Rule=name, EventBusName=name, Targets=[{"Id": "queue", "Arn": queue_arn}])
    return {"events": events, "sqs": sqs, "bus": name, "queue_url": queue_url}


def state_change(group: str, status: str) -> dict[str, str]:
    """A put_events entry like SageMaker's model package state change."""
    arn = f"arn:aws:sagemaker:{config.AWS_REGION}:123456789012:model-package/{group}/7"
    return {
        "Source": "aws.sagemaker",
        "DetailType": DETAIL_TYPE,
        "Resources": [arn],
        "Detail": json.dumps(
            {
                "ModelPackageGroupName": group,
                "ModelPackageVersion": 7,
                "ModelPackageArn": arn,
                "ModelApprovalStatus": status,
                "ModelPackageStatus": "Completed",
            }
        ),
    }


def delivered(rule_queue: dict[str, Any], entry: dict[str, str]) -> list[dict[str, Any]]:
    """Put one event on the bus; return the events the rule delivered to the queue."""
    response = rule_queue["events"].put_events(
        Entries=[{**entry, "EventBusName": rule_queue["bus"]}]
    )
    assert response["FailedEntryCount"] == 0
    messages = (
        rule_queue["sqs"]
        .receive_message(
            QueueUrl=rule_queue["queue_url"], MaxNumberOfMessages=10, WaitTimeSeconds=0
        )
        .get("Messages", [])
    )
    return [json.loads(message["Body"]) for message in messages]


def test_pattern_names_this_projects_group() -> None:
    assert approval_rule_pattern()["detail"]["ModelPackageGroupName"] == [
        config.MODEL_PACKAGE_GROUP_NAME
    ]


def test_an_approval_in_this_group_is_delivered(rule_queue: dict[str, Any]) -> None:
    (event,) = delivered(rule_queue, state_change(config.MODEL_PACKAGE_GROUP_NAME, "Approved"))
    assert event["detail-type"] == DETAIL_TYPE
    assert event["detail"]["ModelPackageArn"].endswith(f"/{config.MODEL_PACKAGE_GROUP_NAME}/7")


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval"])
def test_other_statuses_in_this_group_are_not_delivered(
    rule_queue: dict[str, Any], status: str
) -> None:
    assert delivered(rule_queue, state_change(config.MODEL_PACKAGE_GROUP_NAME, status)) == []


def test_an_approval_in_another_group_is_not_delivered(rule_queue: dict[str, Any]) -> None:
    assert delivered(rule_queue, state_change(OTHER_GROUP, "Approved")) == []


def test_another_source_with_the_same_detail_is_not_delivered(rule_queue: dict[str, Any]) -> None:
    entry = {**state_change(config.MODEL_PACKAGE_GROUP_NAME, "Approved"), "Source": "my.app"}
    assert delivered(rule_queue, entry) == []
