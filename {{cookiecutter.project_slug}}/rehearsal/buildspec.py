"""A local CodeBuild: runs a buildspec (version 0.2) the way CodeBuild runs it.

What it plays, from the buildspec reference:
- the phases in CodeBuild's order (install, pre_build, build, post_build), whatever their
  order in the file; phases the caller asks to skip are not run and are reported;
- each command with `set -e` in the shell `env.shell` names (CodeBuild's default is sh), one
  after the other in one logical shell: variables a command assigns, and the directory it
  changes to, are seen by the commands after it (version 0.2 runs every command in one shell
  instance; here each command is its own process, so assignments are exported to carry over);
- a failing command ends its phase; the phase's `finally` commands run all the same;
- `on-failure: ABORT` ends the build, `CONTINUE` goes on to the next phase; without it,
  CodeBuild's own transitions apply: a failed build phase still runs post_build, any other
  failed phase ends the build; CODEBUILD_BUILD_SUCCEEDING is 0 from the first failure on;
- environment precedence: the build container's variables, then the buildspec's
  `env.variables`, its `parameter-store` and `secrets-manager` names (values from resolvers
  the caller supplies), then the project's and the pipeline action's variables, which win;
- `env.exported-variables` come back with their values at the end of the build;
- `artifacts` (files, exclude-paths, base-directory, discard-paths) are copied into a folder,
  `reports` files are found, as CodeBuild uploads them after the build.

Every command's output goes to the build log, between `[Container]` lines like CodeBuild's.
"""

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml

PHASE_ORDER = ("install", "pre_build", "build", "post_build")
SUPPORTED_VERSION = "0.2"
ABORT = "ABORT"
CONTINUE = "CONTINUE"
ON_FAILURE_VALUES = (ABORT, CONTINUE)
SHELLS = ("bash", "sh")
DEFAULT_SHELL = "sh"
# Phase states, as the CodeBuild console names them, plus the two a local run adds.
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"  # the caller asked not to run it
NOT_RUN = "NOT_RUN"  # an earlier phase ended the build
PHASE_KEYS = frozenset({"commands", "finally", "on-failure", "runtime-versions", "run-as"})
ENV_KEYS = frozenset(
    {
        "shell",
        "variables",
        "parameter-store",
        "secrets-manager",
        "exported-variables",
        "git-credential-helper",
    }
)
# Holds a command's exit status in the script that runs it.
STATUS_VARIABLE = "REHEARSAL_COMMAND_STATUS"
# Variables the shell itself sets; they do not carry from one command to the next.
SHELL_OWN_VARIABLES = frozenset({"_", "SHLVL", "PWD", "OLDPWD", STATUS_VARIABLE})
SUCCEEDING_VARIABLE = "CODEBUILD_BUILD_SUCCEEDING"
KILL_GRACE_SECONDS = 5.0
# After a command succeeds, this writes its environment and directory for the next command.
STATE_DUMP = (
    "import json, os, sys; "
    'json.dump({"env": dict(os.environ), "cwd": os.getcwd()}, open(sys.argv[1], "w"))'
)


class BuildspecError(ValueError):
    """The buildspec cannot be run as written; the message names the file and the problem."""


@dataclass(frozen=True)
class Phase:
    """One phase of a buildspec."""

    name: str
    commands: tuple[str, ...] = ()
    finally_commands: tuple[str, ...] = ()
    on_failure: str | None = None
    runtime_versions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Buildspec:
    """A parsed buildspec; phases are in the order CodeBuild runs them."""

    path: Path
    shell: str
    variables: Mapping[str, str]
    parameter_store: Mapping[str, str]
    secrets_manager: Mapping[str, str]
    exported_variables: tuple[str, ...]
    phases: tuple[Phase, ...]
    artifacts: Mapping[str, Any] | None
    reports: Mapping[str, Any]

    def phase(self, name: str) -> Phase | None:
        """The phase of that name, or None when the buildspec has none."""
        return next((phase for phase in self.phases if phase.name == name), None)

    def runtime_versions(self) -> dict[str, str]:
        """Every runtime the buildspec asks the image for (install phase)."""
        install = self.phase("install")
        return dict(install.runtime_versions) if install else {}


@dataclass(frozen=True)
class CommandRun:
    """One command as it ran."""

    phase: str
    command: str
    exit_status: int
    seconds: float
    in_finally: bool = False
    timed_out: bool = False

    @property
    def failed(self) -> bool:
        """Whether the command failed (non-zero exit status or timeout)."""
        return self.exit_status != 0 or self.timed_out


@dataclass
class BuildRun:
    """What a build did: each command, each phase's state, the exported variables."""

    buildspec: Buildspec
    log_path: Path
    commands: list[CommandRun] = field(default_factory=list)
    phase_states: dict[str, str] = field(default_factory=dict)
    exported: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def succeeded(self) -> bool:
        """True when no phase failed."""
        return FAILED not in self.phase_states.values()

    @property
    def skipped_phases(self) -> list[str]:
        """Phases the caller asked not to run."""
        return [name for name, state in self.phase_states.items() if state == SKIPPED]

    @property
    def first_failure(self) -> CommandRun | None:
        """The first command that failed, or None."""
        return next((run for run in self.commands if run.failed), None)


# ---------------------------------------------------------------------------- parsing


def load_buildspec(path: Path, display_path: str | None = None) -> Buildspec:
    """Read and check a buildspec file; BuildspecError names the file and the problem."""
    name = display_path or str(path)
    try:
        document = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as error:
        raise BuildspecError(f"{name}: no such buildspec file") from error
    except yaml.YAMLError as error:
        raise BuildspecError(f"{name}: not valid YAML ({_first_line(error)})") from error
    return parse_buildspec(document, Path(name))


def parse_buildspec(document: Any, path: Path) -> Buildspec:
    """Check a loaded buildspec document and return it as a Buildspec."""
    if not isinstance(document, dict):
        raise BuildspecError(f"{path}: a buildspec is a YAML mapping with version and phases")
    version = str(document.get("version", ""))
    if version != SUPPORTED_VERSION:
        raise BuildspecError(
            f"{path}: version {version or '(missing)'} is not supported: use version: 0.2"
        )
    env = _mapping(document.get("env"), path, "env")
    unknown = sorted(set(env) - ENV_KEYS)
    if unknown:
        raise BuildspecError(f"{path}: unknown env key {unknown[0]!r}")
    shell = str(env.get("shell", DEFAULT_SHELL))
    if shell not in SHELLS:
        raise BuildspecError(f"{path}: env.shell {shell!r} is not one of {', '.join(SHELLS)}")
    exported = env.get("exported-variables") or []
    if not isinstance(exported, list):
        raise BuildspecError(f"{path}: env.exported-variables must be a list of names")
    phases_document = _mapping(document.get("phases"), path, "phases")
    if not phases_document:
        raise BuildspecError(f"{path}: no phases: add at least a build phase with commands")
    unknown = sorted(set(phases_document) - set(PHASE_ORDER))
    if unknown:
        raise BuildspecError(
            f"{path}: unknown phase {unknown[0]!r} (phases are {', '.join(PHASE_ORDER)})"
        )
    phases = tuple(
        _parse_phase(name, phases_document[name], path)
        for name in PHASE_ORDER
        if name in phases_document
    )
    artifacts = document.get("artifacts")
    if artifacts is not None:
        artifacts = _mapping(artifacts, path, "artifacts")
        if not isinstance(artifacts.get("files"), list) or not artifacts["files"]:
            raise BuildspecError(f"{path}: artifacts.files must be a non-empty list of paths")
    return Buildspec(
        path=path,
        shell=shell,
        variables=_string_mapping(env.get("variables"), path, "env.variables"),
        parameter_store=_string_mapping(env.get("parameter-store"), path, "env.parameter-store"),
        secrets_manager=_string_mapping(env.get("secrets-manager"), path, "env.secrets-manager"),
        exported_variables=tuple(str(name) for name in exported),
        phases=phases,
        artifacts=artifacts,
        reports=_mapping(document.get("reports"), path, "reports"),
    )


def _parse_phase(name: str, document: Any, path: Path) -> Phase:
    where = f"phases.{name}"
    document = _mapping(document, path, where)
    unknown = sorted(set(document) - PHASE_KEYS)
    if unknown:
        raise BuildspecError(f"{path}: unknown key {unknown[0]!r} in {where}")
    on_failure = document.get("on-failure")
    if on_failure is not None and on_failure not in ON_FAILURE_VALUES:
        raise BuildspecError(f"{path}: {where}.on-failure is {on_failure!r}; use ABORT or CONTINUE")
    runtime_versions = _mapping(document.get("runtime-versions"), path, f"{where}.runtime-versions")
    if runtime_versions and name != "install":
        raise BuildspecError(f"{path}: runtime-versions belongs to the install phase, not {name}")
    return Phase(
        name=name,
        commands=_commands(document.get("commands"), path, f"{where}.commands"),
        finally_commands=_commands(document.get("finally"), path, f"{where}.finally"),
        on_failure=on_failure,
        runtime_versions={key: _scalar(value) for key, value in runtime_versions.items()},
    )


def _mapping(value: Any, path: Path, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BuildspecError(f"{path}: {where} must be a mapping")
    return value


def _string_mapping(value: Any, path: Path, where: str) -> dict[str, str]:
    return {str(key): _scalar(item) for key, item in _mapping(value, path, where).items()}


def _scalar(value: Any) -> str:
    """A YAML scalar as CodeBuild reads it: booleans as true/false, the rest as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _commands(value: Any, path: Path, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str | int) for item in value):
        raise BuildspecError(f"{path}: {where} must be a list of command strings")
    return tuple(str(item) for item in value)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


# ---------------------------------------------------------------------------- running


@dataclass
class _ShellState:
    """What carries from one command to the next: the environment and the directory."""

    env: dict[str, str]
    cwd: Path


def run_buildspec(
    buildspec: Buildspec,
    source_dir: Path,
    log_path: Path,
    environment: Mapping[str, str],
    project_variables: Mapping[str, str] | None = None,
    skip_phases: Collection[str] = (),
    parameter_store: Callable[[str], str] | None = None,
    secrets_manager: Callable[[str], str] | None = None,
    timeout_seconds: float | None = None,
    python: str = sys.executable,
) -> BuildRun:
    """Run the buildspec in source_dir; every command's output goes to log_path.

    environment is the build container's (CodeBuild's built-in variables, PATH, HOME...);
    project_variables are the project's and the pipeline action's, which override the
    buildspec's own. parameter_store(name) and secrets_manager(secret_id) return the values
    behind env.parameter-store and env.secrets-manager; a missing value is a BuildspecError.
    timeout_seconds bounds the whole build, like a project's timeout.
    """
    unknown = sorted(set(skip_phases) - set(PHASE_ORDER))
    if unknown:
        raise ValueError(f"cannot skip {unknown[0]!r}: phases are {', '.join(PHASE_ORDER)}")
    started = time.perf_counter()
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    env = dict(environment)
    env.update(buildspec.variables)
    env.update(_resolve_parameters(buildspec, parameter_store))
    env.update(_resolve_secrets(buildspec, secrets_manager))
    env.update(project_variables or {})
    env["CODEBUILD_SRC_DIR"] = str(source_dir)
    env[SUCCEEDING_VARIABLE] = "1"
    state = _ShellState(env=env, cwd=Path(source_dir))
    run = BuildRun(buildspec=buildspec, log_path=Path(log_path))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        _log(log, f"Running the buildspec {buildspec.path} in {source_dir}")
        ended = False
        for phase in buildspec.phases:
            label = phase.name.upper()
            if phase.name in skip_phases:
                run.phase_states[phase.name] = SKIPPED
                for command in (*phase.commands, *phase.finally_commands):
                    _log(log, f"Skipping command {command} (phase {label} skipped on request)")
                continue
            if ended:
                run.phase_states[phase.name] = NOT_RUN
                _log(log, f"Phase {label} not run: an earlier phase ended the build")
                continue
            state.env[SUCCEEDING_VARIABLE] = "1" if run.succeeded else "0"
            _log(log, f"Entering phase {label}")
            phase_ok = _run_commands(
                phase, phase.commands, False, state, run, log, buildspec.shell, deadline, python
            )
            # finally runs whatever happened to the commands before it.
            finally_ok = _run_commands(
                phase,
                phase.finally_commands,
                True,
                state,
                run,
                log,
                buildspec.shell,
                deadline,
                python,
            )
            ok = phase_ok and finally_ok
            run.phase_states[phase.name] = SUCCEEDED if ok else FAILED
            _log(log, f"Phase complete: {label} State: {run.phase_states[phase.name]}")
            if not ok:
                ended = _build_ends_after_failure(phase)
        run.environment = dict(state.env)
        run.exported = {
            name: state.env[name] for name in buildspec.exported_variables if name in state.env
        }
        run.seconds = time.perf_counter() - started
        _log(log, f"Build {'SUCCEEDED' if run.succeeded else 'FAILED'} in {run.seconds:.1f} s")
    return run


def _build_ends_after_failure(phase: Phase) -> bool:
    """Whether a failed phase ends the build (on-failure, else CodeBuild's transitions)."""
    if phase.on_failure == CONTINUE:
        return False
    if phase.on_failure == ABORT:
        return True
    # Without on-failure, a failed build phase still goes on to post_build.
    return phase.name != "build"


def _run_commands(
    phase: Phase,
    commands: tuple[str, ...],
    in_finally: bool,
    state: _ShellState,
    run: BuildRun,
    log: TextIO,
    shell: str,
    deadline: float | None,
    python: str,
) -> bool:
    """Run commands in order until one fails; whether they all succeeded."""
    for command in commands:
        _log(log, f"Running command {command}")
        started = time.perf_counter()
        exit_status, timed_out = _run_command(command, state, log, shell, deadline, python)
        result = CommandRun(
            phase=phase.name,
            command=command,
            exit_status=exit_status,
            seconds=time.perf_counter() - started,
            in_finally=in_finally,
            timed_out=timed_out,
        )
        run.commands.append(result)
        if result.failed:
            reason = "timed out" if timed_out else f"exit status {exit_status}"
            _log(log, f"Command did not exit successfully {command} {reason}")
            _log(
                log,
                f"Phase context status code: COMMAND_EXECUTION_ERROR Message: Error while "
                f"executing command: {command}. Reason: {reason}",
            )
            return False
    return True


def _run_command(
    command: str,
    state: _ShellState,
    log: TextIO,
    shell: str,
    deadline: float | None,
    python: str,
) -> tuple[int, bool]:
    """Run one command in its own shell process; (exit status, timed out)."""
    with tempfile.TemporaryDirectory(prefix="buildspec-") as scratch:
        state_file = Path(scratch, "state.json")
        dump = (
            f"{shlex.quote(python)} -S -c {shlex.quote(STATE_DUMP)} {shlex.quote(str(state_file))}"
        )
        # set -e: the command fails at its first failing line; set -a: what it assigns
        # reaches the next command, as in CodeBuild's single shell. The command's own exit
        # status decides (set -e ignores a failing `a && b`, CodeBuild does not); only a
        # command that succeeded hands its state on.
        script = (
            f"set -e\nset -a\n{command}\n{STATUS_VARIABLE}=$?\n"
            f'[ "${STATUS_VARIABLE}" -eq 0 ] || exit "${STATUS_VARIABLE}"\n{dump}\n'
        )
        log.flush()
        try:
            process = subprocess.Popen(
                [shell, "-c", script],
                cwd=state.cwd,
                env=state.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            log.write(f"cannot start {shell}: {error}\n")
            return 127, False
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            exit_status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(process)
            return -1, True
        if exit_status == 0 and state_file.exists():
            saved = json.loads(state_file.read_text())
            state.env = {
                name: value
                for name, value in saved["env"].items()
                if name not in SHELL_OWN_VARIABLES
            }
            state.cwd = Path(saved["cwd"])
        return exit_status, False


def _stop(process: subprocess.Popen) -> None:
    """Stop a command and everything it started (its process group)."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _log(log: TextIO, message: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y/%m/%d %H:%M:%S")
    log.write(f"[Container] {stamp} {message}\n")
    log.flush()


def _resolve_parameters(
    buildspec: Buildspec, parameter_store: Callable[[str], str] | None
) -> dict[str, str]:
    values = {}
    for variable, parameter in buildspec.parameter_store.items():
        if parameter_store is None:
            raise BuildspecError(
                f"{buildspec.path}: env.parameter-store {variable} needs Parameter Store"
                f" parameter {parameter}, and no parameter values were given"
            )
        try:
            values[variable] = parameter_store(parameter)
        except KeyError as error:
            raise BuildspecError(
                f"{buildspec.path}: env.parameter-store {variable}: no parameter {parameter}"
            ) from error
    return values


def _resolve_secrets(
    buildspec: Buildspec, secrets_manager: Callable[[str], str] | None
) -> dict[str, str]:
    values = {}
    for variable, reference in buildspec.secrets_manager.items():
        secret_id, json_key = split_secret_reference(reference)
        where = f"{buildspec.path}: env.secrets-manager {variable}"
        if secrets_manager is None:
            raise BuildspecError(f"{where} needs secret {secret_id}, and no secrets were given")
        try:
            secret = secrets_manager(secret_id)
        except KeyError as error:
            raise BuildspecError(f"{where}: no secret {secret_id}") from error
        if json_key:
            try:
                secret = str(json.loads(secret)[json_key])
            except (ValueError, KeyError, TypeError) as error:
                raise BuildspecError(
                    f"{where}: secret {secret_id} is not JSON with the key {json_key!r}"
                ) from error
        values[variable] = secret
    return values


def split_secret_reference(reference: str) -> tuple[str, str]:
    """(secret id, JSON key) of `secret-id:json-key:version-stage:version-id`.

    The secret id may be an ARN, which has colons of its own (7 fields).
    """
    fields = reference.split(":")
    id_fields = 7 if reference.startswith("arn:") else 1
    secret_id = ":".join(fields[:id_fields])
    rest = fields[id_fields:]
    return secret_id, (rest[0] if rest else "")


# ---------------------------------------------------------------------------- artifacts


def glob_pattern(pattern: str) -> re.Pattern[str]:
    """A regular expression for a buildspec path pattern (`**` spans directories)."""
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts) + r"\Z")


def _files_under(root: Path) -> Iterator[str]:
    for directory, _, files in os.walk(root):
        for name in files:
            yield Path(directory, name).relative_to(root).as_posix()


def matching_files(
    root: Path, patterns: Collection[str], excluded: Collection[str] = ()
) -> list[str]:
    """Paths under root (relative, sorted) that match a pattern and no excluded pattern."""
    included = [glob_pattern(pattern.removeprefix("./") or "**/*") for pattern in patterns]
    excluding = [glob_pattern(pattern) for pattern in excluded]
    if not root.is_dir():
        return []
    return sorted(
        path
        for path in _files_under(root)
        if any(rx.match(path) for rx in included) and not any(rx.match(path) for rx in excluding)
    )


def collect_artifacts(buildspec: Buildspec, source_dir: Path, output_dir: Path) -> list[str]:
    """Copy the buildspec's artifact files into output_dir; the paths copied.

    BuildspecError when the buildspec declares no artifacts or no file matches (CodeBuild
    fails the build in its UPLOAD_ARTIFACTS phase then).
    """
    spec = buildspec.artifacts
    if not spec:
        raise BuildspecError(
            f"{buildspec.path}: the pipeline expects an output artifact and the buildspec has"
            " no artifacts section"
        )
    base = Path(source_dir, str(spec.get("base-directory", "")))
    discard_paths = _scalar(spec.get("discard-paths", "no")).lower() in ("yes", "true")
    files = matching_files(
        base, [str(item) for item in spec["files"]], spec.get("exclude-paths") or []
    )
    if not files:
        raise BuildspecError(
            f"{buildspec.path}: no file matches artifacts.files {spec['files']} under"
            f" {spec.get('base-directory') or 'the source directory'}"
        )
    for relative in files:
        target = output_dir / (Path(relative).name if discard_paths else relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(base / relative, target)
    return files


def report_files(buildspec: Buildspec, source_dir: Path) -> dict[str, list[Path]]:
    """The files each report group of the buildspec would upload, by report name."""
    found = {}
    for name, spec in buildspec.reports.items():
        spec = spec or {}
        base = Path(source_dir, str(spec.get("base-directory", "")))
        files = matching_files(base, [str(item) for item in spec.get("files") or ["**/*"]])
        found[str(name)] = [base / relative for relative in files]
    return found
