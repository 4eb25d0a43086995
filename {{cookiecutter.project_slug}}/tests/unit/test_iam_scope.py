"""Each role of infra/ against the calls its code makes: every call allowed, nothing more.

The calls are those of the code each role runs: `aws cloudformation deploy` (the AWS CLI's
cloudformation deployer: DescribeStacks, then GetTemplateSummary when the stack exists,
CreateChangeSet, the change-set waiter's DescribeChangeSet, ExecuteChangeSet and the stack
waiter's DescribeStacks), the deploy module, the endpoint tests and the SageMaker pipeline.
Policies are evaluated here as IAM does for Allow statements: action and resource ARN, with
`*` and `?` wildcards; references resolve to the parameters' defaults.
"""

import re
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from infra_support import template

from {{ cookiecutter.package_name }} import config

INFRA = Path(__file__).resolve().parents[2] / "infra"
ACCOUNT = "123456789012"
REGION = config.AWS_REGION
BUILD_PIPELINE_NAME = "{{ cookiecutter.__build_pipeline_name }}"
DEPLOY_PIPELINE_NAME = "{{ cookiecutter.__deploy_pipeline_name }}"
BUCKET = f"{config.ARTIFACT_BUCKET_PREFIX}-{ACCOUNT}"
PROD_STACK = "{{ cookiecutter.__prod_stack_name }}"
STAGING_STACK = "{{ cookiecutter.__staging_stack_name }}"
SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def resolve(document: dict[str, Any], value: Any) -> str:
    """A policy Resource value as the ARN (pattern) it names in this account."""
    if isinstance(value, str):
        return value
    (function, argument), *_ = value.items()
    if function == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        return SUB_VARIABLE.sub(lambda match: sub_value(document, match.group(1), variables), text)
    if function == "Fn::GetAtt":
        logical_id, attribute = argument if isinstance(argument, list) else argument.split(".")
        return physical_arn(document, logical_id, attribute)
    if function == "Ref":
        return sub_value(document, argument, {})
    if function == "Fn::ImportValue":
        export = resolve(document, argument)
        return {
            "ArtifactBucketName": BUCKET,
            "ArtifactKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/artifact-key",
            "SageMakerExecutionRoleArn": (
                f"arn:aws:iam::{ACCOUNT}:role/{config.SAGEMAKER_ROLE_NAME}"
            ),
            "RepositoryArn": f"arn:aws:codecommit:{REGION}:{ACCOUNT}:{config.PROJECT_SLUG}",
        }[export.rsplit("-", 1)[-1]]
    raise AssertionError(f"unresolved {value}")


def sub_value(document: dict[str, Any], name: str, variables: dict[str, Any]) -> str:
    """The value of one ${name} in a Sub."""
    if name in variables:
        return resolve(document, variables[name])
    pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
    if name in pseudo:
        return pseudo[name]
    if "." in name:
        logical_id, attribute = name.split(".", 1)
        return physical_arn(document, logical_id, attribute)
    if name == "AWS::StackName":
        return "stack"
    if name in document["Parameters"]:
        return str(document["Parameters"][name]["Default"])
    if name == "ArtifactBucket":
        return BUCKET
    return f"{name}-physical-id"


def physical_arn(document: dict[str, Any], logical_id: str, attribute: str) -> str:
    """The ARN of a resource of the template (its name property where it has one)."""
    resource = document["Resources"][logical_id]
    kind, properties = resource["Type"], resource.get("Properties", {})
    if logical_id == "ArtifactBucket":
        return f"arn:aws:s3:::{BUCKET}"
    if kind == "AWS::Logs::LogGroup":
        return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{properties['LogGroupName']}:*"
    if kind == "AWS::KMS::Key":
        return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{logical_id}"
    if kind == "AWS::IAM::Role":
        return f"arn:aws:iam::{ACCOUNT}:role/{logical_id}"
    return f"arn:aws:{kind}:{logical_id}:{attribute}"


def role_statements(document: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    """The statements of a role's inline policies and of the managed policies it attaches."""
    properties = document["Resources"][role_id]["Properties"]
    statements = [
        statement
        for policy in properties.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    for reference in properties.get("ManagedPolicyArns", []):
        policy = document["Resources"][reference["Ref"]]["Properties"]
        statements.extend(policy["PolicyDocument"]["Statement"])
    return statements


def as_list(value: Any) -> list[Any]:
    """A scalar as a one-item list."""
    return value if isinstance(value, list) else [value]


def allows(document: dict[str, Any], role_id: str, action: str, arn: str) -> bool:
    """Whether an Allow statement of the role matches the action on the resource ARN."""
    for statement in role_statements(document, role_id):
        if statement["Effect"] != "Allow":
            continue
        actions = as_list(statement["Action"])
        if not any(fnmatchcase(action.lower(), granted.lower()) for granted in actions):
            continue
        patterns = [resolve(document, value) for value in as_list(statement["Resource"])]
        if any(fnmatchcase(arn, pattern) for pattern in patterns):
            return True
    return False


def inline_actions(document: dict[str, Any], role_id: str) -> set[str]:
    """The actions a role's inline policies grant."""
    properties = document["Resources"][role_id]["Properties"]
    return {
        action
        for policy in properties.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        for action in as_list(statement["Action"])
    }


def stack_arn(name: str) -> str:
    """A stack's ARN (CloudFormation appends a generated id)."""
    return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{name}/0a1b2c3d-4e5f"


def endpoint_arn(name: str) -> str:
    """A SageMaker endpoint's ARN."""
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{name}"


def object_arn(key: str) -> str:
    """An artifact bucket object's ARN."""
    return f"arn:aws:s3:::{BUCKET}/{key}"


# ---------------------------------------------------------------- deploy pipeline builds

DEPLOY = "model-deploy-pipeline.yml"
{%- if cookiecutter.prod_account_id %}


def stage_role(stage: str, purpose: str) -> str:
    """A role make bootstrap-account makes in a stage account."""
    account = config.STAGING_ACCOUNT_ID if stage == "staging" else config.PROD_ACCOUNT_ID
    slug = config.PROJECT_SLUG
    return f"arn:aws:iam::{account}:role/{slug}/{slug}-{stage}-{purpose}"


# make deploy-prod with separate accounts: everything in the production account as its
# deploy role (assumed through the profile), then the record of what production serves.
DEPLOY_PROD_CALLS = {
    ("sts:AssumeRole", stage_role("prod", "deploy")),
    ("s3:PutObject", object_arn("production/model-package.json")),
    ("s3:GetObject", object_arn("codebuild-cache/deploy-prod/cache.zip")),
    ("s3:PutObject", object_arn("codebuild-cache/deploy-prod/cache.zip")),
}
# make test-endpoint against staging: as the staging account's test role.
TEST_STAGING_CALLS = {
    ("sts:AssumeRole", stage_role("staging", "test")),
    ("s3:GetObject", object_arn("codebuild-cache/test-staging/cache.zip")),
    ("s3:PutObject", object_arn("codebuild-cache/test-staging/cache.zip")),
}
{%- else %}
ENDPOINT_DEPLOY_ROLE = f"arn:aws:iam::{ACCOUNT}:role/EndpointDeployRole"
# make deploy-prod: the AWS CLI's `cloudformation deploy` on an existing stack, the saved
# template and the recovery of a failed first creation (deploy module), the smoke test.
DEPLOY_PROD_CALLS = {
    ("cloudformation:DescribeStacks", stack_arn(PROD_STACK)),
    ("cloudformation:GetTemplateSummary", stack_arn(PROD_STACK)),
    ("cloudformation:CreateChangeSet", stack_arn(PROD_STACK)),
    ("cloudformation:DescribeChangeSet", stack_arn(PROD_STACK)),
    ("cloudformation:ExecuteChangeSet", stack_arn(PROD_STACK)),
    ("cloudformation:GetTemplate", stack_arn(PROD_STACK)),
    ("cloudformation:DeleteStack", stack_arn(PROD_STACK)),
    ("iam:PassRole", ENDPOINT_DEPLOY_ROLE),
    ("sagemaker:InvokeEndpoint", endpoint_arn(config.PROD_ENDPOINT_NAME)),
    # CodeBuild restores and saves the project's S3 cache with the project's role.
    ("s3:GetObject", object_arn("codebuild-cache/deploy-prod/cache.zip")),
    ("s3:PutObject", object_arn("codebuild-cache/deploy-prod/cache.zip")),
}
# make test-endpoint against staging.
TEST_STAGING_CALLS = {
    ("sagemaker:InvokeEndpoint", endpoint_arn(config.STAGING_ENDPOINT_NAME)),
    ("s3:GetObject", object_arn("codebuild-cache/test-staging/cache.zip")),
    ("s3:PutObject", object_arn("codebuild-cache/test-staging/cache.zip")),
}
{%- endif %}


# make stage-config: the approved packages of the group (ListModelPackages has no resource),
# the package of the commit; its output artifact and cache.
STAGE_CONFIG_CALLS = {
    ("sagemaker:ListModelPackages", "*"),
    (
        "sagemaker:DescribeModelPackage",
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{config.MODEL_PACKAGE_GROUP_NAME}/3",
    ),
    ("s3:GetObject", object_arn("codebuild-cache/stage-config/cache.zip")),
    ("s3:PutObject", object_arn("codebuild-cache/stage-config/cache.zip")),
    ("s3:PutObject", object_arn(f"{DEPLOY_PIPELINE_NAME[:20]}/StageConfi/a1b2c3d")),
}


@pytest.mark.parametrize(
    ("role_id", "calls"),
    [
        ("DeployProdRole", DEPLOY_PROD_CALLS),
        ("TestStagingRole", TEST_STAGING_CALLS),
        ("StageConfigRole", STAGE_CONFIG_CALLS),
    ],
)
def test_build_role_allows_every_call_of_its_make_target_and_no_other(
    role_id: str, calls: set[tuple[str, str]]
) -> None:
    document = template(DEPLOY)
    denied = sorted(call for call in calls if not allows(document, role_id, *call))
    assert denied == [], f"{role_id} denies {denied}"
    unused = inline_actions(document, role_id) - {action for action, _ in calls}
    assert unused == set(), f"{role_id} grants {sorted(unused)}, which nothing calls"


def test_deploy_prod_role_cannot_touch_the_staging_stack_or_endpoint() -> None:
    document = template(DEPLOY)
{%- if cookiecutter.prod_account_id %}
    for purpose in ("deploy", "test", "cloudformation", "endpoint"):
        staging = stage_role("staging", purpose)
        assert not allows(document, "DeployProdRole", "sts:AssumeRole", staging)
{%- endif %}
    for action, _ in DEPLOY_PROD_CALLS:
        if action.startswith("cloudformation:"):
            assert not allows(document, "DeployProdRole", action, stack_arn(STAGING_STACK))
    staging = endpoint_arn(config.STAGING_ENDPOINT_NAME)
    assert not allows(document, "DeployProdRole", "sagemaker:InvokeEndpoint", staging)


# ---------------------------------------------------------------- SageMaker execution role


def test_sagemaker_role_holds_no_grant_or_delete_rights() -> None:
    """Nothing the role runs deletes objects or creates grants: jobs write their outputs
    (PutObject), endpoints read model files and write captured data; grants for encrypted
    endpoint volumes are created for the caller of CreateEndpoint (EndpointDeployRole)."""
    document = template("model-build-pipeline.yml")
    role = "SageMakerExecutionRole"
    assert not allows(document, role, "s3:DeleteObject", object_arn("data-capture/prod/x"))
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/ArtifactKey"
    assert not allows(document, role, "kms:CreateGrant", key)
    assert allows(document, role, "s3:PutObject", object_arn("data-capture/prod/x"))


# ---------------------------------------------------------------- artifact bucket prefixes

BUILD = "model-build-pipeline.yml"
# What no build role may read or overwrite: captured requests, registered model files,
# the SageMaker pipeline's job outputs, other builds' caches.
GUARDED_KEYS = (
    "data-capture/prod/AllTraffic/2024/01/01/00/capture.jsonl",
    f"{config.SAGEMAKER_PIPELINE_NAME}/models/pipelines-abc-Train/output/model.tar.gz",
    f"{config.SAGEMAKER_PIPELINE_NAME}/execution-1/Evaluate/evaluation/evaluation.json",
    "lambda/merge_dev_to_master-0123456789abcdef.zip",
)
BUILD_ROLES = {
    BUILD: {
        "BuildProjectRole": ("build", BUILD_PIPELINE_NAME),
        "TrainProjectRole": ("train", BUILD_PIPELINE_NAME),
    },
    DEPLOY: {
        "StageConfigRole": ("stage-config", DEPLOY_PIPELINE_NAME),
        "TestStagingRole": ("test-staging", DEPLOY_PIPELINE_NAME),
        "DeployProdRole": ("deploy-prod", DEPLOY_PIPELINE_NAME),
    },
}
ALL_BUILD_ROLES = [(name, role) for name, roles in BUILD_ROLES.items() for role in roles]


@pytest.mark.parametrize(("name", "role_id"), ALL_BUILD_ROLES)
def test_build_roles_neither_read_nor_write_models_or_captured_data(
    name: str, role_id: str
) -> None:
    document = template(name)
    for key in GUARDED_KEYS:
        for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
            assert not allows(document, role_id, action, object_arn(key)), (action, key)


@pytest.mark.parametrize(("name", "role_id"), ALL_BUILD_ROLES)
def test_build_roles_write_only_their_own_cache_and_read_their_pipelines_artifacts(
    name: str, role_id: str
) -> None:
    document = template(name)
    cache, pipeline = BUILD_ROLES[name][role_id]
    own = object_arn(f"codebuild-cache/{cache}/cache.zip")
    assert allows(document, role_id, "s3:GetObject", own)
    assert allows(document, role_id, "s3:PutObject", own)
    artifact = object_arn(f"{pipeline[:20]}/SourceArti/a1b2c3d")
    assert allows(document, role_id, "s3:GetObject", artifact)
    # Only the Build stage's project produces an artifact of the deploy pipeline.
    assert allows(document, role_id, "s3:PutObject", artifact) == (role_id == "StageConfigRole")
    for _, (other, _) in BUILD_ROLES[name].items():
        if other != cache:
            key = object_arn(f"codebuild-cache/{other}/cache.zip")
            assert not allows(document, role_id, "s3:PutObject", key), other


PIPELINE_ROLES = {BUILD: "BuildPipelineRole", DEPLOY: "DeployPipelineRole"}


def test_the_two_pipelines_artifact_prefixes_differ() -> None:
    """CodePipeline names an artifact folder after the first 20 characters of the pipeline
    name: the build role, which runs unreviewed code, must not reach the deploy pipeline's."""
    assert BUILD_PIPELINE_NAME[:20] != DEPLOY_PIPELINE_NAME[:20]


@pytest.mark.parametrize(("name", "role_id"), [*ALL_BUILD_ROLES, *PIPELINE_ROLES.items()])
def test_no_role_reaches_the_other_pipelines_artifacts(name: str, role_id: str) -> None:
    document = template(name)
    other = DEPLOY_PIPELINE_NAME if name == BUILD else BUILD_PIPELINE_NAME
    artifact = object_arn(f"{other[:20]}/SourceArti/a1b2c3d")
    for action in ("s3:GetObject", "s3:PutObject"):
        assert not allows(document, role_id, action, artifact), (action, other[:20])


def test_train_role_uploads_only_the_pipelines_code_and_data_set() -> None:
    document = template(BUILD)
    prefix = config.SAGEMAKER_PIPELINE_NAME
    for key in (f"{prefix}/code/0a1b/sourcedir.tar.gz", f"{prefix}/input/0a1b/data.csv"):
        assert allows(document, "TrainProjectRole", "s3:PutObject", object_arn(key))
    assert not allows(document, "BuildProjectRole", "s3:PutObject", object_arn(f"{prefix}/code/x"))


# ---------------------------------------------------------------- endpoint stacks

SAGEMAKER = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"


{%- if not cookiecutter.prod_account_id %}


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("sagemaker:CreateModel", "model"),
        ("sagemaker:DeleteModel", "model"),
        ("sagemaker:CreateEndpointConfig", "endpoint-config"),
        ("sagemaker:DeleteEndpointConfig", "endpoint-config"),
    ],
)
def test_endpoint_deploy_role_creates_and_deletes_only_the_projects_names(
    action: str, kind: str
) -> None:
    document = template(DEPLOY)
    for endpoint in (config.STAGING_ENDPOINT_NAME, config.PROD_ENDPOINT_NAME):
        assert allows(document, "EndpointDeployRole", action, f"{SAGEMAKER}:{kind}/{endpoint}-12")
    for other in ("another-team-model", "Model-a1B2c3D4e5F6", f"x{config.PROD_ENDPOINT_NAME}-1"):
        assert not allows(document, "EndpointDeployRole", action, f"{SAGEMAKER}:{kind}/{other}")
{%- endif %}


# ---------------------------------------------------------------- the pull-request check

CHECK_PIPELINE_NAME = "{{ cookiecutter.__check_pipeline_name }}"
# What the check's role, which runs a pull request's code, may never do.
NEVER_FROM_A_PULL_REQUEST = (
    "codepipeline:",
    "codecommit:",
    "secretsmanager:",
    "iam:",
    "sts:",
    "lambda:",
    "sagemaker:Create",
    "sagemaker:Update",
    "sagemaker:Start",
    "sagemaker:Delete",
    "cloudformation:Create",
    "cloudformation:Update",
    "cloudformation:Delete",
    "cloudformation:Execute",
)


def test_the_three_pipelines_artifact_prefixes_differ() -> None:
    names = (BUILD_PIPELINE_NAME, DEPLOY_PIPELINE_NAME, CHECK_PIPELINE_NAME)
    assert len({name[:20] for name in names}) == 3


def test_the_check_role_cannot_start_train_register_deploy_or_reach_the_git_host() -> None:
    document = template(DEPLOY)
    granted = inline_actions(document, "CheckProjectRole")
    assert [action for action in granted if action.startswith(NEVER_FROM_A_PULL_REQUEST)] == []


def test_the_check_role_writes_only_its_cache_and_its_results() -> None:
    document = template(DEPLOY)
    role = "CheckProjectRole"
    assert allows(document, role, "s3:PutObject", object_arn("pull-request-checks/a1b2.json"))
    cache = object_arn("codebuild-cache/pull-request-check/cache.zip")
    assert allows(document, role, "s3:PutObject", cache)
    for key in (
        *GUARDED_KEYS,
        f"{BUILD_PIPELINE_NAME[:20]}/SourceArti/a1b2c3d",
        f"{DEPLOY_PIPELINE_NAME[:20]}/StageConfi/a1b2c3d",
        f"{CHECK_PIPELINE_NAME[:20]}/SourceArti/a1b2c3d",
        "production/model-package.json",
        "incoming-data/batch/_READY",
        "codebuild-cache/build/cache.zip",
    ):
        assert not allows(document, role, "s3:PutObject", object_arn(key)), key


def test_the_check_role_reads_its_source_the_sample_and_the_production_model_only() -> None:
    document = template(DEPLOY)
    role = "CheckProjectRole"
    for key in (
        f"{CHECK_PIPELINE_NAME[:20]}/SourceArti/a1b2c3d",
        "pull-request-sample/sample.csv",
        GUARDED_KEYS[1],
    ):
        assert allows(document, role, "s3:GetObject", object_arn(key)), key
    for key in (
        GUARDED_KEYS[0],
        f"{DEPLOY_PIPELINE_NAME[:20]}/StageConfi/a1b2c3d",
        "incoming-data/batch/data.csv",
    ):
        assert not allows(document, role, "s3:GetObject", object_arn(key)), key


def test_only_the_pull_request_function_writes_to_the_pull_request() -> None:
    document = template(DEPLOY)
    roles = [
        logical_id
        for logical_id, resource in document["Resources"].items()
        if resource["Type"] == "AWS::IAM::Role"
    ]
{%- if cookiecutter.source_provider == 'codecommit' %}
    repository = f"arn:aws:codecommit:{REGION}:{ACCOUNT}:{{ cookiecutter.__codecommit_repository_name }}"
    for action in (
        "codecommit:PostCommentForPullRequest",
        "codecommit:UpdatePullRequestApprovalState",
    ):
        writers = [role for role in roles if allows(document, role, action, repository)]
        assert writers == ["PullRequestFunctionRole"], action
{%- else %}
    readers = sorted(
        role
        for role in roles
        if any(
            "secretsmanager:GetSecretValue" in as_list(statement["Action"])
            for statement in role_statements(document, role)
        )
    )
    assert readers == ["MergeFunctionRole", "PullRequestFunctionRole"]
{%- endif %}
