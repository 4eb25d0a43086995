"""The rehearsal's IAM evaluator: allowed and denied requests, ARNs computed from requests,
and the policies read from the templates of the default and GitHub bakes."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import botocore.session
import pytest
from botocore.stub import Stubber
from rehearsal.cloudformation import Stack, load_template
from rehearsal.iam import (
    RULES,
    Account,
    Authorization,
    Build,
    Call,
    Checker,
    IamError,
    Recorder,
    StackDeploys,
    authorizations,
    decide,
    evaluate,
    handler_authorizations,
    hook_environment,
    parse_policy,
    parse_resource_policy,
    profile_role,
    read_policies,
    role_policies,
    write_policies,
)

ACCOUNT = Account("123456789012", "eu-west-1")
BUCKET_ARN = "arn:aws:s3:::artifacts"
KEY_ARN = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE_ARN = "arn:aws:iam::123456789012:role/deploy"
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:github-token-AbCdEf"
CONNECTION_ARN = (
    "arn:aws:codeconnections:eu-west-1:123456789012:connection/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
)
LOCATION = (ACCOUNT.account_id, ACCOUNT.region)


def statements(*items):
    """Statements of one policy document made of items."""
    return parse_policy({"Version": "2012-10-17", "Statement": list(items)}, "Role", "policy")


def allow(action, resource, **extra):
    """An Allow statement."""
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def test_an_action_on_a_resource_the_policy_names_is_allowed():
    policy = statements(allow("s3:GetObject", f"{BUCKET_ARN}/*"))
    allowed, used, _ = evaluate(Authorization("s3:GetObject", f"{BUCKET_ARN}/a/b.csv"), policy)
    assert allowed
    assert [statement.sid for statement in used] == ["#1"]


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("s3:PutObject", f"{BUCKET_ARN}/a"),  # another action
        ("s3:GetObject", "arn:aws:s3:::other-bucket/a"),  # another bucket
        ("s3:GetObject", BUCKET_ARN),  # the bucket, not an object in it
    ],
)
def test_anything_no_statement_allows_is_implicitly_denied(action, resource):
    policy = statements(allow("s3:GetObject", f"{BUCKET_ARN}/*"))
    allowed, used, reason = evaluate(Authorization(action, resource), policy)
    assert not allowed
    assert used == ()
    assert reason == "no statement of its policies allows it"


def test_an_explicit_deny_wins_over_an_allow():
    policy = statements(
        allow("s3:*", "*"),
        {
            "Sid": "NoCapture",
            "Effect": "Deny",
            "Action": "s3:Get*",
            "Resource": f"{BUCKET_ARN}/capture/*",
        },
    )
    assert evaluate(Authorization("s3:GetObject", f"{BUCKET_ARN}/models/m.tar.gz"), policy)[0]
    allowed, used, reason = evaluate(
        Authorization("s3:GetObject", f"{BUCKET_ARN}/capture/x.jsonl"), policy
    )
    assert not allowed
    assert reason == "explicitly denied by Role/policy/NoCapture"
    assert [statement.effect for statement in used] == ["Deny"]


def test_action_wildcards_ignore_case_and_resource_wildcards_do_not():
    policy = statements(allow("SageMaker:Describe*", "arn:aws:sagemaker:*:*:endpoint/churn-?"))
    endpoint = "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/churn-1"
    assert evaluate(Authorization("sagemaker:DescribeEndpoint", endpoint), policy)[0]
    assert not evaluate(Authorization("sagemaker:DescribeEndpoint", endpoint + "0"), policy)[0]
    assert not evaluate(
        Authorization("sagemaker:DescribeEndpoint", endpoint.replace("churn", "Churn")), policy
    )[0]


def test_not_action_and_not_resource():
    policy = statements(
        {"Effect": "Allow", "NotAction": "iam:*", "NotResource": f"{BUCKET_ARN}/private/*"}
    )
    assert evaluate(Authorization("s3:GetObject", f"{BUCKET_ARN}/public/a"), policy)[0]
    assert not evaluate(Authorization("s3:GetObject", f"{BUCKET_ARN}/private/a"), policy)[0]
    assert not evaluate(Authorization("iam:PassRole", ROLE_ARN), policy)[0]


def test_conditions_need_the_key_in_the_request_unless_negated_or_if_exists():
    passed_to = {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    policy = statements(allow("iam:PassRole", ROLE_ARN, Condition=passed_to))
    to_sagemaker = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    to_lambda = {"iam:PassedToService": "lambda.amazonaws.com"}
    assert evaluate(Authorization("iam:PassRole", ROLE_ARN, to_sagemaker), policy)[0]
    assert not evaluate(Authorization("iam:PassRole", ROLE_ARN, to_lambda), policy)[0]
    assert not evaluate(Authorization("iam:PassRole", ROLE_ARN, {}), policy)[0]
    if_exists = statements(
        allow(
            "iam:PassRole", ROLE_ARN, Condition={"StringEqualsIfExists": passed_to["StringEquals"]}
        )
    )
    assert evaluate(Authorization("iam:PassRole", ROLE_ARN, {}), if_exists)[0]
    assert not evaluate(Authorization("iam:PassRole", ROLE_ARN, to_lambda), if_exists)[0]
    namespace = statements(
        allow(
            "cloudwatch:PutMetricData",
            "*",
            Condition={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
        )
    )
    sagemaker = {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}
    assert evaluate(Authorization("cloudwatch:PutMetricData", "*", sagemaker), namespace)[0]
    other = {"cloudwatch:namespace": "Custom"}
    assert not evaluate(Authorization("cloudwatch:PutMetricData", "*", other), namespace)[0]


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ({"Effect": "Permit", "Action": "s3:*", "Resource": "*"}, "Effect must be Allow or Deny"),
        ({"Effect": "Allow", "Resource": "*"}, "exactly one of Action and NotAction"),
        ({"Effect": "Allow", "Action": "s3:*"}, "exactly one of Resource and NotResource"),
        (
            allow("s3:*", "*", Condition={"NumericLessThan": {"s3:max-keys": "10"}}),
            "condition operator NumericLessThan is not evaluated",
        ),
        (allow("s3:*", "arn:aws:s3:::${aws:username}/*"), "policy variables"),
    ],
)
def test_a_statement_the_evaluator_cannot_judge_is_refused(statement, problem):
    with pytest.raises(IamError, match=problem):
        statements(statement)


def test_an_s3_write_to_a_kms_encrypted_bucket_also_needs_the_key():
    account = Account("123456789012", "eu-west-1", bucket_keys={"artifacts": KEY_ARN})
    call = Call("Role", "s3", "PutObject", {"Bucket": "artifacts", "Key": "code/a.tar.gz"})
    assert authorizations(call, account) == [
        Authorization(
            "s3:PutObject", f"{BUCKET_ARN}/code/a.tar.gz", {"aws:SecureTransport": "true"}
        ),
        Authorization("kms:GenerateDataKey", KEY_ARN, {"aws:SecureTransport": "true"}),
    ]
    read = Call("Role", "s3", "GetObject", {"Bucket": "artifacts", "Key": "code/a.tar.gz"})
    assert [request.action for request in authorizations(read, account)] == [
        "s3:GetObject",
        "kms:Decrypt",
    ]


def test_a_listing_carries_its_prefix_for_an_s3_prefix_condition():
    only_the_sample = statements(
        allow("s3:ListBucket", BUCKET_ARN, Condition={"StringLike": {"s3:prefix": "sample/*"}})
    )

    def listing(**params):
        (request,) = authorizations(
            Call("Role", "s3", "ListObjectsV2", {"Bucket": "artifacts", **params}), ACCOUNT
        )
        return evaluate(request, only_the_sample)[0]

    assert listing(Prefix="sample/")
    assert not listing(Prefix="models/")
    # Without a prefix the key is absent: the listing of the whole bucket is refused.
    assert not listing()


def test_a_change_set_with_a_role_passes_it_to_cloudformation():
    call = Call(
        "Role",
        "cloudformation",
        "CreateChangeSet",
        {"StackName": "churn-prod", "ChangeSetName": "cs", "RoleARN": ROLE_ARN},
    )
    stack, passed = authorizations(call, ACCOUNT)
    assert stack.action == "cloudformation:CreateChangeSet"
    assert stack.resource == "arn:aws:cloudformation:eu-west-1:123456789012:stack/churn-prod/*"
    assert passed.action == "iam:PassRole"
    assert passed.resource == ROLE_ARN
    assert passed.context["iam:PassedToService"] == "cloudformation.amazonaws.com"


def test_a_pipeline_with_a_connection_needs_to_pass_it_to_codepipeline():
    source = {"ConnectionArn": CONNECTION_ARN, "FullRepositoryId": "g/p"}
    properties = {"Name": "build", "Stages": [{"Actions": [{"Configuration": source}]}]}
    needed = handler_authorizations(
        "AWS::CodePipeline::Pipeline", "build", properties, "create", ACCOUNT
    )
    [passed] = [request for request in needed if request.action.endswith("PassConnection")]
    # The action's prefix follows the ARN's (the registry schema names codestar-connections).
    assert passed.action == "codeconnections:PassConnection"
    assert passed.resource == CONNECTION_ARN
    assert passed.context["codeconnections:PassedToService"] == "codepipeline.amazonaws.com"
    grant = statements(
        allow(
            "codeconnections:PassConnection",
            "arn:aws:codeconnections:eu-west-1:123456789012:connection/*",
            Condition={
                "StringEquals": {"codeconnections:PassedToService": "codepipeline.amazonaws.com"}
            },
        )
    )
    assert evaluate(passed, grant)[0]
    assert not evaluate(passed, statements(allow("codestar-connections:PassConnection", "*")))[0]


def test_an_operation_without_a_rule_is_never_allowed():
    call = Call("Role", "sagemaker", "DeleteEndpoint", {"EndpointName": "churn-prod"})
    with pytest.raises(IamError, match="sagemaker:DeleteEndpoint: the rehearsal cannot compute"):
        authorizations(call, ACCOUNT)
    checker = Checker({"Role": statements(allow("*", "*"))}, ACCOUNT)
    (decision,) = checker.check(call)
    assert not decision.allowed
    assert "Role may not sagemaker:DeleteEndpoint" in decision.line()


@pytest.mark.parametrize(
    ("service", "operation"), sorted(RULES), ids=[":".join(rule) for rule in sorted(RULES)]
)
def test_every_rule_reads_parameters_the_operation_has(service, operation):
    model = botocore.session.get_session().get_service_model(service)
    assert operation in model.operation_names
    members = model.operation_model(operation).input_shape.members
    assert set(RULES[(service, operation)].parameters) <= set(members)


def test_the_checker_counts_calls_and_names_unused_statements():
    policy = statements(
        {"Sid": "Read", **allow("s3:GetObject", f"{BUCKET_ARN}/*")},
        {"Sid": "Write", **allow("s3:PutObject", f"{BUCKET_ARN}/*")},
    )
    checker = Checker({"Builder": policy}, ACCOUNT)
    read = Call("Builder", "s3", "GetObject", {"Bucket": "artifacts", "Key": "a"})
    listing = Call("Builder", "s3", "ListObjectsV2", {"Bucket": "artifacts"})
    denied = checker.check_all([read, read, listing])
    assert [decision.request.action for decision in denied] == ["s3:ListBucket"]
    assert denied[0].line() == (
        "IAM: Builder may not s3:ListBucket on arn:aws:s3:::artifacts: no statement of its"
        " policies allows it"
    )
    assert [statement.sid for statement in checker.unused()] == ["Write"]
    assert checker.summary() == [
        "IAM: 3 calls checked (Builder 3); 1 denied; 1 policy statements no rehearsed call used:",
        "  Role: policy/Write",
    ]
    with pytest.raises(IamError, match="actor Nobody is not a role"):
        checker.check(Call("Nobody", "s3", "GetObject", {"Bucket": "a", "Key": "b"}))


@pytest.mark.parametrize("project", ["default_bake", "github_bake"], ids=["default", "github"])
def test_the_deploy_template_roles_are_read_with_their_managed_policies(request, project):
    project = request.getfixturevalue(project)
    stack = _deploy_stack(project)
    policies = role_policies(stack.template, stack.resolve, _boundaries(project))
    checker = Checker(policies, ACCOUNT)
    prod_stack = stack.parameter("ProdStackName")
    describe = Call("DeployProdRole", "cloudformation", "DescribeStacks", {"StackName": prod_stack})
    assert checker.check_all([describe]) == []
    staging_stack = stack.parameter("StagingStackName")
    staging = Call(
        "DeployProdRole", "cloudformation", "DescribeStacks", {"StackName": staging_stack}
    )
    (denied,) = checker.check_all([staging])
    assert denied.line().startswith(
        f"IAM: DeployProdRole may not cloudformation:DescribeStacks on"
        f" arn:aws:cloudformation:eu-west-1:123456789012:stack/{staging_stack}/*"
    )
    # The artifact policy is a managed policy of the same template, attached to every build:
    # it reads the deploy pipeline's artifacts (CodePipeline keys them under the first 20
    # characters of the pipeline name) and nothing else in the bucket.
    bucket = stack.exports[f"{stack.parameter('BuildStackName')}-ArtifactBucketName"]
    prefix = stack.parameter("DeployPipelineName")[:20]
    artifacts = Call(
        "StageConfigRole", "s3", "GetObject", {"Bucket": bucket, "Key": f"{prefix}/Source/y.zip"}
    )
    assert checker.check_all([artifacts]) == []
    elsewhere = Call(
        "StageConfigRole", "s3", "GetObject", {"Bucket": bucket, "Key": "data-capture/y.jsonl"}
    )
    (refused,) = checker.check_all([elsewhere])
    assert not refused.allowed


def test_a_managed_policy_from_outside_the_templates_cannot_be_evaluated():
    template = {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]
                },
            }
        }
    }
    with pytest.raises(IamError, match="AdministratorAccess is not declared in the template"):
        role_policies(template, lambda node: node)


def _boundaries(project: Path) -> dict:
    """The bake's permissions boundary (infra/bootstrap.yml): its ARN -> its document."""
    bootstrap = Stack("bootstrap", load_template(project / "infra" / "bootstrap.yml"), *LOCATION)
    return {
        bootstrap.physical_id(logical_id): bootstrap.resolve(
            resource["Properties"]["PolicyDocument"]
        )
        for logical_id, resource in bootstrap.template["Resources"].items()
        if resource["Type"] == "AWS::IAM::ManagedPolicy"
    }


def _deploy_stack(project: Path):
    """A bake's deploy template, resolvable against what its build template exports."""
    deploy = load_template(project / "infra" / "model-deploy-pipeline.yml")
    build_name = deploy["Parameters"]["BuildStackName"]["Default"]
    build_template = load_template(project / "infra" / "model-build-pipeline.yml")
    build = Stack(build_name, build_template, *LOCATION)
    for logical_id, resource in build.template["Resources"].items():
        if resource["Type"] == "AWS::KMS::Key":
            build.attributes[(logical_id, "Arn")] = KEY_ARN
    # GitHub bakes without a connection ARN take the one `make bootstrap` finds or creates.
    values = {
        "MergeFunctionCodeKey": "lambda/merge.zip",
        "GitTokenSecretArn": SECRET_ARN,
        "ConnectionArn": CONNECTION_ARN,
    }
    return Stack(
        "deploy", deploy, *LOCATION, parameter_values=values, exports=build.exported_values()
    )


def _endpoint_resources(endpoint_name):
    """What a resolver gives for the endpoint template: (type, properties) by logical id."""
    return {
        "Model": (
            "AWS::SageMaker::Model",
            {"ExecutionRoleArn": ROLE_ARN, "PrimaryContainer": {"ModelPackageName": "p"}},
        ),
        "Endpoint": (
            "AWS::SageMaker::Endpoint",
            {"EndpointName": endpoint_name, "EndpointConfigName": "config-1"},
        ),
    }


def test_cloudformation_runs_the_handlers_a_stack_change_needs_as_the_passed_role():
    bodies = {"v1": _endpoint_resources("churn-prod"), "v2": _endpoint_resources("churn-next")}
    deploys = StackDeploys(lambda stack, body, parameters: bodies[body])

    def change_set(body):
        """The calls of one `aws cloudformation deploy --role-arn`."""
        return [
            Call(
                "Caller",
                "cloudformation",
                "CreateChangeSet",
                {"StackName": "prod", "RoleARN": ROLE_ARN, "TemplateBody": body},
            ),
            Call(
                "Caller",
                "cloudformation",
                "ExecuteChangeSet",
                {"StackName": "prod", "ChangeSetName": "c"},
            ),
        ]

    created = deploys.authorizations(change_set("v1"), ACCOUNT, {ROLE_ARN: "Deployer"})
    assert {actor for actor, _ in created} == {"Deployer"}
    actions = [request.action for _, request in created]
    assert "sagemaker:CreateModel" in actions and "sagemaker:CreateEndpoint" in actions
    passed = next(request for _, request in created if request.action == "iam:PassRole")
    assert passed.resource == ROLE_ARN
    assert passed.context["iam:PassedToService"] == "sagemaker.amazonaws.com"
    endpoint = next(r for _, r in created if r.action == "sagemaker:CreateEndpoint")
    assert endpoint.resource == "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/churn-prod"
    model = next(r for _, r in created if r.action == "sagemaker:CreateModel")
    assert model.resource == "arn:aws:sagemaker:eu-west-1:123456789012:model/prod-Model-*"
    # The same template again changes nothing; a new endpoint name replaces the endpoint
    # (EndpointName is create-only in the resource type's schema).
    assert deploys.authorizations(change_set("v1"), ACCOUNT, {ROLE_ARN: "Deployer"}) == []
    replaced = deploys.authorizations(change_set("v2"), ACCOUNT, {ROLE_ARN: "Deployer"})
    assert {(r.action, r.resource.rsplit("/", 1)[1]) for _, r in replaced} >= {
        ("sagemaker:CreateEndpoint", "churn-next"),
        ("sagemaker:DeleteEndpoint", "churn-prod"),
    }
    # A change set never executed deploys nothing; a role no template declares is refused.
    assert deploys.authorizations(change_set("v2")[:1], ACCOUNT, {ROLE_ARN: "Deployer"}) == []
    # Deleting the stack runs every delete handler, as the role the stack last used.
    delete = Call("Caller", "cloudformation", "DeleteStack", {"StackName": "prod"})
    deleted = deploys.authorizations([delete], ACCOUNT, {ROLE_ARN: "Deployer"})
    assert {(actor, r.action) for actor, r in deleted} >= {
        ("Deployer", "sagemaker:DeleteModel"),
        ("Deployer", "sagemaker:DeleteEndpoint"),
    }
    with pytest.raises(IamError, match="which no template declares"):
        deploys.authorizations(change_set("v1"), ACCOUNT, {})


def test_a_build_writes_its_logs_reports_artifacts_and_cache_with_its_role():
    account = Account("123456789012", "eu-west-1", bucket_keys={"artifacts": KEY_ARN})
    build = Build(
        log_group="/aws/codebuild/churn-build",
        build_id="0b1c",
        report_groups=("churn-build-junit",),
        inputs=(("artifacts", "pipe/Source/abc"),),
        outputs=(("artifacts", "pipe/Config/def"),),
        cache=("artifacts", "codebuild-cache/build"),
    )
    requests = {(r.action, r.resource) for r in build.authorizations(account)}
    logs = "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/codebuild/churn-build"
    assert ("logs:PutLogEvents", f"{logs}:log-stream:0b1c") in requests
    group = "arn:aws:codebuild:eu-west-1:123456789012:report-group/churn-build-junit"
    assert ("codebuild:BatchPutTestCases", group) in requests
    assert ("s3:GetObject", f"{BUCKET_ARN}/pipe/Source/abc") in requests
    assert ("s3:PutObject", f"{BUCKET_ARN}/pipe/Config/def") in requests
    assert ("s3:PutObject", f"{BUCKET_ARN}/codebuild-cache/build/0b1c") in requests
    assert ("kms:Decrypt", KEY_ARN) in requests and ("kms:GenerateDataKey", KEY_ARN) in requests


def test_this_process_records_calls_only_while_acting_for_an_actor(monkeypatch):
    # The client's credentials and region are given: no profile or config file is read.
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, os.devnull)
    recorder = Recorder()
    recorder.install()
    try:
        client = botocore.session.get_session().create_client(
            "s3", region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b"
        )
        with Stubber(client) as stub:
            stub.add_response("list_objects_v2", {})
            stub.add_response("list_objects_v2", {})
            client.list_objects_v2(Bucket="not-recorded")
            with recorder.acting_as("Builder", "Build") as calls:
                client.list_objects_v2(Bucket="artifacts")
    finally:
        recorder.uninstall()
    assert [(call.actor, call.name, call.params["Bucket"], call.where) for call in calls] == [
        ("Builder", "s3:ListObjectsV2", "artifacts", "Build")
    ]


def run_in_a_build(tmp_path, script, aws_settings):
    """Run script in a process with the recording hook as the actor Builder (policies in
    tmp_path/policies.json), against a moto server of its own; aws_settings: the AWS
    variables besides the endpoint and the region."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        environment = hook_environment(
            {
                "PATH": os.environ.get("PATH", ""),
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_DEFAULT_REGION": "eu-west-1",
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                **aws_settings,
            },
            "Builder",
            tmp_path / "Builder.jsonl",
            tmp_path / "policies.json",
            [endpoint],
        )
        return subprocess.run(
            [sys.executable, "-c", script], env=environment, capture_output=True, text=True
        )
    finally:
        server.stop()


def test_a_build_process_is_answered_access_denied_for_what_its_role_may_not_do(tmp_path):
    # The hook checks the calls another process sends to moto.
    policy = statements(allow("s3:ListBucket", "arn:aws:s3:::artifacts"))
    write_policies(tmp_path / "policies.json", {"Builder": policy}, ACCOUNT)
    script = "import boto3; boto3.client('s3').put_object(Bucket='artifacts', Key='k')"
    keys = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_CONFIG_FILE": os.devnull}
    result = run_in_a_build(tmp_path, script, keys)
    assert result.returncode != 0
    assert "AccessDenied" in result.stderr
    assert "Builder may not s3:PutObject on arn:aws:s3:::artifacts/k" in result.stderr
    (line,) = (tmp_path / "Builder.jsonl").read_text().splitlines()
    assert '"operation": "PutObject"' in line


def test_a_denial_the_calling_code_handles_is_listed_not_failed():
    checker = Checker({"Trainer": statements(allow("s3:ListBucket", BUCKET_ARN))}, ACCOUNT)
    listing = Call("Trainer", "s3", "ListBuckets", {})
    assert checker.check_all([listing]) == []
    (handled,) = checker.handled
    assert handled.request.action == "s3:ListAllMyBuckets"
    assert checker.denied == []
    assert checker.summary()[0].startswith(
        "IAM: 1 calls checked (Trainer 1); 0 denied (1 more answered AccessDenied and handled"
        " by the caller: s3:ListAllMyBuckets by Trainer)"
    )


# ---------------------------------------------------------------- across accounts

STAGE = "222233334444"
STAGE_ROLE = f"arn:aws:iam::{STAGE}:role/app/app-staging-endpoint"


def stage_account(*policies):
    """The pipelines' account as the stage role sees it, with these resource policies."""
    return Account(
        ACCOUNT.account_id,
        ACCOUNT.region,
        actor_accounts={"Endpoint": STAGE},
        actor_roles={"Endpoint": STAGE_ROLE},
        bucket_owners={"artifacts": ACCOUNT.account_id},
        resource_policies=tuple(policies),
    )


def key_policy(*items):
    return parse_resource_policy(
        "key policy", ACCOUNT.account_id, [KEY_ARN], {"Statement": list(items)}, "Key"
    )


DECRYPT = Authorization("kms:Decrypt", KEY_ARN, {"aws:SecureTransport": "true"})
IDENTITY = statements(allow("kms:Decrypt", "arn:aws:kms:eu-west-1:123456789012:key/*"))


@pytest.mark.parametrize(
    "principal",
    [f"arn:aws:iam::{STAGE}:root", STAGE, STAGE_ROLE, "*"],
    ids=["account-root", "account-id", "role", "anyone"],
)
def test_another_accounts_resource_needs_its_policy_to_name_the_caller(principal):
    granted = key_policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": principal},
            "Action": "kms:Decrypt",
            "Resource": "*",
        }
    )
    assert decide(DECRYPT, "Endpoint", IDENTITY, stage_account(granted))[0]
    allowed, _, reason = decide(DECRYPT, "Endpoint", IDENTITY, stage_account())
    assert not allowed
    assert reason == (
        f"it is in account {ACCOUNT.account_id}, whose key policy does not allow {STAGE_ROLE}"
        " (a cross-account request needs both sides)"
    )


def test_a_resource_policy_condition_on_the_principal_arn_is_evaluated():
    def granted(role):
        return key_policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{STAGE}:root"},
                "Action": ["kms:Decrypt"],
                "Resource": "*",
                "Condition": {"ArnEquals": {"aws:PrincipalArn": role}},
            }
        )

    assert decide(DECRYPT, "Endpoint", IDENTITY, stage_account(granted(STAGE_ROLE)))[0]
    other = f"arn:aws:iam::{STAGE}:role/app/app-staging-test"
    assert not decide(DECRYPT, "Endpoint", IDENTITY, stage_account(granted(other)))[0]


def test_a_deny_in_the_resource_policy_wins_and_a_service_principal_grants_no_role():
    allow_all = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}
    deny = {
        "Sid": "NoStages",
        "Effect": "Deny",
        "Principal": {"AWS": STAGE},
        "Action": "kms:*",
        "Resource": "*",
    }
    allowed, _, reason = decide(
        DECRYPT, "Endpoint", IDENTITY, stage_account(key_policy(allow_all, deny))
    )
    assert not allowed and "denies it (NoStages)" in reason
    service = {
        "Effect": "Allow",
        "Principal": {"Service": "logs.amazonaws.com"},
        "Action": "kms:*",
        "Resource": "*",
    }
    assert not decide(DECRYPT, "Endpoint", IDENTITY, stage_account(key_policy(service)))[0]


def test_the_identity_side_is_evaluated_first_and_same_account_requests_need_no_grant():
    allow_all = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"}
    assert not decide(DECRYPT, "Endpoint", [], stage_account(key_policy(allow_all)))[0]
    # The pipelines' own roles: no resource policy consulted.
    assert decide(DECRYPT, "Builder", IDENTITY, stage_account())[0]


def test_an_actors_arns_are_in_its_own_account():
    call = Call("Endpoint", "sagemaker-runtime", "InvokeEndpoint", {"EndpointName": "app-staging"})
    account = stage_account()
    [request] = authorizations(call, account.of("Endpoint"))
    assert request.resource == f"arn:aws:sagemaker:eu-west-1:{STAGE}:endpoint/app-staging"
    assert account.of("Builder") is account


def test_resource_policies_travel_to_build_processes(tmp_path):
    granted = key_policy(
        {"Effect": "Allow", "Principal": {"AWS": STAGE}, "Action": "kms:Decrypt", "Resource": "*"}
    )
    write_policies(tmp_path / "policies.json", {"Endpoint": IDENTITY}, stage_account(granted))
    policies, account = read_policies(tmp_path / "policies.json")
    assert account == stage_account(granted)
    assert decide(DECRYPT, "Endpoint", policies["Endpoint"], account)[0]


def test_a_profile_that_assumes_a_role_names_it(tmp_path):
    config = tmp_path / "config"
    config.write_text(
        f"[profile stage]\nrole_arn = {STAGE_ROLE}\ncredential_source = Environment\n"
    )
    assert profile_role({"AWS_PROFILE": "stage", "AWS_CONFIG_FILE": str(config)}) == STAGE_ROLE
    assert profile_role({"AWS_PROFILE": "other", "AWS_CONFIG_FILE": str(config)}) is None
    assert profile_role({"AWS_CONFIG_FILE": str(config)}) is None


def test_cloudformation_creating_a_model_from_another_accounts_package_reads_and_uses_it():
    package = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/app-models/3"
    stage = dataclasses.replace(ACCOUNT, account_id=STAGE)
    properties = {
        "ModelName": "app-staging-3",
        "ExecutionRoleArn": STAGE_ROLE,
        "PrimaryContainer": {"ModelPackageName": package},
    }
    found = handler_authorizations(
        "AWS::SageMaker::Model", "app-staging-3", properties, "create", stage
    )
    assert ("sagemaker:CreateModel", package) in {(r.action, r.resource) for r in found}
    assert ("sagemaker:DescribeModelPackage", package) in {(r.action, r.resource) for r in found}
    assert ("iam:PassRole", STAGE_ROLE) in {(r.action, r.resource) for r in found}
    # In the package's own account, nothing about the package is added.
    same = handler_authorizations("AWS::SageMaker::Model", "m", properties, "create", ACCOUNT)
    assert all(r.resource != package for r in same)
    assert all(r.resource != STAGE_ROLE for r in same)  # another account's role is never passed


def test_a_key_named_by_its_alias_is_authorized_on_the_key():
    alias = f"arn:aws:kms:eu-west-1:{ACCOUNT.account_id}:alias/app-endpoints"
    account = dataclasses.replace(ACCOUNT, key_aliases={KEY_ARN: ("alias/app-endpoints",)})
    properties = {"EndpointConfigName": "c", "KmsKeyId": alias, "ProductionVariants": []}
    found = handler_authorizations(
        "AWS::SageMaker::EndpointConfig", "c", properties, "create", account
    )
    assert {r.resource for r in found if r.action.startswith("kms:")} == {KEY_ARN}


def test_a_build_process_whose_profile_assumes_a_role_acts_as_that_role(tmp_path):

    builder = "arn:aws:iam::123456789012:role/app/app-test-staging"
    trust = parse_resource_policy(
        "trust policy",
        STAGE,
        [STAGE_ROLE],
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "123456789012"},
                    "Action": "sts:AssumeRole",
                }
            ]
        },
        "StageRole",
    )
    account = Account(
        ACCOUNT.account_id,
        ACCOUNT.region,
        actor_accounts={"StageRole": STAGE},
        actor_roles={"Builder": builder, "StageRole": STAGE_ROLE},
        resource_policies=(trust,),
    )
    policies = {
        "Builder": statements(allow("sts:AssumeRole", STAGE_ROLE)),
        "StageRole": statements(allow("s3:ListAllMyBuckets", "*")),
    }
    write_policies(tmp_path / "policies.json", policies, account)
    config = tmp_path / "config"
    config.write_text(
        f"[profile stage]\nrole_arn = {STAGE_ROLE}\ncredential_source = EcsContainer\n"
        "role_session_name = build-1\n"
    )
    from rehearsal.standins import ContainerCredentials

    # As in CodeBuild: the source credentials are the container's.
    credentials = ContainerCredentials("ASIABUILD", "secret", "token")
    credentials.start()
    try:
        script = "import boto3; print(boto3.client('s3').list_buckets()['Owner'])"
        profile = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": credentials.full_uri,
            "AWS_CONFIG_FILE": str(config),
            "AWS_PROFILE": "stage",
        }
        result = run_in_a_build(tmp_path, script, profile)
    finally:
        credentials.stop()
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in (tmp_path / "Builder.jsonl").read_text().splitlines()]
    # The SDK assumes the role when it first signs a request, after the call was checked.
    assert sorted((line["actor"], line["operation"], line["denied"]) for line in lines) == [
        ("Builder", "AssumeRole", ""),
        ("StageRole", "ListBuckets", ""),
    ]
