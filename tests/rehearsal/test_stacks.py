"""The CloudFormation stand-in for the stacks moto cannot host, the stack policies it applies,
and permissions boundaries in the rehearsal's IAM evaluation."""

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer
from rehearsal.cloudformation import Stack, load_template
from rehearsal.iam import BOUNDARY_PREFIX, Authorization, evaluate, parse_policy
from rehearsal.stacks import PipelineStacks, changes, stack_policy_refusal

LOCATION = ("123456789012", "eu-west-1")
QUEUE = {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q", "DelaySeconds": 0}}
GROUP = {
    "Type": "AWS::SageMaker::ModelPackageGroup",
    "Properties": {"ModelPackageGroupName": "models"},
}


def stack_of(resources: dict, name: str = "pipelines") -> Stack:
    return Stack(name, {"Resources": resources}, *LOCATION)


def test_changes_name_what_is_added_removed_modified_and_replaced():
    before = stack_of({"Queue": QUEUE, "Group": GROUP, "Gone": QUEUE})
    renamed = {**GROUP, "Properties": {"ModelPackageGroupName": "models-v2"}}
    slower = {**QUEUE, "Properties": {"QueueName": "q", "DelaySeconds": 5}}
    after = stack_of({"Queue": slower, "Group": renamed, "New": QUEUE})
    found = {change["LogicalResourceId"]: change for change in changes(before, after)}
    assert found["New"]["Action"] == "Add"
    assert found["Gone"]["Action"] == "Remove"
    # DelaySeconds is updatable; ModelPackageGroupName is create-only (registry schema).
    assert (found["Queue"]["Action"], found["Queue"]["Replacement"]) == ("Modify", "False")
    assert (found["Group"]["Action"], found["Group"]["Replacement"]) == ("Modify", "True")
    assert changes(before, before) == []


@pytest.fixture(scope="module")
def build_policy(default_bake):
    return json.loads((default_bake / "infra" / "stack-policies" / "model-build.json").read_text())


def test_the_build_stack_policy_keeps_the_bucket_and_the_group_but_lets_the_rest_change(
    build_policy,
):
    bucket_gone = [{"Action": "Remove", "LogicalResourceId": "ArtifactBucket"}]
    assert stack_policy_refusal(build_policy, bucket_gone)[0] == "ArtifactBucket"
    group_replaced = [
        {"Action": "Modify", "LogicalResourceId": "ModelPackageGroup", "Replacement": "True"}
    ]
    logical_id, reason = stack_policy_refusal(build_policy, group_replaced)
    assert logical_id == "ModelPackageGroup"
    assert "[Update:Replace]" in reason
    key_modified = [
        {"Action": "Modify", "LogicalResourceId": "ArtifactKey", "Replacement": "False"}
    ]
    project_replaced = [
        {"Action": "Modify", "LogicalResourceId": "BuildProject", "Replacement": "True"},
        {"Action": "Remove", "LogicalResourceId": "TrainLogGroup"},
    ]
    assert stack_policy_refusal(build_policy, key_modified) is None
    assert stack_policy_refusal(build_policy, project_replaced) is None
    # With a policy, what no statement allows is refused too.
    deny_only = {"Statement": [build_policy["Statement"][0]]}
    assert stack_policy_refusal(deny_only, key_modified) is not None
    assert stack_policy_refusal(None, bucket_gone) is None


def test_a_boundary_caps_what_the_roles_own_policies_allow():
    own = parse_policy(
        {"Statement": [{"Effect": "Allow", "Action": ["iam:*", "s3:GetObject"], "Resource": "*"}]},
        "Role",
        "own",
    )
    boundary = parse_policy(
        {
            "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::project/*"},
                {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::project/k"},
            ]
        },
        "Role",
        BOUNDARY_PREFIX + "arn:aws:iam::123456789012:policy/b",
    )
    statements = own + boundary

    def verdict(action, resource):
        allowed, _, reason = evaluate(Authorization(action, resource), statements)
        return allowed, reason

    assert verdict("s3:GetObject", "arn:aws:s3:::project/data.csv") == (True, "allowed")
    allowed, reason = verdict("iam:CreateUser", "arn:aws:iam::123456789012:user/x")
    assert not allowed
    assert reason.endswith("does not allow it")
    assert verdict("s3:GetObject", "arn:aws:s3:::project/k") == (
        False,
        "its permissions boundary arn:aws:iam::123456789012:policy/b denies it",
    )
    # The boundary grants nothing by itself.
    assert verdict("s3:PutObject", "arn:aws:s3:::project/x") == (
        False,
        "no statement of its policies allows it",
    )


@pytest.fixture
def stand_in():
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        region_name="eu-west-1",
        endpoint_url=moto_url,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    service = PipelineStacks(moto_url, s3).start()
    cloudformation = boto3.client(
        "cloudformation",
        region_name="eu-west-1",
        endpoint_url=service.url,
        aws_access_key_id="k",
        aws_secret_access_key="s",
    )
    try:
        yield service, cloudformation, s3
    finally:
        service.stop()
        moto.stop()


def _template(tmp_path, resources) -> tuple[str, dict]:
    path = tmp_path / "template.json"
    path.write_text(json.dumps({"Resources": resources}))
    return path.read_text(), load_template(path)


def test_a_change_set_reaches_the_hosted_stack_and_a_protected_one_rolls_back(
    stand_in, tmp_path, build_policy
):
    service, cloudformation, _ = stand_in
    body, template = _template(tmp_path, {"Queue": QUEUE, "ModelPackageGroup": GROUP})
    hosted = service.host(Stack("pipelines", template, *LOCATION), body, policy=build_policy)

    slower = {**QUEUE, "Properties": {"QueueName": "q", "DelaySeconds": 5}}
    new_body, _ = _template(tmp_path, {"Queue": slower, "ModelPackageGroup": GROUP})
    created = cloudformation.create_change_set(
        StackName="pipelines", ChangeSetName="one", TemplateBody=new_body, ChangeSetType="UPDATE"
    )
    described = cloudformation.describe_change_set(ChangeSetName=created["Id"])
    assert described["Status"] == "CREATE_COMPLETE"
    (change,) = described["Changes"]
    assert change["ResourceChange"]["LogicalResourceId"] == "Queue"
    cloudformation.execute_change_set(ChangeSetName=created["Id"], StackName="pipelines")
    status = cloudformation.describe_stacks(StackName="pipelines")["Stacks"][0]["StackStatus"]
    assert status == "UPDATE_COMPLETE"
    assert hosted.stack.template["Resources"]["Queue"]["Properties"]["DelaySeconds"] == 5
    assert cloudformation.get_template(StackName="pipelines")["TemplateBody"]

    # The same template again: no change set to execute.
    again = cloudformation.create_change_set(
        StackName="pipelines", ChangeSetName="two", TemplateBody=new_body
    )
    described = cloudformation.describe_change_set(ChangeSetName=again["Id"], StackName="pipelines")
    assert described["Status"] == "FAILED"
    assert "didn't contain changes" in described["StatusReason"]

    renamed = {**GROUP, "Properties": {"ModelPackageGroupName": "models-v2"}}
    replacing, _ = _template(tmp_path, {"Queue": slower, "ModelPackageGroup": renamed})
    refused = cloudformation.create_change_set(
        StackName="pipelines", ChangeSetName="three", TemplateBody=replacing
    )
    cloudformation.execute_change_set(ChangeSetName=refused["Id"], StackName="pipelines")
    stack = cloudformation.describe_stacks(StackName="pipelines")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    events = cloudformation.describe_stack_events(StackName="pipelines")["StackEvents"]
    failed = next(event for event in events if event["ResourceStatus"] == "UPDATE_FAILED")
    assert failed["LogicalResourceId"] == "ModelPackageGroup"
    assert "denied by stack policy" in failed["ResourceStatusReason"]
    props = hosted.stack.template["Resources"]["ModelPackageGroup"]["Properties"]
    assert props["ModelPackageGroupName"] == "models"
    policy = cloudformation.get_stack_policy(StackName="pipelines")["StackPolicyBody"]
    assert json.loads(policy) == build_policy


def test_other_stacks_are_moto_s_and_a_template_url_is_read_from_s3(stand_in, tmp_path):
    service, cloudformation, s3 = stand_in
    with pytest.raises(ClientError, match="does not exist"):
        cloudformation.describe_stacks(StackName="somebody-else")
    body, template = _template(tmp_path, {"Queue": QUEUE})
    service.host(Stack("pipelines", template, *LOCATION), body)
    s3.create_bucket(
        Bucket="templates", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    slower = {**QUEUE, "Properties": {"QueueName": "q", "DelaySeconds": 9}}
    s3.put_object(
        Bucket="templates", Key="t/x.json", Body=json.dumps({"Resources": {"Queue": slower}})
    )
    created = cloudformation.create_change_set(
        StackName="pipelines",
        ChangeSetName="by-url",
        TemplateURL="https://s3.eu-west-1.amazonaws.com/templates/t/x.json",
    )
    assert cloudformation.describe_change_set(ChangeSetName=created["Id"])["Changes"]
    with pytest.raises(ClientError, match="cannot read"):
        cloudformation.create_change_set(
            StackName="pipelines",
            ChangeSetName="missing",
            TemplateURL="https://s3.eu-west-1.amazonaws.com/templates/t/none.json",
        )
