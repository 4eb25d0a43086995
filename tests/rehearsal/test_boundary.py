"""The rehearsal engine and the project's packages stay apart: rehearsal/ imports nothing from
src/, and src/ holds no rehearsal code. The engine ships verbatim in every bake and learns the
project's names from [tool.rehearsal] of pyproject.toml, which each bake renders from its
answers."""

import ast
import re
from pathlib import Path

import pytest
import rehearsal
from conftest import TEMPLATE, default_project
from engine_support import rendered_answers
from rehearsal.settings import Settings, SettingsError, load_settings

ENGINE = default_project() / "rehearsal"
BAKES = pytest.mark.parametrize(
    "project", ["default_bake", "github_bake"], ids=["default", "github"]
)


def packages(root: Path) -> list[Path]:
    """The packages under a bake's src/."""
    return sorted(path.parent for path in (root / "src").glob("*/__init__.py"))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file; relative imports keep their leading dots."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.append((node.lineno, "." * node.level + (node.module or "")))
    return modules


@BAKES
def test_the_engine_imports_nothing_from_src(request, project):
    root = request.getfixturevalue(project)
    names = {package.name for package in packages(root)}
    assert names, "no package under src/"
    offending = [
        f"{path.relative_to(root)}:{line} imports {module}"
        for path in sorted((root / "rehearsal").rglob("*.py"))
        for line, module in imported_modules(path)
        # Two dots leave the engine; a package under src/ is the project's code.
        if module.startswith("..") or module.split(".")[0] in names
    ]
    assert offending == []


@BAKES
def test_src_holds_no_rehearsal_code(request, project):
    root = request.getfixturevalue(project)
    offending = [
        f"{path.relative_to(root)}:{line} imports {module}"
        for package in packages(root)
        for path in sorted(package.rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] == "rehearsal"
    ]
    offending.extend(
        str(path.relative_to(root))
        for package in packages(root)
        for path in sorted(package.rglob("*"))
        if path.is_dir() and path.name.startswith("rehears")
    )
    assert offending == []


def engine_files(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file of an engine folder (bytecode aside)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_every_bake_ships_the_template_engine_verbatim(baked):
    _, project = baked
    assert engine_files(project / "rehearsal") == engine_files(
        TEMPLATE / "{{cookiecutter.project_slug}}" / "rehearsal"
    )


def test_these_tests_import_the_engine_a_bake_ships():
    assert Path(rehearsal.__file__).parent == ENGINE


def test_the_settings_carry_the_answers(baked):
    choices, project = baked
    answers = rendered_answers(**choices)
    settings = load_settings(project)
    assert settings.project == answers["project_slug"]
    assert settings.package == answers["package_name"]
    assert settings.cli_package == answers["__ops_package_name"]
    assert settings.region == answers["aws_region"]
    assert settings.build_stack == answers["__build_stack_name"]
    assert settings.deploy_stack == answers["__deploy_stack_name"]
    assert settings.model_approval_status == answers["__model_approval_status"]
    git_host = choices["source_provider"] != "codecommit"
    assert settings.git_token_secret == (answers["__git_token_secret_name"] if git_host else None)


def write_pyproject(root: Path, section: str) -> Path:
    """A repository with a package `churn` under src/ and that [tool.rehearsal] section."""
    (root / "src" / "churn").mkdir(parents=True)
    (root / "src" / "churn" / "__main__.py").write_text("")
    (root / "pyproject.toml").write_text(f'[project]\nname = "churn-model"\n\n{section}')
    return root


SETTINGS = (
    '[tool.rehearsal]\npackage = "churn"\nregion = "eu-west-1"\nbootstrap-stack = "s"\n'
    'build-stack = "b"\ndeploy-stack = "d"\nmodel-approval-status = "Approved"\n'
)


def test_settings_read_from_pyproject(tmp_path):
    root = write_pyproject(tmp_path, SETTINGS + 'git-token-secret = "s"\n')
    assert load_settings(root) == Settings(
        project="churn-model",
        package="churn",
        region="eu-west-1",
        bootstrap_stack="s",
        build_stack="b",
        deploy_stack="d",
        model_approval_status="Approved",
        git_token_secret="s",
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("", "has no [tool.rehearsal] section"),
        (SETTINGS.replace('region = "eu-west-1"\n', ""), "set region ="),
        (SETTINGS.replace('"b"', '""'), "set build-stack ="),
        (SETTINGS + "regoin = 'x'\n", "unknown key regoin"),
        (SETTINGS.replace('"churn"', '"other"'), "src/other/ has no __main__.py"),
        (SETTINGS + "[broken\n", "is not valid TOML"),
    ],
    ids=["no-section", "missing", "empty", "unknown", "no-package", "toml"],
)
def test_bad_settings_name_the_problem(tmp_path, section, message):
    root = write_pyproject(tmp_path, section)
    with pytest.raises(SettingsError, match=re.escape(message)):
        load_settings(root)
