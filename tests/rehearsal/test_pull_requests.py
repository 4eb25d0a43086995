"""What starts the pull-request check in a rehearsal, and the GitHub stand-in's check calls.

CodeCommit's pull-request event must pass the deploy template's rule only for an open pull
request into the dev branch; a git host's PullRequest trigger takes the events and
destination branches its filter names (CodePipeline's GitPullRequestFilter); the GitHub
stand-in answers the pull-request function's calls only as tests/contracts/github.json
allows them.
"""

import json

import boto3
import pytest
from conftest import GIT_HOST_ANSWERS
from moto import mock_aws
from rehearsal.actions import CHECK_PIPELINE
from rehearsal.git_hosts import git_host
from rehearsal.pull_requests import (
    PullRequestStore,
    codecommit_event,
    pull_request_rule,
    trigger_matches,
)
from rehearsal.retraining import route
from rehearsal.source import GitRepository
from test_git_hosts import send
from test_iam import _deploy_stack

TOKEN = "stand-in-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
COMMIT = "1" * 40
BASE = "2" * 40


def test_the_trigger_takes_pull_requests_opened_or_updated_into_dev(github_bake):
    stack = _deploy_stack(github_bake)
    dev = stack.parameter("DevBranch")
    assert trigger_matches(stack, "OPEN", dev) is None
    assert trigger_matches(stack, "UPDATED", dev) is None
    assert "CLOSED" in trigger_matches(stack, "CLOSED", dev)
    assert f"into not-{dev}" in trigger_matches(stack, "OPEN", f"not-{dev}")
    # The other pipeline of the template is not the check.
    triggers = stack.template["Resources"]["DeployPipeline"]["Properties"].get("Triggers")
    assert triggers is None and CHECK_PIPELINE in stack.template["Resources"]


@pytest.mark.parametrize(("into_dev", "kind"), [(True, "OPEN"), (True, "UPDATED"), (False, "OPEN")])
def test_codecommit_events_reach_the_rule_only_into_dev(default_bake, into_dev, kind):
    stack = _deploy_stack(default_bake)
    dev = stack.parameter("DevBranch")
    destination = dev if into_dev else f"not-{dev}"
    rule_id = pull_request_rule(stack)
    pattern = stack.resolve(stack.resource(rule_id)["Properties"]["EventPattern"])
    store = PullRequestStore()
    item = store.open("A change", "feature", destination, COMMIT, BASE)
    (repository,) = pattern["resources"]
    event = codecommit_event(item, kind, repository, "eu-west-1", "123456789012")
    entry = {
        "Source": event["source"],
        "DetailType": event["detail-type"],
        "Detail": json.dumps(event["detail"]),
        "Resources": event["resources"],
    }
    with mock_aws():
        events = boto3.client("events", region_name="eu-west-1")
        sqs = boto3.client("sqs", region_name="eu-west-1")
        reached = route(events, sqs, {rule_id: pattern}, {kind: entry}, "pull-requests")
    assert reached[kind] == ([rule_id] if into_dev else [])


def test_the_github_stand_in_serves_the_check_calls_as_the_description_allows(github_bake):
    store = PullRequestStore()
    item = store.open("A change", "feature", "dev", COMMIT, BASE, fork_of="someone/fork")
    repository = GIT_HOST_ANSWERS["github"]["repository"]
    api = git_host(
        "github",
        GitRepository(github_bake),
        repository,
        TOKEN,
        github_bake / "tests/contracts",
        store,
    )
    api.start()
    try:
        repo = f"{api.api_url}/repos/{repository}"
        # As GitHub is reported to answer, a fork's pull request is not listed for its head
        # commit; the open pull requests into the base branch list it.
        assert send(f"{repo}/commits/{COMMIT}/pulls", "GET", HEADERS) == (200, [])
        status, found = send(f"{repo}/pulls?state=open&base=dev", "GET", HEADERS)
        assert status == 200
        (pull,) = found
        assert send(f"{repo}/pulls?state=merged", "GET", HEADERS)[0] == 400
        assert pull["head"]["repo"]["full_name"] == "someone/fork"
        assert pull["base"]["repo"]["full_name"] == repository
        assert send(f"{repo}/statuses/{COMMIT}", "POST", HEADERS, {"state": "done"})[0] == 400
        assert send(f"{repo}/issues/1/comments", "POST", HEADERS, {"text": "x"})[0] == 400
        assert send(f"{repo}/statuses/{COMMIT}", "POST", HEADERS, {"state": "success"})[0] == 201
        assert send(f"{repo}/issues/1/comments", "POST", HEADERS, {"body": "hello"})[0] == 201
    finally:
        api.stop()
    assert item.status_of(COMMIT)["state"] == "success"
    assert [comment["body"] for comment in item.comments] == ["hello"]
    assert any("'done' is not one of" in line for line in api.violations)
    assert any("state='merged' is not one of" in line for line in api.violations)
    assert any("body.text is not a field" in line for line in api.violations)
