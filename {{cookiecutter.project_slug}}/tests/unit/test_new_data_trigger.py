"""New data starts a build: the build pipeline's variable, the Train action's environment and
the inline StartBuildFunction (run here with a botocore Stubber: real request shapes)."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from infra_support import RecordingCodePipeline, inline_function, template

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }} import aws

ROOT = Path(__file__).resolve().parents[2]
BUCKET = f"{config.ARTIFACT_BUCKET_PREFIX}-123456789012"


def build_template() -> dict[str, Any]:
    """infra/model-build-pipeline.yml, decoded with its CloudFormation tags."""
    return template("model-build-pipeline.yml")


def build_pipeline_name() -> str:
    return build_template()["Parameters"]["BuildPipelineName"]["Default"]


@pytest.fixture
def start_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The inline StartBuildFunction imported as a module, with its environment."""
    return inline_function("model-build-pipeline.yml", "StartBuildFunction", tmp_path, monkeypatch)


def object_created(key: str, sequencer: str = "0064D3901D00059242") -> dict[str, Any]:
    """An S3 Object Created event as EventBridge delivers it (S3 User Guide, EventBridge)."""
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2025-03-15T16:10:11Z",
        "region": config.AWS_REGION,
        "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {
            "version": "0",
            "bucket": {"name": BUCKET},
            "object": {"key": key, "size": 0, "etag": "d41d8cd9", "sequencer": sequencer},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def marker_key(batch: str) -> str:
    return f"{config.DATA_PREFIX}{batch}/{config.DATA_READY_MARKER}"


def test_pipeline_declares_the_variable_the_train_action_reads() -> None:
    pipeline = build_template()["Resources"]["BuildPipeline"]["Properties"]
    (variable,) = pipeline["Variables"]
    assert variable["Name"] == "InputDataUrl"
    # CodePipeline variables cannot be empty: the default word means "the previous data".
    assert variable["DefaultValue"] == aws.PREVIOUS_DATA
    (train,) = next(stage for stage in pipeline["Stages"] if stage["Name"] == "Train")["Actions"]
    (environment,) = json.loads(train["Configuration"]["EnvironmentVariables"])
    assert environment["name"] == aws.INPUT_DATA_URL_ENV
    assert environment["value"] == "#{variables.InputDataUrl}"
    # A burst of batches: a newer run replaces one still waiting for the Train stage.
    assert pipeline["ExecutionMode"] == "SUPERSEDED"


def test_rule_passes_only_ready_markers_of_the_artifact_bucket() -> None:
    rule = build_template()["Resources"]["NewDataRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"]["bucket"]["name"] == [{"Ref": "ArtifactBucket"}]
    assert pattern["detail"]["object"]["key"] == [
        {"wildcard": f"{config.DATA_PREFIX}*/{config.DATA_READY_MARKER}"}
    ]
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["StartBuildFunction", "Arn"]}


def test_a_ready_marker_starts_the_build_with_its_folder_as_the_data_uri(start_build: Any) -> None:
    expected_url = f"s3://{BUCKET}/{config.DATA_PREFIX}2025-03-15/"
    with Stubber(start_build.codepipeline) as codepipeline:
        codepipeline.add_response(
            "start_pipeline_execution",
            {"pipelineExecutionId": "execution-1"},
            {
                "name": build_pipeline_name(),
                "variables": [{"name": "InputDataUrl", "value": expected_url}],
                "clientRequestToken": ANY,
            },
        )
        result = start_build.handler(object_created(marker_key("2025-03-15")), None)
        codepipeline.assert_no_pending_responses()
    assert result == {"started": True, "pipelineExecutionId": "execution-1"}
    # The Train step accepts the URI, and the model registry can record it.
    assert aws.input_data_url(expected_url) == expected_url


@pytest.mark.parametrize(
    "key",
    [
        f"{config.DATA_PREFIX}2025-03-15/part-0001.csv",
        f"{config.DATA_PREFIX}{config.DATA_READY_MARKER}",
        f"elsewhere/2025-03-15/{config.DATA_READY_MARKER}",
        f"{config.DATA_PREFIX}2025 03 15/{config.DATA_READY_MARKER}",
        f"{config.DATA_PREFIX}2025%2003/{config.DATA_READY_MARKER}",
        f"{config.DATA_PREFIX}a/../b/{config.DATA_READY_MARKER}",
        f"{config.DATA_PREFIX}{'x' * 300}/{config.DATA_READY_MARKER}",
    ],
    ids=["data file", "marker without batch", "other prefix", "space", "escaped", "dots", "long"],
)
def test_anything_else_starts_nothing(start_build: Any, capsys: Any, key: str) -> None:
    with Stubber(start_build.codepipeline) as codepipeline:
        assert start_build.handler(object_created(key), None) == {"started": False}
        codepipeline.assert_no_pending_responses()
    assert "error" in json.loads(capsys.readouterr().out)


def test_one_request_token_per_marker_upload(start_build: Any) -> None:
    start_build.codepipeline = RecordingCodePipeline()
    # The same event delivered twice, then the marker uploaded again.
    for sequencer in ("0064D3901D00059242", "0064D3901D00059242", "0064D3901D000592FF"):
        start_build.handler(object_created(marker_key("batch-1"), sequencer=sequencer), None)
    first, repeat, later = (
        request["clientRequestToken"] for request in start_build.codepipeline.requests
    )
    assert first == repeat != later
    assert re.fullmatch(r"[a-f0-9]{64}", first)
