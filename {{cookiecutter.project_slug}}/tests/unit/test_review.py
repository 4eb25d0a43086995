"""The pull-request function (lambdas/merge_dev_to_master/review.py) on {{ cookiecutter.__git_host }}.

It runs as the check pipeline's Open and Report actions. Here its calls go to the
rehearsal's fakes, which hold the pull requests:
{%- if cookiecutter.source_provider == 'codecommit' %}
CodeCommit answered in botocore's shapes (every request validated against the service model).
{%- else %}
the host's API stand-in, which checks every request against
tests/contracts/{{ cookiecutter.source_provider }}.json (the provider's published API description, excerpted).
{%- endif %}
The check's result is read from S3 (moto); the job result goes to a stubbed CodePipeline.
"""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from rehearsal.merge import (
    CallerIdentity,
    CodePipelineJobs,
    GitCodeCommit,
    LambdaContext,
    StoredSecret,
    codepipeline_job_event,
    invoke_pipeline_lambda,
)
from rehearsal.pull_requests import PullRequestStore
from rehearsal.retraining import action_execution_event, as_delivered
from rehearsal.source import GitRepository

HOST = "{{ cookiecutter.source_provider }}"
ROOT = Path(__file__).resolve().parents[2]
CODE = ROOT / "lambdas" / "merge_dev_to_master"
REGION = "{{ cookiecutter.aws_region }}"
DEV_BRANCH = {{ cookiecutter.dev_branch | tojson }}
BUCKET = "results-bucket"
PREFIX = "pull-request-checks/"
CHECK_NAME = "pr-check-project"
EXECUTION = "0b4f6a1e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
ROLE_ARN = "arn:aws:iam::123456789012:role/project/pull-request-function"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:git-token-AbCdEf"
TOKEN = "fake-token-for-tests-only"
REPOSITORY = "my-group/ml/churn-model" if HOST == "gitlab" else "my-org/churn-model"


def git(root: Path, *args: str) -> str:
    """Run git in root; its output."""
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def commits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """dev at `base`; a pull request's `head` and the `newer` commit pushed after it."""
    root = tmp_path_factory.mktemp("repository")
    git(root, "init", "-q", "-b", DEV_BRANCH)
    git(root, "commit", "-q", "--allow-empty", "-m", "base")
    base = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "-b", "pull-request-head")
    git(root, "commit", "-q", "--allow-empty", "-m", "head")
    head = git(root, "rev-parse", "HEAD")
    git(root, "commit", "-q", "--allow-empty", "-m", "newer")
    newer = git(root, "rev-parse", "HEAD")
    return {"root": root, "base": base, "head": head, "newer": newer}


class Harness:
    """The function with the rehearsal's fakes, a results bucket in moto, one pull request."""

    def __init__(self, commits: dict[str, Any]) -> None:
        self.commits = commits
        self.store = PullRequestStore()
        self.pull_request = self.store.open(
            "A change", "pull-request-head", DEV_BRANCH, commits["head"], commits["base"]
        )
        self.repository = GitRepository(commits["root"])
        self.host: Any = None
        self.violations: list[str] = []

    def put_result(self, commit_id: str, **changes: Any) -> dict[str, Any]:
        """The result `make pull-request-check` writes, passing unless changed."""
        result = {
            "version": 1,
            "commit_id": commit_id,
            "passed": True,
            "tests": {"passed": True, "log_tail": ""},
            "definition": {
                "dev": True,
                "added": [],
                "removed": [],
                "changed": ["TrainModel"],
                "cache_hits": ["PreprocessData"],
                "parameters_changed": [],
            },
            "definition_error": None,
            "model": {
                "metric": "auc",
                "candidate": 0.91,
                "production": 0.9,
                "floor": 0.88,
                "margin": 0.02,
                "not_comparable": None,
                "passed": True,
                "test_rows": 300,
                "production_package": "arn:aws:sagemaker:::model-package/group/1",
            },
            "model_error": None,
            "sample": "load_dataset()'s table",
            **changes,
        }
        boto3.client("s3", region_name=REGION).put_object(
            Bucket=BUCKET, Key=f"{PREFIX}{EXECUTION}.json", Body=json.dumps(result).encode()
        )
        return result

    def invoke(
        self,
        step: str,
        commit_id: str | None = None,
        raw: Any = None,
        event: dict[str, Any] | None = None,
        jobs: CodePipelineJobs | None = None,
    ) -> Any:
        """Run one step (or the function on another event); the InvokeResult (job results,
        calls, log)."""
        commit_id = commit_id or self.pull_request.head
        parameters = {"step": step, "commit_id": commit_id, "execution_id": EXECUTION}
        if HOST == "codecommit":
            parameters["pull_request_id"] = str(self.pull_request.number)
        environment = {
            "AWS_REGION": REGION,
            "DEV_BRANCH": DEV_BRANCH,
            "RESULTS_BUCKET": BUCKET,
            "RESULTS_PREFIX": PREFIX,
            "CHECK_NAME": CHECK_NAME,
        }
        services: dict[str, Any] = {"sts": CallerIdentity(ROLE_ARN)}
        if HOST == "codecommit":
            environment["REPOSITORY_NAME"] = "churn-model"
            services["codecommit"] = GitCodeCommit(
                self.repository, "churn-model", pull_requests=self.store, caller_arn=ROLE_ARN
            )
        else:
            from rehearsal.git_hosts import git_host

            self.host = git_host(
                HOST, self.repository, REPOSITORY, TOKEN, ROOT / "tests" / "contracts", self.store
            )
            self.host.start()
            environment.update(
                GIT_HOST=HOST,
                GIT_REPOSITORY=REPOSITORY,
                GIT_TOKEN_SECRET_ARN=SECRET_ARN,
                GIT_API_URL=self.host.api_url,
            )
            services["secretsmanager"] = StoredSecret(SECRET_ARN, TOKEN)
        event = event or codepipeline_job_event(
            "job-1",
            "123456789012",
            "pull-request",
            raw if raw is not None else json.dumps(parameters),
        )
        try:
            return invoke_pipeline_lambda(
                CODE,
                "review.handler",
                environment,
                event,
                LambdaContext("pull-request", 60),
                services,
                REGION,
                jobs or CodePipelineJobs(),
            )
        finally:
            if self.host is not None:
                self.host.stop()
                self.violations.extend(getattr(self.host, "violations", []))

    def state(self) -> str:
        """What the pull request's head is marked: the status, or CodeCommit's approval."""
        item = self.pull_request
        if HOST == "codecommit":
            return "approved" if any(a["revision"] == item.revision for a in item.approvals) else ""
        status = item.status_of(item.head)
        return str(status["state"]) if status else ""


@pytest.fixture
def harness(commits: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=BUCKET,
            **(
                {}
                if REGION == "us-east-1"
                else {"CreateBucketConfiguration": {"LocationConstraint": REGION}}
            ),
        )
        harness = Harness(commits)
        yield harness
    assert harness.violations == []


def only_comment(harness: Harness) -> str:
    (comment,) = harness.pull_request.comments
    return comment["body"]


def test_open_says_the_check_runs_and_marks_it_pending(harness: Harness) -> None:
    result = harness.invoke("open")
    assert result.succeeded, result.message
    assert "check: running" in only_comment(harness)
    assert only_comment(harness).startswith(f"<!-- {CHECK_NAME}")
    if HOST == "codecommit":
        assert harness.state() == ""
    else:
        assert harness.state() in ("pending", "INPROGRESS")


def test_report_updates_the_one_comment_and_marks_a_pass(harness: Harness) -> None:
    harness.invoke("open")
    harness.put_result(harness.pull_request.head)
    result = harness.invoke("report")
    assert result.succeeded, result.message
    comment = only_comment(harness)
    assert "check: passed" in comment
    assert "0.9100 against production's 0.9000 (+0.0100" in comment
    assert "changed: `TrainModel`" in comment and "cache hits: `PreprocessData`" in comment
    assert harness.state() in ("approved", "success", "SUCCESSFUL")


def test_a_model_below_production_fails_the_action_with_the_delta(harness: Harness) -> None:
    model = {
        "metric": "auc",
        "candidate": 0.7,
        "production": 0.9,
        "floor": 0.88,
        "margin": 0.02,
        "passed": False,
        "test_rows": 300,
    }
    harness.put_result(harness.pull_request.head, passed=False, model=model)
    result = harness.invoke("report")
    assert not result.succeeded
    assert "below production's by more than the margin" in result.message
    comment = only_comment(harness)
    assert "check: failed" in comment and "(-0.2000;" in comment and "below the floor" in comment
    assert harness.state() not in ("approved", "success", "SUCCESSFUL")


def test_failed_tests_show_the_end_of_their_log_in_a_fence_they_cannot_close(
    harness: Harness,
) -> None:
    tail = "FAILED tests/unit/test_x.py\n~~~~~~~\n![x](http://example.com/x.png) @someone"
    harness.put_result(
        harness.pull_request.head, passed=False, tests={"passed": False, "log_tail": tail}
    )
    result = harness.invoke("report")
    assert not result.succeeded and "make ci-build or the roles" in result.message
    comment = only_comment(harness)
    assert "FAILED tests/unit/test_x.py" in comment
    fences = [line for line in comment.splitlines() if set(line) == {"~"} and len(line) > 7]
    assert len(fences) == 2 and fences[0] == fences[1]


def test_text_from_the_result_cannot_break_the_table_or_render(harness: Harness) -> None:
    definition = {"dev": True, "changed": ["Train|Model](http://x)"], "cache_hits": []}
    sample = "s3://b/x | ![y](http://example.com/y.png) @someone `z`"
    harness.put_result(harness.pull_request.head, definition=definition, sample=sample)
    assert harness.invoke("report").succeeded
    comment = only_comment(harness)
    assert "`TrainModelhttpx`" in comment
    (line,) = [line for line in comment.splitlines() if line.startswith("Sample:")]
    # One code span: nothing in it is a link, an image, a mention or a new cell.
    assert line.count("`") == 2 and "|" not in line


def test_a_result_that_cannot_be_reported_marks_the_pull_request_failed(
    harness: Harness,
) -> None:
    model = {"metric": "auc", "candidate": "high", "production": 0.9, "passed": True}
    harness.put_result(harness.pull_request.head, model=model)
    result = harness.invoke("report")
    assert not result.succeeded and "cannot be reported" in result.message
    assert "check: failed" in only_comment(harness)
    assert harness.state() not in ("approved", "success", "SUCCESSFUL")


def test_a_missing_result_fails_names_where_it_was_looked_for_and_says_so(
    harness: Harness,
) -> None:
    result = harness.invoke("report")
    assert not result.succeeded
    assert f"s3://{BUCKET}/{PREFIX}{EXECUTION}.json" in result.message
    assert "check: failed" in only_comment(harness)


def test_open_without_an_open_pull_request_fails_so_that_nothing_runs(harness: Harness) -> None:
    harness.pull_request.state = "closed"
    result = harness.invoke("open")
    assert not result.succeeded and "the check does not run" in result.message
    assert harness.pull_request.comments == []


def test_a_failed_check_action_marks_the_pull_request_failed(harness: Harness) -> None:
    harness.invoke("open")
    entry = action_execution_event(REGION, CHECK_NAME, EXECUTION, "Check", "Check", "FAILED")
    event = as_delivered(entry, "123456789012")
    variables = {"PullRequestId": str(harness.pull_request.number)} if HOST == "codecommit" else {}
    execution = {"commit": harness.pull_request.head, "variables": variables}
    jobs = CodePipelineJobs(executions={EXECUTION: execution})
    result = harness.invoke("report", event=event, jobs=jobs)
    assert result.job_results == [], "an EventBridge invocation reports no job result"
    assert "failed check reported" in result.log_text
    assert "the Check action failed" in only_comment(harness)
    assert harness.state() not in ("approved", "success", "SUCCESSFUL")


def test_an_event_of_another_pipeline_is_refused(harness: Harness) -> None:
    entry = action_execution_event(REGION, "other", EXECUTION, "Check", "Check", "FAILED")
    result = harness.invoke("report", event=as_delivered(entry, "123456789012"))
    assert "failed check not reported" in result.log_text
    assert harness.pull_request.comments == []


def test_a_comment_someone_else_starts_alike_is_not_taken_for_the_checks(
    harness: Harness,
) -> None:
    impostor = harness.store.add_comment(harness.pull_request, f"<!-- {CHECK_NAME} -->\npassed")
    impostor["author"] = "arn:aws:iam::123456789012:user/someone"
    assert harness.invoke("open").succeeded
    bodies = [comment["body"] for comment in harness.pull_request.comments]
    assert len(bodies) == 2 and bodies[0] == f"<!-- {CHECK_NAME} -->\npassed"
    assert "check: running" in bodies[1]


def test_a_commit_that_is_no_longer_the_head_reports_nothing(harness: Harness) -> None:
    PullRequestStore.push(harness.pull_request, harness.commits["newer"])
    harness.put_result(harness.commits["head"])
    result = harness.invoke("report", commit_id=harness.commits["head"])
    assert result.succeeded and "nothing to report" in result.message
    assert harness.pull_request.comments == []


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        json.dumps({"step": "merge", "commit_id": "a" * 40}),
        json.dumps({"step": "open"}),
    ],
)
def test_malformed_user_parameters_fail_with_the_fix(harness: Harness, raw: str) -> None:
    result = harness.invoke("open", raw=raw)
    assert not result.succeeded
    assert "UserParameters" in result.message or "commit_id" in result.message
    assert harness.pull_request.comments == []
{%- if cookiecutter.source_provider != 'codecommit' %}


def test_a_pull_request_from_a_fork_stops_at_open(harness: Harness) -> None:
    harness.pull_request.fork_of = "someone-else/churn-model"
    result = harness.invoke("open")
    assert not result.succeeded
    assert "comes from another repository" in result.message
    assert "check: not run" in only_comment(harness)
    assert harness.state() in ("failure", "failed", "FAILED")
{%- endif %}

{%- if cookiecutter.source_provider == 'codecommit' %}


def test_a_revision_that_passed_and_then_fails_loses_the_approval(harness: Harness) -> None:
    harness.put_result(harness.pull_request.head)
    assert harness.invoke("report").succeeded
    assert harness.state() == "approved"
    harness.put_result(harness.pull_request.head, passed=False, tests={"passed": False})
    assert not harness.invoke("report").succeeded
    assert harness.state() == ""
{%- elif cookiecutter.source_provider == 'gitlab' %}


def test_a_retried_open_finds_the_pending_status_already_there(harness: Harness) -> None:
    assert harness.invoke("open").succeeded
    result = harness.invoke("open")
    assert result.succeeded, result.message
    assert len(harness.pull_request.comments) == 1
{%- endif %}
