"""Runs a CodePipeline Lambda action's handler in this process, with its AWS clients stubbed.

Every AWS client the handler asks boto3 for is a real botocore client wrapped in a botocore
Stubber: each request is validated against the service model, and its answer comes from a
fake service (CodeCommit answered from the local git repository, Secrets Manager from the
token the rehearsal stored, CodePipeline recording the job result). Nothing is written to
git: a fast-forward is recorded, not made.
"""

import contextlib
import importlib.util
import io
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore import xform_name
from botocore.stub import Stubber

from .source import GitRepository

JOB_RESULT_OPERATIONS = ("PutJobSuccessResult", "PutJobFailureResult")
# Services a function reaches in moto itself rather than through a fake.
MOTO_SERVICES = frozenset({"s3"})
STUB_CREDENTIALS = {"aws_access_key_id": "rehearsal", "aws_secret_access_key": "rehearsal"}


class ServiceError(Exception):
    """An AWS error a fake service answers with."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


Answer = Callable[[str, dict[str, Any]], dict[str, Any]]


class StubbedClient:
    """A botocore client whose answers a fake service computes, request by request.

    The answer is queued on the client's Stubber just before the request is built, so the
    Stubber still validates the request against the service model and the answer against
    the response shape.
    """

    def __init__(
        self, session: botocore.session.Session, service: str, region: str, answer: Answer
    ):
        self.client = session.create_client(service, region_name=region, **STUB_CREDENTIALS)
        self.stubber = Stubber(self.client)
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.client.meta.events.register(
            f"provide-client-params.{self.client.meta.service_model.service_id.hyphenize()}",
            self._queue_answer,
        )
        self.stubber.activate()

    def _queue_answer(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))
        method = xform_name(model.name)
        try:
            response = self.answer(model.name, params)
        except ServiceError as error:
            self.stubber.add_client_error(
                method, error.code, error.message, error.status, expected_params=None
            )
            return
        self.stubber.add_response(method, response, expected_params=None)


# ---------------------------------------------------------------------------- fake services


@dataclass
class CodePipelineJobs:
    """CodePipeline's job-result API: records what the action reports. It also answers
    GetPipelineExecution for the executions it is given (execution id -> their commit and
    pipeline variables)."""

    results: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    executions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation == "GetPipelineExecution":
            execution = self.executions.get(params["pipelineExecutionId"])
            if execution is None:
                raise ServiceError(
                    "PipelineExecutionNotFoundException", params["pipelineExecutionId"]
                )
            return {
                "pipelineExecution": {
                    "pipelineName": params["pipelineName"],
                    "pipelineExecutionId": params["pipelineExecutionId"],
                    "status": "Failed",
                    "artifactRevisions": [
                        {"name": "SourceOutput", "revisionId": execution["commit"]}
                    ],
                    "variables": [
                        {"name": name, "resolvedValue": value}
                        for name, value in execution.get("variables", {}).items()
                    ],
                }
            }
        if operation not in JOB_RESULT_OPERATIONS:
            raise ServiceError("InvalidActionDeclarationException", f"{operation} is not played")
        self.results.append((operation, params))
        return {}


@dataclass
class GitCodeCommit:
    """The CodeCommit calls of a branch merge, answered from a local git repository."""

    git: GitRepository
    repository_name: str
    moved: dict[str, str] = field(default_factory=dict)
    # The rehearsal's pull requests (pull_requests.PullRequestStore), for the check's calls.
    pull_requests: Any = None
    # The role the calls are made as: the author of its comments and approvals.
    caller_arn: str = ""

    def head(self, branch: str) -> str | None:
        """A branch's head, with the moves made through this fake."""
        return self.moved.get(branch) or self.git.branch_head(branch)

    def commit(self, specifier: str) -> str:
        """A commit id or branch name as a commit id (CommitDoesNotExistException if none)."""
        commit = self.moved.get(specifier) or self.git.resolve(specifier)
        if commit is None:
            raise ServiceError("CommitDoesNotExistException", f"{specifier} does not exist")
        return commit

    def __call__(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation in PULL_REQUEST_OPERATIONS:
            return self._pull_request_call(operation, params)
        if params.get("repositoryName") != self.repository_name:
            raise ServiceError(
                "RepositoryDoesNotExistException", f"{params.get('repositoryName')} does not exist"
            )
        if operation == "GetBranch":
            head = self.head(params["branchName"])
            if head is None:
                raise ServiceError(
                    "BranchDoesNotExistException", f"{params['branchName']} does not exist"
                )
            return {"branch": {"branchName": params["branchName"], "commitId": head}}
        if operation == "GetMergeOptions":
            source = self.commit(params["sourceCommitSpecifier"])
            destination = self.commit(params["destinationCommitSpecifier"])
            base = self.git.merge_base(source, destination) or ""
            options = ["SQUASH_MERGE", "THREE_WAY_MERGE"]
            if base == destination:
                options.insert(0, "FAST_FORWARD_MERGE")
            return {
                "mergeOptions": options,
                "sourceCommitId": source,
                "destinationCommitId": destination,
                "baseCommitId": base,
            }
        if operation == "MergeBranchesByFastForward":
            source = self.commit(params["sourceCommitSpecifier"])
            destination = self.commit(params["destinationCommitSpecifier"])
            branch = params.get("targetBranch") or params["destinationCommitSpecifier"]
            if self.head(branch) != destination:
                raise ServiceError("ConcurrentReferenceUpdateException", f"{branch} moved")
            if not self.git.is_ancestor(destination, source):
                raise ServiceError("ManualMergeRequiredException", "not a fast-forward")
            self.moved[branch] = source
            return {"commitId": source, "treeId": self.git.tree(source)}
        raise ServiceError(
            "InvalidOperationException", f"codecommit:{operation} is not played by the rehearsal"
        )

    def _pull_request(self, params: dict[str, Any]) -> Any:
        item = self.pull_requests.get(params["pullRequestId"]) if self.pull_requests else None
        if item is None:
            raise ServiceError(
                "PullRequestDoesNotExistException", f"pull request {params['pullRequestId']}"
            )
        if params.get("repositoryName", self.repository_name) != self.repository_name:
            raise ServiceError("RepositoryNotAssociatedWithPullRequestException", "another one")
        return item

    def _comment(self, item: Any, comment: dict[str, Any]) -> dict[str, Any]:
        return {
            "commentId": str(comment["id"]),
            "content": comment["body"],
            "authorArn": comment.get("author", self.caller_arn),
            "deleted": False,
        }

    def _pull_request_call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        """The pull-request calls of the check, on the rehearsal's pull requests."""
        if operation == "UpdateComment":
            found = self.pull_requests.comment(params["commentId"]) if self.pull_requests else None
            if found is None:
                raise ServiceError("CommentDoesNotExistException", params["commentId"])
            item, comment = found
            if comment.get("author", self.caller_arn) != self.caller_arn:
                raise ServiceError("CommentNotCreatedByCallerException", params["commentId"])
            comment["body"] = params["content"]
            return {"comment": self._comment(item, comment)}
        item = self._pull_request(params)
        if operation == "GetPullRequest":
            return {
                "pullRequest": {
                    "pullRequestId": str(item.number),
                    "title": item.title,
                    "pullRequestStatus": "OPEN" if item.state == "open" else "CLOSED",
                    "revisionId": item.revision,
                    "pullRequestTargets": [
                        {
                            "repositoryName": self.repository_name,
                            "sourceReference": f"refs/heads/{item.source_branch}",
                            "destinationReference": f"refs/heads/{item.destination_branch}",
                            "sourceCommit": item.head,
                            "destinationCommit": item.destination_commit,
                        }
                    ],
                }
            }
        if operation == "GetCommentsForPullRequest":
            # The service model: beforeCommitId must be given when repositoryName is.
            if "repositoryName" in params and not params.get("beforeCommitId"):
                raise ServiceError(
                    "CommitIdRequiredException", "beforeCommitId is required with repositoryName"
                )
            return {
                "commentsForPullRequestData": [
                    {
                        "pullRequestId": str(item.number),
                        "repositoryName": self.repository_name,
                        "beforeCommitId": item.destination_commit,
                        "afterCommitId": item.head,
                        "comments": [self._comment(item, c) for c in item.comments],
                    }
                ]
                if item.comments
                else []
            }
        if operation == "PostCommentForPullRequest":
            if params["afterCommitId"] != item.head:
                raise ServiceError("CommitDoesNotExistException", "not the source's head")
            comment = self.pull_requests.add_comment(item, params["content"])
            comment["author"] = self.caller_arn
            return {
                "repositoryName": self.repository_name,
                "pullRequestId": str(item.number),
                "beforeCommitId": params["beforeCommitId"],
                "afterCommitId": params["afterCommitId"],
                "comment": self._comment(item, comment),
            }
        if params["revisionId"] != item.revision:
            raise ServiceError("RevisionNotCurrentException", "the pull request has moved on")
        if operation == "GetPullRequestApprovalStates":
            return {
                "approvals": [
                    {"userArn": approval["user"], "approvalState": "APPROVE"}
                    for approval in item.approvals
                    if approval["revision"] == item.revision
                ]
            }
        # UpdatePullRequestApprovalState: the caller's own approval, given or taken back.
        user = assumed_role_arn(self.caller_arn)
        item.approvals = [a for a in item.approvals if a["user"] != user]
        if params["approvalState"] == "APPROVE":
            item.approvals.append({"revision": item.revision, "user": user})
        return {}


PULL_REQUEST_OPERATIONS = frozenset(
    {
        "GetPullRequest",
        "GetCommentsForPullRequest",
        "PostCommentForPullRequest",
        "UpdateComment",
        "GetPullRequestApprovalStates",
        "UpdatePullRequestApprovalState",
    }
)


def assumed_role_arn(role_arn: str, session: str = "rehearsal") -> str:
    """The ARN a role's session acts as (what sts:GetCallerIdentity returns for it)."""
    account, name = role_arn.split(":")[4], role_arn.rsplit("/", 1)[-1]
    return f"arn:aws:sts::{account}:assumed-role/{name}/{session}"


@dataclass
class CallerIdentity:
    """STS answering GetCallerIdentity for the role a function runs as."""

    role_arn: str

    def __call__(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation != "GetCallerIdentity":
            raise ServiceError("InvalidAction", f"sts:{operation} is not played")
        return {
            "UserId": "AROAREHEARSAL:rehearsal",
            "Account": self.role_arn.split(":")[4],
            "Arn": assumed_role_arn(self.role_arn),
        }


@dataclass
class StoredSecret:
    """Secrets Manager holding one secret."""

    arn: str
    value: str

    def __call__(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if operation != "GetSecretValue":
            raise ServiceError("InvalidRequestException", f"{operation} is not played")
        if params["SecretId"] != self.arn:
            raise ServiceError("ResourceNotFoundException", f"no secret {params['SecretId']}")
        return {
            "ARN": self.arn,
            "Name": self.arn.split(":")[-1],
            "VersionId": str(uuid.uuid4()),
            "SecretString": self.value,
            "VersionStages": ["AWSCURRENT"],
            "CreatedDate": datetime.now(UTC),
        }


# ---------------------------------------------------------------------------- invoking


@dataclass
class InvokeResult:
    """What the action reported, and what its AWS clients were asked."""

    job_results: list[tuple[str, dict[str, Any]]]
    calls: list[str]
    log_text: str
    # Where the rehearsal wrote the invocation's log (set by the action player).
    log_path: Path | None = None

    @property
    def succeeded(self) -> bool:
        """One job result, a success."""
        return len(self.job_results) == 1 and self.job_results[0][0] == "PutJobSuccessResult"

    @property
    def message(self) -> str:
        """The success summary or the failure message."""
        if len(self.job_results) != 1:
            return f"reported {len(self.job_results)} job results instead of exactly one"
        operation, params = self.job_results[0]
        if operation == "PutJobSuccessResult":
            return params.get("executionDetails", {}).get("summary", "success")
        return params.get("failureDetails", {}).get("message", "failure")


class LambdaContext:
    """The Lambda context object a handler reads."""

    def __init__(self, function_name: str, timeout_seconds: int) -> None:
        self.function_name = function_name
        self.aws_request_id = str(uuid.uuid4())
        self._deadline_ms = timeout_seconds * 1000

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left (the function's whole timeout: nothing waits here)."""
        return self._deadline_ms


def codepipeline_job_event(
    job_id: str, account_id: str, function_name: str, user_parameters: str
) -> dict[str, Any]:
    """The event a CodePipeline Invoke (Lambda) action sends."""
    return {
        "CodePipeline.job": {
            "id": job_id,
            "accountId": account_id,
            "data": {
                "actionConfiguration": {
                    "configuration": {
                        "FunctionName": function_name,
                        "UserParameters": user_parameters,
                    }
                },
                "inputArtifacts": [],
                "outputArtifacts": [],
            },
        }
    }


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _stubbed_boto3(clients: Mapping[str, StubbedClient]) -> Iterator[None]:
    """boto3.client(service) returns the stubbed client; S3 is moto's (the rehearsal's
    process points there, and its calls are recorded as the function's); any other
    service is refused."""
    original = boto3.client

    def client(service_name: str, *args: Any, **kwargs: Any) -> Any:
        """The stubbed client of a service the fakes play."""
        if service_name in MOTO_SERVICES:
            return original(service_name, *args, **kwargs)
        if service_name not in clients:
            raise RuntimeError(
                f"the function asked for a {service_name} client, which the rehearsal does not stub"
            )
        return clients[service_name].client

    boto3.client = client  # type: ignore[assignment]
    try:
        yield
    finally:
        boto3.client = original  # type: ignore[assignment]


@contextlib.contextmanager
def _function_code(code_dir: Path, module_name: str) -> Iterator[Any]:
    """Import the handler module from code_dir (as Lambda does from the zip's root); the
    modules it imports from there are forgotten afterwards."""
    before = set(sys.modules)
    sys.path.insert(0, str(code_dir))
    try:
        spec = importlib.util.spec_from_file_location(
            f"rehearsal_{module_name}", code_dir / f"{module_name}.py"
        )
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"{code_dir / module_name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(code_dir))
        for name in set(sys.modules) - before:
            source = getattr(sys.modules[name], "__file__", None) or ""
            if source.startswith(str(code_dir)) or name == f"rehearsal_{module_name}":
                del sys.modules[name]


def invoke_pipeline_lambda(
    code_dir: Path,
    handler: str,
    environment: Mapping[str, str],
    event: dict[str, Any],
    context: LambdaContext,
    services: Mapping[str, Answer],
    region: str,
    jobs: CodePipelineJobs,
) -> InvokeResult:
    """Run the handler (module.function under code_dir) on the event; what it reported.

    services maps a boto3 service name to its fake (codepipeline is added, answered by jobs).
    """
    module_name, _, function_name = handler.rpartition(".")
    session = botocore.session.get_session()
    clients = {
        service: StubbedClient(session, service, region, answer)
        for service, answer in {**services, "codepipeline": jobs}.items()
    }
    output = io.StringIO()
    with (
        _environment(environment),
        _stubbed_boto3(clients),
        contextlib.redirect_stdout(output),
        _function_code(code_dir, module_name) as module,
    ):
        try:
            getattr(module, function_name)(event, context)
        except Exception as error:
            output.write(
                json.dumps({"rehearsal": "the handler raised", "error": repr(error)}) + "\n"
            )
    calls = [
        f"{service}:{operation}"
        for service, stubbed in clients.items()
        for operation, _ in stubbed.calls
    ]
    return InvokeResult(job_results=list(jobs.results), calls=calls, log_text=output.getvalue())
