"""The CloudFormation templates of infra/, decoded once per test process and shared read-only,
and what the tests of their inline Lambda functions share."""

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cfnlint.decode import decode

INFRA = Path(__file__).resolve().parents[2] / "infra"


@cache
def template(name: str) -> dict[str, Any]:
    """A template of infra/, decoded by cfn-lint with its short-form tags as Ref/Fn:: keys."""
    document, problems = decode(str(INFRA / name))
    assert not problems, problems
    return document


def inline_function(
    name: str, logical_id: str, directory: Path, monkeypatch: pytest.MonkeyPatch
) -> ModuleType:
    """A template's inline (ZipFile) Lambda function imported as a module, with its
    environment set (a parameter reference resolved to the parameter's default, a resource
    reference to the resource's name)."""
    document = template(name)
    function = document["Resources"][logical_id]["Properties"]
    for variable, value in function["Environment"]["Variables"].items():
        if isinstance(value, dict) and value["Ref"] in document["Parameters"]:
            value = document["Parameters"][value["Ref"]]["Default"]
        elif isinstance(value, dict):
            properties = document["Resources"][value["Ref"]]["Properties"]
            value = next(v for k, v in properties.items() if k.endswith("Name"))
        monkeypatch.setenv(variable, value)
    (directory / "index.py").write_text(function["Code"]["ZipFile"])
    spec = importlib.util.spec_from_file_location(f"{logical_id}_index", directory / "index.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingCodePipeline:
    """Stands in for the CodePipeline client and records each start request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def start_pipeline_execution(self, **request: Any) -> dict[str, str]:
        """Record the request; answer like CodePipeline."""
        self.requests.append(request)
        return {"pipelineExecutionId": f"execution-{len(self.requests)}"}
