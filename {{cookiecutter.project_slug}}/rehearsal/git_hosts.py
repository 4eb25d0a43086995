"""Local stand-ins of GitLab's and Bitbucket Cloud's REST APIs, and the check of a request
against the provider's published API description.

Neither API can move a branch to a commit, so the merge function moves it through a merge
request (GitLab) or a pull request (Bitbucket) from a branch at the deployed commit. The
stand-ins answer those calls from the local git repository; a merge is recorded in memory
(and seen by later reads), never written to git. Every request is first checked against the
project's excerpt of the provider's API description (tests/contracts/<host>.json): an
undocumented operation, query parameter or body field, a missing required one, or a value
outside its type or enum is answered 400 and kept in `violations`, which fails the action.
"""

import base64
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

from .source import GitRepository
from .standins import GitHubApi, LocalHttpService, QuietHandler

JSON_TYPES = {
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
    "object": dict,
    "array": list,
}


class Contract:
    """The operations of one API description excerpt, matched by method and path."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.root = document.get("api_root", "")
        self.operations = []
        for name, operation in document["operations"].items():
            pieces = re.split(r"\{(\w+)\}", operation["path"])
            # Even pieces are literal text, odd ones the names of path parameters.
            pattern = "".join(
                f"(?P<{piece}>[^/]+)" if index % 2 else re.escape(piece)
                for index, piece in enumerate(pieces)
            )
            self.operations.append((name, operation, re.compile(f"^{pattern}$")))

    @classmethod
    def load(cls, path: Path) -> "Contract":
        """The excerpt in a JSON file."""
        return cls(json.loads(path.read_text()))

    def match(self, method: str, path: str) -> tuple[str, dict[str, Any], dict[str, str]] | None:
        """(operation name, operation, raw path parameters) of a request, or None."""
        for name, operation, pattern in self.operations:
            found = pattern.match(path)
            if found and operation["method"] == method:
                return name, operation, found.groupdict()
        return None

    def problems(
        self, method: str, target: str, body: Any
    ) -> tuple[str | None, dict[str, str], list[str]]:
        """The operation a request (path and query under the API root) calls, its raw path
        parameters, and what in it the description does not allow."""
        split = urllib.parse.urlsplit(target)
        path = split.path.removeprefix(self.root)
        matched = self.match(method, path)
        if matched is None:
            return None, {}, [f"{method} {path} is no operation of the API description"]
        name, operation, params = matched
        problems = []
        declared = operation.get("query") or {}
        given = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        for key, value in given:
            spec = declared.get(key)
            if spec is None:
                problems.append(f"{name}: query parameter {key!r} is not declared")
            elif spec.get("enum") and value not in spec["enum"]:
                problems.append(f"{name}: query {key}={value!r} is not one of {spec['enum']}")
        for key, spec in declared.items():
            if spec.get("required") and key not in {k for k, _ in given}:
                problems.append(f"{name}: required query parameter {key!r} is missing")
        schema = operation.get("body")
        if schema is None:
            if body not in (None, b"", {}):
                problems.append(f"{name}: the operation takes no body")
        elif not isinstance(body, dict):
            problems.append(f"{name}: the body must be a JSON object")
        else:
            problems.extend(_object_problems(name, "body", schema, body))
        return name, params, problems

    def documents(self, name: str, status: int) -> bool:
        """Whether the description lists this status as a response of the operation."""
        return str(status) in self.document["operations"][name]["responses"]


def _object_problems(name: str, where: str, schema: dict[str, Any], value: dict) -> list[str]:
    properties = schema.get("properties") or {}
    problems = [
        f"{name}: {where}.{key} is required"
        for key in schema.get("required", [])
        if key not in value
    ]
    for key, item in value.items():
        spec = properties.get(key)
        if spec is None:
            problems.append(f"{name}: {where}.{key} is not a field of the description")
            continue
        expected = JSON_TYPES.get(spec.get("type", ""), object)
        if not isinstance(item, expected) or (expected is int and isinstance(item, bool)):
            problems.append(f"{name}: {where}.{key} must be a {spec.get('type')}")
        elif spec.get("enum") and item not in spec["enum"]:
            problems.append(f"{name}: {where}.{key}={item!r} is not one of {spec['enum']}")
        elif isinstance(item, dict) and spec.get("properties"):
            problems.extend(_object_problems(name, f"{where}.{key}", spec, item))
    return problems


class PullRequestHost(LocalHttpService):
    """What the two stand-ins share: the repository, the token, the branches made through the
    API, the merge or pull requests, and every request with its contract problems."""

    def __init__(
        self, repository: GitRepository, full_name: str, token: str, contract: Contract
    ) -> None:
        self.repository = repository
        self.full_name = full_name
        self.token = token
        self.contract = contract
        self.moved: dict[str, str] = {}
        self.created: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.requests: list[str] = []
        self.violations: list[str] = []
        self.changes: list[dict[str, Any]] = []
        # Answers to give instead of serving, by operation: (status, document[, headers]).
        self.scripted: dict[str, list[tuple]] = {}
        # The rehearsal's pull requests into the dev branch (pull_requests.PullRequestStore),
        # which the pull-request check reads and comments on.
        self.pull_request_store: Any = None
        super().__init__(_PullRequestHandler)

    @property
    def api_url(self) -> str:
        """The API root the merge function is given (GIT_API_URL)."""
        return self.url + self.contract.root

    def head(self, branch: str) -> str | None:
        """A branch's head, with the moves and branches made through this API."""
        if branch in self.deleted:
            return None
        return (
            self.moved.get(branch)
            or self.created.get(branch)
            or self.repository.branch_head(branch)
        )

    def authorised(self, headers: Any) -> bool:
        """Whether the request carries the token as the description says."""
        raise NotImplementedError

    def serve(self, handler: "_PullRequestHandler", name: str, params: dict, query: dict, body):
        """Answer one checked request: (status, JSON document)."""
        raise NotImplementedError

    def fast_forward(self, target: str, source_head: str) -> bool:
        """Move target to source_head if that is a fast-forward; whether it was."""
        head = self.head(target)
        if head is None or not self.repository.is_ancestor(head, source_head):
            return False
        self.moved[target] = source_head
        return True


class _PullRequestHandler(QuietHandler):
    def do_GET(self) -> None:
        """Reads."""
        self.route("GET")

    def do_POST(self) -> None:
        """Creates and merges."""
        self.route("POST")

    def do_PUT(self) -> None:
        """GitLab's merge and update."""
        self.route("PUT")

    def do_DELETE(self) -> None:
        """Branch deletion."""
        self.route("DELETE")

    def do_PATCH(self) -> None:
        """Neither API moves a branch with PATCH: checked, and refused, like any request."""
        self.route("PATCH")

    def route(self, method: str) -> None:
        """Check the token and the request against the description, then answer it."""
        host: PullRequestHost = self.service
        raw = self.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        split = urllib.parse.urlsplit(self.path)
        host.requests.append(f"{method} {split.path}")
        if not host.authorised(self.headers):
            self.answer_json(401, host.error_document("401 Unauthorized"))
            return
        name, params, problems = host.contract.problems(method, self.path, body)
        if problems:
            host.violations.extend(problems)
            self.answer_json(400, host.error_document("; ".join(problems)))
            return
        params = {key: urllib.parse.unquote(value) for key, value in params.items()}
        lists: dict[str, list[str]] = {}
        for key, value in urllib.parse.parse_qsl(split.query):
            lists.setdefault(key, []).append(value)
        # An array parameter (refs[]) or a repeated one keeps its list; the others, a string.
        query = {
            key: values if key.endswith("[]") or len(values) > 1 else values[0]
            for key, values in lists.items()
        }
        queued = host.scripted.get(name)
        status, document, *headers = (
            queued.pop(0) if queued else host.serve(self, name, params, query, body)
        )
        if not host.contract.documents(name, status) and status != 404:
            host.violations.append(f"{name}: the stand-in answered {status}, undocumented")
        extra = headers[0] if headers else None
        if document is None:
            self.answer(status, b"", "application/json", extra)
        else:
            self.answer_json(status, document, extra)


# ---------------------------------------------------------------------------- GitLab


# The pull-request check's calls (operation names of tests/contracts/<host>.json).
GITLAB_CHECK_CALLS = frozenset(
    {
        "list_commit_merge_requests",
        "list_merge_request_notes",
        "create_merge_request_note",
        "update_merge_request_note",
        "create_commit_status",
    }
)
BITBUCKET_CHECK_CALLS = frozenset(
    {
        "list_pull_request_comments",
        "create_pull_request_comment",
        "update_pull_request_comment",
        "create_commit_build_status",
    }
)


class GitLabApi(PullRequestHost):
    """GitLab's branches, merge base, project and merge request calls, for one project."""

    def __init__(self, *args: Any, merge_method: str = "ff", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.merge_method = merge_method
        self.merge_requests: list[dict[str, Any]] = []

    def authorised(self, headers: Any) -> bool:
        """PRIVATE-TOKEN: the description's security definition."""
        return headers.get("PRIVATE-TOKEN") == self.token

    @staticmethod
    def error_document(message: str) -> dict[str, Any]:
        """GitLab's error body."""
        return {"message": message}

    def serve(self, handler, name, params, query, body):
        """Answer one checked request."""
        if params.get("id") != self.full_name:
            return 404, {"message": "404 Project Not Found"}
        if name in GITLAB_CHECK_CALLS:
            return self._check_call(name, params, query, body)
        git = self.repository
        if name == "get_branch":
            head = self.head(params["branch"])
            if head is None:
                return 404, {"message": "404 Branch Not Found"}
            return 200, {"name": params["branch"], "commit": {"id": head}}
        if name == "merge_base":
            refs = [
                git.resolve(ref) if ref not in self.created else self.created[ref]
                for ref in query.get("refs[]", [])
            ]
            if len(refs) != 2 or None in refs:
                return 404, {"message": "404 Commit Not Found"}
            return 200, {"id": git.merge_base(*refs)}
        if name == "get_project":
            return 200, {
                "path_with_namespace": self.full_name,
                "merge_method": self.merge_method,
                "squash_option": "default_off",
            }
        if name == "create_branch":
            if self.head(body["branch"]) is not None:
                return 400, {"message": "Branch already exists"}
            if not git.commit_exists(body["ref"]):
                return 400, {"message": "Invalid reference name"}
            self.created[body["branch"]] = body["ref"]
            self.deleted.discard(body["branch"])
            return 201, {"name": body["branch"], "commit": {"id": body["ref"]}}
        if name == "delete_branch":
            if params["branch"] not in self.created or params["branch"] in self.deleted:
                return 404, {"message": "404 Branch Not Found"}
            self.deleted.add(params["branch"])
            return 204, None
        if name == "create_merge_request":
            return self._create(body)
        if name == "list_merge_requests":
            return 200, [
                request
                for request in self.merge_requests
                if request["state"] == query.get("state", request["state"])
                and request["source_branch"] == query.get("source_branch", request["source_branch"])
                and request["target_branch"] == query.get("target_branch", request["target_branch"])
            ]
        request = self._find(params.get("merge_request_iid", ""))
        if request is None:
            return 404, {"message": "404 Not found"}
        if name == "get_merge_request":
            return 200, self._checked(request)
        if name == "update_merge_request":
            if body.get("state_event") == "close":
                request["state"] = "closed"
            return 200, request
        if name == "merge_merge_request":
            return self._merge(request, body)
        return 405, {"message": f"{name} is not played by the rehearsal"}

    def _find(self, iid: str) -> dict[str, Any] | None:
        return next((r for r in self.merge_requests if str(r["iid"]) == iid), None)

    def _check_call(self, name, params, query, body) -> tuple[int, Any]:
        """The pull-request check's calls, on the rehearsal's merge requests."""
        store = self.pull_request_store
        if name == "list_commit_merge_requests":
            found = store.with_head(params["sha"]) if store else []
            return 200, [
                {
                    "iid": item.number,
                    "state": "opened" if item.state == "open" else item.state,
                    "title": item.title,
                    "source_branch": item.source_branch,
                    "target_branch": item.destination_branch,
                    "sha": item.head,
                    # The project's id, or another one for a fork.
                    "source_project_id": 2 if item.fork_of else 1,
                    "target_project_id": 1,
                }
                for item in found
            ]
        if name == "create_commit_status":
            items = store.with_head(params["sha"]) if store else []
            last = next(
                (
                    status
                    for item in items
                    for status in reversed(item.statuses)
                    if status.get("name") == body.get("name")
                ),
                None,
            )
            if last is not None and last["state"] == body["state"]:
                # GitLab refuses to move a status to the state it has.
                state = body["state"]
                message = f"Cannot transition status via :{state} from :{state}"
                return 400, {"message": message}
            for item in items:
                item.statuses.append({"commit": params["sha"], **body})
            return 200, {"id": 1, "sha": params["sha"], "status": body["state"]}
        item = store.get(params.get("merge_request_iid")) if store else None
        if item is None:
            return 404, {"message": "404 Not found"}
        if name == "list_merge_request_notes":
            size, page = int(query.get("per_page", 20)), int(query.get("page", 1))
            return 200, item.comments[(page - 1) * size : page * size]
        if name == "create_merge_request_note":
            return 201, store.add_comment(item, body["body"])
        found = store.comment(params.get("note_id"))
        if found is None or found[0] is not item:
            return 404, {"message": "404 Note Not Found"}
        found[1]["body"] = body["body"]
        return 200, found[1]

    def _create(self, body: dict[str, Any]) -> tuple[int, Any]:
        source, target = body["source_branch"], body["target_branch"]
        if self.head(source) is None or self.head(target) is None:
            return 404, {"message": "404 Branch Not Found"}
        for request in self.merge_requests:
            if (request["state"], request["source_branch"], request["target_branch"]) == (
                "opened",
                source,
                target,
            ):
                return 409, {
                    "message": [f"Another open merge request already exists: !{request['iid']}"]
                }
        request = {
            "iid": len(self.merge_requests) + 1,
            "state": "opened",
            "source_branch": source,
            "target_branch": target,
            "sha": self.head(source),
            "detailed_merge_status": "checking",
            "merge_commit_sha": None,
            "should_remove_source_branch": body.get("remove_source_branch", False),
        }
        self.merge_requests.append(request)
        return 201, dict(request)

    def _checked(self, request: dict[str, Any]) -> dict[str, Any]:
        """GitLab works mergeability out in the background: the first read says checking."""
        answer = dict(request)
        if request["state"] != "opened":
            request["detailed_merge_status"] = "not_open"
        elif request["detailed_merge_status"] == "checking":
            request["detailed_merge_status"] = "unchecked"
        else:
            can = self.repository.is_ancestor(self.head(request["target_branch"]), request["sha"])
            request["detailed_merge_status"] = (
                "mergeable" if can or self.merge_method == "merge" else "need_rebase"
            )
        answer["detailed_merge_status"] = request["detailed_merge_status"]
        return answer

    def _merge(self, request: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
        if request["state"] != "opened":
            return 405, {"message": "405 Method Not Allowed"}
        if body.get("sha") and body["sha"] != self.head(request["source_branch"]):
            return 409, {"message": "SHA does not match HEAD of source branch"}
        if self.merge_method != "ff" or body.get("squash"):
            return 405, {"message": "the rehearsal plays fast-forward merges only"}
        if not self.fast_forward(request["target_branch"], request["sha"]):
            return 422, {"message": "Branch cannot be merged"}
        request["state"] = "merged"
        if body.get("should_remove_source_branch", request["should_remove_source_branch"]):
            self.deleted.add(request["source_branch"])
        self.changes.append({"merged": request["iid"], "into": request["target_branch"]})
        return 200, dict(request)


# ---------------------------------------------------------------------------- Bitbucket


class BitbucketApi(PullRequestHost):
    """Bitbucket Cloud's branch, merge base and pull request calls, for one repository."""

    STRATEGIES = ("merge_commit", "squash", "fast_forward")

    def __init__(self, *args: Any, email: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.email = email
        self.pull_requests: list[dict[str, Any]] = []

    def authorised(self, headers: Any) -> bool:
        """An access token as a Bearer token, or (given an e-mail) an API token with the
        account's e-mail, HTTP Basic."""
        if self.email is None:
            return headers.get("Authorization") == f"Bearer {self.token}"
        pair = base64.b64encode(f"{self.email}:{self.token}".encode()).decode("ascii")
        return headers.get("Authorization") == f"Basic {pair}"

    @staticmethod
    def error_document(message: str) -> dict[str, Any]:
        """Bitbucket's error body."""
        return {"type": "error", "error": {"message": message}}

    def serve(self, handler, name, params, query, body):
        """Answer one checked request."""
        if f"{params.get('workspace')}/{params.get('repo_slug')}" != self.full_name:
            return 404, self.error_document("Repository not found")
        if name in BITBUCKET_CHECK_CALLS or (name == "list_pull_requests" and "q" in query):
            return self._check_call(name, params, query, body)
        git = self.repository
        if name == "get_branch":
            head = self.head(params["name"])
            if head is None:
                return 404, self.error_document(f"Branch {params['name']} not found")
            return 200, {
                "type": "branch",
                "name": params["name"],
                "target": {"hash": head},
                "merge_strategies": list(self.STRATEGIES),
                "default_merge_strategy": "merge_commit",
            }
        if name == "merge_base":
            first, _, second = params["revspec"].partition("..")
            refs = [git.resolve(first), git.resolve(second)]
            if None in refs:
                return 404, self.error_document("Commit not found")
            return 200, {"type": "commit", "hash": git.merge_base(*refs)}
        if name == "create_branch":
            branch, commit = body["name"], body["target"].get("hash", "")
            if not git.commit_exists(commit):
                return 404, self.error_document(f"Commit {commit} not found")
            if self.head(branch) is not None:
                return 403, self.error_document(f"Branch {branch} already exists")
            self.created[branch] = commit
            self.deleted.discard(branch)
            return 201, {"type": "branch", "name": branch, "target": {"hash": commit}}
        if name == "delete_branch":
            if params["name"] not in self.created or params["name"] in self.deleted:
                return 404, self.error_document("Branch not found")
            self.deleted.add(params["name"])
            return 204, None
        if name == "list_pull_requests":
            wanted = query.get("state", "OPEN")
            wanted = [wanted] if isinstance(wanted, str) else wanted
            values = [pr for pr in self.pull_requests if pr["state"] in wanted]
            return 200, {"pagelen": 10, "size": len(values), "page": 1, "values": values}
        if name == "create_pull_request":
            source = body["source"]["branch"]["name"]
            target = body.get("destination", {}).get("branch", {}).get("name", "")
            if self.head(source) is None or self.head(target) is None:
                return 400, self.error_document("Branch not found")
            pull_request = {
                "type": "pullrequest",
                "id": len(self.pull_requests) + 1,
                "state": "OPEN",
                "title": body["title"],
                "source": {"branch": {"name": source}, "commit": {"hash": self.head(source)}},
                "destination": {"branch": {"name": target}},
                "close_source_branch": body.get("close_source_branch", False),
            }
            self.pull_requests.append(pull_request)
            return 201, pull_request
        pull_request = next(
            (pr for pr in self.pull_requests if str(pr["id"]) == params.get("pull_request_id")),
            None,
        )
        if pull_request is None:
            return 404, self.error_document("Pull request not found")
        if name == "get_pull_request":
            return 200, pull_request
        if name == "decline_pull_request":
            pull_request["state"] = "DECLINED"
            return 200, pull_request
        if name == "merge_pull_request":
            return self._merge(pull_request, body)
        return 404, self.error_document(f"{name} is not played by the rehearsal")

    def _check_call(self, name, params, query, body) -> tuple[int, Any]:
        """The pull-request check's calls, on the rehearsal's pull requests."""
        store = self.pull_request_store
        items = store.items if store else []
        if name == "list_pull_requests":
            wanted = dict(re.findall(r'(\w+(?:\.\w+)*)\s*=\s*"([^"]*)"', query["q"]))
            values = [
                self._pull_request(item)
                for item in items
                if item.state == "open"
                and wanted.get("state", "OPEN") == "OPEN"
                and wanted.get("destination.branch.name", item.destination_branch)
                == item.destination_branch
            ]
            return 200, {"pagelen": len(values), "size": len(values), "page": 1, "values": values}
        if name == "create_commit_build_status":
            for item in store.with_head(params["commit"]) if store else []:
                item.statuses.append({"commit": params["commit"], **body})
            return 201, {"type": "commitstatus", **body}
        item = store.get(params.get("pull_request_id")) if store else None
        if item is None:
            return 404, self.error_document("Pull request not found")
        if name == "list_pull_request_comments":
            size, page = int(query.get("pagelen", 10)), int(query.get("page", 1))
            values = [
                {"id": c["id"], "content": {"raw": c["body"]}, "deleted": False}
                for c in item.comments[(page - 1) * size : page * size]
            ]
            return 200, {"pagelen": size, "page": page, "values": values}
        if name == "create_pull_request_comment":
            comment = store.add_comment(item, body["content"]["raw"])
            return 201, {"id": comment["id"], "content": {"raw": comment["body"]}}
        found = store.comment(params.get("comment_id"))
        if found is None or found[0] is not item:
            return 404, self.error_document("Comment not found")
        found[1]["body"] = body["content"]["raw"]
        return 200, {"id": found[1]["id"], "content": {"raw": found[1]["body"]}}

    def _pull_request(self, item: Any) -> dict[str, Any]:
        """A pull request as Bitbucket lists it (its source commit's hash abbreviated)."""
        return {
            "type": "pullrequest",
            "id": item.number,
            "state": "OPEN" if item.state == "open" else item.state.upper(),
            "title": item.title,
            "source": {
                "branch": {"name": item.source_branch},
                "commit": {"hash": item.head[:12]},
                "repository": {"full_name": item.fork_of or self.full_name},
            },
            "destination": {
                "branch": {"name": item.destination_branch},
                "commit": {"hash": item.destination_commit[:12]},
                "repository": {"full_name": self.full_name},
            },
        }

    def _merge(self, pull_request: dict[str, Any], body: dict[str, Any]) -> tuple[int, Any]:
        target = pull_request["destination"]["branch"]["name"]
        source = pull_request["source"]["branch"]["name"]
        if pull_request["state"] != "OPEN" or body.get("merge_strategy") != "fast_forward":
            return 409, self.error_document(
                "the rehearsal plays fast-forward merges of open pull requests only"
            )
        if not self.fast_forward(target, pull_request["source"]["commit"]["hash"]):
            return 409, self.error_document("Unable to fast-forward")
        pull_request["state"] = "MERGED"
        pull_request["merge_commit"] = {"hash": pull_request["source"]["commit"]["hash"]}
        if body.get("close_source_branch", pull_request["close_source_branch"]):
            self.deleted.add(source)
        self.changes.append({"merged": pull_request["id"], "into": target})
        return 200, pull_request


def git_host(
    host: str,
    repository: GitRepository,
    full_name: str,
    token: str,
    contracts: Path,
    pull_requests: Any = None,
) -> LocalHttpService:
    """The stand-in of a git host's API (GitHub, GitLab or Bitbucket Cloud), with the
    rehearsal's pull requests."""
    if host == "github":
        path = contracts / "github.json"
        contract = Contract.load(path) if path.is_file() else None
        return GitHubApi(repository, full_name, token, pull_requests, contract)
    stand_ins = {"gitlab": GitLabApi, "bitbucket": BitbucketApi}
    if host not in stand_ins:
        raise ValueError(f"GIT_HOST={host!r} is not a git host the rehearsal plays")
    contract = Contract.load(contracts / f"{host}.json")
    stand_in = stand_ins[host](repository, full_name, token, contract)
    stand_in.pull_request_store = pull_requests
    return stand_in
