"""The model deploy pipeline's last action: merge the deployed commit into the main branch.

Invoked by a CodePipeline Invoke action (Lambda) whose UserParameters is JSON:
{"source_branch": "...", "destination_branch": "...", "commit_id": "<the deployed commit>"}.
With "mode": "check" (the deploy pipeline's Build stage, before anything is deployed) it
only checks, writing nothing, that the commit is the destination's head or descends from
it: a commit the destination already contains is an older build than production, refused
with how to roll back instead (revert on the source branch).
It moves destination_branch to exactly commit_id, so that the branch equals production:
already there or already contained → success, nothing written; an ancestor → fast-forward;
diverged → the action fails and nothing is written (MERGE_STRATEGY=three-way opts in to a
merge commit, which still fails on conflicts). Never a force update. Every invocation that
carries a job id reports exactly one job result to CodePipeline.

Environment:
{%- if cookiecutter.source_provider == 'codecommit' %}
    REPOSITORY_NAME          the CodeCommit repository
{%- else %}
    GIT_HOST                 {{ cookiecutter.source_provider }}
    GIT_REPOSITORY           {{ {'github': 'owner/name', 'gitlab': 'group/project (or group/subgroup/project)', 'bitbucket': 'workspace/repository'}.get(cookiecutter.source_provider) }} of the {{ cookiecutter.__git_host }} repository
    GIT_TOKEN_SECRET_ARN     the Secrets Manager secret holding the {{ cookiecutter.__git_host }} token
    GIT_API_URL              optional, default {{ cookiecutter.__git_api_url }}
{%- endif %}
    MERGE_STRATEGY           fast-forward (default) or three-way

IAM actions the function's role needs:
{%- if cookiecutter.source_provider == 'codecommit' %}
    codecommit:GetBranch, codecommit:GetMergeOptions, codecommit:MergeBranchesByFastForward
        on this repository's ARN only; codecommit:MergeBranchesByThreeWay as well only when
        MERGE_STRATEGY=three-way
{%- else %}
    secretsmanager:GetSecretValue on the token secret only (plus kms:Decrypt on its key if
        the secret uses a customer managed key)
{%- endif %}
    codepipeline:PutJobSuccessResult, codepipeline:PutJobFailureResult on "*" (the API has
        no resource)
    logs:CreateLogStream, logs:PutLogEvents on the function's log group
"""

import functools
import json
import os
import re
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError

import {{ cookiecutter.source_provider }}_merge as provider
from merge_common import (
    CONFIGURATION_ERROR,
    FAST_FORWARD,
    JOB_FAILED,
    MERGE_STRATEGIES,
    MergeFailed,
    MergeRequest,
    MergeResult,
    add_log_context,
    aws_error_code,
    bind_log_context,
    call_aws,
    log,
    truncate_utf8,
)

MERGE_STRATEGY_ENV = "MERGE_STRATEGY"
USER_PARAMETER_KEYS = ("source_branch", "destination_branch", "commit_id")
# Optional "mode": "merge" moves the branch; "check" (before anything is deployed) only
# verifies that the commit is production's or descends from it, and writes nothing.
MODES = ("merge", "check")
EXAMPLE_USER_PARAMETERS = json.dumps(
    {
        "source_branch": {{ cookiecutter.dev_branch | tojson }},
        "destination_branch": {{ cookiecutter.main_branch | tojson }},
        "commit_id": "#{SourceVariables.CommitId}",
    }
)
COMMIT_ID_PATTERN = re.compile(r"^[0-9a-f]{40}$")
# Git's own rules for a branch name, in short: no spaces, no control characters, no "..".
BRANCH_PATTERN = re.compile(r"^(?!/)(?!.*\.\.)(?!.*//)[^\s~^:?*\[\\\x00-\x1f\x7f]+(?<![/.])$")

# API limits of PutJobFailureResult (message) and PutJobSuccessResult (summary).
FAILURE_MESSAGE_MAX_BYTES = 5000
SUMMARY_MAX_BYTES = 2048
# Time kept back from the Lambda timeout so a failure can still be reported.
REPORT_RESERVE_SECONDS = 5.0
DEFAULT_BUDGET_SECONDS = 60.0

# Retries are done (bounded, logged, deadline-aware) by merge_common.call_aws, so botocore's
# own are off: one request per attempt.
CLIENT_CONFIG = Config(
    connect_timeout=5, read_timeout=20, retries={"mode": "standard", "total_max_attempts": 1}
)


class MalformedEventError(ValueError):
    """The event is not a CodePipeline job: there is no job to report to."""


@functools.cache
def aws_client(service_name: str) -> Any:
    """A boto3 client, created once per execution environment."""
    return boto3.client(service_name, config=CLIENT_CONFIG)


def job_id_of(event: Any) -> str:
    """The CodePipeline job id of the event; MalformedEventError when there is none."""
    job = event.get("CodePipeline.job") if isinstance(event, dict) else None
    job_id = job.get("id") if isinstance(job, dict) else None
    if not isinstance(job_id, str) or not job_id.strip():
        raise MalformedEventError(
            "The event has no CodePipeline.job.id: this function only runs as a CodePipeline "
            "Invoke action, which gives it a job to report to."
        )
    return job_id


def user_parameters(event: dict[str, Any]) -> dict[str, Any] | None:
    """The Invoke action's UserParameters as a JSON object; None when it is not one."""
    action = event["CodePipeline.job"].get("data", {}).get("actionConfiguration", {})
    raw = action.get("configuration", {}).get("UserParameters")
    try:
        parameters = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return None
    return parameters if isinstance(parameters, dict) else None


def merge_request_of(event: dict[str, Any], environ: dict[str, str]) -> MergeRequest:
    """The merge asked for by the action's UserParameters and MERGE_STRATEGY."""
    example = EXAMPLE_USER_PARAMETERS  # the value the deploy pipeline sets
    parameters = user_parameters(event)
    if parameters is None:
        raise MergeFailed(
            f"The action's UserParameters is not a JSON object: set it to {example}.",
            CONFIGURATION_ERROR,
        )
    missing = [key for key in USER_PARAMETER_KEYS if not isinstance(parameters.get(key), str)]
    if missing:
        raise MergeFailed(
            f"The action's UserParameters lacks {', '.join(missing)}: set it to {example}.",
            CONFIGURATION_ERROR,
        )
    source, destination = parameters["source_branch"], parameters["destination_branch"]
    commit_id = parameters["commit_id"].strip().lower()
    if not COMMIT_ID_PATTERN.match(commit_id):
        raise MergeFailed(
            f"commit_id {parameters['commit_id'][:80]!r} is not a full 40-hex commit id: pass "
            "the source action's #{SourceVariables.CommitId}.",
            CONFIGURATION_ERROR,
        )
    for key, branch in (("source_branch", source), ("destination_branch", destination)):
        if not BRANCH_PATTERN.match(branch):
            raise MergeFailed(
                f"{key} {branch[:80]!r} is not a valid branch name.", CONFIGURATION_ERROR
            )
    if source == destination:
        raise MergeFailed(
            f"source_branch and destination_branch are both {source!r}: they must differ.",
            CONFIGURATION_ERROR,
        )
    mode = parameters.get("mode", "merge")
    if mode not in MODES:
        raise MergeFailed(
            f"The action's UserParameters mode {str(mode)[:40]!r} is not one of "
            f"{', '.join(MODES)}.",
            CONFIGURATION_ERROR,
        )
    strategy = environ.get(MERGE_STRATEGY_ENV, "").strip() or FAST_FORWARD
    if strategy not in MERGE_STRATEGIES:
        raise MergeFailed(
            f"{MERGE_STRATEGY_ENV}={strategy[:40]!r} is not one of {', '.join(MERGE_STRATEGIES)}.",
            CONFIGURATION_ERROR,
        )
    return MergeRequest(source, destination, commit_id, strategy, check_only=mode == "check")


def report_success(job_id: str, result: MergeResult, deadline: float) -> None:
    """Tell CodePipeline the action succeeded."""
    report_summary(job_id, result.summary, result.head_commit_id, deadline)


def report_summary(job_id: str, summary: str, external_id: str, deadline: float) -> None:
    """Tell CodePipeline the action succeeded, with a summary under the API limit."""
    _report(
        "put_job_success_result",
        deadline,
        jobId=job_id,
        executionDetails={
            "summary": truncate_utf8(summary, SUMMARY_MAX_BYTES),
            "externalExecutionId": external_id,
            "percentComplete": 100,
        },
    )


def report_failure(job_id: str, failure: MergeFailed, deadline: float) -> None:
    """Tell CodePipeline the action failed, with a message under the API limit."""
    _report(
        "put_job_failure_result",
        deadline,
        jobId=job_id,
        failureDetails={
            "type": failure.failure_type,
            "message": truncate_utf8(failure.message, FAILURE_MESSAGE_MAX_BYTES),
        },
    )


def _report(operation: str, deadline: float, **params: Any) -> None:
    codepipeline = aws_client("codepipeline")
    try:
        # Never past the Lambda timeout; a retried report that was in fact recorded comes
        # back as InvalidJobStateException, handled below.
        report_deadline = deadline + REPORT_RESERVE_SECONDS
        call_aws(getattr(codepipeline, operation), deadline=report_deadline, **params)
    except ClientError as error:
        if aws_error_code(error) == "InvalidJobStateException":
            log("WARNING", "job already has a result; nothing more reported", operation=operation)
            return
        log("ERROR", "could not report the job result", operation=operation, error=str(error))
        raise
    except HTTPClientError as error:
        log("ERROR", "could not report the job result", operation=operation, error=str(error))
        raise


def deadline_of(context: Any) -> float:
    """time.monotonic() by which the merge must be done, leaving time to report."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    budget = remaining_ms() / 1000 if callable(remaining_ms) else DEFAULT_BUDGET_SECONDS
    return time.monotonic() + max(1.0, budget - REPORT_RESERVE_SECONDS)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Lambda entry point: merge, then report exactly one job result to CodePipeline."""
    started = time.monotonic()
    bind_log_context(
        aws_request_id=getattr(context, "aws_request_id", None), provider=provider.__name__
    )
    try:
        job_id = job_id_of(event)
    except MalformedEventError as error:
        keys = sorted(event) if isinstance(event, dict) else type(event).__name__
        log("ERROR", "malformed event rejected", error=str(error), event_keys=keys)
        raise
    add_log_context(job_id=job_id)
    deadline = deadline_of(context)

    try:
        request = merge_request_of(event, dict(os.environ))
        add_log_context(
            source_branch=request.source_branch,
            destination_branch=request.destination_branch,
            commit_id=request.commit_id,
            strategy=request.strategy,
            mode="check" if request.check_only else "merge",
        )
        log("INFO", "merge started")
        result = provider.merge(request, dict(os.environ), aws_client, deadline)
    except MergeFailed as failure:
        outcome, failed = "failed", failure
    except Exception as error:
        # Reported rather than raised: an escaped exception leaves the action hanging until
        # its timeout. The message names the type only.
        # The type only: an error's text can quote a request, with its headers and token.
        log("ERROR", "unexpected error", error_type=type(error).__name__)
        outcome = "failed"
        failed = MergeFailed(
            f"Unexpected {type(error).__name__} while merging: see the function's log for "
            f"job {job_id}.",
            JOB_FAILED,
        )
    else:
        outcome, failed = result.outcome, None

    duration_ms = round((time.monotonic() - started) * 1000)
    if failed is None:
        log(
            "INFO",
            "merge done",
            outcome=outcome,
            head=result.head_commit_id,
            duration_ms=duration_ms,
        )
        report_success(job_id, result, deadline)
        return {"jobId": job_id, "outcome": outcome, "headCommitId": result.head_commit_id}
    log(
        "ERROR",
        "merge failed",
        outcome=outcome,
        failure_type=failed.failure_type,
        reason=failed.message,
        duration_ms=duration_ms,
    )
    report_failure(job_id, failed, deadline)
    return {"jobId": job_id, "outcome": outcome, "failureType": failed.failure_type}
