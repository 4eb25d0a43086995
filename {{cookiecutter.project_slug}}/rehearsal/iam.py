"""IAM in the rehearsal: every AWS call an actor makes, checked against its role's policies.

moto checks IAM only at action level with resource "*" (S3 aside), so the rehearsal checks
permissions itself. Each call of a rehearsal is recorded with the actor that would make it in
AWS (a CodeBuild project's role, a function's role, the SageMaker execution role, the role
CloudFormation assumes for a stack) and turned into the authorizations AWS would check: the
IAM action, the ARN of the resource computed from the request parameters, and the condition
keys the request carries. Each authorization is evaluated against the policies the templates
give that role (inline policies, and managed policies the same template declares), with IAM's
evaluation logic: an explicit Deny wins, then an Allow, else the request is implicitly
denied; wildcards in actions and resources; NotAction and NotResource.

Sources (AWS's own):
- ARN formats and which action an operation authorizes: the Service Authorization Reference
  (docs.aws.amazon.com/service-authorization/latest/reference/list_<service>.html), written
  down per operation in RULES; request parameter names are the botocore service models'
  (a test checks every name against the operation's input shape).
- What CloudFormation calls for each resource it creates, updates or deletes: the resource
  types' handler permissions in the CloudFormation registry schemas cfn-lint ships.
- Evaluation: IAM User Guide, "Policy evaluation logic" and "IAM JSON policy elements:
  Condition operators"; across accounts, "Cross-account policy evaluation logic": a request
  from one account to a resource of another is allowed only when the caller's identity
  policies allow it and the resource's policy (a bucket, key, model package group or event
  bus policy, or a role's trust policy) allows the caller too.

An operation without a rule is never allowed: the rehearsal fails and names it, so a new
AWS call is checked as soon as the project makes it.
"""

import contextlib
import dataclasses
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLE_TYPE = "AWS::IAM::Role"
# A role's permissions boundary is kept with its statements, under a policy named so.
BOUNDARY_PREFIX = "boundary:"
POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
# Condition keys every request made in AWS carries (the SDKs and the AWS CLI use HTTPS).
GLOBAL_CONTEXT = {"aws:SecureTransport": "true"}


class IamError(ValueError):
    """The policies cannot be read or a call cannot be turned into authorizations."""


# ---------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Statement:
    """One statement of an identity policy, resolved."""

    role: str
    policy: str
    sid: str
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # A resource policy's statement: the AWS principals it names ("*", an account, a role).
    principals: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """role/policy/Sid, as the summary names it."""
        return f"{self.role}/{self.policy}/{self.sid}"

    def matches(self, request: "Authorization") -> bool:
        """Whether the statement applies to the request (action, resource, conditions)."""
        if self.actions and not any(_action_match(a, request.action) for a in self.actions):
            return False
        if self.not_actions and any(_action_match(a, request.action) for a in self.not_actions):
            return False
        if self.resources and not any(_arn_match(r, request.resource) for r in self.resources):
            return False
        if self.not_resources and any(_arn_match(r, request.resource) for r in self.not_resources):
            return False
        return all(
            _condition(operator, key, values, request.context)
            for operator, block in self.conditions.items()
            for key, values in block.items()
        )


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(item) for item in (value if isinstance(value, list | tuple) else [value]))


def _statement_list(document: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    """A policy document's Statement as a list (a single statement may stand alone)."""
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise IamError(f"{where} has no Statement list")
    return statements


def parse_policy(document: Mapping[str, Any], role: str, policy: str) -> list[Statement]:
    """The statements of a resolved policy document; IamError for what IAM would refuse."""
    statements = _statement_list(document, f"{role}/{policy}: the policy")
    parsed = []
    for index, item in enumerate(statements):
        sid = str(item.get("Sid", f"#{index + 1}"))
        where = f"{role}/{policy}/{sid}"
        if item.get("Effect") not in ("Allow", "Deny"):
            raise IamError(f"{where}: Effect must be Allow or Deny, not {item.get('Effect')!r}")
        if ("Action" in item) == ("NotAction" in item):
            raise IamError(f"{where}: a statement has exactly one of Action and NotAction")
        if ("Resource" in item) == ("NotResource" in item):
            raise IamError(f"{where}: a statement has exactly one of Resource and NotResource")
        for text in (*_as_tuple(item.get("Resource")), *_as_tuple(item.get("NotResource"))):
            if "${" in text:
                raise IamError(f"{where}: policy variables ({text}) are not evaluated here")
        conditions = item.get("Condition", {})
        for operator in conditions:
            _operator(operator, where)
        parsed.append(
            Statement(
                role=role,
                policy=policy,
                sid=sid,
                effect=item["Effect"],
                actions=_as_tuple(item.get("Action")),
                not_actions=_as_tuple(item.get("NotAction")),
                resources=_as_tuple(item.get("Resource")),
                not_resources=_as_tuple(item.get("NotResource")),
                conditions=conditions,
            )
        )
    return parsed


@dataclass(frozen=True)
class ResourcePolicy:
    """The policy of a resource in one account (a bucket, a key, a model package group, an
    event bus) or a role's trust policy, and the ARNs it governs."""

    kind: str
    owner: str
    resources: tuple[str, ...]
    statements: tuple[Statement, ...]


def parse_resource_policy(
    kind: str, owner: str, resources: Iterable[str], document: Mapping[str, Any], name: str
) -> ResourcePolicy:
    """A resolved resource policy; a statement without Resource governs the resource itself
    (a trust policy's, a key policy's "*"). Only AWS principals are kept: a service
    principal's statement allows a service, never a role of another account."""
    statements = _statement_list(document, f"{name}: the {kind}")
    parsed = []
    for index, item in enumerate(statements):
        principal = item.get("Principal")
        if principal == "*":
            principals: tuple[str, ...] = ("*",)
        elif isinstance(principal, Mapping):
            principals = _as_tuple(principal.get("AWS"))
        else:
            principals = ()
        if not principals:
            continue
        body = (
            {**item, "Resource": item.get("Resource", "*")} if "NotResource" not in item else item
        )
        [statement] = parse_policy({"Statement": [body]}, name, kind)
        sid = str(item.get("Sid", f"#{index + 1}"))
        parsed.append(dataclasses.replace(statement, sid=sid, principals=principals))
    return ResourcePolicy(kind, owner, tuple(resources), tuple(parsed))


def role_policies(
    template: Mapping[str, Any],
    resolve: Callable[[Any], Any],
    boundaries: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, list[Statement]]:
    """Every role of a template with the statements of its policies, by logical id.

    A role's policies are its inline Policies, the managed policies of ManagedPolicyArns that
    the same template declares (a Ref to it), and the AWS::IAM::Policy and ManagedPolicy
    resources whose Roles name it. A managed policy from elsewhere cannot be evaluated:
    IamError names it. A role's PermissionsBoundary must be one of boundaries (policy ARN ->
    resolved document); its statements join the role's under the policy "boundary:<ARN>".
    """
    resources = template.get("Resources", {})
    roles = {key: value for key, value in resources.items() if value.get("Type") == ROLE_TYPE}
    statements: dict[str, list[Statement]] = {}
    for logical_id, role in roles.items():
        properties = role.get("Properties", {})
        found: list[Statement] = []
        if "PermissionsBoundary" in properties:
            boundary = str(resolve(properties["PermissionsBoundary"]))
            if boundary not in (boundaries or {}):
                raise IamError(
                    f"{logical_id}: permissions boundary {boundary} is not a policy the"
                    " rehearsal knows (infra/bootstrap.yml declares the project's)"
                )
            found.extend(parse_policy(boundaries[boundary], logical_id, BOUNDARY_PREFIX + boundary))
        for policy in properties.get("Policies", []):
            document = resolve(policy["PolicyDocument"])
            found.extend(parse_policy(document, logical_id, str(resolve(policy["PolicyName"]))))
        for reference in properties.get("ManagedPolicyArns", []):
            target = reference.get("Ref") if isinstance(reference, dict) else None
            if target not in resources or resources[target].get("Type") not in POLICY_TYPES:
                raise IamError(
                    f"{logical_id}: managed policy {resolve(reference)} is not declared in the"
                    " template, so the rehearsal cannot evaluate it"
                )
            document = resolve(resources[target]["Properties"]["PolicyDocument"])
            found.extend(parse_policy(document, logical_id, target))
        statements[logical_id] = found
    for policy_id, policy in resources.items():
        if policy.get("Type") not in POLICY_TYPES:
            continue
        for reference in policy.get("Properties", {}).get("Roles", []):
            target = reference.get("Ref") if isinstance(reference, dict) else None
            if target in statements:
                document = resolve(policy["Properties"]["PolicyDocument"])
                statements[target].extend(parse_policy(document, target, policy_id))
    return statements


# ---------------------------------------------------------------------------- matching


def _wildcard(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """IAM's wildcards: * any run of characters (including none), ? one character."""
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(body, flags | re.DOTALL)


def _action_match(pattern: str, action: str) -> bool:
    # Action names are case-insensitive.
    return bool(_wildcard(pattern, re.IGNORECASE).fullmatch(action))


def _arn_match(pattern: str, arn: str) -> bool:
    # Resource ARNs are matched case-sensitively.
    return bool(_wildcard(pattern).fullmatch(arn))


def _operator(operator: str, where: str = "") -> tuple[str, bool, bool]:
    """(base operator, negated, IfExists) of a condition operator; IamError if unknown.
    ForAnyValue: and ForAllValues: (multivalued keys) are read by _condition."""
    base = operator.removeprefix("ForAnyValue:").removeprefix("ForAllValues:")
    base = base.removesuffix("IfExists")
    known = {
        "StringEquals": False,
        "StringNotEquals": True,
        "StringEqualsIgnoreCase": False,
        "StringNotEqualsIgnoreCase": True,
        "StringLike": False,
        "StringNotLike": True,
        "ArnEquals": False,
        "ArnNotEquals": True,
        "ArnLike": False,
        "ArnNotLike": True,
        "Bool": False,
        "Null": False,
    }
    if base not in known or (base == "Null" and base != operator):
        raise IamError(f"{where}: condition operator {operator} is not evaluated by the rehearsal")
    return base, known[base], operator.endswith("IfExists")


def _condition(operator: str, key: str, values: Any, context: Mapping[str, Any]) -> bool:
    """One condition key of a statement against the request's context."""
    base, negated, if_exists = _operator(operator)
    wanted = _as_tuple(values)
    present = key in context
    if base == "Null":
        return (not present) == (wanted[0].lower() == "true")
    if not present:
        # A missing key matches nothing; negated operators and ...IfExists then hold.
        return negated or if_exists
    actual = _as_tuple(context[key])

    def one(value: str, pattern: str) -> bool:
        """One value of the request against one value of the policy."""
        if base in ("StringEquals", "StringNotEquals", "ArnEquals", "ArnNotEquals"):
            return value == pattern if base.startswith("String") else _arn_match(pattern, value)
        if base.endswith("IgnoreCase"):
            return value.lower() == pattern.lower()
        if base in ("StringLike", "StringNotLike"):
            return _arn_match(pattern, value)
        if base in ("ArnLike", "ArnNotLike"):
            return _arn_match(pattern, value)
        return value.lower() == pattern.lower()  # Bool

    if operator.startswith("ForAllValues:"):
        matched = all(any(one(value, pattern) for pattern in wanted) for value in actual)
    else:
        matched = any(one(value, pattern) for value in actual for pattern in wanted)
    return not matched if negated else matched


# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Authorization:
    """What AWS authorizes for one request: an action on a resource, with condition keys."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """One AWS API call of an actor, as recorded (botocore service and operation names)."""

    actor: str
    service: str
    operation: str
    params: Mapping[str, Any]
    where: str = ""

    @property
    def name(self) -> str:
        """service:Operation."""
        return f"{self.service}:{self.operation}"


@dataclass(frozen=True)
class Account:
    """Where the rehearsal's resources live, and what ARNs need beyond a request."""

    account_id: str
    region: str
    partition: str = "aws"
    # bucket name -> ARN of its default KMS key (S3 then calls KMS as the caller).
    bucket_keys: Mapping[str, str] = field(default_factory=dict)
    # key ARN -> its aliases (kms:ResourceAliases of a request on the key).
    key_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # With stage accounts: actor -> its account (absent: account_id) and its role's ARN (the
    # aws:PrincipalArn a resource policy sees), bucket -> its account, and every account's
    # resource policies.
    actor_accounts: Mapping[str, str] = field(default_factory=dict)
    actor_roles: Mapping[str, str] = field(default_factory=dict)
    bucket_owners: Mapping[str, str] = field(default_factory=dict)
    resource_policies: tuple[ResourcePolicy, ...] = ()
    # The CodeCommit repositories of the stacks: a pull request's calls that name none are
    # on the repository of the pull request, which in a rehearsal is the project's one.
    repositories: tuple[str, ...] = ()

    def of(self, actor: str) -> "Account":
        """This account as actor sees it: ARNs without an account are in the actor's."""
        owner = self.actor_accounts.get(actor, self.account_id)
        return self if owner == self.account_id else dataclasses.replace(self, account_id=owner)

    def owner(self, resource: str) -> str:
        """The account a resource ARN is in ("" when it names none: "*")."""
        parts = resource.split(":", 5)
        if len(parts) < 6:
            return ""
        if parts[2] == "s3":
            return self.bucket_owners.get(parts[5].split("/", 1)[0], self.account_id)
        # "*": any account (an AWS-owned image's repository), not another one's resource.
        return "" if parts[4] == "*" else parts[4]

    def arn(self, service: str, resource: str, regional: bool = True) -> str:
        """arn:partition:service:region:account:resource."""
        region = self.region if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{self.account_id}:{resource}"


def _value(call: Call, name: str) -> str:
    if name not in call.params or call.params[name] in (None, ""):
        raise IamError(f"{call.name} has no {name}: the resource ARN cannot be computed")
    return str(call.params[name])


def _pull_request_repository(call: Call, account: Account) -> list[str]:
    """The repository of a pull-request call: the one it names, else the account's one."""
    if call.params.get("repositoryName"):
        return [account.arn("codecommit", str(call.params["repositoryName"]))]
    if len(account.repositories) != 1:
        raise IamError(
            f"{call.name} names no repository, and the stacks hold"
            f" {len(account.repositories)}: the rehearsal cannot tell which it is on"
        )
    return [account.arn("codecommit", account.repositories[0])]


def _named(kind: str, parameter: str) -> Callable[[Call, Account], list[str]]:
    """A SageMaker-style resource: the parameter holds its name or its ARN."""

    def arns(call: Call, account: Account) -> list[str]:
        value = _value(call, parameter)
        service = kind.split(":", 1)[0]
        if value.startswith("arn:"):
            return [value]
        return [account.arn(service, kind.split(":", 1)[1].format(value))]

    return arns


def _pipeline_execution(call: Call, account: Account) -> list[str]:
    return [_value(call, "PipelineExecutionArn")]


def _s3_object(call: Call, account: Account) -> list[str]:
    return [f"arn:{account.partition}:s3:::{_value(call, 'Bucket')}/{_value(call, 'Key')}"]


def _s3_bucket(call: Call, account: Account) -> list[str]:
    return [f"arn:{account.partition}:s3:::{_value(call, 'Bucket')}"]


def _stack(call: Call, account: Account) -> list[str]:
    value = _value(call, "StackName")
    if value.startswith("arn:"):
        return [value]
    # The stack id's last part is a UUID CloudFormation draws; a policy can only match it
    # with a wildcard, which this placeholder also matches.
    return [account.arn("cloudformation", f"stack/{value}/*")]


def _everything(call: Call, account: Account) -> list[str]:
    """An action without resource-level permissions: "*" is the only resource."""
    return ["*"]


def _kms_key(parameter: str) -> Callable[[Call, Account], list[str]]:
    def arns(call: Call, account: Account) -> list[str]:
        value = _value(call, parameter)
        if value.startswith("arn:"):
            return [value]
        if value.startswith("alias/"):
            raise IamError(f"{call.name}: a key alias ({value}) is not resolved here")
        return [account.arn("kms", f"key/{value}")]

    return arns


def _arn_in(parameter: str) -> Callable[[Call, Account], list[str]]:
    """The resource is the ARN the request names (AddTags and ListTags: ResourceArn)."""

    def arns(call: Call, account: Account) -> list[str]:
        return [_value(call, parameter)]

    return arns


@dataclass(frozen=True)
class Rule:
    """How one operation is authorized: its action(s) and where each resource ARN comes from.

    parameters lists the request parameters the ARN functions read (checked against the
    botocore input shape); passes_role names a parameter holding a role the call passes to
    service (iam:PassRole with iam:PassedToService).
    """

    action: str
    resources: Callable[[Call, Account], list[str]]
    parameters: tuple[str, ...] = ()
    passes_role: tuple[str, str] | None = None
    kms: str | None = None  # kms action S3 calls for the caller on an SSE-KMS bucket


def _rule(
    action: str, resources: Callable[[Call, Account], list[str]], *parameters: str, **extra: Any
) -> Rule:
    return Rule(action, resources, parameters, **extra)


SAGEMAKER = "sagemaker"
# (botocore service, operation) -> Rule. ARN formats from the Service Authorization
# Reference's resource type tables of each service.
RULES: dict[tuple[str, str], Rule] = {
    # Amazon S3 (list_amazons3.html): object arn:${Partition}:s3:::${BucketName}/${ObjectName},
    # bucket arn:${Partition}:s3:::${BucketName}. HeadObject is authorized as s3:GetObject,
    # ListObjectsV2 and HeadBucket as s3:ListBucket, multipart parts as s3:PutObject.
    ("s3", "GetObject"): _rule("s3:GetObject", _s3_object, "Bucket", "Key", kms="kms:Decrypt"),
    ("s3", "HeadObject"): _rule("s3:GetObject", _s3_object, "Bucket", "Key"),
    ("s3", "PutObject"): _rule(
        "s3:PutObject", _s3_object, "Bucket", "Key", kms="kms:GenerateDataKey"
    ),
    ("s3", "CreateMultipartUpload"): _rule(
        "s3:PutObject", _s3_object, "Bucket", "Key", kms="kms:GenerateDataKey"
    ),
    ("s3", "UploadPart"): _rule("s3:PutObject", _s3_object, "Bucket", "Key"),
    ("s3", "CompleteMultipartUpload"): _rule("s3:PutObject", _s3_object, "Bucket", "Key"),
    ("s3", "AbortMultipartUpload"): _rule("s3:AbortMultipartUpload", _s3_object, "Bucket", "Key"),
    ("s3", "DeleteObject"): _rule("s3:DeleteObject", _s3_object, "Bucket", "Key"),
    ("s3", "ListObjectsV2"): _rule("s3:ListBucket", _s3_bucket, "Bucket"),
    ("s3", "ListObjects"): _rule("s3:ListBucket", _s3_bucket, "Bucket"),
    ("s3", "HeadBucket"): _rule("s3:ListBucket", _s3_bucket, "Bucket"),
    ("s3", "ListBuckets"): _rule("s3:ListAllMyBuckets", _everything),
    ("s3", "GetBucketLocation"): _rule("s3:GetBucketLocation", _s3_bucket, "Bucket"),
    # AWS STS (list_awssecuritytokenservice.html): AssumeRole on the role's ARN.
    ("sts", "AssumeRole"): _rule("sts:AssumeRole", _arn_in("RoleArn"), "RoleArn"),
    # Amazon SageMaker (list_amazonsagemaker.html): arn:${Partition}:sagemaker:${Region}:
    # ${Account}:<type>/<name>; a model package is model-package/<group>/<version>.
    (SAGEMAKER, "DescribeModelPackage"): _rule(
        "sagemaker:DescribeModelPackage",
        _named("sagemaker:model-package/{}", "ModelPackageName"),
        "ModelPackageName",
    ),
    (SAGEMAKER, "UpdateModelPackage"): _rule(
        "sagemaker:UpdateModelPackage",
        _named("sagemaker:model-package/{}", "ModelPackageArn"),
        "ModelPackageArn",
    ),
    # Tags are authorized on the tagged resource (upsert re-tags the pipeline it updates).
    (SAGEMAKER, "AddTags"): _rule("sagemaker:AddTags", _arn_in("ResourceArn"), "ResourceArn"),
    (SAGEMAKER, "ListTags"): _rule("sagemaker:ListTags", _arn_in("ResourceArn"), "ResourceArn"),
    (SAGEMAKER, "ListModelPackages"): _rule("sagemaker:ListModelPackages", _everything),
    (SAGEMAKER, "ListPipelines"): _rule("sagemaker:ListPipelines", _everything),
    (SAGEMAKER, "DescribeModelPackageGroup"): _rule(
        "sagemaker:DescribeModelPackageGroup",
        _named("sagemaker:model-package-group/{}", "ModelPackageGroupName"),
        "ModelPackageGroupName",
    ),
    (SAGEMAKER, "CreateModelPackage"): _rule(
        "sagemaker:CreateModelPackage",
        _named("sagemaker:model-package-group/{}", "ModelPackageGroupName"),
        "ModelPackageGroupName",
    ),
    (SAGEMAKER, "CreatePipeline"): _rule(
        "sagemaker:CreatePipeline",
        _named("sagemaker:pipeline/{}", "PipelineName"),
        "PipelineName",
        passes_role=("RoleArn", "sagemaker.amazonaws.com"),
    ),
    (SAGEMAKER, "UpdatePipeline"): _rule(
        "sagemaker:UpdatePipeline",
        _named("sagemaker:pipeline/{}", "PipelineName"),
        "PipelineName",
        passes_role=("RoleArn", "sagemaker.amazonaws.com"),
    ),
    (SAGEMAKER, "DescribePipeline"): _rule(
        "sagemaker:DescribePipeline",
        _named("sagemaker:pipeline/{}", "PipelineName"),
        "PipelineName",
    ),
    (SAGEMAKER, "StartPipelineExecution"): _rule(
        "sagemaker:StartPipelineExecution",
        _named("sagemaker:pipeline/{}", "PipelineName"),
        "PipelineName",
    ),
    (SAGEMAKER, "ListPipelineExecutions"): _rule(
        "sagemaker:ListPipelineExecutions",
        _named("sagemaker:pipeline/{}", "PipelineName"),
        "PipelineName",
    ),
    (SAGEMAKER, "DescribePipelineExecution"): _rule(
        "sagemaker:DescribePipelineExecution", _pipeline_execution, "PipelineExecutionArn"
    ),
    (SAGEMAKER, "ListPipelineExecutionSteps"): _rule(
        "sagemaker:ListPipelineExecutionSteps", _pipeline_execution, "PipelineExecutionArn"
    ),
    (SAGEMAKER, "ListPipelineParametersForExecution"): _rule(
        "sagemaker:ListPipelineParametersForExecution",
        _pipeline_execution,
        "PipelineExecutionArn",
    ),
    (SAGEMAKER, "StopPipelineExecution"): _rule(
        "sagemaker:StopPipelineExecution", _pipeline_execution, "PipelineExecutionArn"
    ),
    # SageMaker Pipelines starts each job step's job with the pipeline's role, passing the
    # job's role to SageMaker.
    (SAGEMAKER, "CreateProcessingJob"): _rule(
        "sagemaker:CreateProcessingJob",
        _named("sagemaker:processing-job/{}", "ProcessingJobName"),
        "ProcessingJobName",
        passes_role=("RoleArn", "sagemaker.amazonaws.com"),
    ),
    (SAGEMAKER, "CreateTrainingJob"): _rule(
        "sagemaker:CreateTrainingJob",
        _named("sagemaker:training-job/{}", "TrainingJobName"),
        "TrainingJobName",
        passes_role=("RoleArn", "sagemaker.amazonaws.com"),
    ),
    (SAGEMAKER, "DescribeEndpoint"): _rule(
        "sagemaker:DescribeEndpoint",
        _named("sagemaker:endpoint/{}", "EndpointName"),
        "EndpointName",
    ),
    # SageMaker Runtime's InvokeEndpoint is the sagemaker:InvokeEndpoint action.
    ("sagemaker-runtime", "InvokeEndpoint"): _rule(
        "sagemaker:InvokeEndpoint",
        _named("sagemaker:endpoint/{}", "EndpointName"),
        "EndpointName",
    ),
    # AWS CloudFormation (list_awscloudformation.html): stack
    # arn:${Partition}:cloudformation:${Region}:${Account}:stack/${StackName}/${Id}; the
    # change set operations are authorized on the stack.
    ("cloudformation", "DescribeStacks"): _rule(
        "cloudformation:DescribeStacks", _stack, "StackName"
    ),
    ("cloudformation", "DescribeStackEvents"): _rule(
        "cloudformation:DescribeStackEvents", _stack, "StackName"
    ),
    ("cloudformation", "GetTemplate"): _rule("cloudformation:GetTemplate", _stack, "StackName"),
    ("cloudformation", "GetStackPolicy"): _rule(
        "cloudformation:GetStackPolicy", _stack, "StackName"
    ),
    ("cloudformation", "GetTemplateSummary"): _rule(
        "cloudformation:GetTemplateSummary", _stack, "StackName"
    ),
    ("cloudformation", "CreateChangeSet"): _rule(
        "cloudformation:CreateChangeSet",
        _stack,
        "StackName",
        passes_role=("RoleARN", "cloudformation.amazonaws.com"),
    ),
    ("cloudformation", "DescribeChangeSet"): _rule(
        "cloudformation:DescribeChangeSet", _stack, "StackName"
    ),
    ("cloudformation", "ExecuteChangeSet"): _rule(
        "cloudformation:ExecuteChangeSet", _stack, "StackName"
    ),
    ("cloudformation", "DeleteChangeSet"): _rule(
        "cloudformation:DeleteChangeSet", _stack, "StackName"
    ),
    ("cloudformation", "CreateStack"): _rule(
        "cloudformation:CreateStack",
        _stack,
        "StackName",
        passes_role=("RoleARN", "cloudformation.amazonaws.com"),
    ),
    ("cloudformation", "UpdateStack"): _rule(
        "cloudformation:UpdateStack",
        _stack,
        "StackName",
        passes_role=("RoleARN", "cloudformation.amazonaws.com"),
    ),
    ("cloudformation", "DeleteStack"): _rule("cloudformation:DeleteStack", _stack, "StackName"),
    ("cloudformation", "ValidateTemplate"): _rule("cloudformation:ValidateTemplate", _everything),
    # AWS CodePipeline (list_awscodepipeline.html): pipeline
    # arn:${Partition}:codepipeline:${Region}:${Account}:${PipelineName}; the job result
    # actions have no resource-level permissions.
    ("codepipeline", "StartPipelineExecution"): _rule(
        "codepipeline:StartPipelineExecution",
        lambda call, account: [account.arn("codepipeline", _value(call, "name"))],
        "name",
    ),
    ("codepipeline", "GetPipelineExecution"): _rule(
        "codepipeline:GetPipelineExecution",
        lambda call, account: [account.arn("codepipeline", _value(call, "pipelineName"))],
        "pipelineName",
    ),
    ("codepipeline", "PutJobSuccessResult"): _rule("codepipeline:PutJobSuccessResult", _everything),
    ("codepipeline", "PutJobFailureResult"): _rule("codepipeline:PutJobFailureResult", _everything),
    # AWS CodeCommit (list_awscodecommit.html): repository
    # arn:${Partition}:codecommit:${Region}:${Account}:${RepositoryName}.
    **{
        ("codecommit", operation): _rule(
            f"codecommit:{operation}",
            lambda call, account: [account.arn("codecommit", _value(call, "repositoryName"))],
            "repositoryName",
        )
        for operation in ("GetBranch", "GetMergeOptions", "MergeBranchesByFastForward")
    },
    # The pull-request calls are on the repository too; GetPullRequest, UpdateComment and
    # the approval calls name only the pull request or the comment.
    **{
        ("codecommit", operation): _rule(f"codecommit:{operation}", _pull_request_repository)
        for operation in (
            "GetPullRequest",
            "GetCommentsForPullRequest",
            "PostCommentForPullRequest",
            "UpdateComment",
            "GetPullRequestApprovalStates",
            "UpdatePullRequestApprovalState",
        )
    },
    # AWS Secrets Manager (list_awssecretsmanager.html): secret
    # arn:${Partition}:secretsmanager:${Region}:${Account}:secret:${SecretId}.
    ("secretsmanager", "GetSecretValue"): _rule(
        "secretsmanager:GetSecretValue",
        _named("secretsmanager:secret:{}", "SecretId"),
        "SecretId",
    ),
    # Amazon DynamoDB (list_amazondynamodb.html): table
    # arn:${Partition}:dynamodb:${Region}:${Account}:table/${TableName}.
    ("dynamodb", "UpdateItem"): _rule(
        "dynamodb:UpdateItem", _named("dynamodb:table/{}", "TableName"), "TableName"
    ),
    # AWS KMS (list_awskeymanagementservice.html): key
    # arn:${Partition}:kms:${Region}:${Account}:key/${KeyId}.
    ("kms", "DescribeKey"): _rule("kms:DescribeKey", _kms_key("KeyId"), "KeyId"),
    # AWS STS: GetCallerIdentity needs no permission (it is never denied).
    ("sts", "GetCallerIdentity"): _rule("", _everything),
}


# Denials the calling AWS code is written to handle: the rehearsal answers them AccessDenied,
# as AWS would, and the caller carries on; they are listed, not failed.
HANDLED_DENIALS = {
    ("s3", "ListBuckets"): (
        "boto3's Bucket.load treats an AccessDenied ListBuckets as an unknown creation date"
        " (boto3/s3/inject.py), and the SageMaker SDK then checks the bucket with HeadBucket"
    ),
}


def authorizations(call: Call, account: Account) -> list[Authorization]:
    """What AWS authorizes for a call; IamError if the rehearsal has no rule for it."""
    rule = RULES.get((call.service, call.operation))
    if rule is None:
        raise IamError(
            f"{call.name}: the rehearsal cannot compute this operation's resource ARN (add a"
            " rule to rehearsal/iam.py RULES, from the Service Authorization Reference)"
        )
    if not rule.action:
        return []
    context = dict(GLOBAL_CONTEXT)
    listing = call.service == "s3" and call.operation in ("ListObjectsV2", "ListObjects")
    if listing and call.params.get("Prefix") is not None:
        # s3:prefix: the listing's Prefix (absent without one, as AWS evaluates it).
        context["s3:prefix"] = str(call.params["Prefix"])
    if call.service == "cloudformation" and call.params.get("RoleARN"):
        # The role a stack operation passes (cloudformation:RoleArn condition key).
        context["cloudformation:RoleArn"] = str(call.params["RoleARN"])
    found = [Authorization(rule.action, arn, context) for arn in rule.resources(call, account)]
    if rule.passes_role and call.params.get(rule.passes_role[0]):
        role_arn, service = str(call.params[rule.passes_role[0]]), rule.passes_role[1]
        context = {**GLOBAL_CONTEXT, "iam:PassedToService": service}
        found.append(Authorization("iam:PassRole", role_arn, context))
    if rule.kms and call.service == "s3":
        key = account.bucket_keys.get(str(call.params.get("Bucket")))
        if key:
            found.append(Authorization(rule.kms, key, GLOBAL_CONTEXT))
    return [
        Authorization(
            request.action,
            request.resource,
            {**request.context, "kms:ResourceAliases": account.key_aliases[request.resource]},
        )
        if request.action.startswith("kms:") and request.resource in account.key_aliases
        else request
        for request in found
    ]


# ---------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Decision:
    """The verdict on one authorization of a call."""

    call: Call
    request: Authorization
    allowed: bool
    statements: tuple[Statement, ...]  # the Allow statements that matched, or the Deny
    reason: str

    @property
    def handled(self) -> bool:
        """A denial the calling code handles (HANDLED_DENIALS)."""
        return not self.allowed and (self.call.service, self.call.operation) in HANDLED_DENIALS

    def line(self) -> str:
        """One line naming the actor, the action and the resource."""
        where = f" ({self.call.where})" if self.call.where else ""
        return (
            f"IAM: {self.call.actor}{where} may not {self.request.action} on"
            f" {self.request.resource}: {self.reason}"
        )


def evaluate(
    request: Authorization, statements: Iterable[Statement]
) -> tuple[bool, tuple[Statement, ...], str]:
    """IAM's identity-policy evaluation: explicit Deny, else Allow, else implicit deny; with
    a permissions boundary among the statements, the boundary must allow it too."""
    statements = list(statements)
    boundary = [item for item in statements if item.policy.startswith(BOUNDARY_PREFIX)]
    matching = [
        statement
        for statement in statements
        if statement.matches(request) and not statement.policy.startswith(BOUNDARY_PREFIX)
    ]
    denies = tuple(statement for statement in matching if statement.effect == "Deny")
    if denies:
        return False, denies, f"explicitly denied by {denies[0].label}"
    allows = tuple(statement for statement in matching if statement.effect == "Allow")
    if not allows:
        return False, (), "no statement of its policies allows it"
    if boundary:
        name = boundary[0].policy.removeprefix(BOUNDARY_PREFIX)
        within = [statement for statement in boundary if statement.matches(request)]
        if any(statement.effect == "Deny" for statement in within):
            return False, (), f"its permissions boundary {name} denies it"
        if not any(statement.effect == "Allow" for statement in within):
            return False, (), f"its permissions boundary {name} does not allow it"
    return True, allows, "allowed"


def _principal_match(statement: Statement, role_arn: str, account_id: str) -> bool:
    """Whether a resource policy statement names the caller: "*", its account (the root or
    the bare id) or its role."""
    for principal in statement.principals:
        if principal in ("*", account_id, role_arn):
            return True
        if principal.startswith("arn:") and principal.endswith(f":iam::{account_id}:root"):
            return True
    return False


# What each service's resource policy is called in a denial.
POLICY_KINDS = {
    "s3": "bucket policy",
    "kms": "key policy",
    "sagemaker": "model package group policy",
    "iam": "trust policy",
    "sts": "trust policy",
    "events": "event bus policy",
}


def cross_account(request: Authorization, actor: str, account: Account) -> tuple[bool, str]:
    """The other half of a request to another account's resource: that resource's policy
    must allow the caller too (IAM's cross-account rule); (allowed, why not)."""
    caller = account.actor_accounts.get(actor, account.account_id)
    owner = account.owner(request.resource)
    if not owner or owner == caller:
        return True, ""
    role_arn = account.actor_roles.get(actor, "")
    context = {**request.context, "aws:PrincipalArn": role_arn, "aws:PrincipalAccount": caller}
    seen = Authorization(request.action, request.resource, context)
    policies = [
        policy
        for policy in account.resource_policies
        if policy.owner == owner
        and any(_arn_match(arn, request.resource) for arn in policy.resources)
    ]
    matching = [
        (policy, statement)
        for policy in policies
        for statement in policy.statements
        if _principal_match(statement, role_arn, caller) and statement.matches(seen)
    ]
    for policy, statement in matching:
        if statement.effect == "Deny":
            return False, f"the {policy.kind} of account {owner} denies it ({statement.sid})"
    if any(statement.effect == "Allow" for _, statement in matching):
        return True, ""
    kind = policies[0].kind if policies else POLICY_KINDS.get(request.action.split(":")[0], "")
    return False, (
        f"it is in account {owner}, whose {kind or 'resource policy'} does not allow"
        f" {role_arn or actor} (a cross-account request needs both sides)"
    )


def decide(
    request: Authorization, actor: str, statements: Iterable[Statement], account: Account
) -> tuple[bool, tuple[Statement, ...], str]:
    """The identity-policy verdict, then, for another account's resource, its policy's."""
    allowed, matched, reason = evaluate(request, statements)
    if allowed:
        granted, why = cross_account(request, actor, account)
        if not granted:
            return False, (), why
    return allowed, matched, reason


@dataclass
class Checker:
    """Evaluates every call of a rehearsal against its actor's role policies."""

    policies: Mapping[str, list[Statement]]
    account: Account
    decisions: list[Decision] = field(default_factory=list)
    checked: Counter = field(default_factory=Counter)

    def check(self, call: Call) -> list[Decision]:
        """The decisions on one call; the denied ones name the actor, action and resource."""
        if call.actor not in self.policies:
            raise IamError(f"actor {call.actor} is not a role of the templates")
        self.checked[call.actor] += 1
        try:
            requests = authorizations(call, self.account.of(call.actor))
        except IamError as error:
            decision = Decision(call, Authorization(call.name, "(unknown)"), False, (), str(error))
            self.decisions.append(decision)
            return [decision]
        decisions = []
        for request in requests:
            allowed, statements, reason = decide(
                request, call.actor, self.policies[call.actor], self.account
            )
            decisions.append(Decision(call, request, allowed, statements, reason))
        self.decisions.extend(decisions)
        return decisions

    def check_request(self, actor: str, request: Authorization, where: str = "") -> Decision:
        """The decision on one authorization AWS makes for actor without a recorded call
        (CloudFormation's handlers running as the stack's role)."""
        if actor not in self.policies:
            raise IamError(f"actor {actor} is not a role of the templates")
        self.checked[actor] += 1
        service, _, action = request.action.partition(":")
        call = Call(actor, service, action, {}, where)
        allowed, statements, reason = decide(request, actor, self.policies[actor], self.account)
        decision = Decision(call, request, allowed, statements, reason)
        self.decisions.append(decision)
        return decision

    def check_all(self, calls: Iterable[Call]) -> list[Decision]:
        """The denied decisions among these calls that fail the rehearsal."""
        return [
            decision
            for call in calls
            for decision in self.check(call)
            if not decision.allowed and not decision.handled
        ]

    @property
    def denied(self) -> list[Decision]:
        """Every denied decision so far that fails the rehearsal (handled ones aside)."""
        return [
            decision for decision in self.decisions if not decision.allowed and not decision.handled
        ]

    @property
    def handled(self) -> list[Decision]:
        """Denials answered AccessDenied that the calling code handled."""
        return [decision for decision in self.decisions if decision.handled]

    def unused(self, actors: Iterable[str] | None = None) -> list[Statement]:
        """Allow statements of the given roles (default: every role that made a call) that
        no checked call needed."""
        used = {id(statement) for decision in self.decisions for statement in decision.statements}
        roles = set(self.checked) if actors is None else set(actors)
        return [
            statement
            for role in sorted(roles)
            for statement in self.policies.get(role, [])
            if statement.effect == "Allow"
            and id(statement) not in used
            and not statement.policy.startswith(BOUNDARY_PREFIX)
        ]

    def summary(self) -> list[str]:
        """The IAM lines of the rehearsal summary."""
        per_actor = ", ".join(f"{actor} {count}" for actor, count in sorted(self.checked.items()))
        handled = sorted({f"{d.request.action} by {d.call.actor}" for d in self.handled})
        handled_text = (
            f" ({len(self.handled)} more answered AccessDenied and handled by the caller:"
            f" {', '.join(handled)})"
            if handled
            else ""
        )
        unused = self.unused()
        lines = [
            f"IAM: {sum(self.checked.values())} calls checked ({per_actor or 'none'});"
            f" {len(self.denied)} denied{handled_text}; {len(unused)} policy statements no"
            " rehearsed call used" + (":" if unused else "")
        ]
        by_role: dict[str, list[str]] = {}
        for statement in unused:
            by_role.setdefault(statement.role, []).append(f"{statement.policy}/{statement.sid}")
        lines.extend(f"  {role}: {', '.join(names)}" for role, names in by_role.items())
        return lines


def _statement_data(statement: Statement) -> dict[str, Any]:
    return {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in dataclasses.asdict(statement).items()
    }


def _statement(item: Mapping[str, Any]) -> Statement:
    return Statement(
        **{key: tuple(value) if isinstance(value, list) else value for key, value in item.items()}
    )


def write_policies(path: Path, policies: Mapping[str, list[Statement]], account: Account) -> None:
    """The roles' statements and the account, for the recording hook of build processes."""
    document = {
        "account": {
            "account_id": account.account_id,
            "region": account.region,
            "partition": account.partition,
            "bucket_keys": dict(account.bucket_keys),
            "key_aliases": {key: list(aliases) for key, aliases in account.key_aliases.items()},
            "actor_accounts": dict(account.actor_accounts),
            "actor_roles": dict(account.actor_roles),
            "bucket_owners": dict(account.bucket_owners),
            "repositories": list(account.repositories),
            "resource_policies": [
                {
                    "kind": policy.kind,
                    "owner": policy.owner,
                    "resources": list(policy.resources),
                    "statements": [_statement_data(item) for item in policy.statements],
                }
                for policy in account.resource_policies
            ],
        },
        "roles": {
            role: [_statement_data(statement) for statement in statements]
            for role, statements in policies.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1))


def read_policies(path: Path) -> tuple[dict[str, list[Statement]], Account]:
    """What write_policies wrote."""
    document = json.loads(Path(path).read_text())
    settings = document["account"]
    aliases = {key: tuple(names) for key, names in settings.pop("key_aliases", {}).items()}
    resource_policies = tuple(
        ResourcePolicy(
            item["kind"],
            item["owner"],
            tuple(item["resources"]),
            tuple(_statement(statement) for statement in item["statements"]),
        )
        for item in settings.pop("resource_policies", [])
    )
    settings["repositories"] = tuple(settings.get("repositories", ()))
    account = Account(**settings, key_aliases=aliases, resource_policies=resource_policies)
    policies = {
        role: [_statement(item) for item in statements]
        for role, statements in document["roles"].items()
    }
    return policies, account


def denial(policies: Mapping[str, list[Statement]], account: Account, call: Call) -> str:
    """Why AWS would refuse the call ("" when it would allow it)."""
    if call.actor not in policies:
        return f"actor {call.actor} is not a role of the templates"
    try:
        requests = authorizations(call, account.of(call.actor))
    except IamError as error:
        return str(error)
    for request in requests:
        allowed, _, reason = decide(request, call.actor, policies[call.actor], account)
        if not allowed:
            return f"{call.actor} may not {request.action} on {request.resource}: {reason}"
    return ""


def read_calls(path: Path, where: str = "") -> list[Call]:
    """The calls a JSONL log recorded (see hook/sitecustomize.py)."""
    if not path.is_file():
        return []
    calls = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            calls.append(
                Call(
                    record["actor"],
                    record["service"],
                    record["operation"],
                    record.get("params", {}),
                    where,
                )
            )
    return calls


# ---------------------------------------------------------------------------- recording


def profile_role(environment: Mapping[str, str]) -> str | None:
    """The role ARN the AWS_PROFILE of an environment assumes (role_arn of that profile in
    AWS_CONFIG_FILE), or None: the SDKs and the AWS CLI then call AWS as that role, after an
    AssumeRole with the source credentials."""
    import configparser

    profile, path = environment.get("AWS_PROFILE"), environment.get("AWS_CONFIG_FILE")
    if not profile or not path or not Path(path).is_file():
        return None
    parser = configparser.ConfigParser()
    parser.read(path)
    section = "default" if profile == "default" else f"profile {profile}"
    return parser.get(section, "role_arn", fallback=None)


HOOK_DIR = Path(__file__).resolve().parent / "hook"


def hook_environment(
    environment: Mapping[str, str],
    actor: str,
    log_path: Path,
    policies_path: Path,
    endpoints: Iterable[str],
) -> dict[str, str]:
    """A process environment whose Python processes make their AWS calls as actor.

    Every process started with it (make, pytest, the AWS CLI...) imports
    hook/sitecustomize.py, which checks each call sent to endpoints against the policies
    (write_policies), answers a denied one AccessDenied and appends every call to log_path.
    """
    path = [str(HOOK_DIR), *filter(None, [environment.get("PYTHONPATH", "")])]
    return {
        **environment,
        "PYTHONPATH": os.pathsep.join(path),
        "REHEARSAL_IAM_ACTOR": actor,
        "REHEARSAL_IAM_LOG": str(log_path),
        "REHEARSAL_IAM_POLICIES": str(policies_path),
        "REHEARSAL_IAM_ENDPOINTS": " ".join(endpoints),
    }


class Recorder:
    """Records the AWS calls this process makes on an actor's behalf.

    install() adds a `before-parameter-build` hook to every botocore session created from
    then on (and to boto3's default one); while `acting_as(actor)` is active, each call of
    any client (S3 transfers run in worker threads, so the actor is the process's, not a
    thread's) is recorded as that actor's. Outside it (the rehearsal's own bookkeeping in
    moto) nothing is recorded; the rehearsal plays one actor at a time.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._acting: tuple[str, str] | None = None
        self._undo: Callable[[], None] | None = None

    def _record(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        acting = self._acting
        if acting is not None:
            actor, where = acting
            service = model.service_model.service_name
            self.calls.append(Call(actor, service, model.name, _plain(params), where))

    def watch(self, events: Any) -> None:
        """Record the calls made through this event emitter (a session's or a client's)."""
        events.register("before-parameter-build", self._record)

    def install(self) -> None:
        """Watch every botocore session created from now on, until uninstall()."""
        import boto3
        import botocore.session

        original = botocore.session.Session.__init__
        recorder = self

        def __init__(session: Any, *args: Any, **kwargs: Any) -> None:
            original(session, *args, **kwargs)
            recorder.watch(session.get_component("event_emitter"))

        botocore.session.Session.__init__ = __init__  # type: ignore[method-assign]
        if boto3.DEFAULT_SESSION is not None:
            self.watch(boto3.DEFAULT_SESSION._session.get_component("event_emitter"))

        def undo() -> None:
            botocore.session.Session.__init__ = original  # type: ignore[method-assign]

        self._undo = undo

    def uninstall(self) -> None:
        """Stop watching new sessions."""
        if self._undo is not None:
            self._undo()
            self._undo = None

    @contextlib.contextmanager
    def acting_as(self, actor: str | None, where: str = "") -> Iterator[list[Call]]:
        """Record the calls made inside as actor's (None: as nobody's); yields them."""
        start = len(self.calls)
        saved, self._acting = self._acting, ((actor, where) if actor else None)
        made: list[Call] = []
        try:
            yield made
        finally:
            self._acting = saved
            made.extend(self.calls[start:])


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters as JSON data (bodies and streams become a marker)."""
    return json.loads(json.dumps(params, default=lambda value: f"<{type(value).__name__}>"))


# ---------------------------------------------------------------------------- CloudFormation

# ARN of a resource CloudFormation manages, by type, from its physical id (the Service
# Authorization Reference's resource types).
HANDLED_TYPES = {
    "AWS::SageMaker::Model": ("sagemaker", "model/{}"),
    "AWS::SageMaker::EndpointConfig": ("sagemaker", "endpoint-config/{}"),
    "AWS::SageMaker::Endpoint": ("sagemaker", "endpoint/{}"),
    "AWS::CloudWatch::Alarm": ("cloudwatch", "alarm:{}"),
    # The pipeline stacks' types (the UpdatePipelines action changes them as the stacks role).
    "AWS::CodeBuild::Project": ("codebuild", "project/{}"),
    "AWS::CodeBuild::ReportGroup": ("codebuild", "report-group/{}"),
    "AWS::CodeCommit::Repository": ("codecommit", "{}"),
    "AWS::CodePipeline::Pipeline": ("codepipeline", "{}"),
    "AWS::DynamoDB::Table": ("dynamodb", "table/{}"),
    "AWS::Events::Rule": ("events", "rule/{}"),
    # A statement of the default bus's policy: its handlers act on the bus.
    "AWS::Events::EventBusPolicy": ("events", "event-bus/default"),
    "AWS::IAM::ManagedPolicy": ("iam", "policy{}"),
    "AWS::IAM::Role": ("iam", "role{}"),
    "AWS::KMS::Alias": ("kms", "{}"),
    "AWS::KMS::Key": ("kms", "key/{}"),
    "AWS::Lambda::Function": ("lambda", "function:{}"),
    "AWS::Lambda::Permission": ("lambda", "function:{}"),
    "AWS::Logs::LogGroup": ("logs", "log-group:{}"),
    "AWS::S3::Bucket": ("s3", "{}"),
    "AWS::S3::BucketPolicy": ("s3", "{}"),
    "AWS::SNS::Subscription": ("sns", "{}"),
    "AWS::SNS::Topic": ("sns", "{}"),
    "AWS::SNS::TopicPolicy": ("sns", "{}"),
    "AWS::SQS::Queue": ("sqs", "{}"),
    "AWS::SQS::QueuePolicy": ("sqs", "{}"),
    "AWS::SageMaker::ModelPackageGroup": ("sagemaker", "model-package-group/{}"),
    "AWS::Scheduler::Schedule": ("scheduler", "schedule/default/{}"),
}
# Handler actions that serve one property: checked only when the resource sets it (a policy
# attached to groups or users; a role's inline policies, managed policies, boundary).
PROPERTY_ACTIONS = {
    ("AWS::IAM::ManagedPolicy", "iam:AttachGroupPolicy"): "Groups",
    ("AWS::IAM::ManagedPolicy", "iam:DetachGroupPolicy"): "Groups",
    ("AWS::IAM::ManagedPolicy", "iam:AttachUserPolicy"): "Users",
    ("AWS::IAM::ManagedPolicy", "iam:DetachUserPolicy"): "Users",
    ("AWS::IAM::ManagedPolicy", "iam:AttachRolePolicy"): "Roles",
    ("AWS::IAM::ManagedPolicy", "iam:DetachRolePolicy"): "Roles",
    ("AWS::IAM::Role", "iam:AttachRolePolicy"): "ManagedPolicyArns",
    ("AWS::IAM::Role", "iam:PutRolePolicy"): "Policies",
    ("AWS::IAM::Role", "iam:PutRolePermissionsBoundary"): "PermissionsBoundary",
    ("AWS::IAM::Role", "iam:DeleteRolePermissionsBoundary"): "(removed boundary)",
}
# Services whose ARNs carry no region and account (S3) or no region (IAM).
GLOBAL_SERVICES = {"s3": "s3:::{}", "iam": "iam::{a}:{}"}


def handler_permissions(resource_type: str, handler: str, region: str) -> list[str]:
    """The IAM actions CloudFormation needs for a resource type's handler (create, update,
    delete), from the registry schema cfn-lint ships."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type).schema
    return list(schema.get("handlers", {}).get(handler, {}).get("permissions", []))


def _found(properties: Any, suffix: str) -> list[str]:
    """Every string value of a property whose name ends with suffix, at any depth."""
    if isinstance(properties, dict):
        return [
            value
            for key, item in properties.items()
            for value in ([item] if key.endswith(suffix) and isinstance(item, str) else [])
            + _found(item, suffix)
        ]
    if isinstance(properties, list):
        return [value for item in properties for value in _found(item, suffix)]
    return []


def _aliased_key(value: str, account: Account) -> str:
    """The key an alias ARN names (KMS authorizes a request on the key, whatever names it);
    any other value as it is."""
    if ":alias/" not in value:
        return value
    owner, alias = value.split(":")[4], "alias/" + value.split(":alias/", 1)[1]
    for key, aliases in account.key_aliases.items():
        if key.split(":")[4] == owner and alias in aliases:
            return key
    return value


def handler_authorizations(
    resource_type: str,
    physical_id: str,
    properties: Mapping[str, Any],
    handler: str,
    account: Account,
) -> list[Authorization]:
    """What the role CloudFormation assumes needs to run one handler on one resource.

    The resource's own actions are authorized on its ARN; iam:PassRole on each role the
    properties pass (…RoleArn), for the resource's service; PassConnection on each
    connection they name (…ConnectionArn), for the same service; kms actions on the keys the
    properties name (…KmsKeyId), and only when they name one.
    """
    if resource_type not in HANDLED_TYPES:
        raise IamError(
            f"{resource_type}: the rehearsal has no ARN format for what CloudFormation does"
            " with it (add it to rehearsal/iam.py HANDLED_TYPES)"
        )
    service, resource = HANDLED_TYPES[resource_type]
    if resource_type in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy"):
        physical_id = str(properties.get("Path", "/")) + physical_id
    if physical_id.startswith("arn:"):
        own_arn = physical_id
    elif service in GLOBAL_SERVICES:
        own_arn = f"arn:{account.partition}:" + GLOBAL_SERVICES[service].format(
            resource.format(physical_id), a=account.account_id
        )
    else:
        own_arn = account.arn(service, resource.format(physical_id))
    found = []
    context = dict(GLOBAL_CONTEXT)
    if resource_type == "AWS::IAM::Role" and properties.get("PermissionsBoundary"):
        # The boundary the role has (iam:PermissionsBoundary condition key).
        context["iam:PermissionsBoundary"] = str(properties["PermissionsBoundary"])
    for action in handler_permissions(resource_type, handler, account.region):
        needs = PROPERTY_ACTIONS.get((resource_type, action))
        if needs is not None and needs not in properties:
            continue
        prefix = action.split(":", 1)[0]
        if prefix == "iam" and action == "iam:PassRole":
            context = {**GLOBAL_CONTEXT, "iam:PassedToService": f"{service}.amazonaws.com"}
            roles = [*_found(properties, "RoleArn"), *_found(properties, "Role")]
            # A role of another account is not passed but assumed, when the service uses it
            # (a cross-account pipeline action: the action player checks that AssumeRole).
            roles = [role for role in roles if role.split(":")[4:5] == [account.account_id]]
            found.extend(Authorization(action, role, context) for role in roles)
        elif action.endswith(":PassConnection"):
            # IAM matches the action's prefix with the connection ARN's (codeconnections or
            # the older codestar-connections), whichever the handler list names.
            for connection in _found(properties, "ConnectionArn"):
                owner = connection.split(":")[2]
                passed = {**GLOBAL_CONTEXT, f"{owner}:PassedToService": f"{service}.amazonaws.com"}
                found.append(Authorization(f"{owner}:PassConnection", connection, passed))
        elif prefix == "kms":
            found.extend(
                Authorization(action, _aliased_key(key, account), GLOBAL_CONTEXT)
                for key in _found(properties, "KmsKeyId")
            )
        elif prefix == service:
            found.append(Authorization(action, own_arn, context))
        # Another service's actions in a handler's list serve properties the project does not
        # set (a function in a VPC, a rule's Kinesis target): not checked.
    if resource_type == "AWS::SageMaker::Model" and handler == "create":
        # A model from another account's registered package: SageMaker's cross-account model
        # registry authorizes reading the package and creating a model from it on the
        # package (the group's policy grants both to the other account).
        for package in _found(properties, "ModelPackageName"):
            if package.startswith("arn:") and package.split(":")[4] != account.account_id:
                found += [
                    Authorization("sagemaker:DescribeModelPackage", package, GLOBAL_CONTEXT),
                    Authorization("sagemaker:CreateModel", package, GLOBAL_CONTEXT),
                ]
    return found


# A stack's resources as a resolver gives them: logical id -> (type, resolved properties).
Resources = dict[str, tuple[str, dict[str, Any]]]
STACK_WRITES = ("CreateStack", "UpdateStack", "ExecuteChangeSet")


@dataclass
class StackDeploys:
    """What CloudFormation does for the stack operations of recorded calls, as calls of the
    role the operation passed (RoleARN).

    moto creates a stack's resources without calling the services, so the rehearsal derives
    CloudFormation's calls from the templates: a resource that is new runs its create
    handler, one that is gone its delete handler, one whose resolved properties changed its
    update handler, or create and delete when a changed property is create-only (the
    registry schema's createOnlyProperties). resources(stack name, template body,
    parameters) resolves a template; the resource's name is its name property, or the name
    CloudFormation generates (<stack>-<logical id>-<random>; the random part is "*").
    """

    resources: Callable[[str, str, Mapping[str, str]], Resources]
    deployed: dict[str, Resources] = field(default_factory=dict)
    stack_roles: dict[str, str] = field(default_factory=dict)
    # Stacks the CloudFormation stand-in hosts: it checks what their handlers do itself.
    hosted: set[str] = field(default_factory=set)

    def operations(self, calls: list[Call]) -> list[tuple[str, str, str, dict[str, str]]]:
        """(stack, role ARN, template body, parameters) of every stack write among calls;
        a deleted stack has an empty body (CloudFormation keeps the role it last used)."""
        pending: dict[str, tuple[str, str, dict[str, str]]] = {}
        found = []
        for call in calls:
            params = call.params
            if call.service != "cloudformation" or not params.get("StackName"):
                continue
            stack = str(params["StackName"])
            if stack in self.hosted or any(f":stack/{name}/" in stack for name in self.hosted):
                continue
            request = (
                str(params.get("RoleARN", "")),
                str(params.get("TemplateBody", "")),
                {
                    str(item["ParameterKey"]): str(item.get("ParameterValue", ""))
                    for item in params.get("Parameters", [])
                },
            )
            if call.operation == "CreateChangeSet":
                pending[stack] = request
            elif call.operation in ("CreateStack", "UpdateStack"):
                found.append((stack, *request))
            elif call.operation == "ExecuteChangeSet" and stack in pending:
                found.append((stack, *pending.pop(stack)))
            elif call.operation == "DeleteStack":
                found.append((stack, request[0] or self.stack_roles.get(stack, ""), "", {}))
        return found

    def authorizations(
        self, calls: list[Call], account: Account, roles: Mapping[str, str]
    ) -> list[tuple[str, Authorization]]:
        """(actor, authorization) for every handler CloudFormation runs for these calls."""
        found = []
        for stack, role_arn, body, parameters in self.operations(calls):
            before = self.deployed.get(stack, {})
            now = self.resources(stack, body, parameters) if body else {}
            self.deployed[stack] = now
            if not role_arn:
                continue  # CloudFormation acts with the caller's own permissions
            if role_arn not in roles:
                raise IamError(f"stack {stack} runs as {role_arn}, which no template declares")
            self.stack_roles[stack] = role_arn
            actor = roles[role_arn]
            found.extend(
                (actor, request)
                for request in stack_change_authorizations(stack, before, now, account.of(actor))
            )
        return found


def stack_change_authorizations(
    stack: str, before: Resources, now: Resources, account: Account
) -> list[Authorization]:
    """What the role CloudFormation assumes needs to take a stack from before to now."""
    found = []
    for logical_id, handler, resource_type, properties in _handlers(before, now, account):
        name = _physical_name(stack, logical_id, resource_type, properties)
        found.extend(handler_authorizations(resource_type, name, properties, handler, account))
    return found


def _handlers(
    before: Resources, now: Resources, account: Account
) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(logical id, handler, type, properties) CloudFormation runs to go from before to now."""
    for logical_id, (resource_type, properties) in sorted(now.items()):
        if logical_id not in before:
            yield logical_id, "create", resource_type, properties
            continue
        old_type, old_properties = before[logical_id]
        if old_properties == properties:
            continue
        changed = {
            key
            for key in {*properties, *old_properties}
            if properties.get(key) != old_properties.get(key)
        }
        replaced = create_only(resource_type, account.region)
        if "*" in replaced or changed & replaced:
            yield logical_id, "create", resource_type, properties
            yield logical_id, "delete", old_type, old_properties
        else:
            yield logical_id, "update", resource_type, properties
    for logical_id, (resource_type, properties) in sorted(before.items()):
        if logical_id not in now:
            yield logical_id, "delete", resource_type, properties


def create_only(resource_type: str, region: str) -> set[str]:
    """Top-level properties whose change replaces the resource (registry schema); {"*"} for
    a type the schemas lack: any change replaces it."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type).schema
    except Exception:  # cfnlint's ResourceNotFoundError
        return {"*"}
    return {
        path.removeprefix("/properties/").split("/", 1)[0]
        for path in schema.get("createOnlyProperties", [])
    }


# The property that names a resource, by type (absent: CloudFormation generates the name).
NAME_PROPERTY = {
    "AWS::SageMaker::Model": "ModelName",
    "AWS::SageMaker::EndpointConfig": "EndpointConfigName",
    "AWS::SageMaker::Endpoint": "EndpointName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CodeBuild::Project": "Name",
    "AWS::CodeBuild::ReportGroup": "Name",
    "AWS::CodeCommit::Repository": "RepositoryName",
    "AWS::CodePipeline::Pipeline": "Name",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Events::Rule": "Name",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::IAM::Role": "RoleName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Lambda::Permission": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::S3::BucketPolicy": "Bucket",
    "AWS::SNS::Subscription": "TopicArn",
    "AWS::SNS::Topic": "TopicName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
    "AWS::Scheduler::Schedule": "Name",
}


def _physical_name(
    stack: str, logical_id: str, resource_type: str, properties: Mapping[str, Any]
) -> str:
    name = properties.get(NAME_PROPERTY.get(resource_type, ""))
    return str(name) if name else f"{stack}-{logical_id}-*"


@dataclass(frozen=True)
class Build:
    """What a CodeBuild build does with its project's service role besides the buildspec's
    own commands (CodeBuild user guide, "Allow CodeBuild to interact with other AWS
    services"): it writes its log stream, files its test reports, reads its input artifacts
    and cache and writes its output artifacts and cache (S3, with the key the bucket uses)."""

    log_group: str | None
    build_id: str
    report_groups: tuple[str, ...] = ()
    inputs: tuple[tuple[str, str], ...] = ()  # (bucket, key)
    outputs: tuple[tuple[str, str], ...] = ()
    cache: tuple[str, str] | None = None  # (bucket, prefix)

    def authorizations(self, account: Account) -> list[Authorization]:
        """The authorizations the build's own work needs."""
        found = []
        if self.log_group:
            stream = account.arn("logs", f"log-group:{self.log_group}:log-stream:{self.build_id}")
            found += [
                Authorization("logs:CreateLogStream", stream, GLOBAL_CONTEXT),
                Authorization("logs:PutLogEvents", stream, GLOBAL_CONTEXT),
            ]
        for group in self.report_groups:
            arn = account.arn("codebuild", f"report-group/{group}")
            found += [
                Authorization(f"codebuild:{action}", arn, GLOBAL_CONTEXT)
                for action in ("CreateReport", "UpdateReport", "BatchPutTestCases")
            ]
        objects = [("GetObject", bucket, key) for bucket, key in self.inputs]
        objects += [("PutObject", bucket, key) for bucket, key in self.outputs]
        if self.cache:
            bucket, prefix = self.cache
            objects += [
                ("GetObject", bucket, f"{prefix}/{self.build_id}"),
                ("PutObject", bucket, f"{prefix}/{self.build_id}"),
            ]
        for operation, bucket, key in objects:
            call = Call("", "s3", operation, {"Bucket": bucket, "Key": key})
            found += authorizations(call, account)
        return found


# ---------------------------------------------------------------------------- one rehearsal


class IamDenied(Exception):
    """Calls of an action that the policies would refuse; the message has one line each."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


@dataclass
class RehearsalIam:
    """The IAM check of one rehearsal: the roles' policies, the recorders, the verdicts.

    Builds record (and are refused) through hook_environment; calls this process makes for
    an actor through acting_as; CloudFormation's own calls are derived from the stack
    operations among them (StackDeploys). check() after each action raises IamDenied naming
    every refused call.
    """

    checker: Checker
    log_dir: Path
    endpoints: tuple[str, ...]
    roles: Mapping[str, str]  # role ARN -> actor (the role's logical id)
    recorder: Recorder = field(default_factory=Recorder)
    stacks: StackDeploys | None = None
    offsets: dict[Path, int] = field(default_factory=dict)

    @property
    def policies_path(self) -> Path:
        """The policies file the hook of build processes reads."""
        return self.log_dir / "policies.json"

    def start(self) -> None:
        """Write the policies for the hook and watch this process's botocore sessions."""
        write_policies(self.policies_path, self.checker.policies, self.checker.account)
        self.recorder.install()

    def stop(self) -> None:
        """Stop watching new sessions."""
        self.recorder.uninstall()

    def actor(self, role_arn: str) -> str:
        """The actor of a role ARN; IamError when no template declares the role."""
        if role_arn not in self.roles:
            raise IamError(f"role {role_arn} is not declared by the templates")
        return self.roles[role_arn]

    def environment(self, environment: Mapping[str, str], actor: str) -> dict[str, str]:
        """A build's environment, its processes making their AWS calls as actor."""
        return hook_environment(
            environment, actor, self.log_path(actor), self.policies_path, self.endpoints
        )

    def log_path(self, actor: str) -> Path:
        """The JSONL file of actor's calls."""
        return self.log_dir / f"{actor}.jsonl"

    def recorded(self, actor: str, where: str) -> list[Call]:
        """The calls actor's processes recorded since the last look."""
        path = self.log_path(actor)
        if not path.is_file():
            return []
        with open(path, encoding="utf-8") as log:
            log.seek(self.offsets.get(path, 0))
            text = log.read()
            self.offsets[path] = log.tell()
        return [
            Call(item["actor"], item["service"], item["operation"], item.get("params", {}), where)
            for item in map(json.loads, filter(str.strip, text.splitlines()))
        ]

    def check(
        self,
        calls: Iterable[Call],
        where: str,
        platform: tuple[str, Iterable[Authorization]] | None = None,
    ) -> None:
        """Evaluate calls, what CloudFormation did for them, and platform=(actor, requests)
        a service made with the actor's role; IamDenied if any is refused."""
        calls = list(calls)
        denied = self.checker.check_all(calls)
        if platform is not None:
            actor, requests = platform
            for request in requests:
                decision = self.checker.check_request(actor, request, where)
                if not decision.allowed:
                    denied.append(decision)
        if self.stacks is not None and not denied:
            account = self.checker.account
            for actor, request in self.stacks.authorizations(calls, account, self.roles):
                decision = self.checker.check_request(actor, request, f"{where}, CloudFormation")
                if not decision.allowed:
                    denied.append(decision)
        if denied:
            lines = list(dict.fromkeys(decision.line() for decision in denied))
            raise IamDenied(lines)
