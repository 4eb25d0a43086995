"""The pull-request check's two Invoke actions: say on the pull request that the check runs,
then post its result there.

The check pipeline runs it twice, with UserParameters JSON
{"step": "open" or "report", "commit_id": "#{SourceVariables.CommitId}",
 "execution_id": "#{codepipeline.PipelineExecutionId}"{% if cookiecutter.source_provider == 'codecommit' %},
 "pull_request_id": "#{variables.PullRequestId}"{% endif %}}:
- open: find the open pull request into the dev branch whose head is the commit,{% if cookiecutter.source_provider != 'codecommit' %}
  refuse one from a fork (its code never runs here),{% endif %}
  and mark it as being checked (the comment, a pending state);
- report: read the result `make pull-request-check` left in the artifact bucket, put it in
  the comment, and set the pass or fail state; the action fails when the check did.
The comment is this function's own, found by its first line and updated in place, so a
pull request carries one, however many commits it gets. A commit that is no longer the pull
request's head reports nothing: the newer commit's check will.

This code runs from the stack (trusted), not from the pull request: it alone holds the
{% if cookiecutter.source_provider == 'codecommit' %}CodeCommit permissions that comment and approve{% else %}{{ cookiecutter.__git_host }} token{% endif %}, and it renders the comment itself from the
result's numbers and names.

Environment: DEV_BRANCH, RESULTS_BUCKET, RESULTS_PREFIX, CHECK_NAME (the check pipeline:
the comment's marker and the status's name), and the repository's settings as for app.py.
"""

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
# SageMaker step names: letters, digits, "-" and "_" (CreatePipeline's definition schema).
NAME_PATTERN = re.compile(r"[^A-Za-z0-9_-]")
LOG_FENCE = "~~~~"
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
    return CheckRequest(
        step,
        commit_id,
        str(parameters.get("execution_id", "")),
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


def marker() -> str:
    """The comment's first line, which finds it again (invisible in rendered Markdown)."""
    return f"<!-- {os.environ.get('CHECK_NAME', 'pull-request-check')} -->"


def plain(text: str) -> str:
    """Text from the result or the host, safe inside a Markdown table cell: one line, and no
    character that opens a link, an HTML tag, code or a new cell."""
    return re.sub(r"[`|<>\[\]\r\n]", " ", text).strip()


def _names(values: Any) -> str:
    """Step names from the result, reduced to the characters a step name can have."""
    names = [NAME_PATTERN.sub("", str(value))[:64] for value in (values or [])][:30]
    return ", ".join(f"`{name}`" for name in names if name) or "none"


def _number(value: Any) -> str:
    return f"{float(value):.4f}" if isinstance(value, (int, float)) else "n/a"


def open_comment(request: CheckRequest) -> str:
    """The comment while the check runs."""
    return (
        f"{marker()}\n**Pull-request check: running** on `{short(request.commit_id)}`"
        f" ([execution]({execution_url(request.execution_id)}))\n\n"
        "Lint, unit tests and templates; the SageMaker pipeline definition against"
        f" `{os.environ.get('DEV_BRANCH', 'dev')}`'s; the model on the sample against production's."
        " This comment is updated when the check ends.\n"
    )


def fork_comment(request: CheckRequest, head_repository: str) -> str:
    """The comment on a pull request from a fork, which is never checked."""
    return (
        f"{marker()}\n**Pull-request check: not run** on `{short(request.commit_id)}`: the pull"
        f" request comes from another repository ({plain(head_repository)}), and the"
        " check runs the pull request's code with access to this project's AWS account. A"
        " maintainer can push the branch to this repository and open the pull request from"
        " there.\n"
    )


def result_comment(request: CheckRequest, result: dict[str, Any], max_chars: int) -> str:
    """The comment with the check's result, from its numbers and names only."""
    passed = bool(result.get("passed"))
    tests = result.get("tests") or {}
    model = result.get("model") or {}
    definition = result.get("definition") or {}
    dev = os.environ.get("DEV_BRANCH", "dev")
    verdict = "passed" if passed else "failed"
    lines = [
        marker(),
        f"**Pull-request check: {verdict}** on `{short(request.commit_id)}`"
        f" ([execution]({execution_url(request.execution_id)}))",
        "",
        "| Check | Result |",
        "|---|---|",
        "| Lint, unit tests, templates (`make ci-build`), the roles within the boundary | "
        + ("passed" if tests.get("passed") else "**failed**")
        + " |",
    ]
    if model:
        metric = NAME_PATTERN.sub("", str(model.get("metric", "metric")))
        if model.get("production") is None:
            reason = model.get("not_comparable") or "production serves no model yet"
            compared = f"{_number(model.get('candidate'))}; not compared ({plain(reason)[:200]})"
        else:
            delta = float(model["candidate"]) - float(model["production"])
            compared = (
                f"{_number(model['candidate'])} against production's {_number(model['production'])}"
                f" ({delta:+.4f}; the floor is {_number(model.get('floor'))}, production's less"
                f" {_number(model.get('margin'))})"
            )
            if not model.get("passed"):
                compared = f"**{compared}: below the floor**"
        rows = model.get("test_rows")
        rows = rows if isinstance(rows, int) else "?"
        lines.append(f"| {metric} on the sample's {rows} held-out rows | {compared} |")
    else:
        error = plain(str(result.get("model_error") or "no result"))[:300]
        lines.append(f"| Model on the sample | **not measured**: {error} |")
    if definition:
        if not definition.get("dev"):
            pipeline_row = f"`{dev}` has no SageMaker pipeline yet: every step is new"
        else:
            pipeline_row = "; ".join(
                f"{label}: {_names(definition.get(key))}"
                for label, key in (
                    ("changed", "changed"),
                    ("added", "added"),
                    ("removed", "removed"),
                    ("cache hits", "cache_hits"),
                )
            )
            if definition.get("parameters_changed"):
                pipeline_row += f"; parameters changed: {_names(definition['parameters_changed'])}"
        lines.append(f"| SageMaker pipeline against `{dev}`'s | {pipeline_row} |")
    else:
        error = plain(str(result.get("definition_error") or "no result"))[:300]
        lines.append(f"| SageMaker pipeline against `{dev}`'s | not compared: {error} |")
    sample = plain(str(result.get("sample", "")))[:200]
    lines += ["", f"Sample: {sample}."]
    if model.get("production_package"):
        lines.append(f"Production model: `{plain(str(model['production_package']))[:200]}`.")
    text = "\n".join(lines) + "\n"
    tail = str(tests.get("log_tail") or "").replace(LOG_FENCE, "~~~")
    if tail:
        room = max_chars - len(text) - 200
        if room > 0:
            tail = tail[-room:]
            text += (
                f"\n<details><summary>The end of the ci-build log</summary>\n\n{LOG_FENCE}\n"
                f"{tail}\n{LOG_FENCE}\n</details>\n"
            )
    return text[:max_chars]


def read_result(request: CheckRequest, deadline: float) -> dict[str, Any]:
    """The result the Check action wrote for this commit."""
    bucket = os.environ.get("RESULTS_BUCKET", "")
    key = os.environ.get("RESULTS_PREFIX", "") + f"{request.commit_id}.json"
    try:
        response = call_aws(aws_client("s3").get_object, deadline=deadline, Bucket=bucket, Key=key)
        document = json.loads(response["Body"].read())
    except ClientError as error:
        if aws_error_code(error) in ("NoSuchKey", "404"):
            raise MergeFailed(
                f"The Check action left no result at s3://{bucket}/{key}: see its log in the"
                f" execution ({execution_url(request.execution_id)}).",
                JOB_FAILED,
            ) from None
        raise aws_failure(error, "s3:GetObject", f"s3://{bucket}/{key}") from None
    except HTTPClientError as error:
        raise aws_failure(error, "s3:GetObject", f"s3://{bucket}/{key}") from None
    except ValueError:
        raise MergeFailed(
            f"s3://{bucket}/{key} is not JSON: rerun the check.", JOB_FAILED
        ) from None
    if not isinstance(document, dict) or document.get("commit_id") != request.commit_id:
        raise MergeFailed(
            f"s3://{bucket}/{key} is not the result of commit {short(request.commit_id)}:"
            " rerun the check.",
            JOB_FAILED,
        )
    return document


def review(request: CheckRequest, deadline: float) -> str:
    """Do the step; the summary of what was done. MergeFailed when the action must fail."""
    host = host_api.connect(dict(os.environ), aws_client, deadline)
    pull_request = host.find(request.commit_id, request.pull_request_id)
    if pull_request is None:
        return (
            f"No open pull request into {os.environ.get('DEV_BRANCH')} has"
            f" {short(request.commit_id)} as its head any more: nothing to report (a newer"
            " commit's check reports)."
        )
    add_log_context(pull_request=pull_request.number)
    url = execution_url(request.execution_id)
    if request.step == "open":
        if pull_request.fork_of is not None:
            host.comment(pull_request, fork_comment(request, pull_request.fork_of))
            host.state(pull_request, False, "not run: the pull request comes from a fork", url)
            raise MergeFailed(
                f"Pull request {pull_request.number} comes from another repository"
                f" ({plain(pull_request.fork_of)}): its code is not run here.",
                JOB_FAILED,
            )
        written = host.comment(pull_request, open_comment(request))
        host.state(pull_request, None, "running", url)
        return f"pull request {pull_request.number}: {written} the comment; the check runs"
    result = read_result(request, deadline)
    written = host.comment(pull_request, result_comment(request, result, host.max_comment_chars))
    passed = bool(result.get("passed"))
    model = result.get("model") or {}
    if passed:
        description = "passed: tests, and the model within the margin of production's"
    elif not (result.get("tests") or {}).get("passed"):
        description = "failed: make ci-build or the roles' boundary check failed"
    elif model and not model.get("passed"):
        description = "failed: the model falls below production's by more than the margin"
    else:
        description = "failed: the model could not be measured"
    host.state(pull_request, passed, description[:STATE_DESCRIPTION_CHARS], url)
    summary = f"pull request {pull_request.number}: {written} the comment; {description}"
    if not passed:
        raise MergeFailed(summary, JOB_FAILED)
    return summary


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point: one step, then exactly one job result to CodePipeline."""
    started = time.monotonic()
    bind_log_context(aws_request_id=getattr(context, "aws_request_id", None), function="review")
    job_id = job_id_of(event)
    add_log_context(job_id=job_id)
    deadline = deadline_of(context)
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
    log(
        "INFO",
        "pull-request step done",
        summary=summary,
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    report_summary(job_id, summary, request.commit_id, deadline)
    return {"jobId": job_id, "outcome": "done", "summary": summary}
