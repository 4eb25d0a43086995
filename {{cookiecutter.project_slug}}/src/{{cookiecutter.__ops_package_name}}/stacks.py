"""The self-updating pipelines: a push to the dev branch updates the CloudFormation stacks of
the two CodePipelines, and `make bootstrap` keeps the first build for its own push.

check-roles     before any stack changes: every IAM role of the pushed pipeline templates
                has the permissions boundary of the bootstrap stack, and no Allow statement
                of its policies grants an action the boundary does not allow (the boundary
                would silently take it away at run time)
update-stacks   update existing stacks through change sets, in the order given. A change
                the stack's policy forbids (replacing or deleting a resource it protects) is
                refused before anything is created, from the templates alone, and again from
                what the change sets report; nothing is executed until every change set of
                every stack exists and passed. A failure before execution leaves every stack
                as it was (the change sets this run created are deleted)
stop-first-run  stop the execution CodePipeline starts by itself when it creates a pipeline

The standard library at import; PyYAML (the templates), cfn-lint (its resource schemas say
which properties replace a resource) and boto3 in the calls that need them.
"""

import functools
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from {{ cookiecutter.package_name }} import config

from . import deploy
from .errors import UserError

# CloudFormation's YAML short forms: !Ref and !Condition keep their name, the others are Fn::.
SHORT_TAGS = (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "If",
    "Join",
    "Select",
    "Split",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "ImportValue",
    "Base64",
    "Cidr",
    "GetAZs",
)
ROLE_TYPE = "AWS::IAM::Role"
BOUNDARY_TYPE = "AWS::IAM::ManagedPolicy"
# Policies that live beside a role and name it (Roles, or RoleName for AWS::IAM::RolePolicy).
ATTACHED_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
ROLE_POLICY_TYPE = "AWS::IAM::RolePolicy"

# update-stacks: how often and how long to wait (the tests set the pauses to 0).
CHANGE_SET_POLL_SECONDS = 2.0
CHANGE_SET_TIMEOUT_SECONDS = 10 * 60
STACK_POLL_SECONDS = 5.0
STACK_TIMEOUT_SECONDS = 60 * 60
# How many pages of stack events to read back to the start of the update.
EVENT_PAGES = 10
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
# The reasons of a FAILED change set that only mean "nothing to change" (what the AWS CLI's
# `cloudformation deploy` treats as an empty change set: awscli/customizations/cloudformation/
# deployer.py).
NO_CHANGES_REASONS = ("didn't contain changes", "No updates are to be performed")
# Stack policy grammar: the actions, and the condition operators this module evaluates.
POLICY_ACTIONS = ("Update:Modify", "Update:Replace", "Update:Delete")
POLICY_CONDITION_OPERATORS = ("StringEquals", "StringLike")
POLICY_CONDITION_KEY = "ResourceType"
LOGICAL_ID_PREFIX = "LogicalResourceId/"
# botocore's codepipeline TriggerType of the execution a new pipeline starts by itself.
CREATE_PIPELINE_TRIGGER = "CreatePipeline"
STOP_REASON = "make bootstrap starts the first build itself"
EXECUTIONS_TO_READ = 20


# ---------------------------------------------------------------- templates


@functools.cache
def template_loader() -> type:
    """A yaml.SafeLoader that reads CloudFormation's short forms (!Ref, !Sub, ...) as the
    long ones ({"Ref": ...}, {"Fn::Sub": ...}); JSON templates read with it too."""
    try:
        import yaml
    except ImportError as error:
        raise UserError(
            "reading templates needs PyYAML, from the dev dependency group: run `make install`"
        ) from error

    class TemplateLoader(yaml.SafeLoader):
        """SafeLoader plus CloudFormation's intrinsic function tags."""

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        if suffix not in SHORT_TAGS:
            raise yaml.constructor.ConstructorError(
                None, None, f"unknown tag !{suffix}", node.start_mark
            )
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        if suffix in ("Ref", "Condition"):
            return {suffix: value}
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
        return {f"Fn::{suffix}": value}

    TemplateLoader.add_multi_constructor("!", construct)
    return TemplateLoader


def parse_template(text: str, source: str) -> dict[str, Any]:
    """The template in text; a UserError naming source when it is not one."""
    import yaml

    try:
        document = yaml.load(text, Loader=template_loader())
    except yaml.YAMLError as error:
        raise UserError(
            f"{source} is not a CloudFormation template: {' '.join(str(error).split())}"
        ) from error
    return checked_template(document, source)


def checked_template(document: Any, source: str) -> dict[str, Any]:
    """document, when it is a template with a Resources mapping; else a UserError."""
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise UserError(f"{source} has no Resources mapping: it is not a CloudFormation template")
    return document


def read_template(path: Path) -> tuple[dict[str, Any], bytes]:
    """The template in the file, and the file's bytes."""
    try:
        body = Path(path).read_bytes()
    except FileNotFoundError as error:
        raise UserError(f"{path} not found") from error
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from error
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text: {error}") from error
    return parse_template(text, str(path)), body


def items(value: Any) -> list[Any]:
    """The entries of a policy field: a single value, a list, or Fn::If (both branches),
    without AWS::NoValue."""
    if value is None or value == {"Ref": "AWS::NoValue"}:
        return []
    if isinstance(value, list):
        return [entry for element in value for entry in items(element)]
    if isinstance(value, dict) and list(value) == ["Fn::If"]:
        branches = value["Fn::If"]
        if isinstance(branches, list) and len(branches) == 3:
            return items(branches[1]) + items(branches[2])
    return [value]


def properties(resource: Any) -> dict[str, Any]:
    """A resource's Properties (empty when it has none)."""
    values = resource.get("Properties") if isinstance(resource, dict) else None
    return values if isinstance(values, dict) else {}


def resource_type(resource: Any) -> str | None:
    """A resource's Type."""
    return resource.get("Type") if isinstance(resource, dict) else None


# ---------------------------------------------------------------- check-roles


@functools.cache
def wildcard(
    pattern: str, *, ignore_case: bool = False, star_only_covers_star: bool = False
) -> re.Pattern[str]:
    """A compiled regular expression for an IAM or stack policy pattern (`*` any run, `?` one
    character). With star_only_covers_star, `?` does not match a literal `*` of the string
    matched (a role's `*` is any run of characters, which one `?` does not cover)."""
    one = "[^*]" if star_only_covers_star else "."
    text = "".join(
        ".*" if char == "*" else one if char == "?" else re.escape(char) for char in pattern
    )
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile(text, flags)


@dataclass(frozen=True)
class Boundary:
    """The permissions boundary: its file, its name, its Allow action patterns."""

    path: Path
    name: str
    patterns: tuple[str, ...]

    def covers(self, action: str) -> bool:
        """Whether an Allow of the boundary matches action, the action's own wildcards taken
        literally (boundary `sagemaker:*` covers `sagemaker:Create*`; only `*` covers `*`)."""
        return any(
            wildcard(pattern, ignore_case=True, star_only_covers_star=True).fullmatch(action)
            for pattern in self.patterns
        )

    @property
    def fix(self) -> str:
        """What to do about an action outside the boundary."""
        return (
            f"a role gets at most what the permissions boundary {self.name} allows"
            f" ({self.path}); widen the boundary there and run make bootstrap, or remove the"
            " action"
        )


def statements(document: Any) -> list[Any]:
    """The statements of a policy document (a list, or a single statement)."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return []
    return items(document.get("Statement")) if isinstance(document, dict) else []


def load_boundary(spec: str) -> Boundary:
    """The boundary of --boundary <bootstrap template>:<logical id of a ManagedPolicy>.

    Only its Allow statements with Action count (a NotAction Allow or a Deny narrows what a
    role gets, and the check is about what it cannot get); Resource and Condition are not
    compared.
    """
    file_name, separator, logical_id = spec.rpartition(":")
    if not separator or not file_name or not logical_id:
        raise UserError(
            f"--boundary {spec!r} is not <bootstrap template>:<logical id of an {BOUNDARY_TYPE}>"
        )
    path = Path(file_name)
    template, _ = read_template(path)
    resource = template["Resources"].get(logical_id)
    if resource is None:
        raise UserError(f"{path} has no resource {logical_id}")
    if resource_type(resource) != BOUNDARY_TYPE:
        raise UserError(
            f"{path}: {logical_id} is a {resource_type(resource)}, not an {BOUNDARY_TYPE}"
        )
    values = properties(resource)
    name = values.get("ManagedPolicyName")
    if isinstance(name, dict) and isinstance(name.get("Fn::Sub"), str) and len(name) == 1:
        name = name["Fn::Sub"] if "${" not in name["Fn::Sub"] else None
    if not isinstance(name, str) or not name:
        raise UserError(
            f"{path}: {logical_id} needs a plain ManagedPolicyName: the roles refer to the"
            " boundary by that name"
        )
    patterns = []
    for statement in statements(values.get("PolicyDocument")):
        if isinstance(statement, dict) and statement.get("Effect") == "Allow":
            patterns.extend(a for a in items(statement.get("Action")) if isinstance(a, str))
    return Boundary(path, name, tuple(patterns))


def boundary_text(value: Any) -> str | None:
    """The ARN text of a PermissionsBoundary value: a string, or the string of its Fn::Sub."""
    if isinstance(value, dict) and len(value) == 1 and "Fn::Sub" in value:
        value = value["Fn::Sub"]
        if isinstance(value, list) and value:
            value = value[0]
    return value if isinstance(value, str) else None


def role_policies(template: dict[str, Any], role_id: str) -> list[tuple[str, Any]]:
    """(name, policy document) of every policy of a role: inline, and the template's policies
    that name it (Roles, RoleName) or that it attaches (ManagedPolicyArns: !Ref)."""
    resources = template["Resources"]
    role = properties(resources[role_id])
    found = []
    for index, policy in enumerate(items(role.get("Policies")), 1):
        if isinstance(policy, dict):
            name = policy.get("PolicyName")
            found.append(
                (name if isinstance(name, str) else f"#{index}", policy.get("PolicyDocument"))
            )
    reference = {"Ref": role_id}
    attached = {
        arn["Ref"]
        for arn in items(role.get("ManagedPolicyArns"))
        if isinstance(arn, dict) and isinstance(arn.get("Ref"), str)
    }
    for logical_id, resource in resources.items():
        kind, values = resource_type(resource), properties(resource)
        names_role = (
            kind in ATTACHED_POLICY_TYPES and reference in items(values.get("Roles"))
        ) or (kind == ROLE_POLICY_TYPE and values.get("RoleName") == reference)
        attaches = kind == BOUNDARY_TYPE and logical_id in attached
        if names_role or attaches:
            found.append((logical_id, values.get("PolicyDocument")))
    return found


def statement_problems(
    where: str, statement: dict[str, Any], label: str, boundary: Boundary
) -> list[str]:
    """What an Allow statement grants beyond the boundary."""
    if "NotAction" in statement:
        excluded = ", ".join(str(action) for action in items(statement["NotAction"]))
        return [
            f"{where} statement {label} grants every action but {excluded}; list the actions"
            f" ({boundary.fix})"
        ]
    problems = []
    for action in items(statement.get("Action")):
        if not isinstance(action, str):
            problems.append(
                f"{where} statement {label}: the action {json.dumps(action)} is not a plain"
                f" string, which cannot be checked; write the action out ({boundary.fix})"
            )
        elif not boundary.covers(action):
            problems.append(
                f"{where} statement {label}: {action} is outside the permissions boundary;"
                f" {boundary.fix}"
            )
    return problems


def check_roles(boundary_spec: str, paths: list[Path]) -> tuple[str, list[str]]:
    """Check every role of the templates against the boundary: (summary, problems)."""
    boundary = load_boundary(boundary_spec)
    templates = [(path, read_template(path)[0]) for path in paths]
    roles = checked = 0
    problems = []
    suffix = ":policy/" + boundary.name
    for path, template in templates:
        for role_id, resource in template["Resources"].items():
            if resource_type(resource) != ROLE_TYPE:
                continue
            roles += 1
            arn = boundary_text(properties(resource).get("PermissionsBoundary"))
            if arn is None or not arn.endswith(suffix):
                problems.append(
                    f"{path}: {role_id} has no permissions boundary {boundary.name}"
                    " (PermissionsBoundary: !Sub"
                    " arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/" + boundary.name + ")"
                )
            for policy_name, document in role_policies(template, role_id):
                for index, statement in enumerate(statements(document), 1):
                    if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
                        continue
                    checked += 1
                    sid = statement.get("Sid")
                    label = sid if isinstance(sid, str) and sid else f"#{index}"
                    where = f"{path}: {role_id}: policy {policy_name}"
                    problems.extend(statement_problems(where, statement, label, boundary))
    summary = (
        f"check-roles: {roles} roles, {checked} statements in {len(templates)} templates are"
        f" within the permissions boundary {boundary.name}"
    )
    return summary, problems


# ---------------------------------------------------------------- stack policies


@dataclass(frozen=True)
class PolicyStatement:
    """One statement of a stack policy."""

    allow: bool
    actions: tuple[str, ...] | None
    not_actions: tuple[str, ...]
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...]
    conditions: tuple[tuple[str, tuple[str, ...]], ...]

    def matches(self, action: str, logical_id: str, kind: str | None) -> bool:
        """Whether the statement applies to action on the resource."""
        if self.actions is not None:
            acts = any(wildcard(p, ignore_case=True).fullmatch(action) for p in self.actions)
        else:
            acts = not any(
                wildcard(p, ignore_case=True).fullmatch(action) for p in self.not_actions
            )
        if self.resources is not None:
            on = any(resource_matches(p, logical_id) for p in self.resources)
        else:
            on = not any(resource_matches(p, logical_id) for p in self.not_resources)
        return acts and on and all(condition_holds(c, kind) for c in self.conditions)


def resource_matches(pattern: str, logical_id: str) -> bool:
    """Whether a stack policy Resource (`*` or LogicalResourceId/<pattern>) names the id."""
    if pattern == "*":
        return True
    return bool(wildcard(pattern.removeprefix(LOGICAL_ID_PREFIX)).fullmatch(logical_id))


def condition_holds(condition: tuple[str, tuple[str, ...]], kind: str | None) -> bool:
    """Whether the resource's type satisfies one StringEquals/StringLike on ResourceType."""
    operator, values = condition
    if kind is None:
        return False
    if operator == "StringEquals":
        return kind in values
    return any(wildcard(value).fullmatch(kind) for value in values)


def policy_strings(value: Any, what: str, stack: str) -> tuple[str, ...]:
    """A policy field that is a string or a list of strings."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(entry, str) for entry in values):
        raise UserError(
            f"the stack policy of {stack}: {what} must be a string or a list of strings"
        )
    return tuple(values)


def load_stack_policy(body: Any, stack: str) -> list[PolicyStatement] | None:
    """The stack policy's statements, or None when the stack has none.

    The grammar of CloudFormation's stack policies: Effect, Action or NotAction
    (Update:Modify|Replace|Delete|*), Principal "*", Resource or NotResource (`*` or
    LogicalResourceId/<pattern>), and a Condition on ResourceType with StringEquals or
    StringLike. Anything else is a UserError rather than a guess.
    """
    if body is None or body == "" or body == {}:
        return None
    try:
        document = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError as error:
        raise UserError(f"the stack policy of {stack} is not JSON: {error}") from error
    raw = document.get("Statement") if isinstance(document, dict) else None
    raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list):
        raise UserError(f"the stack policy of {stack} has no Statement list")
    parsed = []
    for statement in raw:
        if not isinstance(statement, dict) or statement.get("Effect") not in ("Allow", "Deny"):
            raise UserError(f"the stack policy of {stack}: a statement needs Effect Allow or Deny")
        if statement.get("Principal", "*") != "*":
            raise UserError(f'the stack policy of {stack}: Principal must be "*"')
        if ("Action" in statement) == ("NotAction" in statement):
            raise UserError(f"the stack policy of {stack}: a statement needs Action or NotAction")
        if ("Resource" in statement) == ("NotResource" in statement):
            raise UserError(
                f"the stack policy of {stack}: a statement needs Resource or NotResource"
            )
        action_key = "Action" if "Action" in statement else "NotAction"
        resource_key = "Resource" if "Resource" in statement else "NotResource"
        actions = policy_strings(statement[action_key], action_key, stack)
        resources = policy_strings(statement[resource_key], resource_key, stack)
        for pattern in resources:
            if pattern != "*" and not pattern.startswith(LOGICAL_ID_PREFIX):
                raise UserError(
                    f"the stack policy of {stack}: resource {pattern!r} is neither * nor"
                    f" {LOGICAL_ID_PREFIX}<logical id>"
                )
        parsed.append(
            PolicyStatement(
                allow=statement["Effect"] == "Allow",
                actions=actions if "Action" in statement else None,
                not_actions=actions if "NotAction" in statement else (),
                resources=resources if "Resource" in statement else None,
                not_resources=resources if "NotResource" in statement else (),
                conditions=policy_conditions(statement.get("Condition"), stack),
            )
        )
    return parsed


def policy_conditions(condition: Any, stack: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The (operator, resource types) pairs of a stack policy statement's Condition."""
    if condition is None:
        return ()
    if not isinstance(condition, dict):
        raise UserError(f"the stack policy of {stack}: Condition must be an object")
    parsed = []
    for operator, tests in condition.items():
        if operator not in POLICY_CONDITION_OPERATORS or not isinstance(tests, dict):
            raise UserError(
                f"the stack policy of {stack}: condition {operator} is not evaluated here (only"
                f" {' and '.join(POLICY_CONDITION_OPERATORS)} on {POLICY_CONDITION_KEY})"
            )
        for key, values in tests.items():
            if key != POLICY_CONDITION_KEY:
                raise UserError(
                    f"the stack policy of {stack}: condition key {key} is not evaluated here"
                    f" (only {POLICY_CONDITION_KEY})"
                )
            parsed.append((operator, policy_strings(values, f"{operator} {key}", stack)))
    return tuple(parsed)


def refuses(policy: list[PolicyStatement] | None, action: str, logical_id: str, kind: Any) -> bool:
    """Whether the stack policy refuses action on the resource: a Deny matches, or no Allow
    does (a policy protects everything it does not allow). No policy refuses nothing."""
    if policy is None:
        return False
    kind = kind if isinstance(kind, str) else None
    matching = [s for s in policy if s.matches(action, logical_id, kind)]
    return any(not s.allow for s in matching) or not any(s.allow for s in matching)


# ---------------------------------------------------------------- update-stacks


class Refused(Exception):
    """The stack policy forbids a planned change; args[0] is one line per resource."""


class UpdateFailed(Exception):
    """A stack could not be updated (or checked); the message says what and what remains."""


@dataclass
class StackUpdate:
    """One stack to update: what the command line gives, then what AWS says."""

    name: str
    path: Path
    template: dict[str, Any]
    body: bytes
    overrides: dict[str, str] = field(default_factory=dict)
    stack: dict[str, Any] = field(default_factory=dict)
    deployed: dict[str, Any] = field(default_factory=dict)
    policy: list[PolicyStatement] | None = None
    change_set_id: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    executed: bool = False

    @property
    def digest(self) -> str:
        """The SHA-256 of the template file, in hex."""
        return hashlib.sha256(self.body).hexdigest()


def parse_updates(
    stack_specs: list[str], parameter_specs: list[str], restart_specs: list[str]
) -> tuple[list[StackUpdate], dict[str, set[str]]]:
    """The stacks (--stack <name>=<template>, templates read), their --parameter overrides
    and the --restarts resources; every mistake a UserError, before any AWS call."""
    updates: dict[str, StackUpdate] = {}
    for spec in stack_specs:
        name, separator, file_name = spec.partition("=")
        if not separator or not name or not file_name:
            raise UserError(f"--stack {spec!r} is not <stack name>=<template path>")
        if name in updates:
            raise UserError(f"--stack {name} is given twice")
        template, body = read_template(Path(file_name))
        updates[name] = StackUpdate(name, Path(file_name), template, body)
    for spec in parameter_specs:
        stack, separator, assignment = spec.partition(":")
        key, equals, value = assignment.partition("=")
        if not separator or not equals or not stack or not key:
            raise UserError(f"--parameter {spec!r} is not <stack name>:<Key>=<Value>")
        if stack not in updates:
            raise UserError(f"--parameter {spec!r} names stack {stack}, which no --stack gives")
        update = updates[stack]
        declared = update.template.get("Parameters") or {}
        if key not in declared:
            raise UserError(f"--parameter {spec!r}: {update.path} declares no parameter {key}")
        update.overrides[key] = value
    restarts: dict[str, set[str]] = {}
    for spec in restart_specs:
        stack, separator, logical_id = spec.partition(":")
        if not separator or not stack or not logical_id:
            raise UserError(f"--restarts {spec!r} is not <stack name>:<logical id>")
        if stack not in updates:
            raise UserError(f"--restarts {spec!r} names stack {stack}, which no --stack gives")
        restarts.setdefault(stack, set()).add(logical_id)
    return list(updates.values()), restarts


@functools.cache
def create_only_properties(kind: str) -> frozenset[str] | None:
    """The top-level properties whose change replaces a resource of this type (cfn-lint's
    copy of the CloudFormation registry schema, createOnlyProperties); None for a type the
    schemas do not know, whose every changed property then counts as replacing it."""
    try:
        from cfnlint.schema import PROVIDER_SCHEMA_MANAGER, ResourceNotFoundError
    except ImportError as error:
        raise UserError(
            "update-stacks needs cfn-lint (its resource schemas), from the dev dependency"
            " group: run `make install`"
        ) from error
    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(config.AWS_REGION, kind).schema
    except ResourceNotFoundError:
        return None
    paths = schema.get("createOnlyProperties", [])
    return frozenset(path.split("/")[2] for path in paths if path.startswith("/properties/"))


def replacing_properties(kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The changed top-level properties (raw template values) that replace the resource."""
    changed = sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))
    if not changed:
        return []
    create_only = create_only_properties(kind)
    return changed if create_only is None else [name for name in changed if name in create_only]


def refusal(stack: str, logical_id: str, kind: Any, action: str, reasons: list[str]) -> str:
    """The line that refuses one change the stack policy forbids."""
    because = f" ({', '.join(reasons)} changed)" if reasons else ""
    if action == "Update:Delete":
        what, loses = "would be deleted", " (deleting it loses what it holds)"
    elif action == "Update:Replace":
        what, loses = f"would be replaced{because}", " (replacing it loses what it holds)"
    else:
        what, loses = f"would be modified{because}", ""
    return (
        f"update-stacks: {stack}: {logical_id} ({kind}) {what}, and the stack's policy keeps"
        f" it: revert that change{loses}; make bootstrap cannot do it either"
    )


def planned_refusals(update: StackUpdate) -> list[str]:
    """The changes of the new template the stack policy forbids, from the templates alone: a
    resource gone (Update:Delete), a changed Type or create-only property (Update:Replace)."""
    if update.policy is None:
        return []
    new = update.template["Resources"]
    lines = []
    for logical_id, old in update.deployed["Resources"].items():
        kind = resource_type(old)
        if logical_id not in new:
            if refuses(update.policy, "Update:Delete", logical_id, kind):
                lines.append(refusal(update.name, logical_id, kind, "Update:Delete", []))
            continue
        if not refuses(update.policy, "Update:Replace", logical_id, kind):
            continue
        if resource_type(new[logical_id]) != kind:
            reasons = ["Type"]
        else:
            reasons = replacing_properties(kind, properties(old), properties(new[logical_id]))
        if reasons:
            lines.append(refusal(update.name, logical_id, kind, "Update:Replace", reasons))
    return lines


def policy_action(change: dict[str, Any]) -> str | None:
    """The stack policy action of a change set's ResourceChange (None: not an update)."""
    if change.get("Action") == "Remove":
        return "Update:Delete"
    if change.get("Action") == "Modify":
        replaced = change.get("Replacement") in ("True", "Conditional")
        return "Update:Replace" if replaced else "Update:Modify"
    return None


def reported_refusals(update: StackUpdate) -> list[str]:
    """The changes of the change set (as AWS reports them) the stack policy forbids."""
    lines = []
    for change in update.changes:
        action = policy_action(change)
        logical_id, kind = change.get("LogicalResourceId", "?"), change.get("ResourceType")
        if action and refuses(update.policy, action, logical_id, kind):
            names = sorted(
                {
                    detail["Target"]["Name"]
                    for detail in change.get("Details", [])
                    if detail.get("Target", {}).get("Attribute") == "Properties"
                    and detail["Target"].get("Name")
                    and (
                        action != "Update:Replace"
                        or detail["Target"].get("RequiresRecreation") != "Never"
                    )
                }
            )
            lines.append(refusal(update.name, logical_id, kind, action, names))
    return lines


def aws_failure(error: Any) -> str:
    """One line for a botocore ClientError: the operation and AWS's message."""
    details = error.response.get("Error", {})
    message = details.get("Message") or details.get("Code") or str(error)
    return f"AWS refused {error.operation_name}: {' '.join(str(message).split())}"


def read_stack(cloudformation: Any, update: StackUpdate) -> None:
    """Step a: the deployed stack, its original template and its stack policy."""
    stack = deploy.describe_stack(cloudformation, update.name)
    if stack is None:
        raise UserError(f"stack {update.name} does not exist: run make bootstrap first")
    status = stack["StackStatus"]
    if status.endswith("_IN_PROGRESS"):
        raise UpdateFailed(f"stack {update.name} is {status}: try again when it ends")
    update.stack = stack
    body = cloudformation.get_template(StackName=update.name, TemplateStage="Original")[
        "TemplateBody"
    ]
    source = f"the deployed template of {update.name}"
    # botocore hands back a JSON template already parsed; YAML stays text.
    update.deployed = (
        parse_template(body, source) if isinstance(body, str) else checked_template(body, source)
    )
    policy = cloudformation.get_stack_policy(StackName=update.name).get("StackPolicyBody")
    update.policy = load_stack_policy(policy, update.name)


def template_url(s3: Any, bucket: str, key: str, version: str | None) -> str:
    """The path-style https URL of the object, as `aws cloudformation deploy --s3-bucket`
    gives CloudFormation (the S3 client's endpoint, the bucket, the key, ?versionId=)."""
    url = f"{s3.meta.endpoint_url}/{bucket}/{quote(key, safe='/')}"
    return f"{url}?versionId={quote(version, safe='')}" if version else url


def change_set_parameters(update: StackUpdate) -> list[dict[str, Any]]:
    """Every parameter the new template declares: the override, else the deployed value
    (UsePreviousValue) when the stack has it, else nothing (its default applies)."""
    previous = {item["ParameterKey"] for item in update.stack.get("Parameters", [])}
    parameters: list[dict[str, Any]] = []
    for key in update.template.get("Parameters") or {}:
        if key in update.overrides:
            parameters.append({"ParameterKey": key, "ParameterValue": update.overrides[key]})
        elif key in previous:
            parameters.append({"ParameterKey": key, "UsePreviousValue": True})
    return parameters


def create_change_set(
    cloudformation: Any, s3: Any, update: StackUpdate, bucket: str, prefix: str, role_arn: str
) -> None:
    """Step c: upload the template, create the change set, wait for it, read its changes.

    A change set that has nothing to change is deleted (update.change_set_id stays None).
    """
    digest = update.digest[:16]
    key = "/".join(part for part in (prefix.strip("/"), f"{update.name}-{digest}.template") if part)
    uploaded = s3.put_object(Bucket=bucket, Key=key, Body=update.body)
    response = cloudformation.create_change_set(
        StackName=update.name,
        ChangeSetName=f"update-{digest}-{int(time.time())}",
        TemplateURL=template_url(s3, bucket, key, uploaded.get("VersionId")),
        Parameters=change_set_parameters(update),
        Capabilities=CAPABILITIES,
        RoleARN=role_arn,
        ChangeSetType="UPDATE",
        Tags=update.stack.get("Tags", []),
    )
    update.change_set_id = response["Id"]
    deadline = time.monotonic() + CHANGE_SET_TIMEOUT_SECONDS
    while True:
        described = cloudformation.describe_change_set(
            ChangeSetName=update.change_set_id, StackName=update.name
        )
        status = described["Status"]
        if status in ("CREATE_COMPLETE", "FAILED"):
            break
        if time.monotonic() > deadline:
            raise UpdateFailed(
                f"{update.name}: the change set is still {status} after"
                f" {CHANGE_SET_TIMEOUT_SECONDS // 60} minutes"
            )
        time.sleep(CHANGE_SET_POLL_SECONDS)
    if status == "FAILED":
        reason = described.get("StatusReason", "")
        if any(text in reason for text in NO_CHANGES_REASONS):
            cloudformation.delete_change_set(
                ChangeSetName=update.change_set_id, StackName=update.name
            )
            update.change_set_id = None
            return
        raise UpdateFailed(f"{update.name}: the change set failed: {reason or 'no reason given'}")
    changes = list(described.get("Changes", []))
    token = described.get("NextToken")
    while token:
        page = cloudformation.describe_change_set(
            ChangeSetName=update.change_set_id, StackName=update.name, NextToken=token
        )
        changes.extend(page.get("Changes", []))
        token = page.get("NextToken")
    update.changes = [c["ResourceChange"] for c in changes if "ResourceChange" in c]


def delete_change_sets(cloudformation: Any, updates: list[StackUpdate]) -> list[str]:
    """Delete the change sets not executed; what could not be deleted, one note each."""
    from botocore.exceptions import BotoCoreError, ClientError

    notes = []
    for update in updates:
        if update.change_set_id is None or update.executed:
            continue
        try:
            cloudformation.delete_change_set(
                ChangeSetName=update.change_set_id, StackName=update.name
            )
        except (ClientError, BotoCoreError) as error:
            notes.append(f"its change set {update.change_set_id} remains ({error})")
        update.change_set_id = None
    return notes


def failure_reason(cloudformation: Any, update: StackUpdate, stack: dict[str, Any]) -> str:
    """The first failed resource event of the update ("<LogicalId>: <reason>"): the stack's
    events, newest first, back to the stack's own UPDATE_IN_PROGRESS that began it."""
    failures = []
    token = None
    for _ in range(EVENT_PAGES):
        page = cloudformation.describe_stack_events(
            StackName=update.name, **({"NextToken": token} if token else {})
        )
        began = False
        for event in page.get("StackEvents", []):
            if (
                event.get("ResourceType") == "AWS::CloudFormation::Stack"
                and event.get("LogicalResourceId") == update.name
                and event.get("ResourceStatus") == "UPDATE_IN_PROGRESS"
            ):
                began = True
                break
            if str(event.get("ResourceStatus", "")).endswith("_FAILED"):
                failures.append(event)
        token = page.get("NextToken")
        if began or not token:
            break
    if failures:
        first = failures[-1]
        reason = first.get("ResourceStatusReason") or "no reason given"
        return f"{first.get('LogicalResourceId')}: {' '.join(reason.split())}"
    return stack.get("StackStatusReason") or "CloudFormation gave no reason"


def execute(cloudformation: Any, update: StackUpdate) -> None:
    """Step d: execute the change set and follow the stack to the end of the update."""
    cloudformation.execute_change_set(ChangeSetName=update.change_set_id, StackName=update.name)
    update.executed = True
    deadline = time.monotonic() + STACK_TIMEOUT_SECONDS
    while True:
        (stack,) = cloudformation.describe_stacks(StackName=update.name)["Stacks"]
        status = stack["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise UpdateFailed(
                f"{update.name} is still {status} after {STACK_TIMEOUT_SECONDS // 60} minutes:"
                " follow it in the CloudFormation console"
            )
        time.sleep(STACK_POLL_SECONDS)
    if status == "UPDATE_COMPLETE":
        return
    reason = failure_reason(cloudformation, update, stack)
    if status == "UPDATE_ROLLBACK_COMPLETE":
        after = "CloudFormation rolled it back, it runs what it ran before"
    else:
        after = f"it is {status}: see its events in the CloudFormation console"
    raise UpdateFailed(f"{update.name} did not update ({status}): {reason}; {after}")


def change_summary(changes: list[dict[str, Any]]) -> str:
    """`<n> changes: Add X, Modify Y, Remove Z` (one entry per changed resource)."""
    order = ("Add", "Modify", "Remove", "Import", "Dynamic")
    ranked = sorted(
        changes,
        key=lambda c: (
            order.index(c.get("Action")) if c.get("Action") in order else len(order),
            str(c.get("LogicalResourceId")),
        ),
    )
    entries = ", ".join(f"{c.get('Action')} {c.get('LogicalResourceId')}" for c in ranked)
    return f"{len(changes)} change{'' if len(changes) == 1 else 's'}: {entries}"


def update_stacks(
    cloudformation: Any,
    s3: Any,
    updates: list[StackUpdate],
    bucket: str,
    prefix: str,
    role_arn: str,
    restarts: dict[str, set[str]] | None = None,
    echo=print,
) -> None:
    """Update the stacks through change sets, in order (steps a to e of update-stacks).

    Refused: the stack policy forbids a change (nothing is left: no change set remains).
    UpdateFailed: an AWS call or a change set or an update failed; before execution no
    stack changed, and the change sets not executed are deleted. Lines go to echo.
    """
    from botocore.exceptions import ClientError, NoCredentialsError

    try:
        try:
            for update in updates:
                read_stack(cloudformation, update)
        except ClientError as error:
            raise UpdateFailed(f"{aws_failure(error)}; no stack was changed") from error
        refusals = [line for update in updates for line in planned_refusals(update)]
        if refusals:
            raise Refused(refusals)
        try:
            for update in updates:
                create_change_set(cloudformation, s3, update, bucket, prefix, role_arn)
                refusals = reported_refusals(update)
                if refusals:
                    raise Refused(refusals)
        except (Refused, UpdateFailed, ClientError) as error:
            notes = delete_change_sets(cloudformation, updates)
            if isinstance(error, Refused):
                lines = error.args[0] + [f"update-stacks: {note}" for note in notes]
                raise Refused(lines) from None
            message = aws_failure(error) if isinstance(error, ClientError) else str(error)
            raise UpdateFailed("; ".join([message, "no stack was changed", *notes])) from error
        except BaseException:
            delete_change_sets(cloudformation, updates)
            raise
        restarted = []
        for index, update in enumerate(updates):
            if update.change_set_id is None:
                echo(f"{update.name}: no changes")
                continue
            try:
                execute(cloudformation, update)
            except (UpdateFailed, ClientError) as error:
                notes = delete_change_sets(cloudformation, updates[index + 1 :])
                message = aws_failure(error) if isinstance(error, ClientError) else str(error)
                raise UpdateFailed("; ".join([message, *notes])) from error
            echo(f"{update.name}: updated ({change_summary(update.changes)})")
            wanted = (restarts or {}).get(update.name, set())
            restarted.extend(sorted({c["LogicalResourceId"] for c in update.changes} & wanted))
        if restarted:
            echo(
                f"update-stacks: the pipeline's definition changed ({', '.join(restarted)}):"
                " CodePipeline cancels this run and starts a new one at the newest commit"
                " (RestartExecutionOnUpdate), which builds this commit on the updated pipeline"
            )
    except NoCredentialsError as error:
        raise UserError(f"no AWS credentials: {error}") from error


# ---------------------------------------------------------------- stop-first-run


def stop_first_run(codepipeline: Any, pipeline: str) -> list[str]:
    """Stop (abandon) the runs CodePipeline started when it created the pipeline; one line
    per run, or one saying there was none."""
    try:
        summaries = codepipeline.list_pipeline_executions(
            pipelineName=pipeline, maxResults=EXECUTIONS_TO_READ
        )["pipelineExecutionSummaries"]
    except codepipeline.exceptions.PipelineNotFoundException as error:
        raise UserError(
            f"pipeline {pipeline} does not exist in {config.AWS_REGION}: deploy its stack first"
        ) from error
    lines = []
    for summary in summaries:
        trigger = (summary.get("trigger") or {}).get("triggerType")
        if summary.get("status") != "InProgress" or trigger != CREATE_PIPELINE_TRIGGER:
            continue
        execution_id = summary["pipelineExecutionId"]
        try:
            codepipeline.stop_pipeline_execution(
                pipelineName=pipeline,
                pipelineExecutionId=execution_id,
                abandon=True,
                reason=STOP_REASON,
            )
        except (
            codepipeline.exceptions.PipelineExecutionNotStoppableException,
            codepipeline.exceptions.DuplicatedStopRequestException,
        ):
            lines.append(
                f"stop-first-run: {execution_id} is already ending (started when CodePipeline"
                f" created {pipeline})"
            )
            continue
        lines.append(
            f"stop-first-run: stopped {execution_id} (started when CodePipeline created {pipeline})"
        )
    return lines or [f"stop-first-run: no run of {pipeline} to stop"]
