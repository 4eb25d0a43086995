"""Separate stage accounts in the rehearsal's IAM check: each kind of cross-account grant,
read from the three-account bake's own templates, allows its request, and without it the
request is denied naming the role, the action, the resource and the policy that lacks it.

A cross-account request needs both sides (IAM User Guide, "Cross-account policy evaluation
logic"): the caller's identity policies and the policy of the resource in the other account
(a role's trust policy, a key policy, a bucket policy, a model package group policy, an event
bus policy). `make rehearse` of a copy of that bake without one grant fails naming the call,
the role and the policy; the whole flow across the three accounts passes in test_rehearse.py.
"""

import copy
import re
from pathlib import Path

import pytest
from conftest import GITLAB
from engine_support import git, rehearse, rendered_answers, repository_copy
from rehearsal.accounts import ACCOUNT_TEMPLATE
from rehearsal.bootstrap import (
    BOOTSTRAP_TEMPLATE,
    BUILD_TEMPLATE,
    DEPLOY_TEMPLATE,
    Stacks,
    account_stack,
    iam_account,
    stack_roles,
)
from rehearsal.cloudformation import Stack, load_template
from rehearsal.iam import GLOBAL_CONTEXT, Authorization, decide

PIPELINES = "123456789012"
CONNECTION = f"arn:aws:codeconnections:us-east-1:{PIPELINES}:connection/0b1c2d3e-4f50-6172"


@pytest.fixture(scope="module")
def three_accounts(gitlab_bake: Path) -> dict:
    answers = rendered_answers(**GITLAB)
    assert answers["staging_account_id"] != answers["prod_account_id"]
    templates = {
        path: load_template(gitlab_bake / path)
        for path in (BOOTSTRAP_TEMPLATE, BUILD_TEMPLATE, DEPLOY_TEMPLATE, ACCOUNT_TEMPLATE)
    }
    return {"answers": answers, "templates": templates}


def stacks_of(three_accounts: dict, templates: dict) -> Stacks:
    """The stacks the templates make: the pipelines' three and one per stage account, with
    the physical names CloudFormation would give them (keys drawn as key/<logical id>)."""
    answers = three_accounts["answers"]
    region = answers["aws_region"]

    def keyed(stack: Stack) -> Stack:
        for logical_id, resource in stack.template["Resources"].items():
            if resource["Type"] == "AWS::KMS::Key":
                arn = f"arn:aws:kms:{region}:{stack.account_id}:key/{logical_id.lower()}"
                stack.attributes[(logical_id, "Arn")] = arn
        return stack

    bootstrap = keyed(Stack("bootstrap", templates[BOOTSTRAP_TEMPLATE], PIPELINES, region))
    build = keyed(
        Stack(
            answers["__build_stack_name"],
            templates[BUILD_TEMPLATE],
            PIPELINES,
            region,
            parameter_values={"ConnectionArn": CONNECTION},
        )
    )
    deploy = keyed(
        Stack(
            answers["__deploy_stack_name"],
            templates[DEPLOY_TEMPLATE],
            PIPELINES,
            region,
            parameter_values={
                "ConnectionArn": CONNECTION,
                "MergeFunctionCodeKey": "lambda/merge.zip",
                "GitTokenSecretArn": f"arn:aws:secretsmanager:{region}:{PIPELINES}:secret:t",
            },
            exports=build.exported_values(),
        )
    )
    accounts = tuple(
        keyed(account_stack("account", templates[ACCOUNT_TEMPLATE], account, PIPELINES, region))
        for account in sorted({answers["staging_account_id"], answers["prod_account_id"]})
    )
    return Stacks(build=build, deploy=deploy, bootstrap=bootstrap, accounts=accounts)


def verdict(three_accounts: dict, templates: dict, actor: str, action: str, resource: str):
    """(allowed, reason) of one request of actor, as the rehearsal's checker decides it."""
    stacks = stacks_of(three_accounts, templates)
    policies, roles = stack_roles(stacks)
    account = iam_account(stacks, roles, PIPELINES, three_accounts["answers"]["aws_region"])
    request = Authorization(action, resource, GLOBAL_CONTEXT)
    allowed, _, reason = decide(request, actor, policies[actor], account)
    return allowed, reason


def without_statement(templates: dict, path: Path, logical_id: str, sid: str, where: tuple):
    """A copy of the templates with one statement of a resource's policy removed."""
    changed = copy.deepcopy(templates)
    document = changed[path]["Resources"][logical_id]["Properties"]
    for key in where:
        document = document[key]
    before = len(document["Statement"])
    document["Statement"] = [item for item in document["Statement"] if item.get("Sid") != sid]
    assert len(document["Statement"]) == before - 1, f"{logical_id} has no statement {sid}"
    return changed


def requests(answers: dict) -> dict:
    """kind of grant -> (actor, action, resource, the grant's template, resource, Sid, path):
    the cross-account requests the flow makes, one per kind of grant."""
    slug, region = answers["project_slug"], answers["aws_region"]
    staging, prod = answers["staging_account_id"], answers["prod_account_id"]
    bucket = f"{answers['__artifact_bucket_prefix']}-{PIPELINES}"
    model = f"{answers['__sagemaker_pipeline_name']}/models/pipelines-x-Train/output/model.tar.gz"
    group = answers["__model_package_group_name"]
    return {
        "trust policy": (
            "TestStagingRole",
            "sts:AssumeRole",
            f"arn:aws:iam::{staging}:role/{slug}/{slug}-staging-test",
            ACCOUNT_TEMPLATE,
            "StagingTestRole",
            "TestStagingFromThePipelinesAccount",
            ("AssumeRolePolicyDocument",),
        ),
        "key policy": (
            f"StagingEndpointRole@{staging}",
            "kms:Decrypt",
            f"arn:aws:kms:{region}:{PIPELINES}:key/artifactkey",
            BUILD_TEMPLATE,
            "ArtifactKey",
            "StageAccountsDecryptArtifacts",
            ("KeyPolicy",),
        ),
        "bucket policy": (
            f"ProdEndpointRole@{prod}",
            "s3:GetObject",
            f"arn:aws:s3:::{bucket}/{model}",
            BUILD_TEMPLATE,
            "ArtifactBucketPolicy",
            "EndpointRolesReadRegisteredModels",
            ("PolicyDocument",),
        ),
        "model package group policy": (
            f"ProdCloudFormationRole@{prod}",
            "sagemaker:CreateModel",
            f"arn:aws:sagemaker:{region}:{PIPELINES}:model-package/{group}/1",
            BUILD_TEMPLATE,
            "ModelPackageGroup",
            "StageAccountsCreateModelsFromPackages",
            ("ModelPackageGroupPolicy",),
        ),
    }


KINDS = ["trust policy", "key policy", "bucket policy", "model package group policy"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_cross_account_grant_allows_its_request(three_accounts, kind):
    actor, action, resource, *_ = requests(three_accounts["answers"])[kind]
    assert verdict(three_accounts, three_accounts["templates"], actor, action, resource) == (
        True,
        "allowed",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_without_its_grant_the_request_is_denied_naming_the_policy_and_the_role(
    three_accounts, kind
):
    actor, action, resource, path, logical_id, sid, where = requests(three_accounts["answers"])[
        kind
    ]
    templates = without_statement(three_accounts["templates"], path, logical_id, sid, where)
    allowed, reason = verdict(three_accounts, templates, actor, action, resource)
    owner = resource.split(":")[4] or PIPELINES
    assert not allowed
    assert f"it is in account {owner}, whose {kind} does not allow arn:aws:iam::" in reason
    assert "(a cross-account request needs both sides)" in reason


def test_without_the_event_bus_policy_a_forwarded_alarm_is_denied(three_accounts):
    answers = three_accounts["answers"]
    prod = answers["prod_account_id"]
    bus = f"arn:aws:events:{answers['aws_region']}:{PIPELINES}:event-bus/default"
    actor = f"AlarmForwardingRole@{prod}"
    templates = three_accounts["templates"]
    assert verdict(three_accounts, templates, actor, "events:PutEvents", bus) == (True, "allowed")
    changed = copy.deepcopy(templates)
    resources = changed[DEPLOY_TEMPLATE]["Resources"]
    for logical_id in [
        key for key, value in resources.items() if value["Type"].endswith("EventBusPolicy")
    ]:
        del resources[logical_id]
    allowed, reason = verdict(three_accounts, changed, actor, "events:PutEvents", bus)
    assert not allowed and "whose event bus policy does not allow" in reason


def test_the_identity_side_is_needed_too(three_accounts):
    """The key policy admits the staging endpoint role; its own policy must name the key."""
    answers = three_accounts["answers"]
    staging = answers["staging_account_id"]
    key = f"arn:aws:kms:{answers['aws_region']}:{PIPELINES}:key/artifactkey"
    templates = without_statement(
        three_accounts["templates"],
        ACCOUNT_TEMPLATE,
        "StagingEndpointRole",
        "DecryptRegisteredModels",
        ("Policies", 0, "PolicyDocument"),
    )
    allowed, reason = verdict(
        three_accounts, templates, f"StagingEndpointRole@{staging}", "kms:Decrypt", key
    )
    assert not allowed and reason == "no statement of its policies allows it"


def test_a_grant_admits_only_the_roles_it_names(three_accounts):
    """The staging account's test role may not read the registered models: the bucket
    policy names the endpoint roles only (and its own policy names nothing there)."""
    answers = three_accounts["answers"]
    staging = answers["staging_account_id"]
    bucket = f"{answers['__artifact_bucket_prefix']}-{PIPELINES}"
    model = f"arn:aws:s3:::{bucket}/{answers['__sagemaker_pipeline_name']}/models/m.tar.gz"
    allowed, _ = verdict(
        three_accounts,
        three_accounts["templates"],
        f"StagingTestRole@{staging}",
        "s3:GetObject",
        model,
    )
    assert not allowed


# ---------------------------------------------------------------- through make rehearse


def remove_block(text: str, first_line: str) -> str:
    """text without the line matching first_line and the lines indented under it."""
    lines = text.split("\n")
    start = next(index for index, line in enumerate(lines) if re.fullmatch(first_line, line))
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
    ):
        end += 1
    return "\n".join(lines[:start] + lines[end:])


def edit(repository: Path, path: Path, change) -> None:
    """Apply change to one file of the copy and commit it, as a developer's push would."""
    target = repository / path
    before = target.read_text()
    after = change(before)
    assert after != before, f"{path} did not change"
    target.write_text(after)


# kind of grant -> (how it is removed, the stage the rehearsal stops after, the action denied).
REMOVED_GRANTS = {
    "trust policy": ("trust", "Model deploy", "sts:AssumeRole"),
    "key policy": ("key", "Model deploy", "kms:Decrypt"),
    "bucket policy": ("bucket", "Model deploy", "s3:GetObject"),
    "model package group policy": ("group", "Model deploy", "sagemaker:DescribeModelPackage"),
    "event bus policy": ("bus", "Retraining", "events:PutEvents"),
}


@pytest.mark.parametrize("kind", list(REMOVED_GRANTS))
def test_make_rehearse_fails_without_each_grant_naming_the_call_the_role_and_the_policy(
    gitlab_bake, tmp_path, kind
):
    answers = rendered_answers(**GITLAB)
    how, until, action = REMOVED_GRANTS[kind]
    repository = repository_copy(gitlab_bake, tmp_path / "repository")
    if how == "trust":
        # The staging test role trusts another role of the pipelines' account instead.
        name = answers["__test_staging_role_name"]
        edit(
            repository, ACCOUNT_TEMPLATE, lambda text: text.replace(f"/{name}\n", "/someone-else\n")
        )
    elif how == "key":
        edit(
            repository,
            BUILD_TEMPLATE,
            lambda text: remove_block(text, r" *- Sid: StageAccountsDecryptArtifacts"),
        )
    elif how == "bucket":
        edit(
            repository,
            BUILD_TEMPLATE,
            lambda text: remove_block(text, r" *- Sid: EndpointRolesReadRegisteredModels"),
        )
        # The unit suite lists the bucket policy's grants; drop it there too.
        unit = Path("tests", "unit", "test_infra_templates.py")
        edit(
            repository,
            unit,
            lambda text: re.sub(r'\n *"EndpointRolesReadRegisteredModels",', "", text),
        )
    elif how == "group":
        edit(
            repository,
            BUILD_TEMPLATE,
            lambda text: remove_block(text, r" *ModelPackageGroupPolicy:"),
        )
    else:
        edit(
            repository,
            DEPLOY_TEMPLATE,
            lambda text: remove_block(text, r"  [A-Za-z]+AlarmsPolicy:"),
        )
        edit(
            repository,
            DEPLOY_TEMPLATE,
            lambda text: remove_block(text, r"  [A-Za-z]+AlarmsPolicy:"),
        )
    git(repository, "commit", "-q", "-am", f"Without the {kind} grant")

    result = rehearse(repository, until=until)

    assert result.returncode != 0, result.stdout[-2000:]
    failure = next(line for line in result.stdout.splitlines() if " failed: " in line)
    assert failure.startswith(f"rehearse: {until} failed: "), failure
    assert f" may not {action} on arn:aws:" in failure, failure
    assert f"whose {kind} does not allow arn:aws:iam::" in failure, failure
    assert "(a cross-account request needs both sides)" in failure
