"""From an approved model package to a started deploy pipeline, as AWS would do it.

The package is approved in moto (as a person would in the Model Registry); its "Model
Package State Change" event goes to a moto event bus where the deploy template's approval
rule, with an SQS queue as its target, must pass it (and not the Rejected one); then the
rule's real target, the template's inline starter function, runs on the delivered event with
a stubbed CodePipeline client, and must start the deploy pipeline at the package's commit.
"""

import contextlib
import io
import json
import os
import time
from typing import Any

import botocore.session

from .cloudformation import Stack, resources_of_type
from .merge import LambdaContext, StubbedClient
from .retraining import receive

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"
APPROVED = "Approved"
REJECTED = "Rejected"
PENDING_MANUAL_APPROVAL = "PendingManualApproval"


class ApprovalFailed(Exception):
    """The approval did not lead to a deploy; the message says where it broke."""


def approve(sagemaker: Any, package_arn: str) -> str:
    """Approve a pending package; how it came to be Approved."""
    status = sagemaker.describe_model_package(ModelPackageName=package_arn)["ModelApprovalStatus"]
    if status == PENDING_MANUAL_APPROVAL:
        sagemaker.update_model_package(
            ModelPackageArn=package_arn,
            ModelApprovalStatus=APPROVED,
            ApprovalDescription="Approved by make rehearse",
        )
        return "approved, as a person would in the Model Registry"
    if status == APPROVED:
        return "Approved at registration (model_approval auto)"
    raise ApprovalFailed(f"package {package_arn} is {status}: it cannot be approved")


def approval_rule(stack: Stack) -> tuple[str, dict[str, Any]]:
    """(logical id, resource) of the rule on SageMaker model package state changes."""
    for logical_id, rule in resources_of_type(stack.template, "AWS::Events::Rule").items():
        pattern = stack.resolve(rule["Properties"].get("EventPattern", {}))
        if EVENT_DETAIL_TYPE in pattern.get("detail-type", []):
            return logical_id, rule
    raise ApprovalFailed(f"{stack.name}: no EventBridge rule on {EVENT_DETAIL_TYPE!r} events")


def state_change_detail(package: dict[str, Any], status: str) -> dict[str, Any]:
    """The detail of the event SageMaker sends when a package's approval status changes."""
    return {
        "ModelPackageGroupName": package["ModelPackageGroupName"],
        "ModelPackageVersion": package.get("ModelPackageVersion"),
        "ModelPackageArn": package["ModelPackageArn"],
        "ModelPackageName": package["ModelPackageArn"].split("/", 1)[-1],
        "CreationTime": int(package["CreationTime"].timestamp() * 1000),
        "LastModifiedTime": int(time.time() * 1000),
        "ModelApprovalStatus": status,
        "ModelPackageStatus": package.get("ModelPackageStatus", "Completed"),
    }


def deliver_state_change(
    events: Any, sqs: Any, stack: Stack, rule_id: str, package: dict[str, Any], bus: str
) -> dict[str, Any]:
    """Put the Rejected then the Approved state change of the package on a moto bus where
    the rule targets an SQS queue; the Approved event as delivered (ApprovalFailed unless
    exactly that one passes)."""
    queue_url = sqs.create_queue(QueueName=f"{bus}-approvals")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.create_event_bus(Name=bus)
    pattern = stack.resolve(stack.resource(rule_id)["Properties"]["EventPattern"])
    events.put_rule(Name=rule_id, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(
        Rule=rule_id, EventBusName=bus, Targets=[{"Id": "rehearsal", "Arn": queue_arn}]
    )
    for status in (REJECTED, APPROVED):
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": json.dumps(state_change_detail(package, status)),
            "Resources": [package["ModelPackageArn"]],
            "EventBusName": bus,
        }
        events.put_events(Entries=[entry])
    delivered = [json.loads(message["Body"]) for message in receive(sqs, queue_url)]
    statuses = [event["detail"]["ModelApprovalStatus"] for event in delivered]
    if statuses != [APPROVED]:
        raise ApprovalFailed(
            f"rule {rule_id} passed {statuses or 'neither'} of the Rejected and Approved state"
            " changes: it must pass the Approved one only"
        )
    return delivered[0]


def rule_target_role(stack: Stack, rule_id: str) -> str:
    """The role ARN of the function the rule's first target is (what its calls run as)."""
    targets = stack.resource(rule_id)["Properties"].get("Targets", [])
    arn = targets[0].get("Arn") if targets else None
    function_id = arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else ""
    if stack.template["Resources"].get(function_id, {}).get("Type") != "AWS::Lambda::Function":
        raise ApprovalFailed(f"rule {rule_id}'s target is not a Lambda function of the template")
    return str(stack.resolve(stack.resource(function_id)["Properties"]["Role"]))


def start_deploy(
    stack: Stack,
    rule_id: str,
    event: dict[str, Any],
    pipeline_name: str,
    region: str,
    expected_starts: int = 1,
) -> tuple[list[dict[str, Any]], str]:
    """Run the rule's target (an inline Lambda function of the template) on the event.

    Its SageMaker and DynamoDB calls go to moto; its CodePipeline client is stubbed and
    records the requests. Returns (StartPipelineExecution requests, the function's output);
    ApprovalFailed unless it made expected_starts of them.
    """
    targets = stack.resource(rule_id)["Properties"].get("Targets", [])
    arn = targets[0].get("Arn") if targets else None
    function_id = arn["Fn::GetAtt"][0] if isinstance(arn, dict) and "Fn::GetAtt" in arn else ""
    resource = stack.template["Resources"].get(function_id, {})
    if resource.get("Type") != "AWS::Lambda::Function" or "ZipFile" not in resource.get(
        "Properties", {}
    ).get("Code", {}):
        raise ApprovalFailed(
            f"rule {rule_id}'s target is not an inline Lambda function of the template, which"
            " is what the rehearsal plays"
        )
    function = stack.resolve(resource["Properties"])
    requests: list[dict[str, Any]] = []

    def codepipeline(operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """CodePipeline answering every request it records."""
        requests.append({"operation": operation, **params})
        return {"pipelineExecutionId": "rehearsal-" + str(len(requests))}

    stub = StubbedClient(botocore.session.get_session(), "codepipeline", region, codepipeline)
    variables = {
        key: str(value)
        for key, value in function.get("Environment", {}).get("Variables", {}).items()
    }
    output = io.StringIO()
    saved = dict(os.environ)
    os.environ.update(variables)
    try:
        with contextlib.redirect_stdout(output):
            namespace: dict[str, Any] = {"__name__": f"rehearsal_{function_id}"}
            code = compile(function["Code"]["ZipFile"], f"{stack.name}:{function_id}", "exec")
            exec(code, namespace)
            for name, value in list(namespace.items()):
                model = getattr(getattr(value, "meta", None), "service_model", None)
                if model is not None and model.service_name == "codepipeline":
                    namespace[name] = stub.client
            handler = namespace[function["Handler"].rpartition(".")[2]]
            handler(event, LambdaContext(function_id, int(function.get("Timeout", 3))))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    starts = [
        request
        for request in requests
        if request["operation"] == "StartPipelineExecution" and request.get("name") == pipeline_name
    ]
    if len(starts) != expected_starts:
        raise ApprovalFailed(
            f"{function_id} made {len(starts)} StartPipelineExecution calls for {pipeline_name},"
            f" not {expected_starts}"
        )
    return starts, output.getvalue()


def started_commit(start: dict[str, Any]) -> str:
    """The COMMIT_ID source revision of a StartPipelineExecution request ("" if none)."""
    return next(
        (
            revision["revisionValue"]
            for revision in start.get("sourceRevisions", [])
            if revision.get("revisionType") == "COMMIT_ID"
        ),
        "",
    )
