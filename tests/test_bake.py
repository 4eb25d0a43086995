"""Every bake of the option matrix: its files, its rendering, its linters and its tests."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, DEFAULT, GITHUB, GITLAB, bake, make, run
from expected_files import expected_files

# Jinja that survived the bake: a cookiecutter variable or a tag. (Other braces, as in
# f-strings or CloudFormation's {{resolve:...}}, are legitimate.)
UNRENDERED = re.compile(r"\{\{\s*cookiecutter|\{%-?\s")


def project_files(project: Path) -> set[str]:
    """Every file of a baked repo, relative, outside .git."""
    return {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }


class CloudFormationLoader(yaml.SafeLoader):
    """A YAML loader that accepts CloudFormation's short tags (!Ref, !Sub, !GetAtt…)."""


CloudFormationLoader.add_multi_constructor("!", lambda loader, suffix, node: suffix)


def test_exact_file_set(baked):
    choices, project = baked
    assert project_files(project) == expected_files(choices)


def test_nothing_left_unrendered(baked):
    _, project = baked
    leftovers = [
        f"{name}:{number}: {line.strip()}"
        for name in sorted(project_files(project))
        for number, line in enumerate((project / name).read_text().splitlines(), 1)
        if UNRENDERED.search(line)
    ]
    assert leftovers == []


def test_yaml_and_json_parse(baked):
    _, project = baked
    for name in project_files(project):
        text = (project / name).read_text()
        if name.endswith((".yml", ".yaml")):
            assert yaml.load(text, Loader=CloudFormationLoader) is not None, name
        elif name.endswith(".json"):
            json.loads(text)


def test_ruff_clean_and_formatted(baked):
    _, project = baked
    check = run([str(BIN / "ruff"), "check", "--no-cache", "."], project)
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = run([str(BIN / "ruff"), "format", "--check", "--no-cache", "."], project)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_cfn_lint_clean(baked):
    _, project = baked
    templates = sorted(str(p) for p in (project / "infra").glob("*.yml"))
    assert templates
    result = run([str(BIN / "cfn-lint"), *templates], project)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_checkov_clean(baked):
    _, project = baked
    args = [
        "--framework", "cloudformation", "-d", "infra", "--compact", "--quiet", "--skip-download",
        "-o", "json",
    ]  # fmt: skip
    result = run([str(BIN / "checkov"), *args], project)
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']})"
        for r in reports
        for check in r.get("results", {}).get("failed_checks", [])
    ]
    assert failed == [], result.stderr[-2000:]
    assert result.returncode == 0, result.stderr[-2000:]


def assert_suite_passes(target: str, project) -> None:
    """Run one of the baked repo's test targets, in one process, and expect it green."""
    result = make(target, project, env={"WORKERS": "0"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_unit_tests_pass(baked):
    assert_suite_passes("test-unit", baked[1])


# The whole flow of these bakes is rehearsed by tests/rehearsal/test_rehearse.py; the GitLab
# bake's integration suite runs as well, since its stages live in accounts of their own.
@pytest.mark.parametrize(
    "choices", [DEFAULT, GITHUB, GITLAB], ids=["default", "github", "three-accounts"]
)
def test_integration_tests_pass(choices, tmp_path):
    assert_suite_passes("test-integration", bake(tmp_path, **choices))


def test_make_test_runs_the_project_suites_then_the_rehearsal(default_bake):
    # A dry run: the commands `make test` would run, in order.
    result = make("test", default_bake, env={"MAKEFLAGS": "--dry-run"})
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if " -m " in line]
    assert [re.search(r" -m (\S+ \S+)", line).group(1) for line in commands] == [
        "pytest tests/unit",
        "pytest tests/integration",
        "rehearsal --python",
    ]


def test_lock_is_current(baked, tmp_path):
    # Offline and with an empty cache: a current lock is checked without any download.
    result = run(
        [str(BIN / "uv"), "lock", "--check", "--offline"],
        baked[1],
        env={"UV_CACHE_DIR": str(tmp_path / "uv-cache")},
    )
    assert result.returncode == 0, (
        "the generated uv.lock does not match its pyproject.toml: run `make lock` in the "
        "template\n" + result.stderr[-2000:]
    )
    assert f'name = "{baked[1].name}"' in (baked[1] / "uv.lock").read_text()


def test_git_repository_with_both_branches(baked):
    choices, project = baked
    branches = run(["git", "branch", "--format=%(HEAD)%(refname:short)"], project).stdout.split()
    dev, main = choices.get("dev_branch", "dev"), choices.get("main_branch", "master")
    assert sorted(branches) == sorted([f"*{dev}", main])
    status = run(["git", "status", "--porcelain"], project).stdout
    assert status == ""
    assert run(["git", "rev-list", "--count", "--all"], project).stdout.strip() == "1"


def test_config_module_carries_the_answers(baked):
    choices, project = baked
    config = next((project / "src").glob("*/config.py")).read_text()
    status = "Approved" if choices["model_approval"] == "auto" else "PendingManualApproval"
    assert f'MODEL_APPROVAL_STATUS = "{status}"' in config
    assert f'QUALITY_METRIC = "{choices["quality_metric"]}"' in config


def test_pre_commit_passes_on_a_fresh_bake(default_bake, tmp_path):
    result = run(
        [str(BIN / "pre-commit"), "run", "--all-files"],
        default_bake,
        env={"PRE_COMMIT_HOME": str(tmp_path / "pre-commit")},
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert run(["git", "status", "--porcelain"], default_bake).stdout == ""


def test_first_commit_runs_the_hooks_without_an_active_venv(tmp_path):
    # A repo after `make install`: .venv holds the tools (here: the template's own) and the
    # git hook is installed; the shell that commits has no venv on PATH.
    project = bake(tmp_path / "bake")
    (project / ".venv").mkdir()
    (project / ".venv" / "bin").symlink_to(BIN, target_is_directory=True)
    pre_commit_home = {"PRE_COMMIT_HOME": str(tmp_path / "pre-commit")}
    installed = run([str(BIN / "pre-commit"), "install"], project, env=pre_commit_home)
    assert installed.returncode == 0, installed.stderr
    (project / "src" / "note.py").write_text('"""A new module."""\n\nVALUE = 1\n')
    system_path = {"PATH": "/usr/bin:/bin", **pre_commit_home}
    env = {**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}, **system_path}
    subprocess.run(["git", "add", "--all"], cwd=project, check=True)
    commit = subprocess.run(
        ["git", "-c", "user.name=Dev", "-c", "user.email=dev@example.com", "commit", "-m", "note"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert commit.returncode == 0, commit.stdout[-3000:] + commit.stderr[-2000:]
    hooks = commit.stdout + commit.stderr
    assert re.search(r"^ruff check\.+Passed$", hooks, re.MULTILINE), hooks
    # So the README does not ask for an activated venv anywhere.
    assert "activate" not in (project / "README.md").read_text()
