"""CloudFormation for the stacks moto cannot host: bootstrap's and the two pipeline stacks.

moto's CloudFormation has no CodePipeline, CodeBuild or CodeCommit resources, so these stacks
live here, as the rehearsal's resolvable Stack objects. This stand-in answers the calls the
project makes on them (`make update-pipelines` and the AWS CLI: DescribeStacks, GetTemplate,
GetStackPolicy, CreateChangeSet, DescribeChangeSet, ExecuteChangeSet, DeleteChangeSet,
DescribeStackEvents) in CloudFormation's query protocol, with botocore's request and response
shapes (cloudformation 2010-05-15), and forwards every other request to moto. It runs on
127.0.0.1; the builds reach it through AWS_ENDPOINT_URL_CLOUDFORMATION.

A change set is computed from the two templates, each resolved with its parameters: a
resource that is new is Add, one that is gone Remove, one whose resolved properties differ
Modify, with Replacement True when a changed property is create-only (the registry schemas
cfn-lint ships) or the type changed. Executing it applies the stack policy, as CloudFormation
does, then on_execute (the rehearsal's IAM check of what CloudFormation's handlers do, as the
role the change set names); a refusal rolls the stack back, unchanged.
"""

import fnmatch
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

import yaml

from .cloudformation import NO_VALUE, CloudFormationLoader, Stack, TemplateError
from .iam import create_only
from .standins import LocalHttpService, QuietHandler

NAMESPACE = "http://cloudformation.amazonaws.com/doc/2010-05-15/"
NO_CHANGES = (
    "The submitted information didn't contain changes. Submit different information to create"
    " a change set."
)
# (stack, the Stack after the change, the change set) -> why CloudFormation fails it, or None.
OnExecute = Callable[["HostedStack", Stack, "ChangeSet"], str | None]


@dataclass
class ChangeSet:
    """One change set: the Stack it would make, and its changes."""

    arn: str
    name: str
    stack: Stack
    body: str
    role_arn: str
    changes: list[dict[str, Any]]
    status: str = "CREATE_COMPLETE"
    reason: str = ""


@dataclass
class HostedStack:
    """A stack this stand-in answers for."""

    stack: Stack
    body: str
    policy: dict[str, Any] | None = None
    status: str = "CREATE_COMPLETE"
    role_arn: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    stack_id: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    change_sets: dict[str, ChangeSet] = field(default_factory=dict)
    updates: int = 0

    def __post_init__(self) -> None:
        if not self.stack_id:
            self.stack_id = (
                f"arn:{self.stack.partition}:cloudformation:{self.stack.region}:"
                f"{self.stack.account_id}:stack/{self.stack.name}/{uuid.uuid4()}"
            )

    def event(self, logical_id: str, resource_type: str, status: str, reason: str = "") -> None:
        """Add a stack event (newest first, as DescribeStackEvents lists them)."""
        self.events.insert(
            0,
            {
                "StackId": self.stack_id,
                "EventId": str(uuid.uuid4()),
                "StackName": self.stack.name,
                "LogicalResourceId": logical_id,
                "ResourceType": resource_type,
                "Timestamp": _now(),
                "ResourceStatus": status,
                "ResourceStatusReason": reason,
            },
        )


class CloudFormationError(Exception):
    """An error response: its code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PipelineStacks(LocalHttpService):
    """The stand-in: hosted stacks by name, everything else forwarded to moto."""

    def __init__(self, moto_url: str, s3: Any, on_execute: OnExecute | None = None) -> None:
        super().__init__(_Handler)
        self.moto_url = moto_url
        self.s3 = s3
        self.on_execute = on_execute
        self.stacks: dict[str, HostedStack] = {}
        self.requests: list[str] = []

    def host(self, stack: Stack, body: str, **settings: Any) -> HostedStack:
        """Answer for a stack from now on."""
        hosted = HostedStack(stack, body, **settings)
        self.stacks[stack.name] = hosted
        return hosted

    # ------------------------------------------------------------------ operations

    def call(self, action: str, form: Mapping[str, str]) -> dict[str, Any] | None:
        """The result of a request on a hosted stack, or None to forward it to moto."""
        hosted = self._hosted(form)
        if hosted is None:
            return None
        self.requests.append(f"{action} {hosted.stack.name}")
        operations = {
            "DescribeStacks": self._describe_stacks,
            "GetTemplate": lambda hosted, form: {"TemplateBody": hosted.body},
            "GetStackPolicy": self._get_stack_policy,
            "CreateChangeSet": self._create_change_set,
            "DescribeChangeSet": self._describe_change_set,
            "ExecuteChangeSet": self._execute_change_set,
            "DeleteChangeSet": self._delete_change_set,
            "DescribeStackEvents": lambda hosted, form: {"StackEvents": hosted.events},
        }
        if action not in operations:
            raise CloudFormationError(
                "ValidationError", f"{action} on {hosted.stack.name} is not played by the rehearsal"
            )
        return operations[action](hosted, form)

    def _hosted(self, form: Mapping[str, str]) -> HostedStack | None:
        name = form.get("StackName", "")
        if not name and form.get("ChangeSetName", "").startswith("arn:"):
            name = next(
                (
                    stack
                    for stack, hosted in self.stacks.items()
                    if form["ChangeSetName"] in hosted.change_sets
                ),
                "",
            )
        for stack, hosted in self.stacks.items():
            if name in (stack, hosted.stack_id):
                return hosted
        return None

    def _describe_stacks(self, hosted: HostedStack, form: Mapping[str, str]) -> dict[str, Any]:
        stack = hosted.stack
        parameters = [
            {"ParameterKey": key, "ParameterValue": stack.parameter(key)}
            for key in stack.template.get("Parameters", {})
        ]
        outputs = []
        for key, output in stack.template.get("Outputs", {}).items():
            try:
                outputs.append(
                    {"OutputKey": key, "OutputValue": str(stack.resolve(output["Value"]))}
                )
            except TemplateError:
                continue  # a value only AWS gives (a clone URL): the flow never reads it
        described = {
            "StackId": hosted.stack_id,
            "StackName": stack.name,
            "CreationTime": _now(),
            "StackStatus": hosted.status,
            "Parameters": parameters,
            "Outputs": outputs,
            "Tags": [{"Key": key, "Value": value} for key, value in hosted.tags.items()],
        }
        if hosted.role_arn:
            described["RoleARN"] = hosted.role_arn
        return {"Stacks": [described]}

    def _get_stack_policy(self, hosted: HostedStack, form: Mapping[str, str]) -> dict[str, Any]:
        return {"StackPolicyBody": json.dumps(hosted.policy)} if hosted.policy else {}

    def _create_change_set(self, hosted: HostedStack, form: Mapping[str, str]) -> dict[str, Any]:
        if form.get("ChangeSetType", "UPDATE") != "UPDATE":
            raise CloudFormationError(
                "ValidationError", f"Stack [{hosted.stack.name}] already exists"
            )
        body = form.get("TemplateBody") or self._template_at(form.get("TemplateURL", ""))
        try:
            template = yaml.load(body, Loader=CloudFormationLoader)
        except yaml.YAMLError as error:
            raise CloudFormationError(
                "ValidationError", f"Template format error: {error}"
            ) from None
        parameters = {}
        for item in _members(form, "Parameters"):
            key = item.get("ParameterKey", "")
            if item.get("UsePreviousValue") == "true":
                parameters[key] = hosted.stack.parameter(key)
            else:
                parameters[key] = item.get("ParameterValue", "")
        after = Stack(
            hosted.stack.name,
            template,
            hosted.stack.account_id,
            hosted.stack.region,
            parameter_values=parameters,
            exports=hosted.stack.exports,
            physical_ids=dict(hosted.stack.physical_ids),
            attributes=dict(hosted.stack.attributes),
        )
        name = form.get("ChangeSetName", "")
        arn = (
            f"arn:{after.partition}:cloudformation:{after.region}:{after.account_id}:"
            f"changeSet/{name}/{uuid.uuid4()}"
        )
        role_arn = form.get("RoleARN") or hosted.role_arn
        change_set = ChangeSet(arn, name, after, body, role_arn, changes(hosted.stack, after))
        if not change_set.changes and parameters == {
            key: hosted.stack.parameter(key) for key in hosted.stack.template.get("Parameters", {})
        }:
            change_set.status, change_set.reason = "FAILED", NO_CHANGES
        hosted.change_sets[arn] = change_set
        return {"Id": arn, "StackId": hosted.stack_id}

    def _change_set(self, hosted: HostedStack, form: Mapping[str, str]) -> ChangeSet:
        wanted = form.get("ChangeSetName", "")
        for arn, change_set in hosted.change_sets.items():
            if wanted in (arn, change_set.name):
                return change_set
        raise CloudFormationError("ChangeSetNotFound", f"ChangeSet [{wanted}] does not exist")

    def _describe_change_set(self, hosted: HostedStack, form: Mapping[str, str]) -> dict[str, Any]:
        change_set = self._change_set(hosted, form)
        described = {
            "ChangeSetId": change_set.arn,
            "ChangeSetName": change_set.name,
            "StackId": hosted.stack_id,
            "StackName": hosted.stack.name,
            "Status": change_set.status,
            "ExecutionStatus": "AVAILABLE"
            if change_set.status == "CREATE_COMPLETE"
            else "UNAVAILABLE",
            "Changes": [
                {"Type": "Resource", "ResourceChange": item} for item in change_set.changes
            ],
        }
        if change_set.reason:
            described["StatusReason"] = change_set.reason
        return described

    def _delete_change_set(self, hosted: HostedStack, form: Mapping[str, str]) -> dict[str, Any]:
        change_set = self._change_set(hosted, form)
        del hosted.change_sets[change_set.arn]
        return {}

    def _execute_change_set(self, hosted: HostedStack, form: Mapping[str, str]) -> dict[str, Any]:
        change_set = self._change_set(hosted, form)
        if change_set.status != "CREATE_COMPLETE":
            raise CloudFormationError(
                "InvalidChangeSetStatus", f"ChangeSet [{change_set.arn}] cannot be executed"
            )
        del hosted.change_sets[change_set.arn]
        hosted.event(hosted.stack.name, "AWS::CloudFormation::Stack", "UPDATE_IN_PROGRESS")
        refused = stack_policy_refusal(hosted.policy, change_set.changes)
        if refused is None and self.on_execute is not None:
            refused = self.on_execute(hosted, change_set.stack, change_set)
        if refused is not None:
            logical_id, reason = (
                refused if isinstance(refused, tuple) else (hosted.stack.name, refused)
            )
            hosted.event(logical_id, "", "UPDATE_FAILED", reason)
            hosted.event(
                hosted.stack.name, "AWS::CloudFormation::Stack", "UPDATE_ROLLBACK_COMPLETE"
            )
            hosted.status = "UPDATE_ROLLBACK_COMPLETE"
            return {}
        hosted.stack.template = change_set.stack.template
        hosted.stack.parameter_values = dict(change_set.stack.parameter_values)
        hosted.body = change_set.body
        hosted.role_arn = change_set.role_arn
        hosted.status = "UPDATE_COMPLETE"
        hosted.updates += 1
        hosted.event(hosted.stack.name, "AWS::CloudFormation::Stack", "UPDATE_COMPLETE")
        # Executing a change set deletes the stack's other change sets.
        hosted.change_sets.clear()
        return {}

    def _template_at(self, url: str) -> str:
        """The body of a TemplateURL (https://s3.<region>.amazonaws.com/<bucket>/<key>,
        https://<bucket>.s3.<region>.amazonaws.com/<key>, or path style on moto's address),
        read from moto's S3 (a versionId in the query names the version)."""
        parsed = urllib.parse.urlparse(url)
        path = urllib.parse.unquote(parsed.path.lstrip("/"))
        virtual_host = parsed.netloc.endswith(".amazonaws.com") and not parsed.netloc.startswith(
            ("s3.", "s3-")
        )
        if not virtual_host:  # path style, also what an S3 client pointed at moto builds
            bucket, _, key = path.partition("/")
        else:
            bucket, key = parsed.netloc.split(".s3", 1)[0], path
        if not bucket or not key:
            raise CloudFormationError("ValidationError", f"TemplateURL must be an S3 URL: {url!r}")
        try:
            version = urllib.parse.parse_qs(parsed.query).get("versionId", [])
            extra = {"VersionId": version[0]} if version else {}
            return self.s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read().decode()
        except Exception as error:  # moto's NoSuchKey, NoSuchBucket
            raise CloudFormationError(
                "ValidationError", f"S3 error: cannot read {url}: {error}"
            ) from None


# ---------------------------------------------------------------------------- changes


def _resolved(stack: Stack) -> dict[str, tuple[str, dict[str, Any]]]:
    """logical id -> (type, properties resolved; a property needing a deployed value as is)."""
    found = {}
    for logical_id, resource in stack.template.get("Resources", {}).items():
        if "Condition" in resource and not stack.condition(resource["Condition"]):
            continue
        properties = {}
        for key, value in resource.get("Properties", {}).items():
            try:
                resolved = stack.resolve(value)
            except TemplateError:
                resolved = value
            if resolved is not NO_VALUE:
                properties[key] = resolved
        found[logical_id] = (str(resource.get("Type")), properties)
    return found


def changes(before: Stack, after: Stack) -> list[dict[str, Any]]:
    """The ResourceChange entries CloudFormation's DescribeChangeSet would list."""
    old, new = _resolved(before), _resolved(after)
    found = []
    for logical_id, (resource_type, properties) in new.items():
        if logical_id not in old:
            found.append(_change("Add", logical_id, resource_type))
            continue
        old_type, old_properties = old[logical_id]
        if (old_type, old_properties) == (resource_type, properties):
            continue
        changed = sorted(
            key
            for key in {*properties, *old_properties}
            if properties.get(key) != old_properties.get(key)
        )
        replaced = create_only(resource_type, after.region)
        replacement = old_type != resource_type or "*" in replaced or bool(set(changed) & replaced)
        change = _change("Modify", logical_id, resource_type, "True" if replacement else "False")
        change["Scope"] = ["Properties"]
        change["Details"] = [
            {
                "Target": {"Attribute": "Properties", "Name": key},
                "ChangeSource": "DirectModification",
            }
            for key in changed
        ]
        found.append(change)
    found.extend(
        _change("Remove", logical_id, resource_type)
        for logical_id, (resource_type, _) in old.items()
        if logical_id not in new
    )
    return found


def _change(
    action: str, logical_id: str, resource_type: str, replacement: str | None = None
) -> dict[str, Any]:
    change = {"Action": action, "LogicalResourceId": logical_id, "ResourceType": resource_type}
    if replacement is not None:
        change["Replacement"] = replacement
    return change


def stack_policy_refusal(
    policy: Mapping[str, Any] | None, resource_changes: list[dict[str, Any]]
) -> tuple[str, str] | None:
    """(logical id, reason) of the first change the stack policy denies, or None.

    CloudFormation's stack policies: with a policy, an update action on a resource is allowed
    only when an Allow statement matches it and no Deny does (CloudFormation user guide,
    "Prevent updates to stack resources").
    """
    if not policy:
        return None
    for change in resource_changes:
        action = {
            "Remove": "Update:Delete",
            "Modify": "Update:Replace"
            if change.get("Replacement") in ("True", "Conditional")
            else "Update:Modify",
        }.get(change["Action"])
        if action is None:
            continue
        resource = f"LogicalResourceId/{change['LogicalResourceId']}"
        verdicts = [
            statement["Effect"]
            for statement in policy.get("Statement", [])
            if _policy_match(statement.get("Action", []), action)
            and _policy_match(statement.get("Resource", []), resource)
        ]
        if "Deny" in verdicts or "Allow" not in verdicts:
            return (
                change["LogicalResourceId"],
                f"Action denied by stack policy: [{action}] for resource [{resource}]",
            )
    return None


def _policy_match(patterns: Any, value: str) -> bool:
    patterns = patterns if isinstance(patterns, list) else [patterns]
    return any(fnmatch.fnmatchcase(value, str(pattern)) for pattern in patterns)


# ---------------------------------------------------------------------------- the protocol


def _members(form: Mapping[str, str], name: str) -> list[dict[str, str]]:
    """A query-protocol list of structures (Name.member.N.Field=value), in order."""
    items: dict[int, dict[str, str]] = {}
    prefix = f"{name}.member."
    for key, value in form.items():
        if key.startswith(prefix):
            number, _, member = key.removeprefix(prefix).partition(".")
            items.setdefault(int(number), {})[member] = value
    return [items[number] for number in sorted(items)]


def _xml(value: Any) -> str:
    """A result value as query-protocol XML (lists as member elements)."""
    if isinstance(value, dict):
        return "".join(f"<{key}>{_xml(item)}</{key}>" for key, item in value.items())
    if isinstance(value, list):
        return "".join(f"<member>{_xml(item)}</member>" for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape(str(value))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Handler(QuietHandler):
    def do_POST(self) -> None:
        body = self.body()
        form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        action = form.get("Action", "")
        try:
            result = self.service.call(action, form)
        except CloudFormationError as error:
            document = (
                f'<ErrorResponse xmlns="{NAMESPACE}"><Error><Type>Sender</Type>'
                f"<Code>{error.code}</Code><Message>{escape(error.message)}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            )
            self.answer(400, document.encode(), "text/xml")
            return
        except Exception:  # a defect here: an error response, and the traceback in the log
            logging.exception("CloudFormation stand-in: %s failed", action)
            self.answer(
                500,
                b"<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>",
                "text/xml",
            )
            return
        if result is None:
            self._forward(body)
            return
        document = (
            f'<{action}Response xmlns="{NAMESPACE}"><{action}Result>{_xml(result)}'
            f"</{action}Result><ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId>"
            f"</ResponseMetadata></{action}Response>"
        )
        self.answer(200, document.encode(), "text/xml")

    def _forward(self, body: bytes) -> None:
        """Send the request on to moto and its answer back."""
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in ("host", "content-length", "connection")
        }
        request = urllib.request.Request(
            self.service.moto_url + self.path, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, answer, kind = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, answer, kind = error.code, error.read(), error.headers
        self.answer(status, answer, kind.get("Content-Type", "text/xml"))
