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
  Condition operators".

An operation without a rule is never allowed: the rehearsal fails and names it, so a new
AWS call is checked as soon as the project makes it.
"""

import contextlib
import contextvars
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLE_TYPE = "AWS::IAM::Role"
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
    return tuple(str(item) for item in (value if isinstance(value, list) else [value]))


def parse_policy(document: Mapping[str, Any], role: str, policy: str) -> list[Statement]:
    """The statements of a resolved policy document; IamError for what IAM would refuse."""
    statements = document.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list):
        raise IamError(f"{role}/{policy}: the policy has no Statement list")
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


def role_policies(
    template: Mapping[str, Any], resolve: Callable[[Any], Any]
) -> dict[str, list[Statement]]:
    """Every role of a template with the statements of its policies, by logical id.

    A role's policies are its inline Policies, the managed policies of ManagedPolicyArns that
    the same template declares (a Ref to it), and the AWS::IAM::Policy and ManagedPolicy
    resources whose Roles name it. A managed policy from elsewhere cannot be evaluated:
    IamError names it.
    """
    resources = template.get("Resources", {})
    roles = {key: value for key, value in resources.items() if value.get("Type") == ROLE_TYPE}
    statements: dict[str, list[Statement]] = {}
    for logical_id, role in roles.items():
        properties = role.get("Properties", {})
        found: list[Statement] = []
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
    """(base operator, negated, IfExists) of a condition operator; IamError if unknown."""
    base = operator.removesuffix("IfExists")
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

    def arn(self, service: str, resource: str, regional: bool = True) -> str:
        """arn:partition:service:region:account:resource."""
        region = self.region if regional else ""
        return f"arn:{self.partition}:{service}:{region}:{self.account_id}:{resource}"


def _value(call: Call, name: str) -> str:
    if name not in call.params or call.params[name] in (None, ""):
        raise IamError(f"{call.name} has no {name}: the resource ARN cannot be computed")
    return str(call.params[name])


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
    ("s3", "GetBucketLocation"): _rule("s3:GetBucketLocation", _s3_bucket, "Bucket"),
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
    (SAGEMAKER, "DescribePipelineExecution"): _rule(
        "sagemaker:DescribePipelineExecution", _pipeline_execution, "PipelineExecutionArn"
    ),
    (SAGEMAKER, "ListPipelineExecutionSteps"): _rule(
        "sagemaker:ListPipelineExecutionSteps", _pipeline_execution, "PipelineExecutionArn"
    ),
    (SAGEMAKER, "StopPipelineExecution"): _rule(
        "sagemaker:StopPipelineExecution", _pipeline_execution, "PipelineExecutionArn"
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
    # AWS Secrets Manager (list_awssecretsmanager.html): secret
    # arn:${Partition}:secretsmanager:${Region}:${Account}:secret:${SecretId}.
    ("secretsmanager", "GetSecretValue"): _rule(
        "secretsmanager:GetSecretValue",
        _named("secretsmanager:secret:{}", "SecretId"),
        "SecretId",
    ),
    # AWS KMS (list_awskeymanagementservice.html): key
    # arn:${Partition}:kms:${Region}:${Account}:key/${KeyId}.
    ("kms", "DescribeKey"): _rule("kms:DescribeKey", _kms_key("KeyId"), "KeyId"),
    # AWS STS: GetCallerIdentity needs no permission (it is never denied).
    ("sts", "GetCallerIdentity"): _rule("", _everything),
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
    found = [
        Authorization(rule.action, arn, GLOBAL_CONTEXT) for arn in rule.resources(call, account)
    ]
    if rule.passes_role and call.params.get(rule.passes_role[0]):
        role_arn, service = str(call.params[rule.passes_role[0]]), rule.passes_role[1]
        context = {**GLOBAL_CONTEXT, "iam:PassedToService": service}
        found.append(Authorization("iam:PassRole", role_arn, context))
    if rule.kms and call.service == "s3":
        key = account.bucket_keys.get(str(call.params.get("Bucket")))
        if key:
            found.append(Authorization(rule.kms, key, GLOBAL_CONTEXT))
    return found


# ---------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Decision:
    """The verdict on one authorization of a call."""

    call: Call
    request: Authorization
    allowed: bool
    statements: tuple[Statement, ...]  # the Allow statements that matched, or the Deny
    reason: str

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
    """IAM's identity-policy evaluation: explicit Deny, else Allow, else implicit deny."""
    matching = [statement for statement in statements if statement.matches(request)]
    denies = tuple(statement for statement in matching if statement.effect == "Deny")
    if denies:
        return False, denies, f"explicitly denied by {denies[0].label}"
    allows = tuple(statement for statement in matching if statement.effect == "Allow")
    if allows:
        return True, allows, "allowed"
    return False, (), "no statement of its policies allows it"


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
            requests = authorizations(call, self.account)
        except IamError as error:
            decision = Decision(call, Authorization(call.name, "(unknown)"), False, (), str(error))
            self.decisions.append(decision)
            return [decision]
        decisions = []
        for request in requests:
            allowed, statements, reason = evaluate(request, self.policies[call.actor])
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
        allowed, statements, reason = evaluate(request, self.policies[actor])
        decision = Decision(call, request, allowed, statements, reason)
        self.decisions.append(decision)
        return decision

    def check_all(self, calls: Iterable[Call]) -> list[Decision]:
        """The denied decisions among these calls."""
        return [decision for call in calls for decision in self.check(call) if not decision.allowed]

    @property
    def denied(self) -> list[Decision]:
        """Every denied decision so far."""
        return [decision for decision in self.decisions if not decision.allowed]

    def unused(self, actors: Iterable[str] | None = None) -> list[Statement]:
        """Allow statements of the given roles (default: every role that made a call) that
        no checked call needed."""
        used = {id(statement) for decision in self.decisions for statement in decision.statements}
        roles = set(self.checked) if actors is None else set(actors)
        return [
            statement
            for role in sorted(roles)
            for statement in self.policies.get(role, [])
            if statement.effect == "Allow" and id(statement) not in used
        ]

    def summary(self) -> str:
        """The IAM line of the rehearsal summary."""
        per_actor = ", ".join(f"{actor} {count}" for actor, count in sorted(self.checked.items()))
        unused = self.unused()
        names = "; ".join(statement.label for statement in unused)
        return (
            f"IAM: {sum(self.checked.values())} calls checked ({per_actor or 'none'});"
            f" {len(self.denied)} denied; {len(unused)} policy statements no rehearsed call"
            f" used{': ' + names if names else ''}"
        )


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

HOOK_DIR = Path(__file__).resolve().parent / "hook"


def hook_environment(
    environment: Mapping[str, str], actor: str, log_path: Path, endpoints: Iterable[str]
) -> dict[str, str]:
    """A process environment whose Python processes record their AWS calls as actor.

    Every process started with it (make, pytest, the AWS CLI...) imports
    hook/sitecustomize.py, which appends the calls sent to endpoints to log_path.
    """
    path = [str(HOOK_DIR), *filter(None, [environment.get("PYTHONPATH", "")])]
    return {
        **environment,
        "PYTHONPATH": os.pathsep.join(path),
        "REHEARSAL_IAM_ACTOR": actor,
        "REHEARSAL_IAM_LOG": str(log_path),
        "REHEARSAL_IAM_ENDPOINTS": " ".join(endpoints),
    }


class Recorder:
    """Records the AWS calls this process makes on an actor's behalf.

    install() adds a `before-parameter-build` hook to every botocore session created from
    then on (and to boto3's default one); while `acting_as(actor)` is active in this thread
    of execution, each call of any client is recorded as that actor's. Outside it (the
    rehearsal's own bookkeeping in moto) nothing is recorded.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._actor: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
            "rehearsal_iam_actor", default=None
        )
        self._undo: Callable[[], None] | None = None

    def _record(self, params: Mapping[str, Any], model: Any, **_: Any) -> None:
        acting = self._actor.get()
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
        token = self._actor.set((actor, where) if actor else None)
        made: list[Call] = []
        try:
            yield made
        finally:
            self._actor.reset(token)
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
}


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


def handler_authorizations(
    resource_type: str,
    physical_id: str,
    properties: Mapping[str, Any],
    handler: str,
    account: Account,
) -> list[Authorization]:
    """What the role CloudFormation assumes needs to run one handler on one resource.

    The resource's own actions are authorized on its ARN; iam:PassRole on each role the
    properties pass (…RoleArn), for the resource's service; kms actions on the keys the
    properties name (…KmsKeyId), and only when they name one.
    """
    if resource_type not in HANDLED_TYPES:
        raise IamError(
            f"{resource_type}: the rehearsal has no ARN format for what CloudFormation does"
            " with it (add it to rehearsal/iam.py HANDLED_TYPES)"
        )
    service, resource = HANDLED_TYPES[resource_type]
    own_arn = account.arn(service, resource.format(physical_id))
    found = []
    for action in handler_permissions(resource_type, handler, account.region):
        prefix = action.split(":", 1)[0]
        if prefix == "iam" and action == "iam:PassRole":
            context = {**GLOBAL_CONTEXT, "iam:PassedToService": f"{service}.amazonaws.com"}
            found.extend(
                Authorization(action, role, context) for role in _found(properties, "RoleArn")
            )
        elif prefix == "kms":
            found.extend(
                Authorization(action, key, GLOBAL_CONTEXT) for key in _found(properties, "KmsKeyId")
            )
        elif prefix == service:
            found.append(Authorization(action, own_arn, GLOBAL_CONTEXT))
        else:
            raise IamError(f"{resource_type}: no resource for {action} in its handler")
    return found


@dataclass
class StackWatcher:
    """What CloudFormation did between two looks at moto's stacks, as the calls of the role
    each stack runs under (the role a deploy passed, RoleARN).

    moto creates a stack's resources without API calls, so the rehearsal derives them: a
    resource that appeared runs its create handler, one that went away its delete handler,
    one whose physical id changed both; properties come from the stack's template, resolved
    with its parameters (resolve_stack turns a described stack into a resolver).
    """

    cloudformation: Any
    resolve_stack: Callable[[Mapping[str, Any], str], Callable[[Any], Any]]
    seen: dict[str, dict[str, tuple[str, str]]] = field(default_factory=dict)

    def _resources(self, stack_name: str) -> dict[str, tuple[str, str]]:
        described = self.cloudformation.describe_stack_resources(StackName=stack_name)
        return {
            item["LogicalResourceId"]: (item["ResourceType"], item["PhysicalResourceId"])
            for item in described["StackResources"]
        }

    def changes(
        self, account: Account, roles: Mapping[str, str]
    ) -> list[tuple[str, Authorization]]:
        """(actor, authorization) for every handler CloudFormation ran since the last look.

        roles maps a role ARN to its actor; a stack deployed without a role is skipped (its
        caller's own calls are recorded where it made them).
        """
        found = []
        for stack in self.cloudformation.describe_stacks()["Stacks"]:
            name = stack["StackName"]
            now = self._resources(name)
            before = self.seen.get(name, {})
            self.seen[name] = now
            role_arn = stack.get("RoleARN")
            if not role_arn or now == before:
                continue
            if role_arn not in roles:
                raise IamError(f"stack {name} runs as {role_arn}, which no template declares")
            template = self.cloudformation.get_template(StackName=name)["TemplateBody"]
            resolve = self.resolve_stack(
                stack, template if isinstance(template, str) else json.dumps(template)
            )
            for logical_id, (resource_type, physical_id) in sorted(now.items()):
                old = before.get(logical_id)
                if old is not None and old[1] == physical_id:
                    continue
                properties = resolve(logical_id)
                found.extend(
                    (roles[role_arn], request)
                    for request in handler_authorizations(
                        resource_type, physical_id, properties, "create", account
                    )
                )
            for logical_id, (resource_type, physical_id) in sorted(before.items()):
                if logical_id not in now or now[logical_id][1] != physical_id:
                    found.extend(
                        (roles[role_arn], request)
                        for request in handler_authorizations(
                            resource_type, physical_id, {}, "delete", account
                        )
                    )
        return found
