"""The rehearsal engine and the ML package stay apart: rehearsal/ imports nothing from src/,
and src/ holds no rehearsal code. The engine learns the project's names from [tool.rehearsal]
of pyproject.toml, which must name this project's package and agree with its config."""

import ast
import re
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import config
from rehearsal.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "rehearsal"
PACKAGES = sorted(path.parent for path in (ROOT / "src").glob("*/__init__.py"))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file; relative imports keep their leading dots."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            modules.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.append((node.lineno, "." * node.level + (node.module or "")))
    return modules


def test_the_engine_imports_nothing_from_src():
    assert PACKAGES, "no package under src/"
    names = {package.name for package in PACKAGES}
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted(ENGINE.rglob("*.py"))
        for line, module in imported_modules(path)
        # Two dots leave the engine; a package under src/ is the ML code.
        if module.startswith("..") or module.split(".")[0] in names
    ]
    assert offending == []


def test_src_holds_no_rehearsal_code():
    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for package in PACKAGES
        for path in sorted(package.rglob("*.py"))
        for line, module in imported_modules(path)
        if module.split(".")[0] == ENGINE.name
    ]
    offending.extend(
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in sorted(package.rglob("*"))
        if path.is_dir() and path.name.startswith("rehears")
    )
    assert offending == []


def test_the_settings_name_this_project():
    settings = load_settings(ROOT)
    assert settings.package == config.__name__.split(".")[0]
    assert settings.project == config.PROJECT_SLUG
    assert settings.model_approval_status == config.MODEL_APPROVAL_STATUS
    assert settings.region == config.DEFAULT_AWS_REGION


def write_pyproject(root: Path, section: str) -> Path:
    """A repository with a package `churn` under src/ and that [tool.rehearsal] section."""
    (root / "src" / "churn").mkdir(parents=True)
    (root / "src" / "churn" / "__main__.py").write_text("")
    (root / "pyproject.toml").write_text(f'[project]\nname = "churn-model"\n\n{section}')
    return root


SETTINGS = (
    '[tool.rehearsal]\npackage = "churn"\nregion = "eu-west-1"\nbuild-stack = "b"\n'
    'deploy-stack = "d"\nmodel-approval-status = "Approved"\n'
)


def test_settings_read_from_pyproject(tmp_path):
    root = write_pyproject(tmp_path, SETTINGS + 'github-token-secret = "s"\n')
    assert load_settings(root) == Settings(
        project="churn-model",
        package="churn",
        region="eu-west-1",
        build_stack="b",
        deploy_stack="d",
        model_approval_status="Approved",
        github_token_secret="s",
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
