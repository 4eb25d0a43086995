"""The merge Lambda's handler, whatever the provider: events, parameters, reporting, logs."""

import ast
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from merge_lambda_support import (
    DEPLOYED_COMMIT,
    DEV_BRANCH,
    LAMBDA_DIR,
    MAIN_BRANCH,
    MAIN_HEAD,
    LambdaContext,
    MergeLambdaHarness,
    load_app,
    log_records,
    merge_common,
    merge_parameters,
)


class RecordingProvider:
    """Stands in for provider.merge: records the request and returns or raises what it is told."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.requests: list[Any] = []

    def __call__(self, request: Any, environ: dict, aws_client: Any, deadline: float) -> Any:
        self.requests.append(request)
        assert deadline > time.monotonic()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[MergeLambdaHarness]:
    """The handler with a stubbed CodePipeline client and no provider calls of its own."""
    monkeypatch.delenv("MERGE_STRATEGY", raising=False)
    harness = MergeLambdaHarness(monkeypatch, services=())
    yield harness
    harness.close()


def fake_provider(monkeypatch: pytest.MonkeyPatch, outcome: Any) -> RecordingProvider:
    """Replace the bake's provider merge with a recording fake."""
    recorder = RecordingProvider(outcome)
    monkeypatch.setattr(load_app().provider, "merge", recorder)
    return recorder


def fast_forwarded() -> Any:
    """The result a provider returns after a fast-forward."""
    common = merge_common()
    return common.MergeResult(common.FAST_FORWARDED, DEPLOYED_COMMIT, "master fast-forwarded.")


@pytest.mark.parametrize(
    "event",
    [
        None,
        [],
        {},
        {"Records": []},
        {"CodePipeline.job": {}},
        {"CodePipeline.job": {"id": ""}},
        {"CodePipeline.job": "not-a-job"},
    ],
    ids=["none", "list", "empty", "s3-event", "no-id", "empty-id", "job-not-object"],
)
def test_malformed_event_is_rejected_without_a_job_result(
    harness: MergeLambdaHarness,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    event: Any,
) -> None:
    provider = fake_provider(monkeypatch, fast_forwarded())
    with pytest.raises(ValueError, match=r"no CodePipeline\.job\.id"):
        harness.app.handler(event, LambdaContext())
    assert harness.job_results == []
    assert provider.requests == []
    (record,) = log_records(capsys.readouterr().out)
    assert record["level"] == "ERROR"
    assert record["message"] == "malformed event rejected"


def test_success_is_reported_once_with_the_new_head(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    provider = fake_provider(monkeypatch, fast_forwarded())
    harness.expect_success()
    response = harness.invoke()
    assert harness.success_summary() == "master fast-forwarded."
    assert harness.job_results[0][1]["executionDetails"]["externalExecutionId"] == DEPLOYED_COMMIT
    assert response == {
        "jobId": harness.job_id,
        "outcome": "fast-forwarded",
        "headCommitId": DEPLOYED_COMMIT,
    }
    (request,) = provider.requests
    assert (request.source_branch, request.destination_branch) == (DEV_BRANCH, MAIN_BRANCH)
    assert (request.commit_id, request.strategy) == (DEPLOYED_COMMIT, "fast-forward")
    done = log_records(capsys.readouterr().out)[-1]
    assert done["message"] == "merge done"
    assert done["job_id"] == harness.job_id
    assert done["commit_id"] == DEPLOYED_COMMIT
    assert done["destination_branch"] == MAIN_BRANCH
    assert done["outcome"] == "fast-forwarded"


def test_three_way_strategy_is_passed_to_the_provider(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MERGE_STRATEGY", "three-way")
    provider = fake_provider(monkeypatch, fast_forwarded())
    harness.expect_success()
    harness.invoke()
    harness.success_summary()
    assert provider.requests[0].strategy == "three-way"


def test_uppercase_commit_id_is_normalised(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = fake_provider(monkeypatch, fast_forwarded())
    harness.expect_success()
    harness.invoke(merge_parameters(DEPLOYED_COMMIT.upper()))
    harness.success_summary()
    assert provider.requests[0].commit_id == DEPLOYED_COMMIT


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ("not json", "not a JSON object"),
        ('["dev", "master"]', "not a JSON object"),
        ({"source_branch": DEV_BRANCH, "destination_branch": MAIN_BRANCH}, "lacks commit_id"),
        ({"commit_id": DEPLOYED_COMMIT}, "lacks source_branch, destination_branch"),
        (merge_parameters("#{SourceVariables.CommitId}"), "not a full 40-hex commit id"),
        (merge_parameters(DEPLOYED_COMMIT[:7]), "not a full 40-hex commit id"),
        (
            {"source_branch": DEV_BRANCH, "destination_branch": "bad..name", "commit_id": "a" * 40},
            "destination_branch 'bad..name' is not a valid branch name",
        ),
        (
            {"source_branch": DEV_BRANCH, "destination_branch": DEV_BRANCH, "commit_id": "a" * 40},
            "they must differ",
        ),
        ({**merge_parameters(), "mode": "dry-run"}, "mode 'dry-run' is not one of merge, check"),
    ],
    ids=[
        "not-json",
        "not-object",
        "no-commit",
        "no-branches",
        "unresolved-variable",
        "short-commit",
        "bad-branch",
        "same-branch",
        "unknown-mode",
    ],
)
def test_bad_user_parameters_fail_the_job_once_without_merging(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch, parameters: Any, expected: str
) -> None:
    provider = fake_provider(monkeypatch, fast_forwarded())
    harness.expect_failure()
    response = harness.invoke(parameters)
    failure_type, message = harness.failure()
    assert failure_type == "ConfigurationError"
    assert expected in message
    assert provider.requests == []
    assert response["outcome"] == "failed"


def test_unknown_merge_strategy_fails_the_job(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MERGE_STRATEGY", "force")
    provider = fake_provider(monkeypatch, fast_forwarded())
    harness.expect_failure()
    harness.invoke()
    failure_type, message = harness.failure()
    assert failure_type == "ConfigurationError"
    assert "MERGE_STRATEGY='force' is not one of fast-forward, three-way" in message
    assert provider.requests == []


def test_provider_failure_is_reported_with_its_type(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    common = merge_common()
    fake_provider(monkeypatch, common.MergeFailed("master diverged.", common.JOB_FAILED))
    harness.expect_failure()
    harness.invoke()
    assert harness.failure() == ("JobFailed", "master diverged.")
    last = log_records(capsys.readouterr().out)[-1]
    assert (last["level"], last["outcome"]) == ("ERROR", "failed")
    assert last["reason"] == "master diverged."


def test_unexpected_exception_is_reported_not_raised(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # A request error's text can quote the request's headers: it is never logged.
    fake_provider(monkeypatch, ValueError("Invalid header value b'Bearer ghp_secret\\n'"))
    harness.expect_failure()
    response = harness.invoke()
    failure_type, message = harness.failure()
    assert failure_type == "JobFailed"
    assert message.startswith("Unexpected ValueError while merging")
    assert harness.job_id in message
    assert response["failureType"] == "JobFailed"
    output = capsys.readouterr().out
    assert any(r["message"] == "unexpected error" for r in log_records(output))
    assert "ghp_secret" not in output and "ghp_secret" not in message


def test_long_failure_message_is_cut_under_the_api_limit(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = merge_common()
    fake_provider(monkeypatch, common.MergeFailed("é" * 4000))
    harness.expect_failure()
    harness.invoke()
    _, message = harness.failure()
    assert len(message.encode("utf-8")) <= 5000
    assert message.endswith("[truncated]")


def test_throttled_job_result_is_retried_and_counted_once(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_provider(monkeypatch, fast_forwarded())
    harness.stub("codepipeline").add_client_error(
        "put_job_success_result", service_error_code="ThrottlingException", http_status_code=400
    )
    harness.expect_success()
    harness.invoke()
    harness.stub("codepipeline").assert_no_pending_responses()
    # Two requests, of which CodePipeline accepted one: the retry after a throttle.
    assert [name for name, _ in harness.job_results] == ["PutJobSuccessResult"] * 2
    assert len(harness.sleeps) == 1


def test_result_already_recorded_is_not_an_error(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake_provider(monkeypatch, fast_forwarded())
    harness.stub("codepipeline").add_client_error(
        "put_job_success_result", service_error_code="InvalidJobStateException"
    )
    assert harness.invoke()["outcome"] == "fast-forwarded"
    harness.only_result()
    assert "job already has a result" in capsys.readouterr().out


def test_report_that_cannot_be_sent_raises_after_logging(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake_provider(monkeypatch, fast_forwarded())
    harness.stub("codepipeline").add_client_error(
        "put_job_success_result", service_error_code="AccessDeniedException"
    )
    with pytest.raises(Exception, match="AccessDeniedException"):
        harness.invoke()
    harness.only_result()
    assert "could not report the job result" in capsys.readouterr().out


def test_every_log_line_is_json_with_the_job_id(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    fake_provider(monkeypatch, fast_forwarded())
    harness.expect_success()
    harness.invoke()
    records = log_records(capsys.readouterr().out)
    assert len(records) >= 2
    assert {record["job_id"] for record in records} == {harness.job_id}
    assert all(record["aws_request_id"] == LambdaContext.aws_request_id for record in records)


def test_retries_stop_at_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    common = merge_common()
    calls: list[dict] = []

    def throttled(**params: Any) -> dict:
        calls.append(params)
        raise ClientError({"Error": {"Code": "ThrottlingException"}}, "GetBranch")

    monkeypatch.setattr(common, "sleep", lambda seconds: None)
    with pytest.raises(Exception, match="ThrottlingException"):
        common.call_aws(throttled, deadline=time.monotonic() - 1, branchName="x")
    assert len(calls) == 1
    with pytest.raises(Exception, match="ThrottlingException"):
        common.call_aws(throttled, deadline=time.monotonic() + 3600, branchName="x")
    assert len(calls) == 1 + common.MAX_ATTEMPTS


def test_writes_are_not_repeated_after_a_server_error(monkeypatch: pytest.MonkeyPatch) -> None:
    common = merge_common()
    calls: list[dict] = []

    def server_error(**params: Any) -> dict:
        calls.append(params)
        raise ClientError(
            {"Error": {"Code": "InternalFailure"}, "ResponseMetadata": {"HTTPStatusCode": 500}},
            "MergeBranchesByFastForward",
        )

    monkeypatch.setattr(common, "sleep", lambda seconds: None)
    deadline = time.monotonic() + 3600
    with pytest.raises(ClientError):
        common.call_aws(server_error, deadline=deadline, idempotent=False)
    assert len(calls) == 1
    with pytest.raises(ClientError):
        common.call_aws(server_error, deadline=deadline, idempotent=True)
    assert len(calls) == 1 + common.MAX_ATTEMPTS


def test_head_commit_in_success_is_not_the_branch_name(
    harness: MergeLambdaHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = merge_common()
    fake_provider(monkeypatch, common.MergeResult(common.ALREADY_MERGED, MAIN_HEAD, "ok."))
    harness.stub("codepipeline").add_response(
        "put_job_success_result",
        {},
        {
            "jobId": harness.job_id,
            "executionDetails": {
                "summary": "ok.",
                "externalExecutionId": MAIN_HEAD,
                "percentComplete": 100,
            },
        },
    )
    assert harness.invoke()["headCommitId"] == MAIN_HEAD
    harness.only_result()


def test_lambda_imports_only_the_standard_library_and_boto3() -> None:
    local_modules = {path.stem for path in LAMBDA_DIR.glob("*.py")}
    allowed = set(sys.stdlib_module_names) | {"boto3", "botocore"} | local_modules
    imported: set[str] = set()
    for path in LAMBDA_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert "app" in local_modules
    assert imported - allowed == set()
    assert "{{ cookiecutter.package_name }}" not in imported
