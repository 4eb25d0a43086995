"""`make rehearse` runs the whole GitOps flow offline, and a broken buildspec command stops it
with a message naming the stage, the action and the command.

Each test rehearses a copy of this repository (with its git history), so the rehearsal's
build/rehearsal/ never mixes with a developer's and the broken copies leave this one intact.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import config
from rehearsal.flow import STAGES

ROOT = Path(__file__).resolve().parents[2]
NOT_COPIED = shutil.ignore_patterns(
    "build", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "*.csv"
)
REHEARSAL_TIMEOUT_SECONDS = 600
BUILD_COMMAND = "make ${MAKE_TARGETS}"
RETRAIN_SCHEDULE = "{{ cookiecutter.retrain_schedule }}"
TRAINING_FAILED_RULE = "{{ cookiecutter.__training_failed_rule_name }}"
PIPELINE_FAILED_RULE = "{{ cookiecutter.__pipeline_failed_rule_name }}"
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
)
# Runs a failing rehearsal in this process, then probes the ports it served on.
STOPPED_CHECK = """
import json, socket, sys
from pathlib import Path
from rehearsal.flow import Rehearsal

output = []
rehearsal = Rehearsal(Path(sys.argv[1]), sys.executable, echo=output.append)
exit_status = rehearsal.run()
urls = [rehearsal.moto_url, rehearsal.runtime.url, rehearsal.credentials.url]
addresses = [url.removeprefix("http://").rsplit(":", 1) for url in urls]
listening = []
for host, port in addresses:
    with socket.socket() as probe:
        if probe.connect_ex((host, int(port))) == 0:
            listening.append(f"{host}:{port}")
report = {"exit_status": exit_status, "output": output, "addresses": addresses}
print(json.dumps({**report, "still_listening": listening}))
"""
GIT_IDENTITY = ["-c", "user.name=Rehearsal", "-c", "user.email=rehearsal@example.com"]


def git(repository: Path, *args: str) -> str:
    """Run git in a copy (never in this repository); its output."""
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=repository, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def repository_copy(destination: Path) -> Path:
    """This repository's files and history in destination, with both branches."""
    shutil.copytree(ROOT, destination, ignore=NOT_COPIED, symlinks=True)
    if not (destination / ".git").exists():
        git(destination, "init", "--quiet", f"--initial-branch={config.DEV_BRANCH}")
        git(destination, "add", "--all")
        git(destination, "commit", "--quiet", "--message", "rehearsal copy")
        git(destination, "branch", config.MAIN_BRANCH)
    return destination


def rehearse(repository: Path) -> subprocess.CompletedProcess[str]:
    """`make rehearse` in repository with this interpreter."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    return subprocess.run(
        ["make", "rehearse", f"PYTHON={sys.executable}"],
        cwd=repository,
        env=env,
        capture_output=True,
        text=True,
        timeout=REHEARSAL_TIMEOUT_SECONDS,
        check=False,
    )


def git_state(repository: Path) -> dict[str, str]:
    """Everything a git write would change: refs, HEAD, index, working tree, config."""
    return {
        "refs": git(repository, "for-each-ref", "--format=%(refname) %(objectname)"),
        "head": git(repository, "rev-parse", "--symbolic-full-name", "HEAD"),
        "index": git(repository, "ls-files", "--stage"),
        "status": git(repository, "status", "--porcelain", "--untracked-files=all"),
        "config": (repository / ".git" / "config").read_text(),
    }


@pytest.fixture(scope="module")
def rehearsal_copy(tmp_path_factory):
    """A copy with uncommitted work, as a developer's tree has: (repository, git state)."""
    repository = repository_copy(tmp_path_factory.mktemp("rehearsal") / "repository")
    with (repository / "README.md").open("a") as readme:
        readme.write("\nAn uncommitted note.\n")
    (repository / "notes.txt").write_text("untracked\n")
    return repository, git_state(repository)


@pytest.fixture(scope="module")
def passing_rehearsal(rehearsal_copy):
    """One whole rehearsal of that copy: (repository, completed process)."""
    repository, _ = rehearsal_copy
    return repository, rehearse(repository)


def test_the_whole_flow_passes_stage_by_stage(passing_rehearsal):
    _, result = passing_rehearsal
    assert result.returncode == 0, result.stdout + result.stderr
    for number, stage in enumerate(STAGES, 1):
        assert f"{number}/{len(STAGES)} {stage}: started" in result.stdout
        assert f"{number}/{len(STAGES)} {stage}: passed in " in result.stdout


def test_the_summary_lists_every_action_and_what_was_skipped(passing_rehearsal):
    _, result = passing_rehearsal
    summary = result.stdout.split("Rehearsal summary", 1)[1]
    for action in SUMMARY_ROWS:
        row = rf"\s{re.escape(action)}\s+[0-9.]+ s\s+ok\s"
        assert re.search(row, summary), f"no passing row for {action}:\n{summary}"
    assert "FAILED" not in summary
    assert re.search(r"\nIAM: \d+ calls checked \(.*DeployProdRole \d+.*\); 0 denied", summary)
    assert "Skipped: the install phase of buildspecs/build.yml" in summary
    assert f"PYTHON={sys.executable}" in summary


def test_a_passing_rehearsal_is_quiet_and_leaves_its_logs(passing_rehearsal):
    repository, result = passing_rehearsal
    assert result.stderr.strip() == ""
    assert len(result.stdout.splitlines()) < 60, result.stdout
    logs = repository / "build" / "rehearsal"
    assert (logs / "summary.txt").read_text().startswith("Rehearsal summary")
    build_log = next(logs.glob("model-build-*/Build.log"))
    assert "Running command make ${MAKE_TARGETS}" in build_log.read_text()


def test_the_package_is_registered_then_approved_with_the_commit_that_built_it(passing_rehearsal):
    repository, result = passing_rehearsal
    commit = git(repository, "rev-parse", "HEAD")
    assert f"rehearse: commit {commit[:12]}" in result.stdout
    assert f"{config.MODEL_APPROVAL_STATUS}, commit {commit[:7]}" in result.stdout
    assert f"started at {commit[:12]} (COMMIT_ID source revision)" in result.stdout


def test_new_data_and_the_schedule_start_the_build_and_failures_reach_their_rules(
    passing_rehearsal,
):
    _, result = passing_rehearsal
    rows = {
        line.split()[1]: line
        for line in result.stdout.split("Rehearsal summary", 1)[1].splitlines()
        if line.strip().startswith("Retraining")
    }
    batch = f"/{config.DATA_PREFIX}rehearsal-batch/"
    started = re.escape("one event; build pipeline started with InputDataUrl=s3://")
    assert re.search(rf"{started}\S+{re.escape(batch)}", rows["NewData"])
    # The Train action got the batch; the package records it (or the stage fails).
    assert re.search(rf"Train with INPUT_DATA_URL=s3://\S+{re.escape(batch)}", rows["Retrain"])
    if RETRAIN_SCHEDULE:
        assert "INPUT_DATA_URL=previous" in rows["Schedule"]
        assert rows["Schedule"].rstrip().endswith(batch)
    else:
        assert "no schedule in the template" in rows["Schedule"]
    for failure, rule in (
        ("SageMaker pipeline failed", TRAINING_FAILED_RULE),
        ("build pipeline failed", PIPELINE_FAILED_RULE),
    ):
        assert f"{failure} -> {rule}" in rows["Notifications"]
    assert "successes reached no rule" in rows["Notifications"]


def test_the_rehearsal_never_writes_to_git(rehearsal_copy, passing_rehearsal):
    # The uncommitted work stays as it was, and no ref, index entry or setting changes.
    repository, before = rehearsal_copy
    assert before["status"] != ""
    assert git_state(repository) == before


@pytest.mark.parametrize(
    ("broken_command", "expected_in_log"),
    [
        ("make ci-biuld", "No rule to make target 'ci-biuld'"),
        ("cd src/no_such_folder && make ${MAKE_TARGETS}", "No such file or directory"),
    ],
    ids=["missing-make-target", "wrong-path"],
)
def test_a_broken_buildspec_command_fails_naming_the_stage_and_the_command(
    tmp_path, broken_command, expected_in_log
):
    repository = repository_copy(tmp_path / "repository")
    buildspec = repository / "buildspecs" / "build.yml"
    text = buildspec.read_text()
    assert BUILD_COMMAND in text
    buildspec.write_text(text.replace(BUILD_COMMAND, broken_command))

    result = rehearse(repository)

    assert result.returncode != 0
    assert f"1/{len(STAGES)} Model build: FAILED after" in result.stdout
    failure = next(line for line in result.stdout.splitlines() if " failed: " in line)
    assert failure.startswith("rehearse: Model build failed: Build: buildspecs/build.yml")
    assert f"command `{broken_command}` exited with status" in failure
    assert expected_in_log in result.stdout
    assert f"2/{len(STAGES)} Approval" not in result.stdout
    log = next((repository / "build" / "rehearsal").glob("model-build-*/Build.log"))
    assert expected_in_log in log.read_text()


def test_moto_and_the_stand_ins_are_stopped_when_a_stage_fails(tmp_path):
    repository = repository_copy(tmp_path / "repository")
    (repository / "buildspecs" / "build.yml").write_text(
        "version: 0.1\nphases: {build: {commands: [make]}}\n"
    )
    # In a child process: moto's state is per process and must not mix with other tests'.
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    child = subprocess.run(
        [sys.executable, "-c", STOPPED_CHECK, str(repository)],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=REHEARSAL_TIMEOUT_SECONDS,
        check=False,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    report = json.loads(child.stdout.splitlines()[-1])

    assert report["exit_status"] == 1
    assert any(
        line.startswith("rehearse: Model build failed: Build: buildspecs/build.yml: version 0.1")
        for line in report["output"]
    ), report["output"]
    assert len(report["addresses"]) == 3
    assert report["still_listening"] == []


def test_a_permission_the_aws_cli_needs_removed_fails_naming_the_action(tmp_path):
    # `aws cloudformation deploy` calls GetTemplateSummary when the stack exists, which it
    # does for every production deploy after the first (the rehearsal plays that one too).
    repository = repository_copy(tmp_path / "repository")
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
