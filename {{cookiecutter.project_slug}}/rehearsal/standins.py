"""Local HTTP stand-ins for what moto does not play, each on a free 127.0.0.1 port:

- the CodeBuild container credentials endpoint (builds get credentials the way CodeBuild gives
  them, through AWS_CONTAINER_CREDENTIALS_FULL_URI, not through AWS_ACCESS_KEY_ID);
- the SageMaker runtime (InvokeEndpoint): moto's endpoints do not serve, so each request is
  answered by the project's local inference server serving the model artifact of the model
  package behind that endpoint in moto;
- the GitHub REST API calls the merge function makes, answered from the local git repository
  (a branch move is recorded, never written); GitLab's and Bitbucket's are in git_hosts.
"""

import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .accounts import issued_to
from .source import GitRepository

LOOPBACK = "127.0.0.1"
SERVER_START_SECONDS = 60.0
SERVER_START_ATTEMPTS = 2
SERVER_POLL_SECONDS = 0.1
INVOKE_TIMEOUT_SECONDS = 60.0
CREDENTIAL_LIFETIME = timedelta(hours=6)
INVOCATIONS_PATH = re.compile(r"^/endpoints/([^/]+)/invocations$")
SIGNATURE_CREDENTIAL = re.compile(r"Credential=([^/]+)/")
GITHUB_REPOSITORY_PATH = re.compile(r"^/repos/([^/]+/[^/]+)(/.*)$")


class StandInError(RuntimeError):
    """A stand-in could not start or serve; the message says what is wrong."""


class LocalHttpService:
    """A ThreadingHTTPServer on a free loopback port, in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self._server.daemon_threads = True
        self._server.service = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    @property
    def url(self) -> str:
        """http://127.0.0.1:<port>."""
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def start(self) -> "LocalHttpService":
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that writes no access log and answers JSON."""

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the rehearsal's output stays quiet."""

    @property
    def service(self) -> Any:
        """The LocalHttpService this handler serves."""
        return self.server.service  # type: ignore[attr-defined]

    def body(self) -> bytes:
        """The request body."""
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        """Send a complete response."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def answer_json(
        self, status: int, document: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Send a JSON response."""
        self.answer(status, json.dumps(document).encode(), "application/json", headers)


# ---------------------------------------------------------------------------- credentials


class ContainerCredentials(LocalHttpService):
    """What CodeBuild's container credentials endpoint answers, with rehearsal keys."""

    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str) -> None:
        self.document = {
            "AccessKeyId": access_key_id,
            "SecretAccessKey": secret_access_key,
            "Token": session_token,
            "Expiration": (datetime.now(UTC) + CREDENTIAL_LIFETIME).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        super().__init__(_CredentialsHandler)

    @property
    def full_uri(self) -> str:
        """The value of AWS_CONTAINER_CREDENTIALS_FULL_URI."""
        return f"{self.url}/credentials"


class _CredentialsHandler(QuietHandler):
    def do_GET(self) -> None:
        """Answer the credentials."""
        self.answer_json(HTTPStatus.OK, self.service.document)


# ---------------------------------------------------------------------------- runtime


class SageMakerRuntime(LocalHttpService):
    """InvokeEndpoint for the endpoints in moto, answered by the local inference server.

    Each request's endpoint is followed in moto to its model package (endpoint ->
    endpoint configuration -> model -> model package) and the package's model artifact is
    downloaded from moto's S3 and served by `python -m <cli> serve`: one server per
    artifact, started on first use. A request must be signed with the build's access key:
    a test that swapped the build's credentials for others fails here as it would in AWS.
    """

    def __init__(
        self,
        sagemaker: Any,
        s3: Any,
        access_key_id: str,
        serve_command: Callable[[Path, int], list[str]],
        serve_environment: dict[str, str],
        workdir: Path,
        log_path: Path,
        sagemaker_in: Callable[[str], Any] | None = None,
    ) -> None:
        self.sagemaker = sagemaker
        # A stage account's client: an endpoint invoked with credentials moto's STS issued
        # for a role of that account is that account's.
        self.sagemaker_in = sagemaker_in
        self.s3 = s3
        self.access_key_id = access_key_id
        self.serve_command = serve_command
        self.serve_environment = serve_environment
        self.workdir = workdir
        self.log_path = log_path
        self.invocations: dict[str, int] = {}
        # endpoint -> the stage account it was invoked in (absent: the default account).
        self.accounts: dict[str, str] = {}
        self._servers: dict[str, tuple[subprocess.Popen, str]] = {}
        self._lock = threading.Lock()
        super().__init__(_RuntimeHandler)

    def stop(self) -> None:
        """Stop serving and stop every local inference server started."""
        super().stop()
        for process, _ in self._servers.values():
            process.terminate()
        for process, _ in self._servers.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self._servers.clear()

    def count_invocation(self, endpoint_name: str, account_id: str | None = None) -> None:
        """Count one invocation of an endpoint (requests arrive on several threads)."""
        with self._lock:
            self.invocations[endpoint_name] = self.invocations.get(endpoint_name, 0) + 1
            if account_id is not None:
                self.accounts[endpoint_name] = account_id

    def served_model(
        self, endpoint_name: str, account_id: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """(variant name, DescribeModel answer) of the model an endpoint serves in moto (in
        account_id: None for the default account)."""
        sagemaker = self.sagemaker
        if account_id is not None and self.sagemaker_in is not None:
            sagemaker = self.sagemaker_in(account_id)
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        if endpoint["EndpointStatus"] != "InService":
            raise LookupError(f"Endpoint {endpoint_name} is {endpoint['EndpointStatus']}")
        endpoint_config = sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
        variant = endpoint_config["ProductionVariants"][0]
        return variant["VariantName"], sagemaker.describe_model(ModelName=variant["ModelName"])

    def artifact_url(self, model: dict[str, Any]) -> str:
        """The S3 URI of a model's artifact (its own, or its model package's, which the
        registry of the default account holds)."""
        container = model.get("PrimaryContainer") or model["Containers"][0]
        if container.get("ModelDataUrl"):
            return container["ModelDataUrl"]
        package = self.sagemaker.describe_model_package(
            ModelPackageName=container["ModelPackageName"]
        )
        return package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]

    def server_for(self, model_data_url: str) -> str:
        """The URL of a local inference server serving the artifact (started if needed)."""
        with self._lock:
            if model_data_url not in self._servers:
                archive = self._download(model_data_url)
                # A free port can be taken before the server binds it: then try another.
                for attempt in range(1, SERVER_START_ATTEMPTS + 1):
                    process, url = self._start_server(archive)
                    self._servers[model_data_url] = (process, url)
                    try:
                        _wait_for_ping(process, url)
                        break
                    except StandInError:
                        if attempt == SERVER_START_ATTEMPTS:
                            raise
                        process.kill()
                        process.wait()
            return self._servers[model_data_url][1]

    def _start_server(self, archive: Path) -> tuple[subprocess.Popen, str]:
        port = _free_port()
        with open(self.log_path, "a", encoding="utf-8") as log:
            process = subprocess.Popen(
                self.serve_command(archive, port),
                cwd=self.workdir,
                env=self.serve_environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return process, f"http://{LOOPBACK}:{port}"

    def _download(self, model_data_url: str) -> Path:
        parsed = urllib.parse.urlsplit(model_data_url)
        target = self.workdir / "models" / parsed.netloc / parsed.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.s3.download_file(parsed.netloc, parsed.path.lstrip("/"), str(target))
        return target


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _wait_for_ping(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StandInError(
                f"the local inference server exited with status {process.returncode}"
            )
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == HTTPStatus.OK:
                    return
        except OSError:
            time.sleep(SERVER_POLL_SECONDS)
    raise StandInError(
        f"the local inference server did not answer /ping within {SERVER_START_SECONDS:.0f} s"
    )


class _RuntimeHandler(QuietHandler):
    def do_POST(self) -> None:
        """InvokeEndpoint."""
        runtime: SageMakerRuntime = self.service
        body = self.body()
        match = INVOCATIONS_PATH.match(urllib.parse.urlsplit(self.path).path)
        if not match:
            self.error(
                HTTPStatus.NOT_FOUND, "UnknownOperationException", f"no operation {self.path}"
            )
            return
        endpoint_name = urllib.parse.unquote(match.group(1))
        signed_with = SIGNATURE_CREDENTIAL.search(self.headers.get("Authorization", ""))
        key = signed_with.group(1) if signed_with else "none"
        account_id = None
        if key != runtime.access_key_id:
            # Credentials a build's profile got from moto's STS for a stage account's role.
            issued = issued_to(key) if runtime.sagemaker_in is not None else None
            account_id = issued[0] if issued else None
        if key != runtime.access_key_id and account_id is None:
            self.error(
                HTTPStatus.FORBIDDEN,
                "UnrecognizedClientException",
                f"The security token included in the request is invalid (signed with access key"
                f" {key}, not the build's credentials: did the tests replace them?)",
            )
            return
        try:
            variant, model = runtime.served_model(endpoint_name, account_id)
            server_url = runtime.server_for(runtime.artifact_url(model))
        except (ClientError, LookupError) as error:
            message = (
                error.response["Error"]["Message"] if isinstance(error, ClientError) else str(error)
            )
            self.error(HTTPStatus.BAD_REQUEST, "ValidationError", message)
            return
        except (OSError, StandInError) as error:
            self.error(HTTPStatus.INTERNAL_SERVER_ERROR, "InternalFailure", str(error))
            return
        runtime.count_invocation(endpoint_name, account_id)
        request = urllib.request.Request(
            f"{server_url}/invocations",
            data=body,
            method="POST",
            headers={
                "Content-Type": self.headers.get("Content-Type", "application/octet-stream"),
                "Accept": self.headers.get("Accept", "*/*"),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=INVOKE_TIMEOUT_SECONDS) as response:
                self.answer(
                    HTTPStatus.OK,
                    response.read(),
                    response.headers.get("Content-Type", "application/octet-stream"),
                    {"x-Amzn-Invoked-Production-Variant": variant},
                )
        except urllib.error.HTTPError as error:
            # SageMaker reports a container's error status as a ModelError (424).
            original = error.read().decode("utf-8", errors="replace")
            kind = "client" if error.code < 500 else "server"
            self.answer_json(
                HTTPStatus.FAILED_DEPENDENCY,
                {
                    "ErrorCode": f"{kind.upper()}_ERROR_FROM_MODEL",
                    "Message": (
                        f"Received {kind} error ({error.code}) from primary with message"
                        f' "{original}"'
                    ),
                    "OriginalStatusCode": error.code,
                    "OriginalMessage": original,
                    "LogStreamArn": f"rehearsal:{endpoint_name}",
                },
                {"x-amzn-ErrorType": "ModelError"},
            )
        except OSError as error:
            self.error(HTTPStatus.INTERNAL_SERVER_ERROR, "InternalFailure", str(error))

    def error(self, status: int, code: str, message: str) -> None:
        """An AWS JSON error response."""
        self.answer_json(status, {"message": message}, {"x-amzn-ErrorType": code})


# ---------------------------------------------------------------------------- GitHub

# The pull-request check's GitHub calls (operation names of tests/contracts/github.json).
PULL_REQUEST_CALLS = frozenset(
    {
        "list_commit_pull_requests",
        "list_pull_requests",
        "list_issue_comments",
        "create_issue_comment",
        "update_issue_comment",
        "create_commit_status",
    }
)


class GitHubApi(LocalHttpService):
    """The GitHub REST calls of a fast-forward merge, answered from a local git repository.

    Serves one repository (owner/name) to one token. Branch moves are recorded in memory
    (and seen by later reads); the git repository itself is never written.
    """

    def __init__(
        self,
        repository: GitRepository,
        full_name: str,
        token: str,
        pull_requests: Any = None,
        contract: Any = None,
    ) -> None:
        self.repository = repository
        self.full_name = full_name
        self.token = token
        self.moved: dict[str, str] = {}
        self.requests: list[str] = []
        # The pull-request check's calls: the rehearsal's pull requests, each request checked
        # against the contract (git_hosts.Contract of tests/contracts/github.json).
        self.pull_requests = pull_requests
        self.contract = contract
        self.violations: list[str] = []
        super().__init__(_GitHubHandler)

    @property
    def api_url(self) -> str:
        """The API root the merge function is given (GIT_API_URL)."""
        return self.url

    def head(self, branch: str) -> str | None:
        """A branch's head, with the moves made through this API."""
        return self.moved.get(branch) or self.repository.branch_head(branch)


class _GitHubHandler(QuietHandler):
    def do_GET(self) -> None:
        """GET git/ref/heads/<branch> and compare/<base>...<head>."""
        self.route("GET")

    def do_PATCH(self) -> None:
        """PATCH git/refs/heads/<branch> (non-forced)."""
        self.route("PATCH")

    def do_POST(self) -> None:
        """POST merges: not played."""
        self.route("POST")

    def route(self, method: str) -> None:
        """Check the token and the repository, then answer the request."""
        github: GitHubApi = self.service
        path = urllib.parse.urlsplit(self.path).path
        github.requests.append(f"{method} {path}")
        if self.headers.get("Authorization") != f"Bearer {github.token}":
            self.answer_json(HTTPStatus.UNAUTHORIZED, {"message": "Bad credentials"})
            return
        match = GITHUB_REPOSITORY_PATH.match(path)
        if not match or match.group(1) != github.full_name:
            self.answer_json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
            return
        resource = urllib.parse.unquote(match.group(2))
        matched = github.contract.match(method, path) if github.contract else None
        if matched is not None and matched[0] in PULL_REQUEST_CALLS:
            self.pull_request_call(github, method, matched[0], matched[2])
        elif method == "GET" and resource.startswith("/git/ref/heads/"):
            self.read_branch(github, resource.removeprefix("/git/ref/heads/"))
        elif method == "GET" and resource.startswith("/compare/"):
            self.compare(github, resource.removeprefix("/compare/"))
        elif method == "PATCH" and resource.startswith("/git/refs/heads/"):
            self.move_branch(github, resource.removeprefix("/git/refs/heads/"))
        else:
            self.answer_json(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                {"message": f"{method} {resource} is not played by the rehearsal"},
            )

    def pull_request_call(self, github: GitHubApi, method: str, name: str, params: dict) -> None:
        """The pull-request check's calls, checked against the contract first."""
        raw = self.body()
        body = json.loads(raw) if raw else None
        _, _, problems = github.contract.problems(method, self.path, body)
        if problems:
            github.violations.extend(problems)
            self.answer_json(HTTPStatus.BAD_REQUEST, {"message": "; ".join(problems)})
            return
        store = github.pull_requests
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        if name == "list_commit_pull_requests":
            # As GitHub is reported to answer: a fork's pull request is not listed for its
            # head commit.
            found = (
                [i for i in store.with_head(params["commit_sha"]) if not i.fork_of] if store else []
            )
            self.answer_json(HTTPStatus.OK, [self.pull_request(github, item) for item in found])
            return
        if name == "list_pull_requests":
            state, base = query.get("state", "open"), query.get("base")
            found = [
                item
                for item in (store.items if store else [])
                if state in ("all", item.state) and base in (None, item.destination_branch)
            ]
            size, page = int(query.get("per_page", 30)), int(query.get("page", 1))
            listed = found[(page - 1) * size : page * size]
            self.answer_json(HTTPStatus.OK, [self.pull_request(github, item) for item in listed])
            return
        if name == "create_commit_status":
            for item in store.with_head(params["sha"]) if store else []:
                item.statuses.append({"commit": params["sha"], **body})
            self.answer_json(HTTPStatus.CREATED, {"id": 1, **body})
            return
        if name == "update_issue_comment":
            found = store.comment(params["comment_id"]) if store else None
            if found is None:
                self.answer_json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
                return
            found[1]["body"] = body["body"]
            self.answer_json(HTTPStatus.OK, found[1])
            return
        item = store.get(params.get("issue_number")) if store else None
        if item is None:
            self.answer_json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
        elif name == "list_issue_comments":
            size, page = int(query.get("per_page", 30)), int(query.get("page", 1))
            self.answer_json(HTTPStatus.OK, item.comments[(page - 1) * size : page * size])
        else:  # create_issue_comment
            self.answer_json(HTTPStatus.CREATED, store.add_comment(item, body["body"]))

    @staticmethod
    def pull_request(github: GitHubApi, item: Any) -> dict[str, Any]:
        """A pull request as the list of a commit's pull requests gives it."""
        head_repository = item.fork_of or github.full_name
        return {
            "number": item.number,
            "state": item.state,
            "title": item.title,
            "head": {
                "ref": item.source_branch,
                "sha": item.head,
                "repo": {"full_name": head_repository},
            },
            "base": {
                "ref": item.destination_branch,
                "sha": item.destination_commit,
                "repo": {"full_name": github.full_name},
            },
        }

    def read_branch(self, github: GitHubApi, branch: str) -> None:
        """GET /git/ref/heads/<branch>."""
        head = github.head(branch)
        if head is None:
            self.answer_json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
            return
        self.answer_json(
            HTTPStatus.OK,
            {"ref": f"refs/heads/{branch}", "object": {"sha": head, "type": "commit"}},
        )

    def compare(self, github: GitHubApi, spec: str) -> None:
        """GET /compare/<base>...<head>: identical, ahead, behind or diverged."""
        base, _, head = spec.partition("...")
        git = github.repository
        if not (git.commit_exists(base) and git.commit_exists(head)):
            self.answer_json(HTTPStatus.NOT_FOUND, {"message": "Not Found"})
            return
        ahead_by, behind_by = git.count_commits(base, head), git.count_commits(head, base)
        if base == head or (ahead_by == 0 and behind_by == 0):
            status = "identical"
        elif behind_by == 0:
            status = "ahead"
        elif ahead_by == 0:
            status = "behind"
        else:
            status = "diverged"
        self.answer_json(
            HTTPStatus.OK,
            {
                "status": status,
                "ahead_by": ahead_by,
                "behind_by": behind_by,
                "merge_base_commit": {"sha": git.merge_base(base, head)},
            },
        )

    def move_branch(self, github: GitHubApi, branch: str) -> None:
        """PATCH /git/refs/heads/<branch>: a non-forced fast-forward, recorded only."""
        request = json.loads(self.body() or b"{}")
        head, target = github.head(branch), request.get("sha", "")
        if head is None:
            self.answer_json(
                HTTPStatus.UNPROCESSABLE_ENTITY, {"message": "Reference does not exist"}
            )
        elif request.get("force") is not False:
            self.answer_json(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                {"message": "the rehearsal refuses forced updates: send force: false"},
            )
        elif not github.repository.is_ancestor(head, target):
            self.answer_json(
                HTTPStatus.UNPROCESSABLE_ENTITY, {"message": "Update is not a fast forward"}
            )
        else:
            github.moved[branch] = target
            self.answer_json(
                HTTPStatus.OK, {"ref": f"refs/heads/{branch}", "object": {"sha": target}}
            )
