"""The buildspecs hold no logic: every command is a make target that exists.

A buildspec that runs `make ${MAKE_TARGETS}` is checked with every value a CodeBuild
project of the templates gives MAKE_TARGETS (and the buildspec's own default).
"""

import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra_support import template

ROOT = Path(__file__).resolve().parents[2]
BUILDSPECS = ("build.yml", "test.yml", "deploy.yml")
MAKEFILES = (ROOT / "Makefile", ROOT / "infra" / "infra.mk")
TEMPLATES = ("model-build-pipeline.yml", "model-deploy-pipeline.yml")
PYTHON_VERSION = "{{ cookiecutter.python_version }}"
UV_CACHE_DIR = "/root/.cache/uv"
MAKE_TARGETS_REFERENCE = "${MAKE_TARGETS}"
TARGET_RULE = re.compile(r"^([a-z][a-z0-9-]*):(?!=)", re.MULTILINE)


@cache
def buildspec(name: str) -> dict[str, Any]:
    """A parsed buildspec."""
    return yaml.safe_load((ROOT / "buildspecs" / name).read_text())


@cache
def make_targets() -> frozenset[str]:
    """Every target the Makefile and infra/infra.mk define."""
    return frozenset(
        target for path in MAKEFILES for target in TARGET_RULE.findall(path.read_text())
    )


@cache
def resources_of_type(resource_type: str) -> tuple[dict[str, Any], ...]:
    """The properties of every resource of a type in the pipeline templates."""
    found = []
    for name in TEMPLATES:
        document = template(name)
        found.extend(
            resource["Properties"]
            for resource in document["Resources"].values()
            if resource["Type"] == resource_type
        )
    return tuple(found)


def codebuild_projects() -> tuple[dict[str, Any], ...]:
    """The properties of every CodeBuild project in the pipeline templates."""
    return resources_of_type("AWS::CodeBuild::Project")


def make_targets_values(name: str) -> set[str]:
    """Every value MAKE_TARGETS takes when CodeBuild runs buildspecs/<name>."""
    values = set()
    default = buildspec(name).get("env", {}).get("variables", {}).get("MAKE_TARGETS")
    if default:
        values.add(default)
    for project in codebuild_projects():
        if project["Source"]["BuildSpec"] == f"buildspecs/{name}":
            for variable in project["Environment"].get("EnvironmentVariables", []):
                if variable["Name"] == "MAKE_TARGETS":
                    values.add(variable["Value"])
    return values


def commands(name: str) -> list[str]:
    """Every command of every phase of a buildspec."""
    phases = buildspec(name)["phases"].values()
    return [command for phase in phases for command in phase.get("commands", [])]


def targets_named(name: str, command: str) -> list[str]:
    """The make targets a buildspec command runs (MAKE_TARGETS expanded)."""
    words = shlex.split(command)
    assert words[0] == "make", f"buildspecs/{name}: {command!r} is not a make call"
    targets = []
    for word in words[1:]:
        if word == MAKE_TARGETS_REFERENCE:
            targets.extend(
                value for values in make_targets_values(name) for value in values.split()
            )
        elif "=" not in word and not word.startswith("-"):
            targets.append(word)
    return targets


@pytest.mark.parametrize("name", BUILDSPECS)
def test_every_command_names_an_existing_make_target(name: str) -> None:
    for command in commands(name):
        targets = targets_named(name, command)
        assert targets, command
        assert set(targets) <= make_targets(), f"{command}: {set(targets) - make_targets()}"


def test_ci_build_checks_the_data_first_then_lint_unit_tests_and_the_definition() -> None:
    text = (ROOT / "infra" / "infra.mk").read_text()
    (prerequisites,) = re.findall(r"^ci-build: ([^#\n]*)", text, re.MULTILINE)
    assert prerequisites.split() == ["check-data", "lint", "test-unit", "pipeline-definition"]


def test_make_targets_reference_is_expanded_for_every_project() -> None:
    assert make_targets_values("build.yml") == {
        "update-pipelines",
        "ci-build",
        "pipeline-run",
        "pull-request-check",
    }
    assert make_targets_values("deploy.yml") == {"stage-config", "deploy-prod"}


@pytest.mark.parametrize("name", BUILDSPECS)
def test_buildspec_fails_fast_on_the_projects_python(name: str) -> None:
    spec = buildspec(name)
    assert spec["version"] == 0.2
    assert spec["env"]["shell"] == "bash"
    assert spec["phases"]["install"]["runtime-versions"]["python"] == PYTHON_VERSION
    for phase in spec["phases"].values():
        assert phase["on-failure"] == "ABORT"


@pytest.mark.parametrize("name", BUILDSPECS)
def test_buildspec_reports_junit_and_caches_uv(name: str) -> None:
    spec = buildspec(name)
    (report,) = spec["reports"].values()
    assert report["file-format"] == "JUNITXML"
    assert report["base-directory"] == "build/reports"
    assert spec["env"]["variables"]["UV_CACHE_DIR"] == UV_CACHE_DIR
    assert spec["cache"]["paths"] == [f"{UV_CACHE_DIR}/**/*"]


def test_every_buildspec_is_used_and_every_used_one_exists() -> None:
    used = {project["Source"]["BuildSpec"] for project in codebuild_projects()}
    assert used == {f"buildspecs/{name}" for name in BUILDSPECS}


def test_stage_config_artifact_carries_the_repository_without_the_venv() -> None:
    artifacts = buildspec("deploy.yml")["artifacts"]
    assert artifacts["files"] == ["**/*"]
    assert ".venv/**/*" in artifacts["exclude-paths"]


def test_every_project_reports_into_a_group_of_the_stack() -> None:
    # CodeBuild files report <key> of project <name> into the group "<name>-<key>".
    groups = {group["Name"] for group in resources_of_type("AWS::CodeBuild::ReportGroup")}
    for project in codebuild_projects():
        spec = buildspec(project["Source"]["BuildSpec"].removeprefix("buildspecs/"))
        for key in spec["reports"]:
            assert f"{project['Name']}-{key}" in groups, project["Name"]


GROUPS_RULE = re.compile(r"^GROUPS\.([a-z][a-z0-9-]*) :=(.*)$", re.MULTILINE)
# Heavy packages only the Build and Train actions need.
HEAVY_PACKAGES = {"sagemaker", "moto", "checkov"}


@cache
def groups_by_target() -> dict[str, tuple[str, ...]]:
    """The dependency groups the Makefile installs for each CodeBuild target."""
    text = (ROOT / "Makefile").read_text()
    return {target: tuple(value.split()) for target, value in GROUPS_RULE.findall(text)}


def build_phase_targets(name: str) -> list[str]:
    """The make targets a buildspec's build phase runs, as written (unexpanded)."""
    words = [
        word
        for command in buildspec(name)["phases"]["build"]["commands"]
        for word in shlex.split(command)[1:]
    ]
    return [word for word in words if "=" not in word and not word.startswith("-")]


@pytest.mark.parametrize("name", BUILDSPECS)
def test_install_phase_installs_for_exactly_the_targets_it_builds(name: str) -> None:
    (command,) = buildspec(name)["phases"]["install"]["commands"]
    assert shlex.split(command) == ["make", "install", f"FOR={' '.join(build_phase_targets(name))}"]


def test_every_codebuild_target_has_its_dependency_groups() -> None:
    targets = {"test-endpoint"} | {
        target
        for name in BUILDSPECS
        for value in make_targets_values(name)
        for target in value.split()
    }
    assert targets <= set(groups_by_target())
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    for groups in groups_by_target().values():
        assert set(groups) <= set(declared)


@cache
def uv_lock() -> dict[str, Any]:
    """uv.lock, parsed (a large file: once per test process)."""
    return tomllib.loads((ROOT / "uv.lock").read_text())


def locked_closure(groups: tuple[str, ...]) -> set[str]:
    """Every package uv.lock installs for the project with these dependency groups."""
    lock = uv_lock()
    packages = {package["name"]: package for package in lock["package"]}
    (project,) = [p for p in lock["package"] if p.get("source", {}).get("editable") == "."]
    wanted = list(project.get("dependencies", []))
    for group in groups:
        wanted += project["dev-dependencies"][group]
    followed: set[tuple[str, str | None]] = set()  # (package, extra or None)
    while wanted:
        requirement = wanted.pop()
        name = requirement["name"]
        for extra in [None, *requirement.get("extra", [])]:
            if (name, extra) in followed:
                continue
            followed.add((name, extra))
            package = packages[name]
            if extra is None:
                wanted += package.get("dependencies", [])
            else:
                wanted += package["optional-dependencies"][extra]
    return {name for name, _ in followed}


@pytest.mark.parametrize("target", ["stage-config", "test-endpoint", "deploy-prod"])
def test_deploy_actions_install_no_sdk_moto_or_checkov(target: str) -> None:
    installed = locked_closure(groups_by_target()[target])
    assert "boto3" in installed
    assert not installed & HEAVY_PACKAGES


def test_build_action_installs_everything_the_offline_checks_use() -> None:
    installed = locked_closure(groups_by_target()["ci-build"])
    assert HEAVY_PACKAGES | {"pytest", "ruff", "cfn-lint", "xgboost-cpu"} <= installed
    assert "sagemaker" in locked_closure(groups_by_target()["pipeline-run"])
