"""Bad answers, as a user gives them on the command line: exit non-zero, name the
variable, and leave nothing behind."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from conftest import BIN, GITHUB_ANSWERS, TEMPLATE

GITHUB = ["source_provider=github", *(f"{k}={v}" for k, v in GITHUB_ANSWERS.items())]

# (id, cookiecutter key=value arguments, the variable the error must name)
BAD_ANSWERS = [
    ("slug-uppercase", ["project_slug=Churn_Model"], "project_slug"),
    ("slug-leading-digit", ["project_slug=1churn"], "project_slug"),
    ("slug-trailing-hyphen", ["project_slug=churn-"], "project_slug"),
    ("slug-too-long", ["project_slug=" + "m" * 41], "project_slug"),
    ("package-keyword", ["package_name=class"], "package_name"),
    ("package-leading-digit", ["package_name=1churn"], "package_name"),
    ("package-shadows-sdk", ["package_name=sagemaker"], "package_name"),
    ("package-shadows-rehearsal", ["package_name=rehearsal"], "package_name"),
    ("region-unknown", ["aws_region=mars-1"], "aws_region"),
    ("region-without-codecommit", ["aws_region=eu-south-2"], "aws_region"),
    ("branch-with-space", ["dev_branch=feature branch"], "dev_branch"),
    ("branch-double-dot", ["main_branch=release..1"], "main_branch"),
    ("branches-equal", ["main_branch=dev"], "main_branch"),
    ("processing-type", ["processing_instance_type=m5.large"], "processing_instance_type"),
    ("training-type", ["training_instance_type=ml.m5"], "training_instance_type"),
    ("endpoint-type", ["endpoint_instance_type=ML.M5.LARGE"], "endpoint_instance_type"),
    # Each instance type is checked against its own operation's enum in botocore (issue 18).
    (
        "processing-type-hosting-only",
        ["processing_instance_type=ml.m5d.large"],
        "processing_instance_type",
    ),
    (
        "training-type-hosting-only",
        ["training_instance_type=ml.c6g.large"],
        "training_instance_type",
    ),
    ("endpoint-type-jobs-only", ["endpoint_instance_type=ml.t3.medium"], "endpoint_instance_type"),
    ("endpoint-size-unknown", ["endpoint_instance_type=ml.m5d.foo"], "endpoint_instance_type"),
    ("threshold-zero", ["quality_threshold=0"], "quality_threshold"),
    ("threshold-above-one", ["quality_threshold=1.5"], "quality_threshold"),
    ("threshold-not-number", ["quality_threshold=high"], "quality_threshold"),
    ("github-repo-format", [*GITHUB, "repository=no-slash"], "repository"),
    (
        "gitlab-repo-format",
        ["source_provider=gitlab", "repository=group/project.git"],
        "repository",
    ),
    ("bitbucket-repo-upper", ["source_provider=bitbucket", "repository=Team/repo"], "repository"),
    ("github-arn-format", [*GITHUB, "codeconnections_arn=arn:aws:s3:::x"], "codeconnections_arn"),
    (
        "github-arn-trailing-newline",
        [*GITHUB, "codeconnections_arn=" + GITHUB_ANSWERS["codeconnections_arn"] + "\n"],
        "codeconnections_arn",
    ),
    ("email", ["author_email=nobody"], "author_email"),
    ("schedule-words", ["retrain_schedule=every monday"], "retrain_schedule"),
    ("schedule-cron-five-fields", ["retrain_schedule=cron(0 3 * * 1)"], "retrain_schedule"),
    ("schedule-rate-plural", ["retrain_schedule=rate(1 days)"], "retrain_schedule"),
    ("notification-email", ["notification_email=team at example"], "notification_email"),
    (
        "stage-account-digits",
        ["staging_account_id=1234", "prod_account_id=555566667777"],
        "staging_account_id",
    ),
    (
        "prod-account-alone",
        ["prod_account_id=555566667777"],
        "staging_account_id and prod_account_id",
    ),
    ("project-name-empty", ["project_name= "], "project_name"),
    ("project-name-newline", ["project_name=Churn\nModel"], "project_name"),
    ("project-name-trailing-newline", ["project_name=Churn Model\n"], "project_name"),
    ("project-name-too-long", ["project_name=" + "n" * 986], "project_name"),
    ("project-name-bidi-override", ["project_name=Churn \u202emodel"], "project_name"),
    ("description-1001", ["description=" + "d" * 1001], "description"),
    ("description-tab", ["description=a\tb"], "description"),
    ("author-angle-brackets", ["author_name=ML <team>"], "author_name"),
    ("author-only-punctuation", ["author_name=..."], "author_name"),
    ("email-trailing-newline", ["author_email=ml@example.com\n"], "author_email"),
    ("slug-trailing-newline", ["project_slug=churn\n"], "project_slug"),
    ("slug-with-slash", ["project_slug=churn/model"], "project_slug"),
    ("slug-with-slashes", ["project_slug=a/b/c"], "project_slug"),
    ("threshold-trailing-newline", ["quality_threshold=0.8\n"], "quality_threshold"),
    ("threshold-underscore", ["quality_threshold=0.8_0"], "quality_threshold"),
    (
        "instance-trailing-newline",
        ["training_instance_type=ml.m5.large\n"],
        "training_instance_type",
    ),
    # Branch names git accepts but that would break a file they land in (issue 11).
    (
        "branch-python-injection",
        ['dev_branch=dev"+__import__("os").system("touch${IFS}pwned")+"'],
        "dev_branch",
    ),
    ("branch-single-quote", ["dev_branch=dev'x"], "dev_branch"),
    ("branch-pipe", ["dev_branch=|dev"], "dev_branch"),
    ("branch-percent", ["dev_branch=%dev"], "dev_branch"),
    ("branch-braces", ["dev_branch={dev}"], "dev_branch"),
    ("branch-hash", ["dev_branch=dev#x"], "dev_branch"),
    ("branch-dollar", ["main_branch=$(HOME)"], "main_branch"),
    ("branch-non-ascii", ["dev_branch=développement"], "dev_branch"),
    ("branch-trailing-newline", ["dev_branch=dev\n"], "dev_branch"),
    ("branch-head", ["main_branch=HEAD"], "main_branch"),
    ("branch-inside-the-other", ["dev_branch=release/dev", "main_branch=release"], "main_branch"),
    (
        "github-repo-trailing-newline",
        [*GITHUB, "repository=my-org/churn\n"],
        "repository",
    ),
    # cookiecutter itself refuses these before the hook runs; same contract for the user.
    ("choice-provider", ["source_provider=gitlab-self-managed"], "source_provider"),
    ("choice-endpoint", ["staging_endpoint=lambda"], "staging_endpoint"),
    ("choice-metric", ["quality_metric=rmse"], "quality_metric"),
    ("boolean", ["prod_approval=maybe"], "prod_approval"),
]


def bake_cli(args: list[str], output_dir) -> subprocess.CompletedProcess:
    """cookiecutter as a user runs it, without prompts, from output_dir's parent."""
    command = [str(BIN / "cookiecutter"), "--no-input", "-o", str(output_dir), str(TEMPLATE)]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=Path(output_dir).parent,
    )


def nothing_left_in(folder: Path) -> bool:
    """folder is absent or empty; the hook removes a slug's extra folders in the background."""
    deadline = time.monotonic() + 10
    while folder.exists() and any(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize(
    ("args", "variable"), [c[1:] for c in BAD_ANSWERS], ids=[c[0] for c in BAD_ANSWERS]
)
def test_bad_answer_is_refused(args, variable, tmp_path):
    result = bake_cli(args, tmp_path / "out")
    assert result.returncode != 0
    # Our hook's lines start with "ERROR <variable>:"; cookiecutter's own choice and
    # boolean errors end with a line naming the variable.
    named = [line for line in result.stderr.splitlines() if variable in line]
    assert named, result.stderr
    assert nothing_left_in(tmp_path / "out")
    assert not list(tmp_path.rglob("pwned")), "an answer ran as code"


def test_every_problem_is_reported_at_once(tmp_path):
    args = ["aws_region=mars-1", "quality_threshold=2", "dev_branch=master", "author_email=x"]
    result = bake_cli(args, tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR ")]
    assert [line.split(":")[0] for line in errors] == [
        "ERROR author_email",
        "ERROR aws_region",
        "ERROR main_branch",
        "ERROR quality_threshold",
    ]
    assert "4 invalid answer(s)" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_hook_lines_carry_no_traceback(tmp_path):
    result = bake_cli(["quality_threshold=high"], tmp_path)
    hook_output = result.stderr.split("ERROR: Stopping generation")[0]
    assert "Traceback" not in hook_output
    assert hook_output.strip() == (
        "ERROR quality_threshold: 'high' must be a number greater than 0 and at most 1\n"
        "1 invalid answer(s): nothing was generated; fix them and run cookiecutter again "
        "(the traceback cookiecutter prints next only reports this refusal)."
    )


# What cookiecutter itself prints, which the template cannot prevent (template README,
# "What cookiecutter prints itself"). Pinned so that the README changes when cookiecutter does.


def test_after_a_refusal_cookiecutter_logs_its_own_traceback(tmp_path):
    # After the hook has exited, cookiecutter.hooks.run_hook_from_repo_dir logs the
    # FailedHookException with logger.exception and cookiecutter.cli echoes it, both on
    # stdout; the hook's own lines are all of stderr.
    result = bake_cli(["quality_threshold=high"], tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "ERROR: Stopping generation because pre_gen_project hook script didn't exit successfully",
        "Traceback (most recent call last):",
    ]
    assert lines[-2:] == [
        "cookiecutter.exceptions.FailedHookException: Hook script failed (exit status: 1)",
        "Hook script failed (exit status: 1)",
    ]
    assert nothing_left_in(tmp_path / "out")


@pytest.mark.parametrize(
    ("args", "last_line"),
    [
        (
            ["source_provider=svn"],
            "ValueError: svn provided for choice variable source_provider, but the choices "
            "are ['codecommit', 'github', 'gitlab', 'bitbucket'].",
        ),
        (
            ["prod_approval=maybe"],
            "ValueError: maybe provided for variable prod_approval could not be converted to "
            "a boolean.",
        ),
    ],
    ids=["choice", "boolean"],
)
def test_cookiecutter_refuses_a_choice_before_any_hook(args, last_line, tmp_path):
    # cookiecutter.generate.apply_overwrites_to_context raises while it reads the answers,
    # before any template code runs; cookiecutter.cli does not catch ValueError.
    result = bake_cli(args, tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback (most recent call last):" in result.stderr
    assert result.stderr.splitlines()[-1] == last_line
    assert "ERROR " not in result.stderr  # the hook never ran
    assert nothing_left_in(tmp_path / "out")


@pytest.mark.parametrize(
    ("slug", "last_line"),
    [
        ("churn\0model", r"ValueError: embedded null byte"),
        ("m" * 256, r"OSError: \[Errno \d+\] File name too long: '.*'"),
    ],
    ids=["nul-character", "longer-than-a-file-name"],
)
def test_a_slug_the_file_system_refuses_fails_before_the_hook(slug, last_line, tmp_path):
    # cookiecutter.generate.render_and_create_dir makes the project folder before the
    # pre-gen hook runs; a NUL (which only a config or replay file can carry) or a name over
    # the file system's limit fails there, in mkdir.
    config = tmp_path / "config.yml"
    config.write_text(f"default_context:\n  project_slug: {json.dumps(slug)}\n")
    (tmp_path / "out").mkdir()  # as a user runs it, into a folder that exists
    result = bake_cli(["--config-file", str(config)], tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback (most recent call last):" in result.stderr
    assert re.fullmatch(last_line, result.stderr.splitlines()[-1]), result.stderr[-300:]
    assert "ERROR " not in result.stderr
    assert nothing_left_in(tmp_path / "out")
