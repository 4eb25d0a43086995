"""`make rehearse` runs the whole GitOps flow offline, for CodeCommit, GitHub, GitLab (with
staging and production in accounts of their own) and Bitbucket, and a broken buildspec
command, a permission removed or a failing stage stops it with a message naming the stage,
the action and the command.

Each test rehearses a copy of a bake (with its git history), so the shared bakes stay
intact. The passing rehearsal runs once per provider: the tests that read it share an xdist
group, so one worker plays it. The broken copies are of the default bake.
"""

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BITBUCKET, GITHUB, GITLAB
from engine_support import (
    REHEARSAL_TIMEOUT_SECONDS,
    git,
    git_state,
    rehearse,
    rendered_answers,
    repository_copy,
    without_aws_settings,
)
from rehearsal.flow import STAGES

BUILD_COMMAND = "make ${MAKE_TARGETS}"
# Every action of both pipelines, and the steps the rehearsal adds, appear in the summary.
SUMMARY_ROWS = (
    "Build",
    "Train",
    "SageMaker pipeline",
    "Approve",
    "ApprovalRule",
    "StartDeploy",
    "EditApproved",
    "StageConfig",
    "DeployStaging",
    "TestStaging",
    "DeployProd",
    "DeployProd again",
    "Endpoints",
    "MergeDevToMaster",
    "NewData",
    "Retrain",
    "Schedule",
    "Notifications",
    "Weaker model",
    "As good as production",
)
# Runs a failing rehearsal in this process, then probes the ports it served on.
STOPPED_CHECK = """
import json, socket, sys
from pathlib import Path
from rehearsal.flow import Rehearsal

output = []
rehearsal = Rehearsal(Path(sys.argv[1]), sys.executable, echo=output.append)
exit_status = rehearsal.run()
urls = [
    rehearsal.moto_url,
    rehearsal.runtime.url,
    rehearsal.credentials.url,
    rehearsal.cloudformation.url,
]
addresses = [url.removeprefix("http://").rsplit(":", 1) for url in urls]
listening = []
for host, port in addresses:
    with socket.socket() as probe:
        if probe.connect_ex((host, int(port))) == 0:
            listening.append(f"{host}:{port}")
report = {"exit_status": exit_status, "output": output, "addresses": addresses}
print(json.dumps({**report, "still_listening": listening}))
"""
# provider: (bake fixture, choices, last stage played). Bitbucket differs from GitHub in the
# bootstrap, the source and the merge step only: its rehearsal stops after Merge, the later
# stages, which no git host changes, being rehearsed by the others. The GitLab bake has
# separate staging and production accounts, which every stage after Approval involves.
PROVIDERS = {
    "codecommit": ("default_bake", {}, None),
    "github": ("github_bake", GITHUB, None),
    "gitlab": ("gitlab_bake", GITLAB, None),
    "bitbucket": ("bitbucket_bake", BITBUCKET, "Merge"),
}
# The last summary row of a rehearsal stopped after a stage.
LAST_ROW = {"Merge": "MergeDevToMaster"}


@dataclass
class Rehearsed:
    """One passing rehearsal of a copy with uncommitted work, as a developer's tree has."""

    repository: Path
    answers: dict
    before: dict[str, str]
    result: subprocess.CompletedProcess[str]
    until: str | None

    def stages(self) -> tuple[str, ...]:
        """The stages played."""
        return STAGES[: STAGES.index(self.until) + 1] if self.until else STAGES

    def skip_unless_played(self, stage: str) -> None:
        """Skip a test of a stage this rehearsal stopped before."""
        if stage not in self.stages():
            pytest.skip(f"rehearsed until {self.until}: {stage} is rehearsed for the others")


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(provider, marks=pytest.mark.xdist_group(f"rehearsal-{provider}"))
        for provider in PROVIDERS
    ],
)
def passing_rehearsal(request, tmp_path_factory) -> Rehearsed:
    """The whole flow rehearsed once for each source provider."""
    bake_fixture, choices, until = PROVIDERS[request.param]
    project = request.getfixturevalue(bake_fixture)
    repository = repository_copy(project, tmp_path_factory.mktemp("rehearsal") / project.name)
    # A commit on the dev branch only, as a developer pushes: the merge step has to move
    # the main branch (a fresh bake's branches are at the same commit).
    git(repository, "commit", "-q", "--allow-empty", "-m", "A change on the dev branch")
    with (repository / "README.md").open("a") as readme:
        readme.write("\nAn uncommitted note.\n")
    (repository / "notes.txt").write_text("untracked\n")
    before = git_state(repository)
    result = rehearse(repository, until=until)
    return Rehearsed(repository, rendered_answers(**choices), before, result, until)


def test_the_whole_flow_passes_stage_by_stage(passing_rehearsal):
    result = passing_rehearsal.result
    assert result.returncode == 0, result.stdout + result.stderr
    played = passing_rehearsal.stages()
    for number, stage in enumerate(STAGES, 1):
        assert (f"{number}/{len(STAGES)} {stage}: started" in result.stdout) == (stage in played)
        assert (f"{number}/{len(STAGES)} {stage}: passed in " in result.stdout) == (stage in played)
    if passing_rehearsal.until:
        assert f"stopped after {passing_rehearsal.until} (--until)" in result.stdout


def test_the_summary_lists_every_action_and_what_was_skipped(passing_rehearsal):
    result = passing_rehearsal.result
    summary = result.stdout.split("Rehearsal summary", 1)[1]
    until = passing_rehearsal.until
    rows = SUMMARY_ROWS[: SUMMARY_ROWS.index(LAST_ROW[until]) + 1] if until else SUMMARY_ROWS
    for action in rows:
        row = rf"\s{re.escape(action)}\s+[0-9.]+ s\s+ok\s"
        assert re.search(row, summary), f"no passing row for {action}:\n{summary}"
    for action in SUMMARY_ROWS[len(rows) :]:
        assert not re.search(rf"\s{re.escape(action)}\s+[0-9.]+ s", summary), action
    if until:
        assert f"Not played (--until {until}): " in summary
    assert "FAILED" not in summary
    assert re.search(r"\nIAM: \d+ calls checked \(.*DeployProdRole \d+.*\); 0 denied", summary)
    assert "Skipped: the install phase of buildspecs/build.yml" in summary
    assert f"PYTHON={sys.executable}" in summary


def test_a_passing_rehearsal_is_quiet_and_leaves_its_logs(passing_rehearsal):
    result = passing_rehearsal.result
    assert result.stderr.strip() == ""
    # Two lines a stage, the summary's rows (one an action) and its IAM and note lines.
    assert len(result.stdout.splitlines()) < 90, result.stdout
    logs = passing_rehearsal.repository / "build" / "rehearsal"
    assert (logs / "summary.txt").read_text().startswith("Rehearsal summary")
    build_log = next(logs.glob("model-build-*/Build.log"))
    assert "Running command make ${MAKE_TARGETS}" in build_log.read_text()


def test_the_package_is_registered_then_approved_with_the_commit_that_built_it(passing_rehearsal):
    result = passing_rehearsal.result
    commit = git(passing_rehearsal.repository, "rev-parse", "HEAD")
    status = passing_rehearsal.answers["__model_approval_status"]
    assert f"rehearse: commit {commit[:12]}" in result.stdout
    assert f"{status}, commit {commit[:7]}" in result.stdout
    assert f"started at {commit[:12]} (COMMIT_ID source revision)" in result.stdout


def test_new_data_and_the_schedule_start_the_build_and_failures_reach_their_rules(
    passing_rehearsal,
):
    passing_rehearsal.skip_unless_played("Retraining")
    result, answers = passing_rehearsal.result, passing_rehearsal.answers
    rows = {
        line.split()[1]: line
        for line in result.stdout.split("Rehearsal summary", 1)[1].splitlines()
        if line.strip().startswith("Retraining")
    }
    batch = f"/{answers['__data_prefix']}rehearsal-batch/"
    started = re.escape("one event; build pipeline started with InputDataUrl=s3://")
    assert re.search(rf"{started}\S+{re.escape(batch)}", rows["NewData"])
    # The Train action got the batch; the package records it (or the stage fails).
    assert re.search(rf"Train with INPUT_DATA_URL=s3://\S+{re.escape(batch)}", rows["Retrain"])
    if answers["retrain_schedule"]:
        assert "INPUT_DATA_URL=previous" in rows["Schedule"]
        assert rows["Schedule"].rstrip().endswith(batch)
    else:
        assert "no schedule in the template" in rows["Schedule"]
    for failure, rule in (
        ("SageMaker pipeline failed", answers["__training_failed_rule_name"]),
        ("build pipeline failed", answers["__pipeline_failed_rule_name"]),
        ("production alarm", answers["__endpoint_alarm_rule_name"]),
    ):
        assert f"{failure} -> {rule}" in rows["Notifications"]
    assert "successes reached no rule" in rows["Notifications"]


def test_a_weaker_push_is_refused_against_production_and_a_restored_one_registered(
    passing_rehearsal,
):
    passing_rehearsal.skip_unless_played("Champion gate")
    summary = passing_rehearsal.result.stdout.split("Rehearsal summary", 1)[1]
    rows = {
        found[1]: line
        for line in summary.splitlines()
        if (found := re.match(r"\s*Champion gate\s+(.+?)\s{2,}[0-9.]+ s", line))
    }
    floor = r"the production model's floor [0-9.]+"
    weaker, restored = rows["Weaker model"], rows["As good as production"]
    assert re.search(rf"labels shuffled; .* [0-9.]+ < {floor}; FailQualityGate", weaker)
    assert "nothing registered" in weaker
    group = passing_rehearsal.answers["__model_package_group_name"]
    assert re.search(rf"[0-9.]+ >= {floor}; registered {group}/\d+", restored)


def test_the_merge_step_moves_the_main_branch_through_the_git_host(passing_rehearsal):
    summary = passing_rehearsal.result.stdout.split("Rehearsal summary", 1)[1]
    [row] = [line for line in summary.splitlines() if "MergeDevToMaster" in line]
    commit = git(passing_rehearsal.repository, "rev-parse", "HEAD")
    assert "fast-forwarded from" in row and f"to {commit[:7]}" in row, row
    assert "the move is recorded, not written to git" in row
    host = passing_rehearsal.answers["source_provider"]
    through = {"gitlab": "(merge request !1)", "bitbucket": "(pull request #1)"}
    assert through.get(host, "") in row


def test_stage_accounts_deploy_test_and_alarm_as_their_own_roles(passing_rehearsal):
    answers = passing_rehearsal.answers
    if not answers["prod_account_id"]:
        pytest.skip("one account: the GitLab bake rehearses separate stage accounts")
    staging, prod = answers["staging_account_id"], answers["prod_account_id"]
    out = passing_rehearsal.result.stdout
    [iam] = [line for line in out.splitlines() if line.startswith("IAM: ")]
    # Every cross-account request was made and allowed by both sides.
    assert "; 0 denied" in iam
    for actor in (
        f"StagingDeployRole@{staging}",
        f"StagingCloudFormationRole@{staging}",
        f"StagingTestRole@{staging}",
        f"StagingEndpointRole@{staging}",
        f"ProdDeployRole@{prod}",
        f"ProdCloudFormationRole@{prod}",
        f"ProdEndpointRole@{prod}",
        f"AlarmForwardingRole@{prod}",
    ):
        assert re.search(rf"\b{re.escape(actor)} \d+", iam), actor
    assert "EndpointDeployRole" not in iam
    [row] = [line for line in out.splitlines() if "Notifications" in line and " ok " in line]
    assert f"of account {prod} (in ALARM), forwarded from account {prod}" in row
    assert "production alarm -> " in row


def test_the_rehearsal_never_writes_to_git(passing_rehearsal):
    # The uncommitted work stays as it was, and no ref, index entry or setting changes.
    before = passing_rehearsal.before
    assert before["status"] != ""
    assert git_state(passing_rehearsal.repository) == before


@pytest.mark.parametrize(
    ("broken_command", "expected_in_log"),
    [
        ("make ci-biuld", "No rule to make target 'ci-biuld'"),
        ("cd src/no_such_folder && make ${MAKE_TARGETS}", "No such file or directory"),
    ],
    ids=["missing-make-target", "wrong-path"],
)
def test_a_broken_buildspec_command_fails_naming_the_stage_and_the_command(
    default_bake, tmp_path, broken_command, expected_in_log
):
    repository = repository_copy(default_bake, tmp_path / "repository")
    buildspec = repository / "buildspecs" / "build.yml"
    text = buildspec.read_text()
    assert BUILD_COMMAND in text
    buildspec.write_text(text.replace(BUILD_COMMAND, broken_command))

    result = rehearse(repository)

    assert result.returncode != 0
    assert f"1/{len(STAGES)} Model build: FAILED after" in result.stdout
    failure = next(line for line in result.stdout.splitlines() if " failed: " in line)
    # UpdatePipelines, the first action after Source, runs build.yml first.
    assert failure.startswith("rehearse: Model build failed: UpdatePipelines: buildspecs/build.yml")
    assert f"command `{broken_command}` exited with status" in failure
    assert expected_in_log in result.stdout
    assert f"2/{len(STAGES)} Approval" not in result.stdout
    log = next((repository / "build" / "rehearsal").glob("model-build-*/UpdatePipelines.log"))
    assert expected_in_log in log.read_text()


def test_moto_and_the_stand_ins_are_stopped_when_a_stage_fails(default_bake, tmp_path):
    repository = repository_copy(default_bake, tmp_path / "repository")
    (repository / "buildspecs" / "build.yml").write_text(
        "version: 0.1\nphases: {build: {commands: [make]}}\n"
    )
    # In a child process: moto's state is per process and must not mix with other tests'.
    child = subprocess.run(
        [sys.executable, "-c", STOPPED_CHECK, str(repository)],
        env={**without_aws_settings(), "PYTHONPATH": str(repository)},
        capture_output=True,
        text=True,
        timeout=REHEARSAL_TIMEOUT_SECONDS,
        check=False,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    report = json.loads(child.stdout.splitlines()[-1])

    assert report["exit_status"] == 1
    assert any(
        # UpdatePipelines is the first action to run build.yml.
        line.startswith(
            "rehearse: Model build failed: UpdatePipelines: buildspecs/build.yml: version 0.1"
        )
        for line in report["output"]
    ), report["output"]
    assert len(report["addresses"]) == 4
    assert report["still_listening"] == []


def test_a_permission_the_aws_cli_needs_removed_fails_naming_the_action(default_bake, tmp_path):
    # `aws cloudformation deploy` calls GetTemplateSummary when the stack exists, which it
    # does for every production deploy after the first (the rehearsal plays that one too).
    repository = repository_copy(default_bake, tmp_path / "repository")
    template = repository / "infra" / "model-deploy-pipeline.yml"
    text = template.read_text()
    role = re.search(r"\n  DeployProdRole:\n.*?(?=\n  [A-Za-z0-9]+:\n    Type: )", text, re.DOTALL)
    assert role is not None
    granted = re.compile(r"\n *- cloudformation:GetTemplateSummary(?=\n)")
    assert len(granted.findall(role.group(0))) == 1, role.group(0)
    template.write_text(text[: role.start()] + granted.sub("", role.group(0)) + text[role.end() :])
    # The unit suite's hand-written list of the calls `make deploy-prod` makes would stop the
    # Build stage first; drop the call there too, as someone convinced it is unused would, so
    # that what is checked is the rehearsal's own view of the calls the AWS CLI really makes.
    scope_test = repository / "tests" / "unit" / "test_iam_scope.py"
    listed = re.compile(
        r'\n *\("cloudformation:GetTemplateSummary", stack_arn\(PROD_STACK\)\),(?=\n)'
    )
    scope = scope_test.read_text()
    assert len(listed.findall(scope)) == 1
    scope_test.write_text(listed.sub("", scope))

    result = rehearse(repository)

    assert result.returncode != 0
    failure = next(line for line in result.stdout.splitlines() if " failed: " in line)
    assert failure.startswith(
        "rehearse: Model deploy failed: DeployProd again: IAM: DeployProdRole"
    )
    assert " may not cloudformation:GetTemplateSummary on arn:aws:cloudformation:" in failure
    assert re.search(r"IAM: \d+ calls checked .*; [1-9]\d* denied", result.stdout)
