"""Bakes shared by the template tests: an option matrix, baked once per test session."""

import atexit
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
BIN = Path(PYTHON).parent

GITHUB_ANSWERS = {
    "repository": "my-org/churn-model",
    "codeconnections_arn": (
        "arn:aws:codeconnections:us-east-1:123456789012:connection/"
        "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    ),
}

# The repository answer of each git host: a nested GitLab group, a Bitbucket workspace.
GIT_HOST_ANSWERS = {
    "github": {"repository": GITHUB_ANSWERS["repository"]},
    "gitlab": {"repository": "my-group/ml/churn-model"},
    "bitbucket": {"repository": "my-workspace/churn-model"},
}

# Every combination of the main choices; the other answers cycle through their values so
# each value is baked at least once.
MAIN_CHOICES = {
    "source_provider": ["codecommit", "github"],
    "model_approval": ["manual", "auto"],
    "staging_endpoint": ["serverless", "instance"],
}
# The other git hosts share the GitHub bakes' templates and code paths but for their merge
# module: one bake each, with the rehearsal's choices.
OTHER_GIT_HOSTS = [
    {"source_provider": host, "model_approval": "manual", "staging_endpoint": "serverless"}
    for host in ("gitlab", "bitbucket")
]
CYCLED_CHOICES = {
    "prod_approval": [True, False],
    "python_version": ["3.12", "3.11"],
    "quality_metric": ["auc", "accuracy", "f1"],
    "aws_region": ["us-east-1", "eu-west-1", "ap-southeast-2"],
    "retrain_schedule": ["", "cron(0 3 ? * MON *)", "rate(7 days)"],
    "notification_email": ["", "ml-team@example.com"],
    # Git host bakes with and without a connection (bootstrap creates a missing one): the
    # GitHub and GitLab bakes whose rehearsal runs have none, the Bitbucket one has one.
    "codeconnections_arn": ["", GITHUB_ANSWERS["codeconnections_arn"]],
}


# Separate stage accounts: three distinct accounts in the GitLab bake (rehearsed whole),
# staging and production sharing one account in the longest-names bake. The pipelines'
# account is the caller's at bootstrap, any other.
THREE_ACCOUNTS = {"staging_account_id": "222233334444", "prod_account_id": "555566667777"}
SHARED_STAGE_ACCOUNT = {"staging_account_id": "999900001111", "prod_account_id": "999900001111"}


def answers_for(**choices: object) -> dict:
    """Extra context for one bake: the choices, plus what a git host needs when chosen."""
    answers = dict(choices)
    provider = answers.get("source_provider")
    if provider == "github":
        answers = {**GITHUB_ANSWERS, **answers}
    elif provider in GIT_HOST_ANSWERS:
        answers = {**GIT_HOST_ANSWERS[provider], **answers}
    return answers


def build_matrix() -> list[dict]:
    """The product of the main choices, with the other answers cycled."""
    matrix = []
    combos = [
        dict(zip(MAIN_CHOICES, combo, strict=True))
        for combo in itertools.product(*MAIN_CHOICES.values())
    ]
    for index, choices in enumerate([*combos, *OTHER_GIT_HOSTS]):
        choices = dict(choices)
        for name, values in CYCLED_CHOICES.items():
            choices[name] = values[index % len(values)]
        if choices["source_provider"] == "gitlab":
            choices.update(THREE_ACCOUNTS)
        matrix.append(choices)
    return matrix


def matrix_id(choices: dict) -> str:
    """A readable test id: the main choices, name=value."""
    main = "-".join(f"{name}={choices[name]}" for name in MAIN_CHOICES)
    return f"longest-names-{main}" if choices.get("project_slug") else main


# The longest names the hook accepts, in a region with a long name: every derived name and
# every rendered line is at its longest here.
LONGEST_NAMES = {
    **next(
        c
        for c in build_matrix()
        if (c["source_provider"], c["model_approval"], c["staging_endpoint"])
        == ("github", "auto", "instance")
    ),
    "project_name": "Customer Lifetime Value Forecast",
    "project_slug": "customer-lifetime-value-forecast-xy",
    "aws_region": "ap-southeast-2",
    "dev_branch": "feature/very-long-development-branch",
    "main_branch": "production-release-branch",
    "repository": "some-long-organisation-name/customer-lifetime-value-forecast-xy",
    **SHARED_STAGE_ACCOUNT,
}
MATRIX = [*build_matrix(), LONGEST_NAMES]
DEFAULT = next(
    c
    for c in MATRIX
    if c["source_provider"] == "codecommit"
    and c["model_approval"] == "manual"
    and c["staging_endpoint"] == "serverless"
)
GITHUB, GITLAB, BITBUCKET = (
    next(
        c
        for c in MATRIX
        if c["source_provider"] == host
        and c["model_approval"] == "manual"
        and c["staging_endpoint"] == "serverless"
        and not c.get("project_slug")
    )
    for host in ("github", "gitlab", "bitbucket")
)


def bake(output_dir: Path, **choices: object) -> Path:
    """Run cookiecutter without prompts and return the generated project folder."""
    return Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context=answers_for(**choices),
            output_dir=str(output_dir),
        )
    )


def run(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a command in a baked repo with the template's tools first on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **kwargs.pop("env", {})}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)


def make(target: str, project: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a Makefile target of a baked repo with the template's interpreter."""
    return run(["make", "--no-print-directory", target, f"PYTHON={PYTHON}"], project, **kwargs)


@pytest.fixture(scope="session", params=MATRIX, ids=[matrix_id(c) for c in MATRIX])
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(choices, project folder) for each combination of the matrix, baked once."""
    choices = request.param
    return choices, bake(tmp_path_factory.mktemp("bake"), **choices)


@functools.cache
def default_project() -> Path:
    """The project baked with every default answer, once per test process (removed at exit).

    A function, not only a fixture: the rehearsal engine's tests import the engine from this
    bake while pytest collects them, before any fixture can run.
    """
    output_dir = Path(tempfile.mkdtemp(prefix="default-bake-"))
    atexit.register(shutil.rmtree, output_dir, ignore_errors=True)
    return bake(output_dir)


class BakedEngineFinder(importlib.abc.MetaPathFinder):
    """Finds the package `rehearsal` in the default bake: the engine every bake ships.

    `rehearsal/` is copied into each bake without rendering, so one bake's copy is every
    bake's; its tests import it from there, and no other folder of the bake goes on the path.
    """

    def find_spec(self, name, path, target=None) -> importlib.machinery.ModuleSpec | None:
        if name != "rehearsal":
            return None
        package = default_project() / "rehearsal"
        return importlib.util.spec_from_file_location(
            name, package / "__init__.py", submodule_search_locations=[str(package)]
        )


sys.meta_path.insert(0, BakedEngineFinder())


@pytest.fixture(scope="session")
def default_bake() -> Path:
    """The project baked with every default answer (tests that change it bake their own)."""
    return default_project()


@pytest.fixture(scope="session")
def github_bake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GitHub bake of the matrix (manual approvals, serverless staging)."""
    return bake(tmp_path_factory.mktemp("github"), **GITHUB)


@pytest.fixture(scope="session")
def gitlab_bake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The GitLab bake of the matrix (a project in a subgroup)."""
    return bake(tmp_path_factory.mktemp("gitlab"), **GITLAB)


@pytest.fixture(scope="session")
def bitbucket_bake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Bitbucket Cloud bake of the matrix."""
    return bake(tmp_path_factory.mktemp("bitbucket"), **BITBUCKET)
