"""What the handler and the source provider share: the request, failures, JSON logs, retries."""

import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError

FAST_FORWARD = "fast-forward"
THREE_WAY = "three-way"
MERGE_STRATEGIES = (FAST_FORWARD, THREE_WAY)

# Outcomes written to the logs and the CodePipeline execution summary.
ALREADY_MERGED = "already-merged"
FAST_FORWARDED = "fast-forwarded"
MERGED = "merged"
# Outcomes of a check (UserParameters "mode": "check"), which writes nothing.
DESCENDS = "descends-from-production"

# CodePipeline FailureDetails types: the console shows them next to the message.
JOB_FAILED = "JobFailed"
CONFIGURATION_ERROR = "ConfigurationError"
PERMISSION_ERROR = "PermissionError"
SYSTEM_UNAVAILABLE = "SystemUnavailable"

# Error codes AWS returns when a request was refused before doing anything, so a retry is safe
# even for a write.
THROTTLING_ERROR_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "SlowDown",
    }
)
MAX_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0

# Replaced by the tests so that retries take no time.
sleep = time.sleep

_log_context: dict[str, Any] = {}


class MergeFailed(Exception):
    """The merge cannot be done; the message says why and how to fix it."""

    def __init__(self, message: str, failure_type: str = JOB_FAILED) -> None:
        super().__init__(message)
        self.message = message
        self.failure_type = failure_type


@dataclass(frozen=True)
class MergeRequest:
    """Move destination_branch to commit_id (the deployed commit of source_branch)."""

    source_branch: str
    destination_branch: str
    commit_id: str
    strategy: str = FAST_FORWARD
    # Check only: may this commit be deployed (see stale_commit)? Nothing is written.
    check_only: bool = False


@dataclass(frozen=True)
class MergeResult:
    """What the provider did: the outcome, the destination head now, and a one-line summary."""

    outcome: str
    head_commit_id: str
    summary: str


@dataclass(frozen=True)
class PullRequest:
    """An open pull request into the dev branch, as the pull-request check sees it."""

    number: str
    head_commit_id: str
    # The other repository it comes from, None when it comes from this one.
    fork_of: str | None = None
    # What a host needs to comment on it again (CodeCommit: the revision and commits).
    details: tuple[tuple[str, str], ...] = ()


def stale_commit(request: "MergeRequest", destination_head: str) -> MergeFailed:
    """The refusal of a commit the destination branch (production) already contains."""
    branch, source = request.destination_branch, request.source_branch
    return MergeFailed(
        f"Commit {short(request.commit_id)} is older than production: {branch} "
        f"({short(destination_head)}, what production runs) already contains it, so its model "
        f"package is refused and nothing was deployed. To roll back, revert on {source} "
        f"(git revert <commits>, then push): the build pipeline rebuilds the revert (cached "
        "steps make it fast) and its approved package deploys like any change."
    )


def check_result(request: "MergeRequest", destination_head: str) -> "MergeResult":
    """A passed check: the commit is production's commit or descends from it."""
    return MergeResult(
        DESCENDS,
        destination_head,
        f"{short(request.commit_id)} is {request.destination_branch} "
        f"({short(destination_head)}) or descends from it: it may be deployed.",
    )


def settled_by_ancestry(
    request: "MergeRequest", head: str, status: str, behind_by: Any = "some"
) -> "MergeResult | None":
    """What the ancestry alone decides, before anything is written: a check's answer, a
    branch that already contains the commit, or the refusal of a diverged fast-forward;
    None when the branch must move.

    status compares the destination head with the deployed commit as git hosts do:
    identical, ahead (the commit descends from head), behind (head contains the commit) or
    diverged; behind_by is how many commits of head the deployed commit lacks.
    """
    branch, commit_id, source = request.destination_branch, request.commit_id, request.source_branch
    if request.check_only:
        if status == "behind":
            raise stale_commit(request, head)
        if status in ("identical", "ahead") or request.strategy == THREE_WAY:
            return check_result(request, head)
    if status == "identical":
        return MergeResult(ALREADY_MERGED, commit_id, f"{branch} already at {short(commit_id)}.")
    if status == "behind":
        return MergeResult(
            ALREADY_MERGED, head, f"{branch} ({short(head)}) already contains {short(commit_id)}."
        )
    if status == "diverged" and request.strategy != THREE_WAY:
        raise MergeFailed(
            f"{branch} ({short(head)}) has {behind_by} commit(s) that the deployed {source} "
            f"commit {short(commit_id)} does not contain, so it cannot be fast-forwarded; "
            f"nothing was written. Merge {branch} into {source} with git, push, and let the "
            "pipeline deploy that commit (or set MERGE_STRATEGY=three-way to accept merge "
            "commits)."
        )
    return None


def result_after_merge(
    request: "MergeRequest",
    head_before: str,
    head_after: str,
    merge_commit: str | None,
    through: str,
    setting: str,
) -> "MergeResult":
    """The result of a merge through a host's merge or pull request (`through`, e.g.
    "merge request !3"), from the destination head read again after it: the deployed
    commit (a fast-forward), or with the three-way strategy a merge commit. A fast-forward
    that left the branch elsewhere fails, naming the host setting to check."""
    branch, commit_id = request.destination_branch, request.commit_id
    if head_after == commit_id:
        return MergeResult(
            FAST_FORWARDED,
            commit_id,
            f"{branch} fast-forwarded from {short(head_before)} to {short(commit_id)} ({through}).",
        )
    if request.strategy == FAST_FORWARD:
        raise MergeFailed(
            f"The host merged {through} but {branch} is at {short(head_after)}, not the "
            f"deployed commit {short(commit_id)}: check {setting}."
        )
    new_head = merge_commit or head_after
    summary = f"{short(commit_id)} merged into {branch} as {short(new_head)} ({through})."
    return MergeResult(MERGED, new_head, summary)


def short(commit_id: str) -> str:
    """The abbreviated commit id people see in git log."""
    return commit_id[:7]


def bind_log_context(**fields: Any) -> None:
    """Start a new invocation's log context (fields added to every following log line)."""
    _log_context.clear()
    _log_context.update(fields)


def add_log_context(**fields: Any) -> None:
    """Add fields to every following log line of this invocation."""
    _log_context.update(fields)


def log(level: str, message: str, **fields: Any) -> None:
    """Write one JSON log line to stdout (CloudWatch keeps one event per line)."""
    record = {"level": level, "message": message, **_log_context, **fields}
    record = {key: value for key, value in record.items() if value is not None}
    sys.stdout.write(json.dumps(record, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut text so that its UTF-8 encoding fits in max_bytes, marking the cut."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    marker = " [truncated]"
    kept = encoded[: max_bytes - len(marker.encode("utf-8"))]
    return kept.decode("utf-8", errors="ignore") + marker


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (exponential, full jitter)."""
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def aws_error_code(error: ClientError) -> str:
    """The AWS error code of a ClientError (e.g. "BranchDoesNotExistException")."""
    return str(error.response.get("Error", {}).get("Code", ""))


def _is_retryable(error: Exception, idempotent: bool) -> bool:
    if isinstance(error, ClientError):
        if aws_error_code(error) in THROTTLING_ERROR_CODES:
            return True
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return idempotent and status >= 500
    # A network error may hide a request that AWS did carry out: only reads are repeated.
    return idempotent and isinstance(error, HTTPClientError)


def call_aws(
    operation: Callable[..., dict[str, Any]],
    *,
    deadline: float,
    idempotent: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Call one boto3 client method, retrying throttling (and, when idempotent, 5xx and
    network errors) a bounded number of times, never past the deadline (time.monotonic)."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return operation(**params)
        except (ClientError, HTTPClientError) as error:
            delay = backoff_delay(attempt)
            if (
                attempt == MAX_ATTEMPTS
                or not _is_retryable(error, idempotent)
                or time.monotonic() + delay > deadline
            ):
                raise
            log(
                "WARNING",
                "AWS call failed, retrying",
                operation=getattr(operation, "__name__", "?"),
                error=aws_error_code(error) if isinstance(error, ClientError) else str(error),
                attempt=attempt,
                delay_s=round(delay, 2),
            )
            sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


def aws_failure(error: ClientError | HTTPClientError, action: str, resource: str) -> MergeFailed:
    """A MergeFailed for an AWS error no provider-specific rule explained.

    action is the IAM action (e.g. "codecommit:GetBranch"), resource what it was called on.
    """
    if isinstance(error, HTTPClientError):
        return MergeFailed(
            f"Could not reach AWS for {action} on {resource} ({error}): rerun the action.",
            SYSTEM_UNAVAILABLE,
        )
    code = aws_error_code(error)
    detail = error.response.get("Error", {}).get("Message", "")
    if code in ("AccessDeniedException", "AccessDenied", "UnauthorizedOperation"):
        return MergeFailed(
            f"The function's role may not call {action} on {resource}: "
            f"add that action for that resource to the role's policy ({detail}).",
            PERMISSION_ERROR,
        )
    if code in THROTTLING_ERROR_CODES:
        return MergeFailed(
            f"AWS kept throttling {action} on {resource} after {MAX_ATTEMPTS} attempts: "
            "rerun the action in a few minutes.",
            SYSTEM_UNAVAILABLE,
        )
    return MergeFailed(f"{action} on {resource} failed ({code}: {detail}).")
