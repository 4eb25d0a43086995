"""What the rehearsal needs to know about the project: `[tool.rehearsal]` of pyproject.toml.

The engine imports nothing from the project's package. The few names it cannot read from the
templates it plays (infra/*.yml) come from this section; everything else it learns by running
the project's make targets and CLI, as CodeBuild does.
"""

import tomllib
from dataclasses import dataclass
from pathlib import Path

PYPROJECT = "pyproject.toml"
SECTION = "[tool.rehearsal]"
REQUIRED = (
    "package",
    "region",
    "bootstrap-stack",
    "build-stack",
    "deploy-stack",
    "model-approval-status",
)
# cli: the package under src/ whose `python -m` is the project's command line (default: package).
# account-stack: the stack make bootstrap-account deploys in each stage account (with
# infra/account.yml).
OPTIONAL = ("cli", "git-token-secret", "account-stack")


class SettingsError(ValueError):
    """The settings are missing or invalid; the message names the key and the fix."""


@dataclass(frozen=True)
class Settings:
    """The project's names, as the rehearsal uses them."""

    project: str
    package: str
    region: str
    bootstrap_stack: str
    build_stack: str
    deploy_stack: str
    model_approval_status: str
    cli: str | None = None
    git_token_secret: str | None = None
    account_stack: str | None = None

    @property
    def cli_package(self) -> str:
        """The package the builds run as `python -m <cli_package> <command>`."""
        return self.cli or self.package


def load_settings(root: Path) -> Settings:
    """The settings of the repository at root; SettingsError says what is wrong."""
    path = root / PYPROJECT
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"no {PYPROJECT} in {root}: run it at the repository root") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{PYPROJECT} is not valid TOML: {error}") from None
    section = document.get("tool", {}).get("rehearsal")
    if not isinstance(section, dict):
        raise SettingsError(
            f"{PYPROJECT} has no {SECTION} section: add it with {', '.join(REQUIRED)}"
        )
    unknown = sorted(set(section) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise SettingsError(
            f"{PYPROJECT} {SECTION}: unknown key {unknown[0]}"
            f" (known: {', '.join(REQUIRED + OPTIONAL)})"
        )
    values = {}
    for key in REQUIRED + OPTIONAL:
        value = section.get(key)
        if value is None and key in OPTIONAL:
            continue
        if not isinstance(value, str) or not value.strip():
            raise SettingsError(f'{PYPROJECT} {SECTION}: set {key} = "<name>" (a non-empty string)')
        values[key.replace("-", "_")] = value
    project = document.get("project", {}).get("name")
    if not isinstance(project, str) or not project:
        raise SettingsError(f'{PYPROJECT}: set name = "<project>" in [project]')
    settings = Settings(project=project, **values)
    key = "cli" if settings.cli else "package"
    if not (root / "src" / settings.cli_package / "__main__.py").is_file():
        raise SettingsError(
            f"{PYPROJECT} {SECTION}: {key} = {settings.cli_package!r}, but"
            f" src/{settings.cli_package}/ has no __main__.py: name the package under src/"
            " whose command line the builds run"
        )
    if not (root / "src" / settings.package).is_dir():
        raise SettingsError(
            f"{PYPROJECT} {SECTION}: package = {settings.package!r}, but there is no"
            f" src/{settings.package}/: name the project's package under src/"
        )
    return settings
