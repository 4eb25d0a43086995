"""The `aws` command during a rehearsal: the AWS CLI calls the deploy targets make, played
against moto (AWS_ENDPOINT_URL) with boto3.

The rehearsal puts an `aws` script running this module first on the builds' PATH, so the
Makefile's recipes run unchanged and offline. It plays, with the AWS CLI's options and output:

    aws [--region R] cloudformation deploy --stack-name S --template-file F
        [--parameter-overrides K=V ...] [--tags K=V ...] [--role-arn A]
        [--capabilities C ...] [--no-fail-on-empty-changeset]
    aws [--region R] cloudformation describe-stacks [--stack-name S] [--query Q]
        [--output text|json]

Any other command exits 252 with one line naming it, so an unrehearsed call is never silent.
"""

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import boto3
import jmespath
from botocore.exceptions import BotoCoreError, ClientError

from .cloudformation import TemplateError, deploy_stack

# The AWS CLI's exit status for a command it does not know or a bad argument.
USAGE_ERROR = 252
PLAYED = "cloudformation deploy, cloudformation describe-stacks"


class StandInParser(argparse.ArgumentParser):
    """Argument errors exit 252 with one line, as the AWS CLI does."""

    def error(self, message: str) -> NoReturn:
        """Exit 252 with one line."""
        self.exit(USAGE_ERROR, f"aws (rehearsal): {message}\n")


def key_value_pairs(words: Sequence[str], option: str) -> dict[str, str]:
    """Key=Value words as a dict; a word without '=' is a usage error."""
    pairs = {}
    for word in words:
        key, separator, value = word.partition("=")
        if not separator or not key:
            raise SystemExit(_usage(f"{option}: {word!r} is not Key=Value"))
        pairs[key] = value
    return pairs


def _usage(message: str) -> int:
    print(f"aws (rehearsal): {message}", file=sys.stderr)
    return USAGE_ERROR


def build_parser() -> argparse.ArgumentParser:
    """The options of the played commands."""
    parser = StandInParser(prog="aws", add_help=False)
    parser.add_argument("--region")
    parser.add_argument("--output", choices=("text", "json"))
    parser.add_argument("service")
    parser.add_argument("operation")
    return parser


def deploy(args: list[str], region: str | None) -> int:
    """aws cloudformation deploy."""
    parser = StandInParser(prog="aws cloudformation deploy", add_help=False)
    parser.add_argument("--stack-name", required=True)
    parser.add_argument("--template-file", required=True, type=Path)
    parser.add_argument("--parameter-overrides", nargs="*", default=[])
    parser.add_argument("--tags", nargs="*", default=[])
    parser.add_argument("--role-arn")
    parser.add_argument("--capabilities", nargs="*", default=[])
    parser.add_argument("--no-fail-on-empty-changeset", action="store_true")
    options = parser.parse_args(args)
    cloudformation = boto3.client("cloudformation", region_name=region)
    print(f"Waiting for changeset to be created..\nDeploying stack {options.stack_name}")
    try:
        deploy_stack(
            cloudformation,
            options.stack_name,
            options.template_file,
            key_value_pairs(options.parameter_overrides, "--parameter-overrides"),
            key_value_pairs(options.tags, "--tags"),
            options.role_arn,
            tuple(options.capabilities),
        )
    except TemplateError as error:
        print(f"aws cloudformation deploy: {error}", file=sys.stderr)
        return 255
    print(f"Successfully created/updated stack - {options.stack_name}")
    return 0


def describe_stacks(args: list[str], region: str | None, output: str | None) -> int:
    """aws cloudformation describe-stacks."""
    parser = StandInParser(prog="aws cloudformation describe-stacks", add_help=False)
    parser.add_argument("--stack-name")
    parser.add_argument("--query")
    parser.add_argument("--output", choices=("text", "json"), default=output or "json")
    options = parser.parse_args(args)
    cloudformation = boto3.client("cloudformation", region_name=region)
    request = {"StackName": options.stack_name} if options.stack_name else {}
    response = cloudformation.describe_stacks(**request)
    response.pop("ResponseMetadata", None)
    result = jmespath.search(options.query, response) if options.query else response
    print(render(result, options.output))
    return 0


def render(value: Any, output: str) -> str:
    """A result as the AWS CLI prints it (`text`: scalars tab-separated, one row a line)."""
    if output == "json":
        return json.dumps(value, indent=4, default=_json_default)
    if value is None:
        return "None"
    if isinstance(value, list):
        if all(not isinstance(item, dict | list) for item in value):
            return "\t".join(render(item, output) for item in value)
        return "\n".join(render(item, output) for item in value)
    if isinstance(value, dict):
        return "\t".join(render(item, output) for item in value.values())
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one played AWS CLI command; 252 for any other."""
    options, rest = build_parser().parse_known_args(argv)
    command = f"{options.service} {options.operation}"
    try:
        if command == "cloudformation deploy":
            return deploy(rest, options.region)
        if command == "cloudformation describe-stacks":
            return describe_stacks(rest, options.region, options.output)
    except (BotoCoreError, ClientError) as error:
        print(f"aws {command} (rehearsal): {error}", file=sys.stderr)
        return 255
    return _usage(f"`aws {command}` is not played by the rehearsal (it plays: {PLAYED})")


if __name__ == "__main__":
    raise SystemExit(main())
