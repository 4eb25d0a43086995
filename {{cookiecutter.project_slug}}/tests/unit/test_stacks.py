"""The self-updating pipelines (stacks.py through the command line): check-roles on small
templates, update-stacks on moto's CloudFormation (and a Stubber where moto does not say what
AWS says: replacements, failed updates), stop-first-run on a Stubber of CodePipeline."""

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import cli, stacks
from {{ cookiecutter.__ops_package_name }}.errors import UserError

REGION = config.AWS_REGION
BUCKET = "stack-templates-test"
PREFIX = "pipelines"
ROLE_ARN = "arn:aws:iam::123456789012:role/test-stacks-role"
STACK = "test-build"
OTHER_STACK = "test-deploy"
TAGS = [{"Key": "project", "Value": "test"}]
# Everything may change, except that Queue is never replaced nor deleted.
PROTECT_QUEUE = {
    "Statement": [
        {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},
        {
            "Effect": "Deny",
            "Action": ["Update:Replace", "Update:Delete"],
            "Principal": "*",
            "Resource": "LogicalResourceId/Queue",
        },
    ]
}


def queue_template(wait: int = 0, queue_name: str = "!Ref Name", topic: bool = True) -> str:
    """A queue (named by a parameter) and a topic."""
    text = f"""
Parameters:
  Name:
    Type: String
    Default: default-name
  Timeout:
    Type: String
    Default: "30"
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: {queue_name}
      VisibilityTimeout: !Ref Timeout
      ReceiveMessageWaitTimeSeconds: {wait}
"""
    return text + ("  Topic:\n    Type: AWS::SNS::Topic\n" if topic else "")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of one command (argparse exits are caught too)."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exit_request:
        status = exit_request.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stacks, "CHANGE_SET_POLL_SECONDS", 0)
    monkeypatch.setattr(stacks, "STACK_POLL_SECONDS", 0)


@pytest.fixture
def cloud() -> Iterator[Any]:
    """moto's CloudFormation, with the template bucket (versioned, as the bootstrap's is)."""
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        location = {} if REGION == "us-east-1" else {"LocationConstraint": REGION}
        s3.create_bucket(
            Bucket=BUCKET, **({"CreateBucketConfiguration": location} if location else {})
        )
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield boto3.client("cloudformation", region_name=REGION)


def create_stack(cloudformation: Any, name: str, template: str, policy: Any = None) -> None:
    extra = {"StackPolicyBody": json.dumps(policy)} if policy else {}
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=template,
        Parameters=[
            {"ParameterKey": "Name", "ParameterValue": f"{name}-queue"},
            {"ParameterKey": "Timeout", "ParameterValue": "40"},
        ],
        Tags=TAGS,
        **extra,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def update_args(*stack_args: str, extra: tuple[str, ...] = ()) -> list[str]:
    argv = ["update-stacks"]
    for spec in stack_args:
        argv += ["--stack", spec]
    return [
        *argv,
        "--template-bucket",
        BUCKET,
        "--template-prefix",
        PREFIX,
        "--role-arn",
        ROLE_ARN,
        *extra,
    ]


def queue_attributes(name: str) -> dict[str, str]:
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]


def parameters(cloudformation: Any, name: str) -> dict[str, str]:
    (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    return {item["ParameterKey"]: item["ParameterValue"] for item in stack["Parameters"]}


def change_sets(cloudformation: Any, name: str) -> list[dict[str, Any]]:
    return cloudformation.list_change_sets(StackName=name)["Summaries"]


def template_keys() -> list[str]:
    s3 = boto3.client("s3", region_name=REGION)
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


# ---------------------------------------------------------------- update-stacks on moto


def test_a_changed_queue_property_reaches_the_stack_through_a_change_set(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_stack(cloud, STACK, queue_template(topic=False), PROTECT_QUEUE)
    new = write(tmp_path, "build.yml", queue_template(wait=5, topic=False))
    status, out, err = run(
        capsys, *update_args(f"{STACK}={new}", extra=("--restarts", f"{STACK}:Queue"))
    )
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{STACK}: updated (1 change: Modify Queue)"
    assert lines[1].startswith("update-stacks: the pipeline's definition changed (Queue):")
    assert "RestartExecutionOnUpdate" in lines[1]
    # The parameters kept their deployed values (UsePreviousValue), not the new defaults.
    assert parameters(cloud, STACK) == {"Name": f"{STACK}-queue", "Timeout": "40"}
    assert queue_attributes(f"{STACK}-queue")["ReceiveMessageWaitTimeSeconds"] == "5"
    assert "ReceiveMessageWaitTimeSeconds: 5" in cloud.get_template(StackName=STACK)["TemplateBody"]
    (stack,) = cloud.describe_stacks(StackName=STACK)["Stacks"]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert stack["Tags"] == TAGS
    digest = hashlib.sha256(new.read_bytes()).hexdigest()[:16]
    assert template_keys() == [f"{PREFIX}/{STACK}-{digest}.template"]


def test_a_parameter_override_is_passed_and_the_others_keep_their_values(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_stack(cloud, STACK, queue_template())
    new = write(tmp_path, "build.yml", queue_template())
    status, out, err = run(
        capsys,
        *update_args(f"{STACK}={new}", extra=("--parameter", f"{STACK}:Timeout=45")),
    )
    assert (status, err) == (0, "")
    assert out.startswith(f"{STACK}: updated (")
    assert "restart" not in out
    assert parameters(cloud, STACK) == {"Name": f"{STACK}-queue", "Timeout": "45"}
    assert queue_attributes(f"{STACK}-queue")["VisibilityTimeout"] == "45"


def test_no_changes_leaves_nothing_behind(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_stack(cloud, STACK, queue_template(), PROTECT_QUEUE)
    new = write(tmp_path, "build.yml", queue_template())
    status, out, err = run(
        capsys, *update_args(f"{STACK}={new}", extra=("--restarts", f"{STACK}:Queue"))
    )
    assert (status, out, err) == (0, f"{STACK}: no changes\n", "")
    assert change_sets(cloud, STACK) == []
    assert cloud.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_a_renamed_protected_queue_is_refused_before_any_change_set(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed = queue_template(queue_name="first-name")
    create_stack(cloud, STACK, deployed, PROTECT_QUEUE)
    # QueueName is create-only (a new queue); the wait time is not, and is not named.
    new = write(tmp_path, "build.yml", queue_template(wait=3, queue_name="second-name"))
    status, out, err = run(capsys, *update_args(f"{STACK}={new}"))
    assert (status, out) == (1, "")
    assert err == (
        f"update-stacks: {STACK}: Queue (AWS::SQS::Queue) would be replaced (QueueName"
        " changed), and the stack's policy keeps it: revert that change (replacing it loses"
        " what it holds); make bootstrap cannot do it either\n"
    )
    assert change_sets(cloud, STACK) == []
    assert template_keys() == []
    assert cloud.get_template(StackName=STACK)["TemplateBody"] == deployed


def test_a_removed_protected_resource_is_refused_and_no_stack_is_touched(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_stack(cloud, STACK, queue_template())
    topic_policy = {
        "Statement": [
            {"Effect": "Allow", "Action": "Update:*", "Principal": "*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "Update:Delete",
                "Principal": "*",
                "Resource": "*",
                "Condition": {"StringLike": {"ResourceType": ["AWS::SNS::*"]}},
            },
        ]
    }
    create_stack(cloud, OTHER_STACK, queue_template(), topic_policy)
    build = write(tmp_path, "build.yml", queue_template(wait=2))
    deploy_template = write(tmp_path, "deploy.yml", queue_template(topic=False))
    status, _, err = run(
        capsys, *update_args(f"{STACK}={build}", f"{OTHER_STACK}={deploy_template}")
    )
    assert status == 1
    assert err.splitlines() == [
        f"update-stacks: {OTHER_STACK}: Topic (AWS::SNS::Topic) would be deleted, and the stack's"
        " policy keeps it: revert that change (deleting it loses what it holds); make bootstrap"
        " cannot do it either"
    ]
    # The first stack, whose change was allowed, got no change set either.
    assert change_sets(cloud, STACK) == change_sets(cloud, OTHER_STACK) == []
    assert queue_attributes(f"{STACK}-queue")["ReceiveMessageWaitTimeSeconds"] == "0"


def test_a_missing_stack_is_a_user_error(
    cloud: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = write(tmp_path, "build.yml", queue_template())
    status, _, err = run(capsys, *update_args(f"{STACK}={new}"))
    assert status == 2
    assert err == f"update-stacks: error: stack {STACK} does not exist: run make bootstrap first\n"


@pytest.mark.parametrize(
    ("stack_spec", "extra", "fragment"),
    [
        ("no-equals-sign", (), "is not <stack name>=<template path>"),
        (f"{STACK}=missing.yml", (), "missing.yml not found"),
        (f"{STACK}=NEW", ("--parameter", "Timeout=45"), "is not <stack name>:<Key>=<Value>"),
        (f"{STACK}=NEW", ("--parameter", f"{STACK}:Timeout"), "is not <stack name>:<Key>=<Value>"),
        (f"{STACK}=NEW", ("--parameter", "other:Timeout=4"), "which no --stack gives"),
        (f"{STACK}=NEW", ("--parameter", f"{STACK}:Size=4"), "declares no parameter Size"),
        (f"{STACK}=NEW", ("--restarts", "Pipeline"), "is not <stack name>:<logical id>"),
        (f"{STACK}=BAD", (), "has no Resources mapping"),
    ],
)
def test_argument_errors_are_user_errors_before_any_aws_call(
    stack_spec: str,
    extra: tuple[str, ...],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError("an AWS client was created")

    monkeypatch.setattr(boto3, "client", no_client)
    monkeypatch.chdir(tmp_path)
    new = write(tmp_path, "new.yml", queue_template())
    bad = write(tmp_path, "bad.yml", "Parameters: {}\n")
    spec = stack_spec.replace("NEW", str(new)).replace("BAD", str(bad))
    status, out, err = run(capsys, *update_args(spec, extra=extra))
    assert (status, out) == (2, "")
    assert err.startswith("update-stacks: error: ") and err.count("\n") == 1
    assert fragment in err


# ---------------------------------------------------------------- update-stacks on a Stubber

DEPLOYED = queue_template(queue_name="kept-name")
STACK_ID = f"arn:aws:cloudformation:{REGION}:123456789012:stack/{STACK}/1"
OTHER_ID = f"arn:aws:cloudformation:{REGION}:123456789012:stack/{OTHER_STACK}/2"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def stack_description(name: str, stack_id: str, status: str = "UPDATE_COMPLETE") -> dict[str, Any]:
    return {
        "Stacks": [
            {
                "StackName": name,
                "StackId": stack_id,
                "CreationTime": NOW,
                "StackStatus": status,
                "Parameters": [{"ParameterKey": "Name", "ParameterValue": "kept-name"}],
                "Tags": TAGS,
            }
        ]
    }


def stub_reading(cf_stub: Stubber, name: str, stack_id: str, policy: Any) -> None:
    cf_stub.add_response("describe_stacks", stack_description(name, stack_id), {"StackName": name})
    cf_stub.add_response(
        "get_template",
        {"TemplateBody": DEPLOYED},
        {"StackName": name, "TemplateStage": "Original"},
    )
    cf_stub.add_response(
        "get_stack_policy",
        {"StackPolicyBody": json.dumps(policy)} if policy else {},
        {"StackName": name},
    )


def stub_change_set(
    cf_stub: Stubber,
    s3_stub: Stubber,
    s3: Any,
    name: str,
    path: Path,
    changes: list[dict[str, Any]],
) -> str:
    """The upload, the change set (checking what it is created with) and its description."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    key = f"{PREFIX}/{name}-{digest}.template"
    s3_stub.add_response(
        "put_object", {"VersionId": "v1"}, {"Bucket": BUCKET, "Key": key, "Body": path.read_bytes()}
    )
    change_set_id = f"arn:aws:cloudformation:{REGION}:123456789012:changeSet/update-{name}/1"
    cf_stub.add_response(
        "create_change_set",
        {"Id": change_set_id, "StackId": "id"},
        {
            "StackName": name,
            "ChangeSetName": ANY,
            "TemplateURL": f"{s3.meta.endpoint_url}/{BUCKET}/{key}?versionId=v1",
            "Parameters": [{"ParameterKey": "Name", "UsePreviousValue": True}],
            "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
            "RoleARN": ROLE_ARN,
            "ChangeSetType": "UPDATE",
            "Tags": TAGS,
        },
    )
    cf_stub.add_response(
        "describe_change_set",
        {"Status": "CREATE_PENDING"},
        {"ChangeSetName": change_set_id, "StackName": name},
    )
    cf_stub.add_response(
        "describe_change_set",
        {
            "Status": "CREATE_COMPLETE",
            "Changes": [{"Type": "Resource", "ResourceChange": c} for c in changes],
        },
        {"ChangeSetName": change_set_id, "StackName": name},
    )
    return change_set_id


def stubbed_clients() -> tuple[Any, Any]:
    return (
        boto3.client("cloudformation", region_name=REGION),
        boto3.client("s3", region_name=REGION),
    )


MODIFY_QUEUE = {"Action": "Modify", "LogicalResourceId": "Queue", "ResourceType": "AWS::SQS::Queue"}


def test_a_change_set_replacing_a_protected_queue_is_refused_and_deleted(tmp_path: Path) -> None:
    cloudformation, s3 = stubbed_clients()
    # Only the wait time changes in the template (not create-only); AWS says it replaces.
    new = write(tmp_path, "build.yml", queue_template(wait=1, queue_name="kept-name"))
    replacing = {
        **MODIFY_QUEUE,
        "Replacement": "True",
        "Details": [
            {
                "Target": {
                    "Attribute": "Properties",
                    "Name": "ReceiveMessageWaitTimeSeconds",
                    "RequiresRecreation": "Always",
                }
            },
            {
                "Target": {
                    "Attribute": "Properties",
                    "Name": "VisibilityTimeout",
                    "RequiresRecreation": "Never",
                }
            },
        ],
    }
    updates, _ = stacks.parse_updates([f"{STACK}={new}"], [], [])
    with Stubber(cloudformation) as cf_stub, Stubber(s3) as s3_stub:
        stub_reading(cf_stub, STACK, STACK_ID, PROTECT_QUEUE)
        change_set_id = stub_change_set(cf_stub, s3_stub, s3, STACK, new, [replacing])
        cf_stub.add_response(
            "delete_change_set", {}, {"ChangeSetName": change_set_id, "StackName": STACK}
        )
        with pytest.raises(stacks.Refused) as refused:
            stacks.update_stacks(cloudformation, s3, updates, BUCKET, PREFIX, ROLE_ARN)
        cf_stub.assert_no_pending_responses()
        s3_stub.assert_no_pending_responses()
    assert refused.value.args[0] == [
        f"update-stacks: {STACK}: Queue (AWS::SQS::Queue) would be replaced"
        " (ReceiveMessageWaitTimeSeconds changed), and the stack's policy keeps it: revert that"
        " change (replacing it loses what it holds); make bootstrap cannot do it either"
    ]


def test_a_failed_update_reports_the_failed_event_and_drops_the_next_change_set(
    tmp_path: Path,
) -> None:
    cloudformation, s3 = stubbed_clients()
    build = write(tmp_path, "build.yml", queue_template(wait=1, queue_name="kept-name"))
    deploy_template = write(tmp_path, "deploy.yml", queue_template(wait=2, queue_name="kept-name"))
    updates, _ = stacks.parse_updates(
        [f"{STACK}={build}", f"{OTHER_STACK}={deploy_template}"], [], []
    )

    def event(logical_id: str, status: str, reason: str = "") -> dict[str, Any]:
        kind = "AWS::CloudFormation::Stack" if logical_id == STACK else "AWS::SQS::Queue"
        return {
            "StackId": STACK_ID,
            "EventId": f"{logical_id}-{status}",
            "StackName": STACK,
            "LogicalResourceId": logical_id,
            "ResourceType": kind,
            "Timestamp": NOW,
            "ResourceStatus": status,
            **({"ResourceStatusReason": reason} if reason else {}),
        }

    events = [  # newest first, as CloudFormation lists them
        event(STACK, "UPDATE_ROLLBACK_COMPLETE"),
        event("Queue", "UPDATE_FAILED", "Resource update cancelled"),
        event(STACK, "UPDATE_ROLLBACK_IN_PROGRESS", "The following resource(s) failed: [Queue]"),
        event("Queue", "UPDATE_FAILED", "ReceiveMessageWaitTimeSeconds must be at most 20"),
        event("Queue", "UPDATE_IN_PROGRESS"),
        event(STACK, "UPDATE_IN_PROGRESS", "User Initiated"),
        event("Queue", "CREATE_FAILED", "an older failure, before this update"),
    ]
    with Stubber(cloudformation) as cf_stub, Stubber(s3) as s3_stub:
        stub_reading(cf_stub, STACK, STACK_ID, None)
        stub_reading(cf_stub, OTHER_STACK, OTHER_ID, None)
        first = stub_change_set(cf_stub, s3_stub, s3, STACK, build, [MODIFY_QUEUE])
        second = stub_change_set(cf_stub, s3_stub, s3, OTHER_STACK, deploy_template, [MODIFY_QUEUE])
        cf_stub.add_response("execute_change_set", {}, {"ChangeSetName": first, "StackName": STACK})
        for status in (
            "UPDATE_IN_PROGRESS",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "UPDATE_ROLLBACK_COMPLETE",
        ):
            cf_stub.add_response(
                "describe_stacks", stack_description(STACK, STACK_ID, status), {"StackName": STACK}
            )
        cf_stub.add_response("describe_stack_events", {"StackEvents": events}, {"StackName": STACK})
        cf_stub.add_response(
            "delete_change_set", {}, {"ChangeSetName": second, "StackName": OTHER_STACK}
        )
        echoed: list[str] = []
        with pytest.raises(stacks.UpdateFailed) as failure:
            stacks.update_stacks(
                cloudformation, s3, updates, BUCKET, PREFIX, ROLE_ARN, echo=echoed.append
            )
        cf_stub.assert_no_pending_responses()
        s3_stub.assert_no_pending_responses()
    assert str(failure.value) == (
        f"{STACK} did not update (UPDATE_ROLLBACK_COMPLETE): Queue: ReceiveMessageWaitTimeSeconds"
        " must be at most 20; CloudFormation rolled it back, it runs what it ran before"
    )
    assert echoed == []


def test_a_refused_call_is_one_line_and_deletes_the_change_sets_made(
    tmp_path: Path,
) -> None:
    cloudformation, s3 = stubbed_clients()
    build = write(tmp_path, "build.yml", queue_template(wait=1, queue_name="kept-name"))
    deploy_template = write(tmp_path, "deploy.yml", queue_template(wait=2, queue_name="kept-name"))
    updates, _ = stacks.parse_updates(
        [f"{STACK}={build}", f"{OTHER_STACK}={deploy_template}"], [], []
    )
    with Stubber(cloudformation) as cf_stub, Stubber(s3) as s3_stub:
        stub_reading(cf_stub, STACK, STACK_ID, None)
        stub_reading(cf_stub, OTHER_STACK, OTHER_ID, None)
        first = stub_change_set(cf_stub, s3_stub, s3, STACK, build, [MODIFY_QUEUE])
        s3_stub.add_client_error("put_object", "AccessDenied", "Access Denied")
        cf_stub.add_response("delete_change_set", {}, {"ChangeSetName": first, "StackName": STACK})
        with pytest.raises(stacks.UpdateFailed) as failure:
            stacks.update_stacks(cloudformation, s3, updates, BUCKET, PREFIX, ROLE_ARN)
        cf_stub.assert_no_pending_responses()
    assert str(failure.value) == "AWS refused PutObject: Access Denied; no stack was changed"


# ---------------------------------------------------------------- check-roles

BOUNDARY = """
Resources:
  Boundary:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      ManagedPolicyName: test-boundary
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: [sagemaker:*, logs:Create*, iam:PassRole]
            Resource: "*"
          - Effect: Allow
            Action: s3:GetObject
            Resource: !Sub arn:${AWS::Partition}:s3:::bucket/*
          - Effect: Deny
            Action: "*"
            Resource: "*"
            Condition: {Bool: {aws:SecureTransport: "false"}}
  NotAPolicy:
    Type: AWS::SQS::Queue
"""
WITH_BOUNDARY = "!Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/test-boundary"


def roles_template(
    actions: str = "[sagemaker:CreateTrainingJob, sagemaker:Describe*]",
    boundary: str = WITH_BOUNDARY,
    attached_actions: str = "s3:GetObject",
    managed_actions: str = "logs:CreateLogStream",
    action_key: str = "Action",
) -> str:
    """A role with an inline policy, a policy that names it and a managed one it attaches."""
    text = """
Resources:
  TrainRole:
    Type: AWS::IAM::Role
    Properties:
      AssumeRolePolicyDocument:
        Statement:
          - Effect: Allow
            Principal: {Service: sagemaker.amazonaws.com}
            Action: sts:AssumeRole
      PermissionsBoundary: BOUNDARY
      ManagedPolicyArns:
        - !Ref LogsPolicy
      Policies:
        - PolicyName: train
          PolicyDocument:
            Statement:
              - Sid: Train
                Effect: Allow
                ACTION_KEY: ACTIONS
                Resource: "*"
              - Effect: Deny
                Action: iam:*
                Resource: "*"
  ReadPolicy:
    Type: AWS::IAM::Policy
    Properties:
      PolicyName: read
      Roles: [!Ref TrainRole]
      PolicyDocument:
        Statement:
          - Effect: Allow
            Action: ATTACHED_ACTIONS
            Resource: !Sub arn:${AWS::Partition}:s3:::bucket/*
  LogsPolicy:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Sid: Logs
            Effect: Allow
            Action: MANAGED_ACTIONS
            Resource: !GetAtt TrainRole.Arn
"""
    for name, value in [
        ("ATTACHED_ACTIONS", attached_actions),
        ("MANAGED_ACTIONS", managed_actions),
        ("ACTION_KEY", action_key),
        ("ACTIONS", actions),
        ("BOUNDARY", boundary),
    ]:
        text = text.replace(name, value)
    return text


JSON_ROLE = {
    "Resources": {
        "DeployRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "PermissionsBoundary": {
                    "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/test-boundary"
                },
                "Policies": [
                    {
                        "PolicyName": "deploy",
                        "PolicyDocument": {
                            "Statement": {
                                "Effect": "Allow",
                                "Action": "iam:PassRole",
                                "Resource": "*",
                            }
                        },
                    }
                ],
            },
        }
    }
}


def check_roles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *templates: str
) -> tuple[int, str, str]:
    boundary = write(tmp_path, "bootstrap.yml", BOUNDARY)
    paths = [str(write(tmp_path, f"t{n}.yml", text)) for n, text in enumerate(templates)]
    return run(capsys, "check-roles", "--boundary", f"{boundary}:Boundary", *paths)


def test_check_roles_accepts_roles_within_the_boundary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = check_roles(tmp_path, capsys, roles_template(), json.dumps(JSON_ROLE))
    assert (status, err) == (0, "")
    assert out == (
        "check-roles: 2 roles, 4 statements in 2 templates are within the permissions boundary"
        " test-boundary\n"
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            roles_template(actions="[sagemaker:CreateTrainingJob, iam:*]"),
            "t0.yml: TrainRole: policy train statement Train: iam:* is outside the permissions"
            " boundary; a role gets at most what the permissions boundary test-boundary allows"
            " (BOOTSTRAP); widen the boundary there and run make bootstrap, or remove the action",
        ),
        (
            roles_template(actions='"*"'),
            "t0.yml: TrainRole: policy train statement Train: * is outside",
        ),
        (
            roles_template(attached_actions="s3:PutObject"),
            "t0.yml: TrainRole: policy ReadPolicy statement #1: s3:PutObject is outside",
        ),
        (
            roles_template(managed_actions="logs:PutLogEvents"),
            "t0.yml: TrainRole: policy LogsPolicy statement Logs: logs:PutLogEvents is outside",
        ),
        (
            roles_template(
                boundary="!Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/other"
            ),
            "t0.yml: TrainRole has no permissions boundary test-boundary (PermissionsBoundary:"
            " !Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/test-boundary)",
        ),
        (
            roles_template(action_key="NotAction", actions="iam:*"),
            "t0.yml: TrainRole: policy train statement Train grants every action but iam:*; list"
            " the actions",
        ),
    ],
)
def test_check_roles_refuses_what_the_boundary_would_take_away(
    template: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = check_roles(tmp_path, capsys, template)
    assert (status, out) == (1, "")
    (line,) = err.splitlines()
    expected = expected.replace("BOOTSTRAP", str(tmp_path / "bootstrap.yml"))
    assert line.startswith(f"check-roles: {tmp_path}/{expected}")


@pytest.mark.parametrize(
    ("boundary_suffix", "template", "fragment"),
    [
        ("", roles_template(), "is not <bootstrap template>:<logical id"),
        (":Missing", roles_template(), "has no resource Missing"),
        (":NotAPolicy", roles_template(), "is a AWS::SQS::Queue, not an AWS::IAM::ManagedPolicy"),
        (":Boundary", "Resources: [unclosed", "t0.yml is not a CloudFormation template"),
        (":Boundary", "Resources: [Queue]\n", "t0.yml has no Resources mapping"),
    ],
)
def test_check_roles_user_errors(
    boundary_suffix: str,
    template: str,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    boundary = write(tmp_path, "bootstrap.yml", BOUNDARY)
    path = write(tmp_path, "t0.yml", template)
    status, out, err = run(
        capsys, "check-roles", "--boundary", f"{boundary}{boundary_suffix}", str(path)
    )
    assert (status, out) == (2, "")
    assert err.startswith("check-roles: error: ") and err.count("\n") == 1
    assert fragment in err


@pytest.mark.parametrize(
    ("pattern", "action", "covered"),
    [
        ("sagemaker:*", "sagemaker:Create*", True),
        ("SageMaker:create*", "sagemaker:CreateModel", True),
        ("iam:PassRole", "iam:*", False),
        ("s3:Get?bject", "s3:GetObject", True),
        ("s3:Get?", "s3:Get*", False),
        ("*", "*", True),
        ("*:*", "*", False),
    ],
)
def test_boundary_coverage_takes_the_roles_wildcards_literally(
    pattern: str, action: str, covered: bool
) -> None:
    assert stacks.Boundary(Path("b.yml"), "b", (pattern,)).covers(action) is covered


# ---------------------------------------------------------------- stop-first-run


def summary(execution_id: str, status: str, trigger: str) -> dict[str, Any]:
    return {
        "pipelineExecutionId": execution_id,
        "status": status,
        "trigger": {"triggerType": trigger},
    }


def test_stop_first_run_stops_only_the_run_creation_started(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("codepipeline", region_name=REGION)
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: client)
    summaries = [
        summary("started-by-push", "InProgress", "CloudWatchEvent"),
        summary("first", "InProgress", "CreatePipeline"),
        summary("old", "Succeeded", "CreatePipeline"),
        summary("ending", "InProgress", "CreatePipeline"),
    ]
    with Stubber(client) as stub:
        stub.add_response(
            "list_pipeline_executions",
            {"pipelineExecutionSummaries": summaries},
            {"pipelineName": "p", "maxResults": 20},
        )
        for execution_id in ("first", "ending"):
            expected = {
                "pipelineName": "p",
                "pipelineExecutionId": execution_id,
                "abandon": True,
                "reason": "make bootstrap starts the first build itself",
            }
            if execution_id == "first":
                stub.add_response(
                    "stop_pipeline_execution", {"pipelineExecutionId": "first"}, expected
                )
            else:
                stub.add_client_error(
                    "stop_pipeline_execution",
                    "DuplicatedStopRequestException",
                    expected_params=expected,
                )
        status, out, err = run(capsys, "stop-first-run", "--pipeline", "p")
        stub.assert_no_pending_responses()
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "stop-first-run: stopped first (started when CodePipeline created p)",
        "stop-first-run: ending is already ending (started when CodePipeline created p)",
    ]


def test_stop_first_run_with_nothing_to_stop_and_a_missing_pipeline() -> None:
    client = boto3.client("codepipeline", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_response(
            "list_pipeline_executions",
            {"pipelineExecutionSummaries": [summary("by-push", "InProgress", "WebhookV2")]},
        )
        stub.add_client_error("list_pipeline_executions", "PipelineNotFoundException")
        assert stacks.stop_first_run(client, "p") == ["stop-first-run: no run of p to stop"]
        with pytest.raises(UserError, match="pipeline gone does not exist"):
            stacks.stop_first_run(client, "gone")
        stub.assert_no_pending_responses()
