"""EventBridge rules of infra/, resolved to this project's names, and the input transformer.

A rule's pattern holds !Ref, !Sub and Fn::ImportValue: `resolve` replaces them with the
parameter defaults, the pseudo parameters of one test account, and the names a test gives
for the resources (the bucket, the pipeline). `render` fills a target's InputTemplate the
way EventBridge's input transformer does: each <name> becomes the value at its JSON path.
"""

import json
import re
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from {{ cookiecutter.package_name }} import config

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_ID = "123456789012"
PSEUDO_PARAMETERS = {
    "AWS::Partition": "aws",
    "AWS::Region": config.AWS_REGION,
    "AWS::AccountId": ACCOUNT_ID,
}
SUB_VARIABLE = re.compile(r"\$\{([A-Za-z0-9:]+)\}")
PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.-]+)>")


def template(name: str) -> dict[str, Any]:
    """A template of infra/, decoded with its CloudFormation tags."""
    document, problems = decode(str(ROOT / "infra" / name))
    assert not problems, problems
    return document


def resolve(node: Any, values: dict[str, str]) -> Any:
    """The node with every Ref, Sub and ImportValue replaced from values."""
    if isinstance(node, list):
        return [resolve(item, values) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Ref"}:
        return values[node["Ref"]]
    if set(node) == {"Fn::Sub"}:
        return SUB_VARIABLE.sub(lambda match: values[match[1]], node["Fn::Sub"])
    if set(node) == {"Fn::ImportValue"}:
        return values[resolve(node["Fn::ImportValue"], values)]
    return {key: resolve(value, values) for key, value in node.items()}


def rule(template_name: str, logical_id: str, names: dict[str, str]) -> dict[str, Any]:
    """A rule's properties, resolved with the template's defaults and the given names."""
    document = template(template_name)
    values = {
        **PSEUDO_PARAMETERS,
        **{
            name: str(parameter["Default"])
            for name, parameter in document["Parameters"].items()
            if "Default" in parameter
        },
        **names,
    }
    return resolve(document["Resources"][logical_id]["Properties"], values)


def json_path(event: dict[str, Any], path: str) -> Any:
    """The value at a JSON path of plain keys ($.detail.execution-id); KeyError if absent."""
    assert path.startswith("$."), path
    value: Any = event
    for key in path[2:].split("."):
        value = value[key]
    return value


def render(transformer: dict[str, Any], event: dict[str, Any]) -> str:
    """The message an input transformer makes of an event (its template is a JSON string)."""
    paths = transformer["InputPathsMap"]
    values = {name: json_path(event, path) for name, path in paths.items()}
    template_text = transformer["InputTemplate"]
    unknown = set(PLACEHOLDER.findall(template_text)) - set(values)
    assert not unknown, f"placeholders without a path: {unknown}"
    message = PLACEHOLDER.sub(lambda match: str(values[match[1]]), template_text)
    return json.loads(message)
