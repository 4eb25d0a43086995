"""The CloudFormation templates, parsed with their tags, asserted against the design.

moto cannot create CodePipeline, CodeBuild or CodeCommit resources, so these tests read the
templates themselves: stage order, action providers, triggers, the approval rule, IAM scope,
and the inline function that starts the deploy pipeline (run here with botocore Stubbers).
"""

import json
import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import ANY, Stubber
from infra_support import RecordingCodePipeline, inline_function, template
from moto import mock_aws

from {{ cookiecutter.package_name }} import config

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TEMPLATES = ("model-build-pipeline.yml", "model-deploy-pipeline.yml", "endpoint.yml")
SOURCE_PROVIDER = "{{ cookiecutter.source_provider }}"
PROD_APPROVAL = {{ 'True' if cookiecutter.prod_approval else 'False' }}
STAGING_ENDPOINT_TYPE = "{{ cookiecutter.staging_endpoint }}"
PYTHON_VERSION = "{{ cookiecutter.python_version }}"
ARTIFACT_BUCKET_PREFIX = "{{ cookiecutter.__artifact_bucket_prefix }}"
BUILD_PIPELINE_NAME = "{{ cookiecutter.__build_pipeline_name }}"
DEPLOY_PIPELINE_NAME = "{{ cookiecutter.__deploy_pipeline_name }}"
MERGE_FUNCTION_NAME = "{{ cookiecutter.__merge_function_name }}"
PIPELINE_UPDATE_ROLE = "{{ cookiecutter.__pipeline_update_role_name }}"
PROJECT_SLUG = "{{ cookiecutter.project_slug }}"
SOURCE_PROVIDER_ACTION = {"codecommit": "CodeCommit"}.get(
    SOURCE_PROVIDER, "CodeStarSourceConnection"
)
# The only actions granted on Resource "*": their APIs have no resource-level permissions.
RESOURCE_STAR_ACTIONS = {
    "codepipeline:PutJobSuccessResult",
    "codepipeline:PutJobFailureResult",
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "sagemaker:ListModelPackages",
    "sagemaker:ListPipelines",
    "cloudformation:ValidateTemplate",
}
PACKAGE_ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/group/3"
COMMIT_ID = "0123456789abcdef0123456789abcdef01234567"
# Time an instance endpoint's new fleet may take to come up during a blue/green update.
PROVISIONING_SECONDS = 20 * 60


def resources_of_type(document: dict[str, Any], resource_type: str) -> dict[str, Any]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in document["Resources"].items()
        if resource["Type"] == resource_type
    }


def only_resource(document: dict[str, Any], resource_type: str) -> dict[str, Any]:
    """The properties of the template's single resource of a type."""
    (resource,) = resources_of_type(document, resource_type).values()
    return resource["Properties"]


def default(document: dict[str, Any], parameter: str) -> Any:
    """A parameter's default value."""
    return document["Parameters"][parameter]["Default"]


def stages(pipeline: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """A pipeline's actions by stage name, in stage order."""
    return {stage["Name"]: stage["Actions"] for stage in pipeline["Stages"]}


def providers(pipeline: dict[str, Any]) -> list[str]:
    """The provider of every action, in pipeline order."""
    return [
        action["ActionTypeId"]["Provider"]
        for actions in stages(pipeline).values()
        for action in actions
    ]


def iam_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of the template's IAM roles and managed policies."""
    statements = []
    for resource in document["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                statements.extend(policy["PolicyDocument"]["Statement"])
        elif resource["Type"] == "AWS::IAM::ManagedPolicy":
            statements.extend(properties["PolicyDocument"]["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    """A scalar as a one-item list."""
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- every template


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_wildcard_action_and_resource_star_only_for_apis_without_resources(name: str) -> None:
    for statement in iam_statements(template(name)):
        actions = set(as_list(statement["Action"]))
        assert "*" not in actions and not any(action.endswith(":*") for action in actions)
        if statement["Resource"] == "*":
            assert actions <= RESOURCE_STAR_ACTIONS, statement


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_resource_star_carries_a_comment_saying_why(name: str) -> None:
    lines = (INFRA / name).read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r'\s*Resource: "\*"', line):
            above = lines[max(0, number - 4) : number]
            assert any(text.strip().startswith("#") for text in above), f"{name}:{number + 1}"


@pytest.mark.parametrize("name", TEMPLATES)
def test_checkov_skips_live_in_metadata_with_a_reason(name: str) -> None:
    for logical_id, resource in template(name)["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), logical_id
            assert len(skip["comment"]) > 20, logical_id


# ---------------------------------------------------------------- model build pipeline


def build_pipeline() -> dict[str, Any]:
    """Properties of the model build CodePipeline."""
    return only_resource(template("model-build-pipeline.yml"), "AWS::CodePipeline::Pipeline")


def test_build_pipeline_is_v2_source_build_train() -> None:
    pipeline = build_pipeline()
    assert pipeline["PipelineType"] == "V2"
    assert pipeline["ExecutionMode"] in {"SUPERSEDED", "QUEUED"}
    assert list(stages(pipeline)) == ["Source", "UpdatePipelines", "Build", "Train"]
    assert providers(pipeline) == [
        SOURCE_PROVIDER_ACTION,
        "CodeBuild",
        "CodeBuild",
        "CodeBuild",
    ]
    # A run whose UpdatePipelines changed the pipeline is cancelled and started again.
    assert pipeline["RestartExecutionOnUpdate"] is True


def test_the_update_action_runs_as_the_bootstrap_stacks_role() -> None:
    resources = template("model-build-pipeline.yml")["Resources"]
    (update,) = stages(build_pipeline())["UpdatePipelines"]
    project = resources[update["Configuration"]["ProjectName"]["Ref"]]["Properties"]
    assert project["ServiceRole"]["Fn::Sub"].endswith(f":role/{PIPELINE_UPDATE_ROLE}")
    assert project["Environment"]["EnvironmentVariables"] == [
        {"Name": "MAKE_TARGETS", "Value": "update-pipelines"}
    ]
    bootstrap = template("bootstrap.yml")["Resources"]
    assert bootstrap["PipelineUpdateRole"]["Properties"]["RoleName"] == PIPELINE_UPDATE_ROLE


def test_every_role_of_the_pipeline_stacks_has_the_bootstrap_boundary() -> None:
    boundary = template("bootstrap.yml")["Resources"]["PermissionsBoundary"]["Properties"]
    name = boundary["ManagedPolicyName"]
    for file in ("model-build-pipeline.yml", "model-deploy-pipeline.yml"):
        for logical_id, resource in template(file)["Resources"].items():
            if resource["Type"] != "AWS::IAM::Role":
                continue
            properties = resource["Properties"]
            assert properties["PermissionsBoundary"]["Fn::Sub"].endswith(f":policy/{name}"), (
                logical_id
            )
            # Named roles keep their name (a path is create-only); the others live under the
            # path the stacks role may manage.
            if "RoleName" not in properties:
                assert properties["Path"] == f"/{PROJECT_SLUG}/", logical_id


def test_build_pipeline_sources_and_triggers_on_the_dev_branch_only() -> None:
    document = template("model-build-pipeline.yml")
    assert default(document, "DevBranch") == config.DEV_BRANCH
    (source,) = stages(build_pipeline())["Source"]
    assert source["Configuration"]["BranchName"] == {"Ref": "DevBranch"}
    if SOURCE_PROVIDER == "codecommit":
        assert source["Configuration"]["PollForSourceChanges"] is False
        pattern = document["Resources"]["SourcePushRule"]["Properties"]["EventPattern"]
        assert pattern["detail"]["referenceName"] == [{"Ref": "DevBranch"}]
        assert pattern["detail"]["referenceType"] == ["branch"]
    else:
        (trigger,) = build_pipeline()["Triggers"]
        (push,) = trigger["GitConfiguration"]["Push"]
        assert push["Branches"]["Includes"] == [{"Ref": "DevBranch"}]
        assert trigger["GitConfiguration"]["SourceActionName"] == source["Name"]


def test_train_project_gets_the_sagemaker_role_and_bucket() -> None:
    projects = resources_of_type(template("model-build-pipeline.yml"), "AWS::CodeBuild::Project")
    train_env = {
        variable["Name"]: variable["Value"]
        for variable in projects["TrainProject"]["Properties"]["Environment"][
            "EnvironmentVariables"
        ]
    }
    assert train_env["MAKE_TARGETS"] == "pipeline-run"
    assert train_env["SAGEMAKER_ROLE_ARN"] == {"Fn::GetAtt": ["SageMakerExecutionRole", "Arn"]}
    assert train_env["ARTIFACT_BUCKET"] == {"Ref": "ArtifactBucket"}
    for project in projects.values():
        assert project["Properties"]["Source"]["BuildSpec"] == "buildspecs/build.yml"
        assert project["Properties"]["Cache"]["Type"] == "S3"
        assert "EncryptionKey" in project["Properties"]


def test_artifact_bucket_is_encrypted_versioned_private_and_tls_only() -> None:
    document = template("model-build-pipeline.yml")
    bucket = only_resource(document, "AWS::S3::Bucket")
    assert bucket["BucketName"] == {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::AccountId}"}
    assert default(document, "ArtifactBucketPrefix") == ARTIFACT_BUCKET_PREFIX
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    expiring = {rule.get("Prefix") for rule in bucket["LifecycleConfiguration"]["Rules"]}
    assert {f"{name[:20]}/" for name in (BUILD_PIPELINE_NAME, DEPLOY_PIPELINE_NAME)} <= expiring
    policy = only_resource(document, "AWS::S3::BucketPolicy")["PolicyDocument"]
    deny, *grants = policy["Statement"]
{%- if cookiecutter.prod_account_id %}
    # The stage accounts' roles read the stage artifact and the registered models, by name.
    assert [grant["Sid"] for grant in grants] == [
        "StagingDeployRoleReadsStageArtifact",
        "EndpointRolesReadRegisteredModels",
    ]
    for grant in grants:
        assert grant["Effect"] == "Allow" and "aws:PrincipalArn" in grant["Condition"]["ArnEquals"]
{%- else %}
    assert grants == []
{%- endif %}
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    key = only_resource(document, "AWS::KMS::Key")
    assert key["EnableKeyRotation"] is True


def test_model_package_group_is_the_one_the_code_registers_into() -> None:
    document = template("model-build-pipeline.yml")
    group = only_resource(document, "AWS::SageMaker::ModelPackageGroup")
    assert group["ModelPackageGroupName"] == {"Ref": "ModelPackageGroupName"}
    assert default(document, "ModelPackageGroupName") == config.MODEL_PACKAGE_GROUP_NAME
    assert default(document, "SageMakerPipelineName") == config.SAGEMAKER_PIPELINE_NAME


# ---------------------------------------------------------------- model deploy pipeline


def deploy_pipeline() -> dict[str, Any]:
    """Properties of the model deploy CodePipeline."""
    return template("model-deploy-pipeline.yml")["Resources"]["DeployPipeline"]["Properties"]


def test_deploy_pipeline_stage_order_and_providers() -> None:
    pipeline = deploy_pipeline()
    assert pipeline["PipelineType"] == "V2"
    # QUEUED runs one execution at a time and skips none.
    assert pipeline["ExecutionMode"] == "QUEUED"
    expected = ["Source", "Build", "DeployStaging", "TestStaging"]
    expected += ["ApproveProd"] if PROD_APPROVAL else []
    expected += ["DeployProd", "MergeDevToMaster"]
    assert list(stages(pipeline)) == expected
    expected_providers = [
        SOURCE_PROVIDER_ACTION,
        "CodeBuild",
        "Lambda",
        "CloudFormation",
        "CodeBuild",
    ]
    expected_providers += ["Manual"] if PROD_APPROVAL else []
    assert providers(pipeline) == [*expected_providers, "CodeBuild", "Lambda"]


def test_deploy_pipeline_never_starts_on_a_push() -> None:
    pipeline = deploy_pipeline()
    (source,) = stages(pipeline)["Source"]
    assert "Triggers" not in pipeline
    if SOURCE_PROVIDER == "codecommit":
        assert source["Configuration"]["PollForSourceChanges"] is False
    else:
        assert source["Configuration"]["DetectChanges"] is False
    rules = resources_of_type(template("model-deploy-pipeline.yml"), "AWS::Events::Rule")
    # Only the approval rule starts the deploy pipeline (through its function), the
    # pull-request rule only the check pipeline, and the check-failed rule only reports on
    # the pull request; the others notify.
    starters = [
        rule_id
        for rule_id, rule in rules.items()
        if any("Fn::ImportValue" not in target["Arn"] for target in rule["Properties"]["Targets"])
    ]
    expected = ["CheckFailedRule", "ModelApprovedRule"]
    if SOURCE_PROVIDER == "codecommit":
        expected.append("PullRequestRule")
    assert sorted(starters) == expected
    kinds = [rule["Properties"]["EventPattern"].get("detail-type", []) for rule in rules.values()]
    assert not any("CodeCommit Repository State Change" in kind for kind in kinds)


def test_staging_deploys_endpoint_template_with_the_resolved_staging_parameters() -> None:
    (deploy,) = stages(deploy_pipeline())["DeployStaging"]
    configuration = deploy["Configuration"]
    assert configuration["TemplatePath"] == "StageConfig::infra/endpoint.yml"
    assert configuration["TemplateConfiguration"] == "StageConfig::build/deploy/staging.json"
    (test,) = stages(deploy_pipeline())["TestStaging"]
    (variable,) = json.loads(test["Configuration"]["EnvironmentVariables"])
    assert variable == {
        "name": "ENDPOINT_NAME",
        "value": f"#{% raw %}{{{deploy['Namespace']}.EndpointName}}{% endraw %}",
        "type": "PLAINTEXT",
    }


def test_buildspec_of_each_deploy_pipeline_project() -> None:
    document = template("model-deploy-pipeline.yml")
    projects = resources_of_type(document, "AWS::CodeBuild::Project")
    by_action = {}
    for actions in stages(deploy_pipeline()).values():
        for action in actions:
            if action["ActionTypeId"]["Provider"] == "CodeBuild":
                (logical_id,) = action["Configuration"]["ProjectName"].values()
                by_action[action["Name"]] = projects[logical_id]["Properties"]["Source"][
                    "BuildSpec"
                ]
    assert by_action == {
        "StageConfig": "buildspecs/deploy.yml",
        "TestStaging": "buildspecs/test.yml",
        "DeployProd": "buildspecs/deploy.yml",
    }


def user_parameters(action: dict[str, Any]) -> dict[str, Any]:
    """An Invoke action's UserParameters, with DevBranch as "d" and MainBranch as "m"."""
    text = action["Configuration"]["UserParameters"]["Fn::Sub"]
    return json.loads(text.replace("${DevBranch}", "d").replace("${MainBranch}", "m"))


def test_merge_action_passes_the_deployed_commit() -> None:
    (merge,) = stages(deploy_pipeline())["MergeDevToMaster"]
    assert merge["ActionTypeId"]["Category"] == "Invoke"
    assert merge["Configuration"]["FunctionName"] == {"Ref": "MergeFunction"}
    parameters = user_parameters(merge)
    assert parameters == {
        "source_branch": "d",
        "destination_branch": "m",
        "commit_id": "#{% raw %}{SourceVariables.CommitId}{% endraw %}",
    }
    (source,) = stages(deploy_pipeline())["Source"]
    assert source["Namespace"] == "SourceVariables"
    document = template("model-deploy-pipeline.yml")
    assert default(document, "DevBranch") == config.DEV_BRANCH
    assert default(document, "MainBranch") == config.MAIN_BRANCH


def test_build_stage_checks_the_commit_descends_from_production_before_any_deploy() -> None:
    stage_names = list(stages(deploy_pipeline()))
    build = stages(deploy_pipeline())["Build"]
    (check,) = [action for action in build if action["ActionTypeId"]["Provider"] == "Lambda"]
    assert stage_names.index("Build") < stage_names.index("DeployStaging")
    assert check["Configuration"]["FunctionName"] == {"Ref": "MergeFunction"}
    parameters = user_parameters(check)
    assert parameters == {
        "source_branch": "d",
        "destination_branch": "m",
        "commit_id": "#{% raw %}{SourceVariables.CommitId}{% endraw %}",
        "mode": "check",
    }


def test_merge_function_matches_the_lambda_contract() -> None:
    document = template("model-deploy-pipeline.yml")
    function = document["Resources"]["MergeFunction"]["Properties"]
    assert function["Handler"] == "app.handler"
    assert function["Runtime"] == f"python{PYTHON_VERSION}"
    assert function["Code"]["S3Key"] == {"Ref": "MergeFunctionCodeKey"}
    environment = function["Environment"]["Variables"]
    expected = {
        "codecommit": {"REPOSITORY_NAME"},
    }.get(SOURCE_PROVIDER, {"GIT_HOST", "GIT_REPOSITORY", "GIT_TOKEN_SECRET_ARN"})
    assert set(environment) == expected | {"MERGE_STRATEGY"}
    assert environment["MERGE_STRATEGY"] == "fast-forward"
    role = document["Resources"]["MergeFunctionRole"]["Properties"]
    actions = {
        action
        for policy in role["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in as_list(statement["Action"])
    }
    assert {"codepipeline:PutJobSuccessResult", "codepipeline:PutJobFailureResult"} <= actions
    if SOURCE_PROVIDER == "codecommit":
        assert {"codecommit:GetBranch", "codecommit:MergeBranchesByFastForward"} <= actions
        assert "codecommit:MergeBranchesByThreeWay" not in actions
    else:
        assert "secretsmanager:GetSecretValue" in actions
    log_group = document["Resources"]["MergeLogGroup"]["Properties"]
    assert log_group["LogGroupName"] == f"/aws/lambda/{MERGE_FUNCTION_NAME}"


def test_approval_rule_matches_approved_packages_of_this_group() -> None:
    document = template("model-deploy-pipeline.yml")
    rule = document["Resources"]["ModelApprovedRule"]["Properties"]
    assert rule["Name"] == "{{ cookiecutter.__approval_rule_name }}"
    assert rule["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Package State Change"],
        "detail": {
            "ModelPackageGroupName": [{"Ref": "ModelPackageGroupName"}],
            "ModelApprovalStatus": ["Approved"],
        },
    }
    assert default(document, "ModelPackageGroupName") == config.MODEL_PACKAGE_GROUP_NAME
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["StartDeployFunction", "Arn"]}


# ---------------------------------------------------------------- the starter function


@pytest.fixture
def start_deploy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The inline StartDeployFunction imported as a module, with its environment."""
    return inline_function(
        "model-deploy-pipeline.yml", "StartDeployFunction", tmp_path, monkeypatch
    )


def approved_event(package_arn: str = PACKAGE_ARN) -> dict[str, Any]:
    """A SageMaker Model Package State Change event for an approval."""
    return {
        "id": "event-1",
        "resources": [package_arn],
        "detail": {"ModelPackageArn": package_arn, "ModelApprovalStatus": "Approved"},
    }


def described(status: str, commit_id: str | None = COMMIT_ID) -> dict[str, Any]:
    """A describe_model_package response."""
    response = {
        "ModelPackageName": "group",
        "ModelPackageGroupName": "group",
        "ModelPackageVersion": 3,
        "ModelPackageArn": PACKAGE_ARN,
        "CreationTime": "2024-01-01T00:00:00Z",
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []},
        "ModelApprovalStatus": status,
    }
    if commit_id:
        response["MetadataProperties"] = {"CommitId": commit_id}
    return response


def starts_table_update(update: str, condition: str, **values: dict[str, str]) -> dict[str, Any]:
    """The UpdateItem request the starter sends for the group of PACKAGE_ARN."""
    return {
        "TableName": "{{ cookiecutter.__deploy_starts_table_name }}",
        "Key": {"ModelPackageGroupName": {"S": "group"}},
        "UpdateExpression": update,
        "ConditionExpression": condition,
        "ExpressionAttributeValues": {":version": {"N": "3"}, **values},
    }


def test_starter_starts_the_pipeline_at_the_packages_commit(start_deploy: Any) -> None:
    (source,) = stages(deploy_pipeline())["Source"]
    pipeline_name = default(template("model-deploy-pipeline.yml"), "DeployPipelineName")
    with (
        Stubber(start_deploy.sagemaker) as sagemaker,
        Stubber(start_deploy.codepipeline) as codepipeline,
        Stubber(start_deploy.dynamodb) as dynamodb,
    ):
        sagemaker.add_response(
            "describe_model_package", described("Approved"), {"ModelPackageName": PACKAGE_ARN}
        )
        dynamodb.add_response(
            "update_item",
            {},
            starts_table_update("SET PackageVersion = :version", start_deploy.UNSTARTED),
        )
        codepipeline.add_response(
            "start_pipeline_execution",
            {"pipelineExecutionId": "execution-1"},
            {
                "name": pipeline_name,
                "clientRequestToken": ANY,
                "sourceRevisions": [
                    {
                        "actionName": source["Name"],
                        "revisionType": "COMMIT_ID",
                        "revisionValue": COMMIT_ID,
                    }
                ],
            },
        )
        dynamodb.add_response(
            "update_item",
            {},
            starts_table_update(
                "SET ExecutionId = :execution",
                "PackageVersion = :version",
                **{":execution": {"S": "execution-1"}},
            ),
        )
        result = start_deploy.handler(approved_event(), None)
        codepipeline.assert_no_pending_responses()
        dynamodb.assert_no_pending_responses()
    assert result == {"started": True, "pipelineExecutionId": "execution-1"}


def test_starter_starts_nothing_for_an_edit_of_a_started_package(start_deploy: Any) -> None:
    """A later state change of an Approved package (its description edited, say) passes the
    rule too: the table says this version, or a later one, already started a deploy."""
    start_deploy.codepipeline = RecordingCodePipeline()
    with Stubber(start_deploy.sagemaker) as sagemaker, Stubber(start_deploy.dynamodb) as dynamodb:
        sagemaker.add_response("describe_model_package", described("Approved"))
        dynamodb.add_client_error("update_item", "ConditionalCheckFailedException")
        assert start_deploy.handler(approved_event(), None) == {"started": False}
    assert start_deploy.codepipeline.requests == []


def test_each_version_starts_once_and_never_after_a_later_one(start_deploy: Any) -> None:
    """The starter's conditional writes, run against moto's DynamoDB: a new version starts,
    an edit of it does not, an older version approved later does not, a newer one does."""
    start_deploy.codepipeline = RecordingCodePipeline()
    with mock_aws():
        start_deploy.dynamodb = boto3.client("dynamodb")
        table = only_resource(template("model-deploy-pipeline.yml"), "AWS::DynamoDB::Table")
        start_deploy.dynamodb.create_table(
            **{key: table[key] for key in ("TableName", "AttributeDefinitions", "KeySchema")},
            BillingMode="PAY_PER_REQUEST",
        )
        started = []
        for version in (3, 3, 2, 4):
            arn = PACKAGE_ARN.rsplit("/", 1)[0] + f"/{version}"
            with Stubber(start_deploy.sagemaker) as sagemaker:
                package = {**described("Approved"), "ModelPackageVersion": version}
                package["ModelPackageArn"] = arn
                sagemaker.add_response("describe_model_package", package)
                started.append(start_deploy.handler(approved_event(arn), None)["started"])
    assert started == [True, False, False, True]
    assert len(start_deploy.codepipeline.requests) == 2


def test_starter_refuses_a_package_without_its_commit(start_deploy: Any) -> None:
    start_deploy.codepipeline = RecordingCodePipeline()
    with Stubber(start_deploy.sagemaker) as sagemaker:
        sagemaker.add_response("describe_model_package", described("Approved", commit_id=None))
        with pytest.raises(ValueError, match=r"MetadataProperties\.CommitId"):
            start_deploy.handler(approved_event(), None)
    assert start_deploy.codepipeline.requests == []


@pytest.mark.parametrize(
    "recorded",
    [
        "0123abc",
        COMMIT_ID + "0",
        "main",
        COMMIT_ID[:-1] + "g",
        COMMIT_ID[:20] + " " + COMMIT_ID[21:],
    ],
)
def test_starter_refuses_a_commit_id_that_is_not_40_hex_digits(
    start_deploy: Any, recorded: str
) -> None:
    start_deploy.codepipeline = RecordingCodePipeline()
    with Stubber(start_deploy.sagemaker) as sagemaker:
        sagemaker.add_response("describe_model_package", described("Approved", recorded))
        with pytest.raises(ValueError, match="not a 40-hex-digit git commit id"):
            start_deploy.handler(approved_event(), None)
    assert start_deploy.codepipeline.requests == []


def test_starter_skips_a_package_no_longer_approved(start_deploy: Any) -> None:
    start_deploy.codepipeline = RecordingCodePipeline()
    with Stubber(start_deploy.sagemaker) as sagemaker:
        sagemaker.add_response("describe_model_package", described("Rejected"))
        assert start_deploy.handler(approved_event(), None) == {"started": False}
    assert start_deploy.codepipeline.requests == []


def test_one_request_token_per_package(start_deploy: Any) -> None:
    """A retry after a start whose answer was lost sends the same token, whatever the
    event: CodePipeline then returns the execution it started."""
    start_deploy.codepipeline = RecordingCodePipeline()
    with Stubber(start_deploy.sagemaker) as sagemaker, Stubber(start_deploy.dynamodb) as dynamodb:
        for event_id in ("event-1", "event-2"):
            event = approved_event()
            event["id"] = event_id
            sagemaker.add_response("describe_model_package", described("Approved"))
            dynamodb.add_response("update_item", {})
            dynamodb.add_response("update_item", {})
            start_deploy.handler(event, None)
    first, retry = (request["clientRequestToken"] for request in start_deploy.codepipeline.requests)
    assert first == retry
    assert re.fullmatch(r"[a-f0-9]{64}", first)


# ---------------------------------------------------------------- endpoint and stage configs


def test_endpoint_rolls_back_on_its_alarms_blue_green() -> None:
    document = template("endpoint.yml")
    endpoint = only_resource(document, "AWS::SageMaker::Endpoint")
    policy = endpoint["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    assert policy["TrafficRoutingConfiguration"]["Type"] == "ALL_AT_ONCE"
    alarms = endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    alarm_ids = {alarm["AlarmName"]["Ref"] for alarm in alarms}
    metrics = {
        document["Resources"][logical_id]["Properties"]["MetricName"] for logical_id in alarm_ids
    }
    assert metrics == {"Invocation5XXErrors", "ModelLatency"}
    (variant,) = only_resource(document, "AWS::SageMaker::EndpointConfig")["ProductionVariants"]
    assert variant["VariantName"] == "AllTraffic"
    model = only_resource(document, "AWS::SageMaker::Model")
    assert model["PrimaryContainer"] == {"ModelPackageName": {"Ref": "ModelPackageArn"}}


def test_rollback_window_fits_the_deployment_timeout() -> None:
    """SageMaker's API model: MaximumExecutionTimeoutInSeconds must exceed the termination
    wait plus the traffic-shift interval; the largest window leaves time to provision."""
    shapes = botocore.session.get_session().get_service_model("sagemaker")
    policy_shape = shapes.shape_for("BlueGreenUpdatePolicy").members
    routing_shape = shapes.shape_for("TrafficRoutingConfig").members
    document = template("endpoint.yml")
    window = document["Parameters"]["RollbackWindowSeconds"]
    policy = only_resource(document, "AWS::SageMaker::Endpoint")["DeploymentConfig"][
        "BlueGreenUpdatePolicy"
    ]
    timeout = policy["MaximumExecutionTimeoutInSeconds"]
    interval = policy["TrafficRoutingConfiguration"]["WaitIntervalInSeconds"]
    for name, value, shape in (
        ("MaximumExecutionTimeoutInSeconds", timeout, policy_shape),
        ("TerminationWaitInSeconds", window["MaxValue"], policy_shape),
        ("TerminationWaitInSeconds", window["MinValue"], policy_shape),
        ("WaitIntervalInSeconds", interval, routing_shape),
    ):
        bounds = shape[name].metadata
        assert bounds["min"] <= value <= bounds["max"], (name, value, bounds)
    assert window["MaxValue"] + interval < timeout
    # The new fleet is provisioned inside the same timeout.
    assert timeout - window["MaxValue"] - interval >= PROVISIONING_SECONDS
    for stage in ("staging", "prod"):
        assert int(stage_config(stage)["Parameters"]["RollbackWindowSeconds"]) <= window["MaxValue"]


def test_model_and_endpoint_config_are_named_endpoint_and_package_version() -> None:
    """Names the deploy role can be scoped to; every package version still fits."""
    shapes = botocore.session.get_session().get_service_model("sagemaker")
    document = template("endpoint.yml")
    version = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "ModelPackageArn"}]}]}
    expected = {"Fn::Join": ["-", [{"Ref": "EndpointName"}, version]]}
    model = only_resource(document, "AWS::SageMaker::Model")
    endpoint_config = only_resource(document, "AWS::SageMaker::EndpointConfig")
    assert model["ModelName"] == expected
    assert endpoint_config["EndpointConfigName"] == expected
    pattern = document["Parameters"]["ModelPackageArn"]["AllowedPattern"]
    assert re.fullmatch(pattern, PACKAGE_ARN)
    max_version_digits = 10
    assert re.fullmatch(pattern, PACKAGE_ARN[:-1] + "9" * max_version_digits)
    assert not re.fullmatch(pattern, PACKAGE_ARN[: PACKAGE_ARN.rindex("/")])
    for shape in ("ModelName", "EndpointConfigName"):
        limit = shapes.shape_for(shape).metadata["max"]
        for endpoint in (config.STAGING_ENDPOINT_NAME, config.PROD_ENDPOINT_NAME):
            assert len(endpoint) + 1 + max_version_digits <= limit, (shape, endpoint)


def test_artifact_key_outlives_its_stack() -> None:
    """Model artifacts and captured data encrypted with the key stay readable."""
    key = template("model-build-pipeline.yml")["Resources"]["ArtifactKey"]
    assert key["DeletionPolicy"] == "Retain"
    assert key["UpdateReplacePolicy"] == "Retain"


LOG_GROUP_ARN = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"


def test_endpoint_log_groups_are_made_ahead_with_retention_and_the_key() -> None:
    """SageMaker makes /aws/sagemaker/Endpoints/<endpoint> without retention or a key when
    the group is missing; {% if cookiecutter.prod_account_id %}the account stack{% else %}the deploy stack{% endif %} makes both first, and the key lets Logs use it."""
{%- if cookiecutter.prod_account_id %}
    document = template("account.yml")
    groups = resources_of_type(document, "AWS::Logs::LogGroup")
    made = {group["Properties"]["LogGroupName"]: group for group in groups.values()}
    for stage, endpoint in (
        ("HostsStaging", config.STAGING_ENDPOINT_NAME),
        ("HostsProd", config.PROD_ENDPOINT_NAME),
    ):
        group = made["/aws/sagemaker/Endpoints/" + endpoint]
        assert group["Condition"] == stage
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert group["Properties"]["KmsKeyId"] == {"Fn::GetAtt": ["EndpointKey", "Arn"]}
    key = document["Resources"]["EndpointKey"]["Properties"]
    [logs] = [
        statement
        for statement in key["KeyPolicy"]["Statement"]
        if statement["Principal"].get("Service") == {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}
    ]
    allowed = [logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]["Fn::Sub"]]
{%- else %}
    groups = resources_of_type(template("model-deploy-pipeline.yml"), "AWS::Logs::LogGroup")
    made = {
        json.dumps(group["Properties"]["LogGroupName"]): group["Properties"]
        for group in groups.values()
    }
    for parameter in ("StagingEndpointName", "ProdEndpointName"):
        name = json.dumps({"Fn::Sub": "/aws/sagemaker/Endpoints/${" + parameter + "}"})
        assert name in made, parameter
        assert made[name]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        assert "KmsKeyId" in made[name]
    key = template("model-build-pipeline.yml")["Resources"]["ArtifactKey"]["Properties"]
    [logs] = [
        statement
        for statement in key["KeyPolicy"]["Statement"]
        if statement["Principal"].get("Service") == {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}
    ]
    allowed = [
        arn["Fn::Sub"] for arn in logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    ]
{%- endif %}
    for endpoint in (config.STAGING_ENDPOINT_NAME, config.PROD_ENDPOINT_NAME):
        group = LOG_GROUP_ARN + "/aws/sagemaker/Endpoints/" + endpoint
        assert any(fnmatchcase(group, pattern) for pattern in allowed), endpoint


def stage_config(stage: str) -> dict[str, Any]:
    """infra/config/<stage>.json."""
    return json.loads((INFRA / "config" / f"{stage}.json").read_text())


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_stage_config_fills_every_endpoint_parameter_without_a_default(stage: str) -> None:
    parameters = template("endpoint.yml")["Parameters"]
    given = set(stage_config(stage)["Parameters"]) | {"ModelPackageArn"}
    assert given <= set(parameters)
    assert {name for name, spec in parameters.items() if "Default" not in spec} <= given
    for name, value in stage_config(stage)["Parameters"].items():
        assert "AllowedValues" not in parameters[name] or value in [
            str(v) for v in parameters[name]["AllowedValues"]
        ]


def test_stage_configs_name_the_projects_endpoints() -> None:
    staging, prod = stage_config("staging")["Parameters"], stage_config("prod")["Parameters"]
    assert staging["EndpointName"] == config.STAGING_ENDPOINT_NAME
    assert prod["EndpointName"] == config.PROD_ENDPOINT_NAME
    assert staging["EndpointType"] == STAGING_ENDPOINT_TYPE
    assert prod["EndpointType"] == "instance"
    assert prod["InstanceType"] == config.ENDPOINT_INSTANCE_TYPE


def test_captured_data_expires() -> None:
    """Production captures a share of its requests, and the bucket expires them."""
    prod = stage_config("prod")["Parameters"]
    assert 1 <= int(prod["DataCaptureSamplingPercentage"]) <= 100
    capture_prefix = prod["DataCaptureS3Uri"].split("/", 3)[3] + "/"
    document = template("model-build-pipeline.yml")
    rules = only_resource(document, "AWS::S3::Bucket")["LifecycleConfiguration"]["Rules"]
    expiring = [
        rule
        for rule in rules
        if "ExpirationInDays" in rule and capture_prefix.startswith(rule.get("Prefix", ""))
    ]
    assert [rule["ExpirationInDays"] for rule in expiring] == [{"Ref": "DataCaptureRetentionDays"}]
    assert default(document, "DataCaptureRetentionDays") >= 1


def condition(document: dict[str, Any], name: str, parameters: dict[str, str]) -> bool:
    """A condition of the template evaluated for these parameter values (and defaults)."""
    values = {key: str(spec.get("Default", "")) for key, spec in document["Parameters"].items()}
    values.update(parameters)

    def value(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        ((function, argument),) = node.items()
        if function == "Ref":
            return values[argument]
        if function == "Condition":
            return condition(document, argument, parameters)
        if function == "Fn::Split":
            return str(value(argument[1])).split(argument[0])
        if function == "Fn::Select":
            return value(argument[1])[int(argument[0])]
        if function == "Fn::Equals":
            return str(value(argument[0])) == str(value(argument[1]))
        if function == "Fn::Not":
            return not value(argument[0])
        if function == "Fn::And":
            return all(value(item) for item in argument)
        if function == "Fn::Or":
            return any(value(item) for item in argument)
        raise AssertionError(f"{function} is not evaluated here")

    return bool(value(document["Conditions"][name]))


# SageMaker rejects a KMS key for the storage volume of an instance type with local NVMe
# storage (botocore's CreateEndpointConfig KmsKeyId documentation); the captured data is
# still encrypted with it.
@pytest.mark.parametrize(
    ("instance_type", "local_storage"),
    [
        ("ml.m5.large", False),
        ("ml.c5.xlarge", False),
        ("ml.m5d.large", True),
        ("ml.c5d.2xlarge", True),
        ("ml.g4dn.xlarge", True),
    ],
)
def test_volume_key_is_left_out_for_instance_storage(
    instance_type: str, local_storage: bool
) -> None:
    document = template("endpoint.yml")
    parameters = {
        **stage_config("prod")["Parameters"],
        "InstanceType": instance_type,
        "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e",
    }
    assert condition(document, "EncryptVolume", parameters) is not local_storage
    assert condition(document, "EncryptCapture", parameters) is True
    serverless = {**parameters, "EndpointType": "serverless"}
    assert not condition(document, "EncryptVolume", serverless)
    assert not condition(document, "EncryptCapture", serverless)


# IAM resources a template names itself: CloudFormation then wants CAPABILITY_NAMED_IAM.
IAM_NAME_PROPERTIES = ("RoleName", "ManagedPolicyName", "UserName", "GroupName")


def test_every_deploy_asks_for_the_capability_its_iam_resources_need() -> None:
    """CreateStack and CreateChangeSet refuse a template with IAM resources without
    CAPABILITY_IAM, and one that names them without CAPABILITY_NAMED_IAM (CloudFormation
    API reference, Capabilities). Checked for each `aws cloudformation deploy` of infra.mk."""
    recipes = re.sub(r"\\\n\s*", " ", (INFRA / "infra.mk").read_text())
    deploys = [
        (match.group(1), re.search(r"--capabilities (\S+)", command))
        for command in re.findall(r"cloudformation deploy [^\n]*", recipes)
        if (match := re.search(r"--template-file infra/(\S+\.yml)", command))
    ]
    assert deploys
    for name, capabilities in deploys:
        resources = template(name)["Resources"].values()
        iam = [item for item in resources if item["Type"].startswith("AWS::IAM::")]
        named = any(item["Properties"].get(key) for item in iam for key in IAM_NAME_PROPERTIES)
        given = capabilities.group(1) if capabilities else ""
        if named:
            assert "CAPABILITY_NAMED_IAM" in given, name
        elif iam:
            assert "CAPABILITY_IAM" in given or "CAPABILITY_NAMED_IAM" in given, name
