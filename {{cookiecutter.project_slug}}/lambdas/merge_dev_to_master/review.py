"""The pull-request check's two Invoke actions: say on the pull request that the check runs,
then post its result there; and the report of a Check action that failed.

The check pipeline runs it twice, with UserParameters JSON
{"step": "open" or "report", "commit_id": "#{SourceVariables.CommitId}",
 "execution_id": "#{codepipeline.PipelineExecutionId}"{% if cookiecutter.source_provider == 'codecommit' %},
 "pull_request_id": "#{variables.PullRequestId}"{% endif %}}:
- open: find the open pull request into the dev branch whose head is the commit,{% if cookiecutter.source_provider != 'codecommit' %}
  refuse one from a fork (its code never runs here),{% endif %}
  and mark it as being checked (the comment, a pending state); with no such pull request
  the action fails, so the Check action never runs code nobody asked to check;
- report: read the result `make pull-request-check` left in the artifact bucket under the
  execution's id, put it in the comment, and set the pass or fail state; the action fails
  when the check did.
The check-failed rule invokes it too, with CodePipeline's Action Execution State Change of a
failed Check action (which leaves no result, so Report never runs): it reads the execution's
commit (GetPipelineExecution) and marks the pull request failed.

The comment is this function's own, found by its first line and updated in place, so a
pull request carries one, however many commits it gets. A commit that is no longer the pull
request's head reports nothing: the newer commit's check will.

This code runs from the stack (trusted), not from the pull request: it alone holds the
{% if cookiecutter.source_provider == 'codecommit' %}CodeCommit permissions that comment and approve{% else %}{{ cookiecutter.__git_host }} token{% endif %}, and it renders the comment itself from the
result's numbers and names (untrusted text only inside code spans and fences).

Environment: DEV_BRANCH, RESULTS_BUCKET, RESULTS_PREFIX, CHECK_NAME (the check pipeline:
the comment's marker and the status's name), and the repository's settings as for app.py.
"""

import hashlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError

import {{ cookiecutter.source_provider }}_review as host_api
from app import (
    aws_client,
    deadline_of,
    job_id_of,
    report_failure,
    report_summary,
    user_parameters,
)
from merge_common import (
    CONFIGURATION_ERROR,
    JOB_FAILED,
    MergeFailed,
    PullRequest,
    add_log_context,
    aws_error_code,
    aws_failure,
    bind_log_context,
    call_aws,
    log,
    short,
)

STEPS = ("open", "report")
COMMIT_ID_PATTERN = re.compile(r"^[0-9a-f]{40}$")
# CodePipeline's PipelineExecutionId: a UUID.
EXECUTION_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# SageMaker step names: letters, digits, "-" and "_" (CreatePipeline's definition schema).
NAME_PATTERN = re.compile(r"[^A-Za-z0-9_-]")
# The state's description is one line in the host's list of checks: kept short.
STATE_DESCRIPTION_CHARS = 140


@dataclass(frozen=True)
class CheckRequest:
    """What the action asks: the step, the commit checked, the execution, the pull request."""

    step: str
    commit_id: str
    execution_id: str
    pull_request_id: str | None


def check_request(event: dict[str, Any]) -> CheckRequest:
    """The action's UserParameters, checked."""
    parameters = user_parameters(event)
    if parameters is None:
        raise MergeFailed(
            'The action\'s UserParameters is not a JSON object like {"step": "open",'
            ' "commit_id": "#{SourceVariables.CommitId}", ...}: see the check pipeline in'
            " infra/model-deploy-pipeline.yml.",
            CONFIGURATION_ERROR,
        )
    step = parameters.get("step")
    if step not in STEPS:
        raise MergeFailed(
            f"The action's UserParameters step {str(step)[:40]!r} is not one of"
            f" {', '.join(STEPS)}.",
            CONFIGURATION_ERROR,
        )
    commit_id = str(parameters.get("commit_id", "")).strip().lower()
    if not COMMIT_ID_PATTERN.match(commit_id):
        raise MergeFailed(
            f"commit_id {str(parameters.get('commit_id'))[:80]!r} is not a full 40-hex commit id:"
            " pass the source action's #{SourceVariables.CommitId}.",
            CONFIGURATION_ERROR,
        )
    pull_request_id = parameters.get("pull_request_id")
    execution_id = str(parameters.get("execution_id", ""))
    if not EXECUTION_ID_PATTERN.match(execution_id):
        raise MergeFailed(
            f"execution_id {execution_id[:80]!r} is not a pipeline execution id: pass"
            " #{codepipeline.PipelineExecutionId}.",
            CONFIGURATION_ERROR,
        )
    return CheckRequest(
        step,
        commit_id,
        execution_id,
        None if pull_request_id in (None, "", "none") else str(pull_request_id),
    )


def execution_url(execution_id: str) -> str:
    """The check pipeline's execution in the CodePipeline console."""
    region = os.environ.get("AWS_REGION", "")
    pipeline = os.environ.get("CHECK_NAME", "")
    return (
        f"https://{region}.console.aws.amazon.com/codesuite/codepipeline/pipelines/{pipeline}"
        f"/executions/{execution_id}/timeline?region={region}"
    )


def marker(pull_request: PullRequest, key: bytes | None) -> str:
    """The comment's first line, which finds it again (invisible in rendered Markdown).

    With a git host's token as the key it carries a tag nobody without the token can
    compute, so a comment someone else starts with the same line is not taken for this one.
    """
    name = os.environ.get("CHECK_NAME", "pull-request-check")
    if key is None:
        return f"<!-- {name} -->"
    tag = hmac.new(key, f"{name}#{pull_request.number}".encode(), hashlib.sha256).hexdigest()
    return f"<!-- {name} {tag[:16]} -->"


def code(text: str) -> str:
    """Text from the result or the host as an inline code span in a table cell: one line, no
    backtick or pipe, so nothing in it renders as a link, a mention, markup or a new cell."""
    cleaned = re.sub(r"[`|\r\n]", " ", text).strip()
    return f"`{cleaned}`" if cleaned else "none"


def fenced(text: str) -> str:
    """text in a fenced code block it cannot close: the fence is longer than any run of
    tildes in it."""
    longest = max((len(run) for run in re.findall(r"~+", text)), default=0)
    fence = "~" * max(4, longest + 1)
    return f"{fence}\n{text}\n{fence}"


def _names(values: Any) -> str:
    """Step names from the result, reduced to the characters a step name can have."""
    names = [NAME_PATTERN.sub("", str(value))[:64] for value in (values or [])][:30]
    return ", ".join(f"`{name}`" for name in names if name) or "none"


def _number(value: Any) -> str:
    return f"{float(value):.4f}" if isinstance(value, (int, float)) else "n/a"


def open_comment(request: CheckRequest, first_line: str) -> str:
    """The comment while the check runs."""
    return (
        f"{first_line}\n**Pull-request check: running** on `{short(request.commit_id)}`"
        f" ([execution]({execution_url(request.execution_id)}))\n\n"
        "Lint, unit tests and templates; the SageMaker pipeline definition against"
        f" {code(os.environ.get('DEV_BRANCH', 'dev'))}'s; the model on the sample against"
        " production's. This comment is updated when the check ends.\n"
    )


def fork_comment(request: CheckRequest, first_line: str, head_repository: str) -> str:
    """The comment on a pull request from a fork, which is never checked."""
    return (
        f"{first_line}\n**Pull-request check: not run** on `{short(request.commit_id)}`: the"
        f" pull request comes from another repository ({code(head_repository)}), and the check"
        " runs the pull request's code with access to this project's AWS account. A"
        " maintainer can push the branch to this repository and open the pull request from"
        " there.\n"
    )


def failed_comment(request: CheckRequest, first_line: str, reason: str) -> str:
    """The comment when the check could not measure anything (its result is missing)."""
    return (
        f"{first_line}\n**Pull-request check: failed** on `{short(request.commit_id)}`"
        f" ([execution]({execution_url(request.execution_id)})): {reason}\n"
    )


def _model_row(model: dict[str, Any]) -> str:
    metric = NAME_PATTERN.sub("", str(model.get("metric", "metric")))
    rows = model.get("test_rows")
    rows = rows if isinstance(rows, int) else "?"
    if model.get("production") is None:
        reason = str(model.get("not_comparable") or "production serves no model yet")
        compared = f"{_number(model.get('candidate'))}; not compared: {code(reason[:200])}"
    else:
        delta = float(model["candidate"]) - float(model["production"])
        compared = (
            f"{_number(model['candidate'])} against production's {_number(model['production'])}"
            f" ({delta:+.4f}; the floor is {_number(model.get('floor'))}, production's less"
            f" {_number(model.get('margin'))})"
        )
        if not model.get("passed"):
            compared = f"**{compared}: below the floor**"
    return f"| {metric} on the sample's {rows} held-out rows | {compared} |"


def _definition_row(definition: dict[str, Any], dev: str) -> str:
    if not definition.get("dev"):
        cell = f"{code(dev)} has no SageMaker pipeline yet: every step is new"
    else:
        cell = "; ".join(
            f"{label}: {_names(definition.get(key))}"
            for label, key in (
                ("changed", "changed"),
                ("added", "added"),
                ("removed", "removed"),
                ("cache hits", "cache_hits"),
            )
        )
        if definition.get("parameters_changed"):
            cell += f"; parameters changed: {_names(definition['parameters_changed'])}"
    return f"| SageMaker pipeline against {code(dev)}'s | {cell} |"


def result_comment(
    request: CheckRequest, first_line: str, result: dict[str, Any], max_chars: int
) -> str:
    """The comment with the check's result, from its numbers and names only."""
    tests = result["tests"]
    model = result.get("model")
    definition = result.get("definition")
    dev = os.environ.get("DEV_BRANCH", "dev")
    verdict = "passed" if result["passed"] else "failed"
    lines = [
        first_line,
        f"**Pull-request check: {verdict}** on `{short(request.commit_id)}`"
        f" ([execution]({execution_url(request.execution_id)}))",
        "",
        "| Check | Result |",
        "|---|---|",
        "| Lint, unit tests, templates (`make ci-build`), the roles within the boundary | "
        + ("passed" if tests["passed"] else "**failed**")
        + " |",
    ]
    if model:
        lines.append(_model_row(model))
    else:
        error = str(result.get("model_error") or "no result")[:300]
        lines.append(f"| Model on the sample | **not measured**: {code(error)} |")
    if definition:
        lines.append(_definition_row(definition, dev))
    else:
        error = str(result.get("definition_error") or "no result")[:300]
        lines.append(f"| SageMaker pipeline against {code(dev)}'s | not compared: {code(error)} |")
    lines += ["", f"Sample: {code(str(result.get('sample', ''))[:200])}."]
    if model and model.get("production_package"):
        lines.append(f"Production model: {code(str(model['production_package'])[:200])}.")
    text = "\n".join(lines) + "\n"
    tail = str(tests.get("log_tail") or "")
    room = max_chars - len(text) - 200
    if tail and room > 0:
        text += (
            "\n<details><summary>The end of the ci-build log</summary>\n\n"
            f"{fenced(tail[-room:])}\n</details>\n"
        )
    return text[:max_chars]


def result_problem(document: Any, request: CheckRequest) -> str | None:
    """What makes a result unusable (None: it can be reported)."""
    if not isinstance(document, dict):
        return "it is not a JSON object"
    if document.get("commit_id") != request.commit_id:
        return f"it is the result of commit {str(document.get('commit_id'))[:40]}"
    if not isinstance(document.get("passed"), bool):
        return "it has no passed field"
    if not isinstance(document.get("tests"), dict) or not isinstance(
        document["tests"].get("passed"), bool
    ):
        return "it has no tests.passed field"
    model = document.get("model")
    if model is not None:
        numbers = ("candidate",) + (() if model.get("production") is None else ("production",))
        if not isinstance(model, dict) or not all(
            isinstance(model.get(key), (int, float)) for key in numbers
        ):
            return "its model has no numeric candidate and production metrics"
    return None


def result_key(request: CheckRequest) -> str:
    """Where the Check action of this execution writes its result."""
    return os.environ.get("RESULTS_PREFIX", "") + f"{request.execution_id}.json"


def read_result(request: CheckRequest, deadline: float) -> tuple[dict[str, Any] | None, str]:
    """(the result the Check action wrote, or None; why there is none)."""
    bucket = os.environ.get("RESULTS_BUCKET", "")
    key = result_key(request)
    where = f"s3://{bucket}/{key}"
    try:
        response = call_aws(aws_client("s3").get_object, deadline=deadline, Bucket=bucket, Key=key)
        document = json.loads(response["Body"].read())
    except ClientError as error:
        if aws_error_code(error) in ("NoSuchKey", "404"):
            return None, f"the Check action left no result at {where}: see its log"
        raise aws_failure(error, "s3:GetObject", where) from None
    except HTTPClientError as error:
        raise aws_failure(error, "s3:GetObject", where) from None
    except ValueError:
        return None, f"{where} is not JSON: rerun the check"
    problem = result_problem(document, request)
    if problem:
        return None, f"{where} cannot be reported: {problem}; rerun the check"
    return document, ""


def _failures(result: dict[str, Any]) -> str:
    """What failed, for the state's one line."""
    reasons = []
    if not result["tests"]["passed"]:
        reasons.append("make ci-build or the roles' boundary check")
    model = result.get("model")
    if model is None:
        reasons.append("the model could not be measured")
    elif not model.get("passed"):
        reasons.append("the model is below production's by more than the margin")
    return "failed: " + "; ".join(reasons or ["see the comment"])


def review(request: CheckRequest, deadline: float) -> str:
    """Do the step; the summary of what was done. MergeFailed when the action must fail."""
    host = host_api.connect(dict(os.environ), aws_client, deadline)
    pull_request = host.find(request.commit_id, request.pull_request_id)
    dev = os.environ.get("DEV_BRANCH")
    if pull_request is None:
        gone = (
            f"No open pull request into {dev} has {short(request.commit_id)} as its head (it was"
            " closed, retargeted or got a newer commit, whose own check runs)"
        )
        if request.step == "open":
            # Nothing to report on, and nothing to let run: the Check action runs the code.
            raise MergeFailed(f"{gone}: the check does not run.", JOB_FAILED)
        return f"{gone}: nothing to report."
    add_log_context(pull_request=pull_request.number)
    url = execution_url(request.execution_id)
    first_line = marker(pull_request, host.marker_key)
    if request.step == "open":
        if pull_request.fork_of is not None:
            host.comment(pull_request, fork_comment(request, first_line, pull_request.fork_of))
            host.state(pull_request, False, "not run: the pull request comes from a fork", url)
            raise MergeFailed(
                f"Pull request {pull_request.number} comes from another repository"
                f" ({pull_request.fork_of[:100]}): its code is not run here.",
                JOB_FAILED,
            )
        written = host.comment(pull_request, open_comment(request, first_line))
        host.state(pull_request, None, "running", url)
        return f"pull request {pull_request.number}: {written} the comment; the check runs"
    result, missing = read_result(request, deadline)
    if result is None:
        host.comment(pull_request, failed_comment(request, first_line, missing))
        host.state(pull_request, False, "failed: the check wrote no usable result", url)
        raise MergeFailed(f"pull request {pull_request.number}: {missing}.", JOB_FAILED)
    body = result_comment(request, first_line, result, host.max_comment_chars)
    written = host.comment(pull_request, body)
    passed = result["passed"]
    description = (
        "passed: tests, and the model within the margin of production's"
        if passed
        else _failures(result)
    )
    host.state(pull_request, passed, description[:STATE_DESCRIPTION_CHARS], url)
    summary = f"pull request {pull_request.number}: {written} the comment; {description}"
    if not passed:
        raise MergeFailed(summary, JOB_FAILED)
    return summary


def failed_check(event: dict[str, Any], deadline: float) -> str:
    """The check-failed rule's event: the Check action failed (its install, its timeout, a
    crash) before it wrote a result, so Report never runs: say so on the pull request."""
    detail = event.get("detail") or {}
    pipeline, execution_id = detail.get("pipeline"), detail.get("execution-id")
    if pipeline != os.environ.get("CHECK_NAME") or not isinstance(execution_id, str):
        raise MergeFailed(
            f"Not a failed action of {os.environ.get('CHECK_NAME')}: {json.dumps(detail)[:300]}",
            CONFIGURATION_ERROR,
        )
    try:
        execution = call_aws(
            aws_client("codepipeline").get_pipeline_execution,
            deadline=deadline,
            pipelineName=pipeline,
            pipelineExecutionId=execution_id,
        )["pipelineExecution"]
    except (ClientError, HTTPClientError) as error:
        raise aws_failure(error, "codepipeline:GetPipelineExecution", pipeline) from None
    revisions = [item.get("revisionId", "") for item in execution.get("artifactRevisions", [])]
    variables = {item["name"]: item.get("resolvedValue") for item in execution.get("variables", [])}
    pull_request_id = variables.get("PullRequestId")
    request = CheckRequest(
        "report",
        str(revisions[0] if revisions else "").lower(),
        execution_id,
        None if pull_request_id in (None, "", "none") else str(pull_request_id),
    )
    if not COMMIT_ID_PATTERN.match(request.commit_id):
        raise MergeFailed(f"Execution {execution_id} has no source commit.", JOB_FAILED)
    host = host_api.connect(dict(os.environ), aws_client, deadline)
    pull_request = host.find(request.commit_id, request.pull_request_id)
    if pull_request is None:
        return f"{short(request.commit_id)} is no pull request's head any more: nothing to report"
    reason = (
        f"the {detail.get('action', 'Check')} action failed before it wrote a result: see its log"
    )
    host.comment(
        pull_request, failed_comment(request, marker(pull_request, host.marker_key), reason)
    )
    host.state(pull_request, False, "failed: the Check action failed", execution_url(execution_id))
    return f"pull request {pull_request.number}: the comment says the Check action failed"


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point: one step, then exactly one job result to CodePipeline; or the
    check-failed rule's event, reported on the pull request."""
    started = time.monotonic()
    bind_log_context(aws_request_id=getattr(context, "aws_request_id", None), function="review")
    deadline = deadline_of(context)
    if isinstance(event, dict) and event.get("source") == "aws.codepipeline":
        try:
            summary = failed_check(event, deadline)
        except MergeFailed as failure:
            # An EventBridge invocation: raised, Lambda retries it, then the dead-letter queue.
            log("ERROR", "failed check not reported", reason=failure.message)
            raise
        log("INFO", "failed check reported", summary=summary)
        return {"outcome": "reported", "summary": summary}
    job_id = job_id_of(event)
    add_log_context(job_id=job_id)
    try:
        request = check_request(event)
        add_log_context(step=request.step, commit_id=request.commit_id)
        summary = review(request, deadline)
    except MergeFailed as failure:
        log("ERROR", "pull-request step failed", reason=failure.message)
        report_failure(job_id, failure, deadline)
        return {"jobId": job_id, "outcome": "failed", "failureType": failure.failure_type}
    except Exception as error:
        # The type only: an error's text can quote a request, with its headers and token.
        log("ERROR", "unexpected error", error_type=type(error).__name__)
        report_failure(
            job_id,
            MergeFailed(
                f"Unexpected {type(error).__name__}: see the function's log for job {job_id}.",
                JOB_FAILED,
            ),
            deadline,
        )
        return {"jobId": job_id, "outcome": "failed", "failureType": JOB_FAILED}
    duration_ms = round((time.monotonic() - started) * 1000)
    log("INFO", "pull-request step done", summary=summary, duration_ms=duration_ms)
    report_summary(job_id, summary, request.commit_id, deadline)
    return {"jobId": job_id, "outcome": "done", "summary": summary}
