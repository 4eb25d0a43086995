"""Pull requests into the dev branch, and the check pipeline they start.

moto has no CodeCommit pull requests, comments or approvals, and the git hosts' stand-ins
held only the merge function's own pull requests: the pull requests this stage opens live
in a PullRequestStore, which the CodeCommit fake (merge.py, answering in botocore's shapes)
and the GitHub, GitLab and Bitbucket stand-ins (answering requests checked against
tests/contracts/<host>.json) read and write.

How a pull request starts the check is read from the deploy template: on CodeCommit, the
pull-request rule's pattern must match CodeCommit's "Pull Request State Change" event
(shape: the CodeCommit User Guide's pullRequestCreated and pullRequestSourceBranchUpdated
examples), and its inline starter function must start the check pipeline at the event's
source commit; on a git host, the check pipeline's PullRequest trigger (CodePipeline's
GitPullRequestFilter: events OPEN, UPDATED, CLOSED; branches, the destination's) must
match the pull request, which then starts at its source commit.
"""

import fnmatch
import uuid
from dataclasses import dataclass, field
from typing import Any

from .actions import CHECK_PIPELINE, pipeline_resource
from .cloudformation import Stack, resources_of_type

PULL_REQUEST_EVENT = "CodeCommit Pull Request State Change"
EVENTS = {"OPEN": "pullRequestCreated", "UPDATED": "pullRequestSourceBranchUpdated"}


@dataclass
class OpenPullRequest:
    """One pull request: its branches and head, and what the check wrote on it."""

    number: int
    title: str
    source_branch: str
    destination_branch: str
    head: str
    destination_commit: str
    # The repository it comes from when that is not this one.
    fork_of: str | None = None
    state: str = "open"
    revision: str = field(default_factory=lambda: uuid.uuid4().hex)
    comments: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[dict[str, str]] = field(default_factory=list)

    def status_of(self, commit: str) -> dict[str, Any] | None:
        """The last status set on a commit."""
        found = [status for status in self.statuses if status["commit"] == commit]
        return found[-1] if found else None


class PullRequestStore:
    """The rehearsal's pull requests, shared by every host stand-in of a rehearsal."""

    def __init__(self) -> None:
        self.items: list[OpenPullRequest] = []
        self._comment_ids = 1000

    def open(self, title: str, source: str, destination: str, head: str, base: str, fork_of=None):
        """Open a pull request; it."""
        item = OpenPullRequest(len(self.items) + 1, title, source, destination, head, base, fork_of)
        self.items.append(item)
        return item

    @staticmethod
    def push(item: OpenPullRequest, head: str) -> None:
        """A new commit on the source branch: a new head and (CodeCommit) a new revision."""
        item.head = head
        item.revision = uuid.uuid4().hex

    def get(self, number: Any) -> OpenPullRequest | None:
        """The pull request of a number (as text or int)."""
        return next((item for item in self.items if str(item.number) == str(number)), None)

    def with_head(self, commit: str) -> list[OpenPullRequest]:
        """The pull requests whose head is the commit."""
        return [item for item in self.items if item.head == commit]

    def add_comment(self, item: OpenPullRequest, body: str) -> dict[str, Any]:
        """A new comment on the pull request."""
        self._comment_ids += 1
        comment = {"id": self._comment_ids, "body": body}
        item.comments.append(comment)
        return comment

    def comment(self, comment_id: Any) -> tuple[OpenPullRequest, dict[str, Any]] | None:
        """(pull request, comment) of a comment id."""
        for item in self.items:
            for comment in item.comments:
                if str(comment["id"]) == str(comment_id):
                    return item, comment
        return None


def codecommit_event(
    item: OpenPullRequest, kind: str, repository_arn: str, region: str, account: str
) -> dict[str, Any]:
    """The EventBridge event CodeCommit sends for a pull request opened or updated."""
    name = repository_arn.rsplit(":", 1)[-1]
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": PULL_REQUEST_EVENT,
        "source": "aws.codecommit",
        "account": account,
        "time": "2026-01-01T00:00:00Z",
        "region": region,
        "resources": [repository_arn],
        "detail": {
            "callerUserArn": f"arn:aws:sts::{account}:assumed-role/developer/rehearsal",
            "destinationCommit": item.destination_commit,
            "destinationReference": f"refs/heads/{item.destination_branch}",
            "event": EVENTS[kind],
            "isMerged": "False",
            "pullRequestId": str(item.number),
            "pullRequestStatus": "Open",
            "repositoryNames": [name],
            "revisionId": item.revision,
            "sourceCommit": item.head,
            "sourceReference": f"refs/heads/{item.source_branch}",
            "title": item.title,
        },
    }


def pull_request_rule(stack: Stack) -> str:
    """The logical id of the rule on CodeCommit's pull-request events."""
    for logical_id, rule in resources_of_type(stack.template, "AWS::Events::Rule").items():
        pattern = stack.resolve(rule["Properties"].get("EventPattern", {}))
        if PULL_REQUEST_EVENT in pattern.get("detail-type", []):
            return logical_id
    raise ValueError(f"{stack.name}: no EventBridge rule on {PULL_REQUEST_EVENT!r} events")


def trigger_matches(stack: Stack, kind: str, destination: str) -> str | None:
    """Why the check pipeline's PullRequest trigger would not start on this pull request
    (None: it starts)."""
    _, resource = pipeline_resource(stack, CHECK_PIPELINE)
    triggers = stack.resolve(resource["Properties"]).get("Triggers", [])
    filters = [
        item
        for trigger in triggers
        if trigger.get("ProviderType") == "CodeStarSourceConnection"
        for item in trigger.get("GitConfiguration", {}).get("PullRequest", [])
    ]
    if not filters:
        return "the check pipeline has no PullRequest trigger"
    for item in filters:
        events = item.get("Events", ["OPEN", "UPDATED", "CLOSED"])
        branches = item.get("Branches", {})
        included = any(fnmatch.fnmatchcase(destination, p) for p in branches.get("Includes", ["*"]))
        excluded = any(fnmatch.fnmatchcase(destination, p) for p in branches.get("Excludes", []))
        if kind in events and included and not excluded:
            return None
    return f"no PullRequest trigger filter takes a {kind} pull request into {destination}"
