"""The GitLab and Bitbucket stand-ins enforce the API description excerpt a bake ships: a
request it does not allow is answered 400 and recorded, so the rehearsal fails naming it."""

import json
import urllib.error
import urllib.request

import pytest
from conftest import GIT_HOST_ANSWERS
from rehearsal.git_hosts import git_host
from rehearsal.source import GitRepository

TOKEN = "stand-in-token"
HEADERS = {
    "gitlab": {"PRIVATE-TOKEN": TOKEN},
    "bitbucket": {"Authorization": f"Bearer {TOKEN}"},
}


def send(url: str, method: str, headers: dict, body: dict | None = None) -> tuple[int, dict]:
    """One request; (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")


@pytest.fixture(params=["gitlab", "bitbucket"])
def stand_in(request):
    """(host, stand-in serving the bake's own git repository, repository path)."""
    host = request.param
    project = request.getfixturevalue(f"{host}_bake")
    repository = GIT_HOST_ANSWERS[host]["repository"]
    api = git_host(host, GitRepository(project), repository, TOKEN, project / "tests/contracts")
    api.start()
    yield host, api, repository
    api.stop()


def paths(host: str, repository: str) -> tuple[str, str]:
    """(the branch read, the branch creation) paths of the host under its API root."""
    if host == "gitlab":
        project = "/projects/" + repository.replace("/", "%2F")
        return f"{project}/repository/branches/master", f"{project}/repository/branches"
    return (
        f"/repositories/{repository}/refs/branches/master",
        f"/repositories/{repository}/refs/branches",
    )


def test_a_documented_request_is_served_from_the_repository(stand_in):
    host, api, repository = stand_in
    read, _ = paths(host, repository)
    status, branch = send(api.api_url + read, "GET", HEADERS[host])
    assert status == 200, branch
    head = branch["commit"]["id"] if host == "gitlab" else branch["target"]["hash"]
    assert head == api.repository.branch_head("master")
    assert api.violations == []


def test_a_request_the_description_does_not_allow_is_refused_and_recorded(stand_in):
    host, api, repository = stand_in
    _, create = paths(host, repository)
    body = (
        {"branch": "x", "ref": "master", "force": True}
        if host == "gitlab"
        else {"name": "x", "target": {"hash": "abc"}, "force": True}
    )
    status, answer = send(api.api_url + create, "POST", HEADERS[host], body)
    assert status == 400
    assert api.violations == ["create_branch: body.force is not a field of the description"]
    assert "body.force" in json.dumps(answer)
    assert api.created == {}


def test_an_undocumented_operation_and_a_wrong_token_are_refused(stand_in):
    host, api, repository = stand_in
    read, _ = paths(host, repository)
    assert send(api.api_url + read, "PATCH", HEADERS[host], {"sha": "abc"})[0] == 400
    assert "is no operation of the API description" in api.violations[0]
    assert send(api.api_url + read, "GET", {"PRIVATE-TOKEN": "other"})[0] == 401
