"""CloudFormation as the rehearsal needs it: templates read with their short tags, the
intrinsic functions the pipeline templates use resolved to the values a deployed stack would
give them, parameters checked the way CloudFormation checks them, and stacks deployed into
moto.
"""

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError

# What a resource's Ref returns when the template names it, by resource type.
NAME_PROPERTIES = {
    "AWS::CodeBuild::Project": "Name",
    "AWS::CodeBuild::ReportGroup": "Name",
    "AWS::CodeCommit::Repository": "RepositoryName",
    "AWS::CodePipeline::Pipeline": "Name",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Events::Rule": "Name",
    "AWS::IAM::Role": "RoleName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SageMaker::ModelPackageGroup": "ModelPackageGroupName",
}
# ARN formats by resource type ({p} partition, {r} region, {a} account, {n} name).
ARN_FORMATS = {
    "AWS::CodeBuild::Project": "arn:{p}:codebuild:{r}:{a}:project/{n}",
    "AWS::CodeBuild::ReportGroup": "arn:{p}:codebuild:{r}:{a}:report-group/{n}",
    "AWS::CodeCommit::Repository": "arn:{p}:codecommit:{r}:{a}:{n}",
    "AWS::DynamoDB::Table": "arn:{p}:dynamodb:{r}:{a}:table/{n}",
    "AWS::Events::Rule": "arn:{p}:events:{r}:{a}:rule/{n}",
    # {path}: the resource's Path property ("/" without one).
    "AWS::IAM::Role": "arn:{p}:iam::{a}:role{path}{n}",
    "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{n}",
    "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{n}:*",
    "AWS::S3::Bucket": "arn:{p}:s3:::{n}",
    "AWS::SQS::Queue": "arn:{p}:sqs:{r}:{a}:{n}",
    "AWS::SageMaker::ModelPackageGroup": "arn:{p}:sagemaker:{r}:{a}:model-package-group/{n}",
}
SUB_REFERENCE = re.compile(r"\$\{([^}!][^}]*)\}")
SUB_LITERAL = re.compile(r"\$\{!([^}]*)\}")
STACK_POLL_SECONDS = 0.2
STACK_TIMEOUT_SECONDS = 120.0
NO_UPDATES = "No updates are to be performed"


class TemplateError(ValueError):
    """A template, its parameters or a deploy is wrong; the message names what and where."""


class _NoValue:
    """AWS::NoValue: the property it is given to is left out."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


# ---------------------------------------------------------------------------- reading


class CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation's short tags into their long JSON form."""


def _short_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _short_tag)


def load_template(path: Path) -> dict[str, Any]:
    """A CloudFormation template (YAML or JSON) as plain data; TemplateError if unreadable."""
    try:
        document = yaml.load(Path(path).read_text(), Loader=CloudFormationLoader)
    except FileNotFoundError as error:
        raise TemplateError(f"{path}: no such template") from error
    except yaml.YAMLError as error:
        raise TemplateError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from error
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return document


def resources_of_type(template: Mapping[str, Any], resource_type: str) -> dict[str, Any]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") == resource_type
    }


# ---------------------------------------------------------------------------- resolving


@dataclass
class Stack:
    """A template and the values CloudFormation would give its references once deployed.

    physical_ids and attributes override what a resource's Ref and GetAtt return; without
    them a resource's Ref is its name property, or <stack>-<logical id> as CloudFormation
    generates it, and its Arn follows the service's ARN format.
    """

    name: str
    template: dict[str, Any]
    account_id: str
    region: str
    parameter_values: Mapping[str, str] = field(default_factory=dict)
    exports: Mapping[str, str] = field(default_factory=dict)
    physical_ids: dict[str, str] = field(default_factory=dict)
    attributes: dict[tuple[str, str], str] = field(default_factory=dict)
    partition: str = "aws"

    def parameter(self, name: str) -> str:
        """A parameter's value: given, else its default."""
        if name in self.parameter_values:
            return str(self.parameter_values[name])
        spec = self.template.get("Parameters", {}).get(name)
        if spec is None:
            raise TemplateError(f"{self.name}: Ref {name}: no such parameter or resource")
        if "Default" not in spec:
            raise TemplateError(f"{self.name}: parameter {name} has no default and no value")
        default = spec["Default"]
        return ",".join(map(str, default)) if isinstance(default, list) else str(default)

    def resource(self, logical_id: str) -> dict[str, Any]:
        """A resource of the template."""
        try:
            return self.template["Resources"][logical_id]
        except KeyError:
            raise TemplateError(f"{self.name}: no resource {logical_id}") from None

    def physical_id(self, logical_id: str) -> str:
        """What Ref returns for a resource."""
        if logical_id in self.physical_ids:
            return self.physical_ids[logical_id]
        resource = self.resource(logical_id)
        if resource.get("Type") == "AWS::IAM::ManagedPolicy":
            # Ref of a managed policy is its ARN.
            properties = resource.get("Properties", {})
            name = self.resolve(properties.get("ManagedPolicyName", f"{self.name}-{logical_id}"))
            path = self.resolve(properties.get("Path", "/"))
            return f"arn:{self.partition}:iam::{self.account_id}:policy{path}{name}"
        name_property = NAME_PROPERTIES.get(resource.get("Type", ""))
        if name_property and name_property in resource.get("Properties", {}):
            return str(self.resolve(resource["Properties"][name_property]))
        return f"{self.name}-{logical_id}"

    def attribute(self, logical_id: str, attribute: str) -> str:
        """What GetAtt returns for a resource's attribute."""
        if (logical_id, attribute) in self.attributes:
            return self.attributes[(logical_id, attribute)]
        resource_type = self.resource(logical_id).get("Type", "")
        if attribute == "Arn" and resource_type in ARN_FORMATS:
            path = self.resolve(self.resource(logical_id).get("Properties", {}).get("Path", "/"))
            return ARN_FORMATS[resource_type].format(
                p=self.partition,
                r=self.region,
                a=self.account_id,
                n=self.physical_id(logical_id),
                path=path,
            )
        if attribute in ("Name", "FunctionName", "RoleName"):
            return self.physical_id(logical_id)
        raise TemplateError(
            f"{self.name}: cannot give {logical_id}.{attribute} ({resource_type}) a value"
        )

    def pseudo(self, name: str) -> Any:
        """A pseudo parameter's value (AWS::Region, AWS::AccountId, ...)."""
        values = {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::Partition": self.partition,
            "AWS::StackName": self.name,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"{self.name}: pseudo parameter {name} is not supported here")
        return values[name]

    def ref(self, name: str) -> Any:
        """Ref of a pseudo parameter, a parameter or a resource."""
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.template.get("Parameters", {}) or name in self.parameter_values:
            return self.parameter(name)
        return self.physical_id(name)

    def condition(self, name: str) -> bool:
        """A named condition of the template, evaluated."""
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"{self.name}: no condition {name}")
        return bool(self.resolve(conditions[name]))

    def resolve(self, node: Any) -> Any:
        """node with every intrinsic function replaced by its value."""
        if isinstance(node, list):
            values = [self.resolve(item) for item in node]
            return [value for value in values if value is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, argument),) = node.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Condition":
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def _function(self, key: str, argument: Any) -> Any:
        if key == "Fn::GetAtt":
            logical_id, attribute = argument
            return self.attribute(logical_id, attribute)
        if key == "Fn::Sub":
            return self._sub(argument)
        if key == "Fn::ImportValue":
            export = self.resolve(argument)
            if export not in self.exports:
                raise TemplateError(f"{self.name}: imports {export}, which no stack exports")
            return self.exports[export]
        if key == "Fn::Join":
            separator, values = argument
            return str(separator).join(str(value) for value in self.resolve(values))
        if key == "Fn::Select":
            index, values = argument
            return self.resolve(values)[int(self.resolve(index))]
        if key == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(separator)
        if key == "Fn::If":
            name, if_true, if_false = argument
            return self.resolve(if_true if self.condition(name) else if_false)
        if key == "Fn::Equals":
            left, right = (self.resolve(value) for value in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(argument[0])
        if key == "Fn::And":
            return all(self.resolve(value) for value in argument)
        if key == "Fn::Or":
            return any(self.resolve(value) for value in argument)
        if key == "Fn::FindInMap":
            mapping, top, second = (self.resolve(value) for value in argument)
            return self.template["Mappings"][mapping][top][second]
        raise TemplateError(f"{self.name}: {key} is not supported by the rehearsal")

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], self.resolve(argument[1])
        else:
            text, variables = argument, {}

        def value_of(match: re.Match[str]) -> str:
            """The value of one ${Name} or ${Resource.Attribute}."""
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return self.attribute(logical_id, attribute)
            return str(self.ref(name))

        substituted = SUB_REFERENCE.sub(value_of, text)
        return SUB_LITERAL.sub(lambda match: "${" + match.group(1) + "}", substituted)

    def outputs(self) -> dict[str, str]:
        """The template's outputs, resolved."""
        return {
            name: str(self.resolve(output["Value"]))
            for name, output in self.template.get("Outputs", {}).items()
        }

    def exported_values(self) -> dict[str, str]:
        """What the template exports: export name -> value."""
        exported = {}
        for output in self.template.get("Outputs", {}).values():
            if "Export" in output:
                exported[str(self.resolve(output["Export"]["Name"]))] = str(
                    self.resolve(output["Value"])
                )
        return exported


# ---------------------------------------------------------------------------- parameters


def check_parameters(
    template: Mapping[str, Any], values: Mapping[str, str], where: str
) -> dict[str, str]:
    """Every parameter's value (given or default), checked the way CloudFormation checks
    them before a deploy; TemplateError lists every problem in one line."""
    declared = template.get("Parameters", {})
    problems = [
        f"{name} is not a parameter of the template" for name in values if name not in declared
    ]
    resolved = {}
    for name, spec in declared.items():
        value = values.get(name, spec.get("Default"))
        if value is None:
            problems.append(f"{name} needs a value (it has no default)")
            continue
        value = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        problems.extend(
            f"{name}={value!r} {problem}" for problem in _parameter_problems(spec, value)
        )
        resolved[name] = value
    if problems:
        raise TemplateError(f"{where}: " + "; ".join(problems))
    return resolved


def _parameter_problems(spec: Mapping[str, Any], value: str) -> list[str]:
    problems = []
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return ["is not a number"]
        if "MinValue" in spec and number < float(spec["MinValue"]):
            problems.append(f"is below MinValue {spec['MinValue']}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            problems.append(f"is above MaxValue {spec['MaxValue']}")
    allowed = spec.get("AllowedValues")
    if allowed is not None and value not in [str(item) for item in allowed]:
        problems.append(f"is not one of AllowedValues {[str(item) for item in allowed]}")
    pattern = spec.get("AllowedPattern")
    if pattern is not None and not re.fullmatch(str(pattern), value):
        problems.append(f"does not match AllowedPattern {pattern}")
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        problems.append(f"is shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        problems.append(f"is longer than MaxLength {spec['MaxLength']}")
    return problems


# ---------------------------------------------------------------------------- deploying


def deploy_stack(
    cloudformation: Any,
    stack_name: str,
    template_path: Path,
    parameters: Mapping[str, str],
    tags: Mapping[str, str] | None = None,
    role_arn: str | None = None,
    capabilities: tuple[str, ...] = (),
) -> dict[str, str]:
    """Create or update a stack (moto's CloudFormation) and wait; its outputs.

    A stack left in ROLLBACK_COMPLETE is replaced, as CloudFormation requires. An update
    with nothing to change succeeds. TemplateError explains a refused or failed deploy.
    """
    template = load_template(template_path)
    check_parameters(template, parameters, str(template_path))
    request: dict[str, Any] = {
        "StackName": stack_name,
        "TemplateBody": Path(template_path).read_text(),
        "Parameters": [
            {"ParameterKey": key, "ParameterValue": str(value)} for key, value in parameters.items()
        ],
        "Tags": [{"Key": key, "Value": str(value)} for key, value in (tags or {}).items()],
    }
    if role_arn:
        request["RoleARN"] = role_arn
    if capabilities:
        request["Capabilities"] = list(capabilities)
    status = stack_status(cloudformation, stack_name)
    if status == "ROLLBACK_COMPLETE":
        cloudformation.delete_stack(StackName=stack_name)
        status = None
    try:
        if status is None:
            cloudformation.create_stack(**request)
        else:
            cloudformation.update_stack(**request)
    except ClientError as error:
        message = error.response.get("Error", {}).get("Message", str(error))
        if NO_UPDATES in message:
            return stack_outputs(cloudformation, stack_name)
        raise TemplateError(
            f"stack {stack_name}: CloudFormation refused the deploy: {message}"
        ) from None
    status = _wait_for_stack(cloudformation, stack_name)
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise TemplateError(
            f"stack {stack_name} ended {status}: {_failure_reason(cloudformation, stack_name)}"
        )
    return stack_outputs(cloudformation, stack_name)


def stack_status(cloudformation: Any, stack_name: str) -> str | None:
    """The stack's status, or None when there is no such stack."""
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in error.response.get("Error", {}).get("Message", ""):
            return None
        raise
    return stacks[0]["StackStatus"] if stacks else None


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """A deployed stack's outputs: key -> value."""
    stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def _wait_for_stack(cloudformation: Any, stack_name: str) -> str:
    deadline = time.monotonic() + STACK_TIMEOUT_SECONDS
    while True:
        status = stack_status(cloudformation, stack_name) or "DELETE_COMPLETE"
        if not status.endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return status
        time.sleep(STACK_POLL_SECONDS)


def _failure_reason(cloudformation: Any, stack_name: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
    for event in events:
        if event.get("ResourceStatus", "").endswith("_FAILED"):
            return f"{event['LogicalResourceId']}: {event.get('ResourceStatusReason', '')}"
    return "no failed resource reported"
