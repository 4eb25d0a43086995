"""Helpers to rehearse copies of a bake (`tests/conftest.py` makes the engine importable)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import TEMPLATE, answers_for
from cookiecutter.generate import generate_context
from cookiecutter.prompt import prompt_for_config

NOT_COPIED = shutil.ignore_patterns(
    "build", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "*.csv"
)
REHEARSAL_TIMEOUT_SECONDS = 600
GIT_IDENTITY = ["-c", "user.name=Rehearsal", "-c", "user.email=rehearsal@example.com"]


def rendered_answers(**choices: object) -> dict:
    """Every answer and derived name a bake with these choices was rendered with."""
    context = generate_context(
        str(TEMPLATE / "cookiecutter.json"), extra_context=answers_for(**choices)
    )
    return prompt_for_config(context, no_input=True)


def without_aws_settings() -> dict[str, str]:
    """This process's environment without any AWS_ variable (a rehearsal sets its own)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}


def git(repository: Path, *args: str) -> str:
    """Run git in a copy (never in a shared bake); its output."""
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=repository, capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def repository_copy(project: Path, destination: Path) -> Path:
    """A bake's files and git history (both branches) in destination."""
    shutil.copytree(project, destination, ignore=NOT_COPIED, symlinks=True)
    return destination


def rehearse(repository: Path, until: str | None = None) -> subprocess.CompletedProcess[str]:
    """`make rehearse` in repository with this interpreter (UNTIL=until: the last stage)."""
    return subprocess.run(
        ["make", "rehearse", f"PYTHON={sys.executable}", *([f"UNTIL={until}"] if until else [])],
        cwd=repository,
        env=without_aws_settings(),
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
