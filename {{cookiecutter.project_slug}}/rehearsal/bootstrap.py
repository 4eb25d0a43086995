"""What `make bootstrap` leaves in an account, created in moto from the templates.

moto's CloudFormation cannot deploy the pipeline stacks (it has no CodePipeline, CodeBuild
or CodeCommit resources), so the resources the flow touches are created with the values the
templates give them: the bootstrap stack's template bucket, permissions boundary and roles;
the artifact bucket (versioned), its KMS key, the IAM roles (with their path and boundary),
the model package group; and the merge function is packaged and uploaded as `make bootstrap`
does. The three stacks then resolve every reference (Ref, GetAtt, ImportValue) to those
resources; the CloudFormation stand-in (stacks.py) answers for them, with the stack policies
of infra/stack-policies/ that make bootstrap sets. With stage accounts (infra/account.yml),
what `make bootstrap-account` leaves in each of them is made the same way, in that account.
"""

import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .accounts import (
    ACCOUNT_TEMPLATE,
    PIPELINES_ACCOUNT_PARAMETER,
    STAGE_ACCOUNT_PARAMETERS,
    stage_accounts,
)
from .actions import Workspace
from .cloudformation import (
    CloudFormationLoader,
    Stack,
    TemplateError,
    check_parameters,
    load_template,
    resources_of_type,
)
from .iam import (
    Account,
    Checker,
    Recorder,
    RehearsalIam,
    ResourcePolicy,
    StackDeploys,
    parse_resource_policy,
    role_policies,
)
from .stacks import PipelineStacks

BOOTSTRAP_TEMPLATE = Path("infra", "bootstrap.yml")
BUILD_TEMPLATE = Path("infra", "model-build-pipeline.yml")
DEPLOY_TEMPLATE = Path("infra", "model-deploy-pipeline.yml")
LAMBDAS_DIR = Path("lambdas")
MERGE_FUNCTION_ENTRY = "app.py"
MERGE_CODE_KEY_PARAMETER = "MergeFunctionCodeKey"
GIT_SECRET_PARAMETER = "GitTokenSecretArn"
CONNECTION_PARAMETER = "ConnectionArn"
STACK_POLICIES = Path("infra", "stack-policies")
BUILD_STACK_POLICY = STACK_POLICIES / "model-build.json"
DEPLOY_STACK_POLICY = STACK_POLICIES / "model-deploy.json"
# The bootstrap stack's output naming the role CloudFormation changes the pipeline stacks with.
STACKS_ROLE_OUTPUT = "StacksRoleArn"


class BootstrapError(RuntimeError):
    """The resources cannot be created from the templates; the message says why."""


@dataclass
class Stacks:
    """The bootstrap and the two pipeline stacks, resolvable against what it created."""

    build: Stack
    deploy: Stack
    bootstrap: Stack
    # The account stack in each stage account (none with one account).
    accounts: tuple[Stack, ...] = ()

    def all(self) -> tuple[Stack, Stack, Stack]:
        """The three stacks, in the order make bootstrap deploys them."""
        return self.bootstrap, self.build, self.deploy

    def everywhere(self) -> tuple[Stack, ...]:
        """The pipelines' three stacks and the stage accounts' stacks."""
        return (*self.all(), *self.accounts)

    def account_of(self, stage: str, default: str) -> str:
        """The account of a stage's endpoint (default: with one account, the pipelines')."""
        if not self.accounts:
            return default
        return self.accounts[0].parameter(STAGE_ACCOUNT_PARAMETERS[stage])


def create_resources(clients: Mapping[str, Any], stack: Stack, region: str) -> None:
    """Create in moto what the flow touches of a stack's resources, as its template gives
    them, and record their physical ids and ARNs on the stack."""
    template = stack.template
    for logical_id in resources_of_type(template, "AWS::KMS::Key"):
        key = clients["kms"].create_key(Description=f"{stack.name} {logical_id}")
        stack.physical_ids[logical_id] = key["KeyMetadata"]["KeyId"]
        stack.attributes[(logical_id, "Arn")] = key["KeyMetadata"]["Arn"]
    for logical_id, bucket in resources_of_type(template, "AWS::S3::Bucket").items():
        if "BucketName" not in bucket.get("Properties", {}):
            # CloudFormation's generated name: <stack>-<logical id>-<random>, lower case.
            generated = f"{stack.name[:30]}-{logical_id[:16]}-{uuid.uuid4().hex[:12]}"
            stack.physical_ids[logical_id] = generated.lower()
        _create_bucket(clients["s3"], stack.physical_id(logical_id), region)
    for policy in resources_of_type(template, "AWS::IAM::ManagedPolicy").values():
        properties = policy["Properties"]
        if "ManagedPolicyName" in properties:
            clients["iam"].create_policy(
                PolicyName=str(stack.resolve(properties["ManagedPolicyName"])),
                Path=str(stack.resolve(properties.get("Path", "/"))),
                PolicyDocument=json.dumps(stack.resolve(properties["PolicyDocument"])),
            )
    for logical_id, resource in resources_of_type(template, "AWS::IAM::Role").items():
        properties = resource["Properties"]
        request = {
            "RoleName": stack.physical_id(logical_id),
            "AssumeRolePolicyDocument": json.dumps(
                stack.resolve(properties["AssumeRolePolicyDocument"])
            ),
            "Path": str(stack.resolve(properties.get("Path", "/"))),
        }
        if "PermissionsBoundary" in properties:
            request["PermissionsBoundary"] = str(stack.resolve(properties["PermissionsBoundary"]))
        role = clients["iam"].create_role(**request)
        stack.attributes[(logical_id, "Arn")] = role["Role"]["Arn"]
    for logical_id in resources_of_type(template, "AWS::SageMaker::ModelPackageGroup"):
        clients["sagemaker"].create_model_package_group(
            ModelPackageGroupName=stack.physical_id(logical_id)
        )
    for logical_id, resource in resources_of_type(template, "AWS::DynamoDB::Table").items():
        properties = stack.resolve(resource["Properties"])
        clients["dynamodb"].create_table(
            TableName=stack.physical_id(logical_id),
            AttributeDefinitions=properties["AttributeDefinitions"],
            KeySchema=properties["KeySchema"],
            BillingMode=properties.get("BillingMode", "PAY_PER_REQUEST"),
        )


def bootstrap(
    workspace: Workspace,
    bootstrap_stack_name: str,
    build_stack_name: str,
    deploy_stack_name: str,
    git_secret_name: str | None,
) -> Stacks:
    """Create the stacks' resources in moto; the three stacks, ready to resolve."""
    clients = workspace.clients
    bootstrap_template = load_template(workspace.source_dir / BOOTSTRAP_TEMPLATE)
    check_parameters(bootstrap_template, {}, str(BOOTSTRAP_TEMPLATE))
    first = Stack(bootstrap_stack_name, bootstrap_template, workspace.account_id, workspace.region)
    create_resources(clients, first, workspace.region)
    template = load_template(workspace.source_dir / BUILD_TEMPLATE)
    build_parameters = {}
    connection_arn = git_host_connection(workspace, template)
    if connection_arn:
        build_parameters[CONNECTION_PARAMETER] = connection_arn
    check_parameters(template, build_parameters, str(BUILD_TEMPLATE))
    build = Stack(
        build_stack_name,
        template,
        workspace.account_id,
        workspace.region,
        parameter_values=build_parameters,
    )
    create_resources(clients, build, workspace.region)
    exports = build.exported_values()
    deploy_template = load_template(workspace.source_dir / DEPLOY_TEMPLATE)
    declared = deploy_template.get("Parameters", {})
    parameters = {}
    if connection_arn and CONNECTION_PARAMETER in declared:
        parameters[CONNECTION_PARAMETER] = connection_arn
    if MERGE_CODE_KEY_PARAMETER in declared:
        parameters[MERGE_CODE_KEY_PARAMETER] = upload_merge_function(workspace, build)
    if GIT_SECRET_PARAMETER in declared:
        if not git_secret_name:
            raise BootstrapError(
                f"{DEPLOY_TEMPLATE} takes {GIT_SECRET_PARAMETER}: set git-token-secret"
                " in [tool.rehearsal] of pyproject.toml (the secret make bootstrap reads)"
            )
        secret = clients["secretsmanager"].create_secret(
            Name=git_secret_name, SecretString=workspace.git_token
        )
        parameters[GIT_SECRET_PARAMETER] = secret["ARN"]
    # What `aws cloudformation deploy` would refuse before creating anything.
    check_parameters(deploy_template, parameters, str(DEPLOY_TEMPLATE))
    deploy = Stack(
        deploy_stack_name,
        deploy_template,
        workspace.account_id,
        workspace.region,
        parameter_values=parameters,
        exports=exports,
    )
    create_resources(clients, deploy, workspace.region)
    return Stacks(
        build=build, deploy=deploy, bootstrap=first, accounts=bootstrap_accounts(workspace)
    )


def account_stack(
    name: str, template: dict[str, Any], account_id: str, pipelines_account: str, region: str
) -> Stack:
    """The account stack as make bootstrap-account deploys it in account_id: the resources
    whose condition holds there (HostsStaging, HostsProd)."""
    parameters = {PIPELINES_ACCOUNT_PARAMETER: pipelines_account}
    check_parameters(template, parameters, str(ACCOUNT_TEMPLATE))
    probe = Stack(name, template, account_id, region, parameter_values=parameters)
    held = {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if "Condition" not in resource or probe.condition(resource["Condition"])
    }
    return Stack(name, {**template, "Resources": held}, account_id, region, parameters)


def bootstrap_accounts(workspace: Workspace) -> tuple[Stack, ...]:
    """What make bootstrap-account makes in each stage account: infra/account.yml, its
    resources that hold there (HostsStaging, HostsProd), made in that account."""
    path = workspace.source_dir / ACCOUNT_TEMPLATE
    if not path.is_file():
        return ()
    template = load_template(path)
    accounts = sorted(set(stage_accounts(template).values()))
    stacks = []
    for account_id in accounts:
        if account_id == workspace.account_id:
            raise BootstrapError(
                f"{ACCOUNT_TEMPLATE}: stage account {account_id} is the pipelines' account"
            )
        stack = account_stack(
            workspace.account_stack, template, account_id, workspace.account_id, workspace.region
        )
        create_resources(workspace.clients_in(account_id), stack, workspace.region)
        stacks.append(stack)
    return tuple(stacks)


def host_stacks(workspace: Workspace, stacks: Stacks, service: PipelineStacks) -> None:
    """Let the CloudFormation stand-in answer for the three stacks as make bootstrap leaves
    them: each template's text, the pipeline stacks with their stack policy and the stacks
    role CloudFormation used for them."""
    role_arn = stacks.bootstrap.outputs().get(STACKS_ROLE_OUTPUT, "")
    for stack, template, policy in (
        (stacks.bootstrap, BOOTSTRAP_TEMPLATE, None),
        (stacks.build, BUILD_TEMPLATE, BUILD_STACK_POLICY),
        (stacks.deploy, DEPLOY_TEMPLATE, DEPLOY_STACK_POLICY),
    ):
        document = None
        if policy is not None:
            try:
                document = json.loads((workspace.source_dir / policy).read_text())
            except (OSError, ValueError) as error:
                raise BootstrapError(f"{policy}: not a stack policy ({error})") from None
        service.host(
            stack,
            (workspace.source_dir / template).read_text(),
            policy=document,
            role_arn=role_arn if policy is not None else "",
        )


def git_host_connection(workspace: Workspace, template: dict[str, Any]) -> str | None:
    """The connection ARN `make bootstrap` passes when the template has none, else None.

    Without a connection ARN in the answers, bootstrap creates the project's CodeConnections
    connection. moto has no CodeConnections: the rehearsal, which never reaches the git host, uses
    an ARN of the same shape.
    """
    spec = template.get("Parameters", {}).get(CONNECTION_PARAMETER)
    if spec is None or "Default" in spec:
        return None
    return (
        f"arn:aws:codeconnections:{workspace.region}:{workspace.account_id}:"
        f"connection/{uuid.uuid4()}"
    )


def _create_bucket(s3: Any, bucket: str, region: str) -> None:
    """A versioned bucket (us-east-1 takes no location constraint)."""
    location = {} if region == "us-east-1" else {"LocationConstraint": region}
    if location:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
    else:
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def upload_merge_function(workspace: Workspace, build: Stack) -> str:
    """Zip the merge function with the project's command line, as make bootstrap does, and
    upload it to the artifact bucket; its S3 key."""
    folders = sorted(
        path.parent
        for path in (workspace.source_dir / LAMBDAS_DIR).glob(f"*/{MERGE_FUNCTION_ENTRY}")
    )
    if len(folders) != 1:
        raise BootstrapError(
            f"expected one function folder with {MERGE_FUNCTION_ENTRY} under {LAMBDAS_DIR}/,"
            f" found {len(folders)}"
        )
    output_dir = workspace.work_dir / "lambda"
    log_path = workspace.log_dir / "bootstrap.log"
    result = workspace.run_python(
        [
            "-m",
            workspace.cli,
            "package-lambda",
            "--source",
            str(folders[0].relative_to(workspace.source_dir)),
            "--output-dir",
            str(output_dir),
        ],
        log_path,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise BootstrapError(f"packaging {folders[0].name} failed: see {log_path}")
    key = lines[-1]
    buckets = resources_of_type(build.template, "AWS::S3::Bucket")
    if len(buckets) != 1:
        raise BootstrapError(f"{BUILD_TEMPLATE} should have one bucket, the artifact bucket")
    bucket = build.physical_id(next(iter(buckets)))
    workspace.clients["s3"].upload_file(str(output_dir / key.rsplit("/", 1)[-1]), bucket, key)
    return key


def rehearsal_iam(
    stacks: Stacks,
    workspace: Workspace,
    recorder: Recorder,
    log_dir: Path,
    endpoints: Iterable[str],
) -> RehearsalIam:
    """The IAM check of a rehearsal: every role both templates declare, with its policies
    as the templates give them, and what S3 and CloudFormation call for the caller."""
    policies, roles = stack_roles(stacks)
    account = iam_account(stacks, roles, workspace.account_id, workspace.region)
    iam = RehearsalIam(
        Checker(policies, account),
        log_dir,
        tuple(endpoints),
        roles,
        recorder=recorder,
        stacks=StackDeploys(
            _template_resources(workspace),
            hosted={stack.name for stack in stacks.all()},
        ),
    )
    iam.start()
    return iam


def iam_account(stacks: Stacks, roles: Mapping[str, str], account_id: str, region: str) -> Account:
    """What the IAM check needs beyond the roles' policies: the buckets' keys and accounts,
    the keys' aliases, each role's account and ARN, and every resource policy."""
    bucket_keys = {}
    bucket_owners = {}
    key_aliases: dict[str, tuple[str, ...]] = {}
    for stack in stacks.everywhere():
        for alias in resources_of_type(stack.template, "AWS::KMS::Alias").values():
            properties = alias["Properties"]
            target = properties.get("TargetKeyId")
            if isinstance(target, dict) and target.get("Ref"):
                key_arn = stack.attribute(target["Ref"], "Arn")
                name = str(stack.resolve(properties["AliasName"]))
                key_aliases[key_arn] = (*key_aliases.get(key_arn, ()), name)
        for logical_id, bucket in resources_of_type(stack.template, "AWS::S3::Bucket").items():
            rules = stack.resolve(bucket["Properties"].get("BucketEncryption", {})).get(
                "ServerSideEncryptionConfiguration", []
            )
            for rule in rules:
                key = rule.get("ServerSideEncryptionByDefault", {}).get("KMSMasterKeyID")
                if key:
                    bucket_keys[stack.physical_id(logical_id)] = str(key)
            bucket_owners[stack.physical_id(logical_id)] = stack.account_id
    repositories = tuple(
        stack.physical_id(logical_id)
        for stack in stacks.everywhere()
        for logical_id in resources_of_type(stack.template, "AWS::CodeCommit::Repository")
    )
    return Account(
        account_id,
        region,
        bucket_keys=bucket_keys,
        key_aliases=key_aliases,
        actor_accounts={actor: arn.split(":")[4] for arn, actor in roles.items()},
        actor_roles={actor: arn for arn, actor in roles.items()},
        bucket_owners=bucket_owners,
        resource_policies=resource_policies(stacks),
        repositories=repositories,
    )


def stack_roles(stacks: Stacks) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """Every role of the three stacks with its statements (boundary included), by logical id;
    and role ARN -> logical id."""
    boundaries = {}
    for stack in stacks.all():
        for logical_id, policy in resources_of_type(
            stack.template, "AWS::IAM::ManagedPolicy"
        ).items():
            document = stack.resolve(policy["Properties"]["PolicyDocument"])
            boundaries[stack.physical_id(logical_id)] = document
    policies: dict[str, list[Any]] = {}
    roles = {}
    for stack in stacks.all():
        policies.update(role_policies(stack.template, stack.resolve, boundaries))
        for logical_id in resources_of_type(stack.template, "AWS::IAM::Role"):
            roles[stack.attribute(logical_id, "Arn")] = logical_id
    for stack in stacks.accounts:
        # A stage account's roles are named for their account: two accounts have the same.
        for logical_id, found in role_policies(stack.template, stack.resolve, boundaries).items():
            policies[stage_actor(logical_id, stack.account_id)] = found
        for logical_id in resources_of_type(stack.template, "AWS::IAM::Role"):
            roles[stack.attribute(logical_id, "Arn")] = stage_actor(logical_id, stack.account_id)
    return policies, roles


def stage_actor(logical_id: str, account_id: str) -> str:
    """The actor name of a stage account's role."""
    return f"{logical_id}@{account_id}"


def resource_policies(stacks: Stacks) -> tuple[ResourcePolicy, ...]:
    """Every resource policy of the stacks, with the ARNs each governs: key policies,
    bucket policies, model package group policies, event bus policies and roles' trust
    policies (what a cross-account request also needs)."""
    found = []
    for stack in stacks.everywhere():
        owner = stack.account_id
        for logical_id, resource in stack.template["Resources"].items():
            kind = resource.get("Type")
            properties = resource.get("Properties", {})
            if kind == "AWS::KMS::Key" and "KeyPolicy" in properties:
                arns = [stack.attribute(logical_id, "Arn")]
                policy = ("key policy", arns, properties["KeyPolicy"])
            elif kind == "AWS::S3::BucketPolicy":
                bucket = str(stack.resolve(properties["Bucket"]))
                arns = [
                    f"arn:{stack.partition}:s3:::{bucket}",
                    f"arn:{stack.partition}:s3:::{bucket}/*",
                ]
                policy = ("bucket policy", arns, properties["PolicyDocument"])
            elif (
                kind == "AWS::SageMaker::ModelPackageGroup"
                and "ModelPackageGroupPolicy" in properties
            ):
                group = stack.physical_id(logical_id)
                prefix = f"arn:{stack.partition}:sagemaker:{stack.region}:{owner}"
                arns = [
                    f"{prefix}:model-package-group/{group}",
                    f"{prefix}:model-package/{group}/*",
                ]
                policy = ("model package group policy", arns, properties["ModelPackageGroupPolicy"])
            elif kind == "AWS::IAM::Role":
                arns = [stack.attribute(logical_id, "Arn")]
                policy = ("trust policy", arns, properties["AssumeRolePolicyDocument"])
            elif kind == "AWS::Events::EventBusPolicy":
                bus = str(stack.resolve(properties.get("EventBusName", "default")))
                arns = [f"arn:{stack.partition}:events:{stack.region}:{owner}:event-bus/{bus}"]
                document = {"Statement": [properties["Statement"]]}
                policy = ("event bus policy", arns, document)
            else:
                continue
            label, governed, document = policy
            name = f"{stack.name}/{logical_id}"
            found.append(
                parse_resource_policy(label, owner, governed, stack.resolve(document), name)
            )
    return tuple(found)


def _template_resources(
    workspace: Workspace,
) -> Callable[[str, str, Mapping[str, str]], dict[str, tuple[str, dict[str, Any]]]]:
    """The resources a template body creates with these parameters: type and properties,
    resolved (conditions applied; a property that needs a deployed value is left out)."""
    import yaml

    def resources(
        name: str, body: str, parameters: Mapping[str, str]
    ) -> dict[str, tuple[str, dict[str, Any]]]:
        template = yaml.load(body, Loader=CloudFormationLoader)
        stack = Stack(
            name, template, workspace.account_id, workspace.region, parameter_values=parameters
        )
        found = {}
        for logical_id, resource in template.get("Resources", {}).items():
            if "Condition" in resource and not stack.condition(resource["Condition"]):
                continue
            properties = {}
            for key, value in resource.get("Properties", {}).items():
                try:
                    properties[key] = stack.resolve(value)
                except TemplateError:
                    continue
            found[logical_id] = (resource["Type"], properties)
        return found

    return resources
