"""The local buildspec runner plays CodeBuild's rules: phase order, on-failure, finally,
`set -e`, variables carried between commands, environment precedence, exported variables,
Parameter Store and Secrets Manager values, skipped phases, timeouts and artifacts; and the
buildspecs of the default and GitHub bakes load."""

import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
from rehearsal.buildspec import (
    FAILED,
    NOT_RUN,
    SKIPPED,
    SUCCEEDED,
    BuildspecError,
    collect_artifacts,
    glob_pattern,
    load_buildspec,
    matching_files,
    report_files,
    run_buildspec,
    split_secret_reference,
)

CONTAINER = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(Path.home())}
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:build/token-AbCdEf"


def write_buildspec(directory: Path, text: str) -> Path:
    """A buildspec file with that YAML (dedented)."""
    path = directory / "buildspec.yml"
    path.write_text(textwrap.dedent(text))
    return path


def run(tmp_path: Path, text: str, **options):
    """Load and run a buildspec in tmp_path/src; the BuildRun."""
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    buildspec = load_buildspec(write_buildspec(tmp_path, text))
    options.setdefault("environment", CONTAINER)
    return run_buildspec(
        buildspec, source, tmp_path / "build.log", python=sys.executable, **options
    )


def lines(path: Path) -> list[str]:
    """The lines of a file the commands wrote."""
    return path.read_text().split()


def test_phases_run_in_codebuild_order_whatever_their_order_in_the_file(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          post_build:
            commands: [echo post_build >> order]
          build:
            commands: [echo build >> order]
          install:
            commands: [echo install >> order]
          pre_build:
            commands: [echo pre_build >> order]
        """,
    )
    assert result.succeeded
    assert lines(tmp_path / "src" / "order") == ["install", "pre_build", "build", "post_build"]
    assert list(result.phase_states.values()) == [SUCCEEDED] * 4


def test_a_failing_command_ends_its_phase_and_finally_still_runs(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          build:
            commands:
              - echo first >> out
              - exit 3
              - echo never >> out
            finally:
              - echo cleanup >> out
        """,
    )
    assert lines(tmp_path / "src" / "out") == ["first", "cleanup"]
    assert not result.succeeded
    assert result.phase_states["build"] == FAILED
    failure = result.first_failure
    assert (failure.phase, failure.command, failure.exit_status) == ("build", "exit 3", 3)


def test_every_command_runs_with_set_e(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          build:
            commands:
              - |
                false
                echo after-false >> out
        """,
    )
    assert not result.succeeded
    assert not (tmp_path / "src" / "out").exists()


def test_a_command_whose_and_list_fails_fails_although_set_e_lets_it_pass(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          build:
            commands:
              - cd no_such_folder && echo inside > out
              - touch next_command_ran
        """,
    )
    assert result.first_failure.command == "cd no_such_folder && echo inside > out"
    assert result.first_failure.exit_status != 0
    assert not (tmp_path / "src" / "next_command_ran").exists()


def test_a_failing_finally_command_fails_the_phase(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          build:
            commands: ["true"]
            finally: ["false"]
        """,
    )
    assert result.phase_states["build"] == FAILED
    assert result.first_failure.in_finally


def test_abort_ends_the_build(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          build:
            on-failure: ABORT
            commands: ["false"]
          post_build:
            commands: [touch post_build_ran]
        """,
    )
    assert result.phase_states == {"build": FAILED, "post_build": NOT_RUN}
    assert not (tmp_path / "src" / "post_build_ran").exists()


def test_continue_goes_on_with_the_build_marked_failed(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          pre_build:
            on-failure: CONTINUE
            commands: ["false"]
          build:
            commands: [echo "$CODEBUILD_BUILD_SUCCEEDING" > succeeding]
        """,
    )
    assert result.phase_states == {"pre_build": FAILED, "build": SUCCEEDED}
    assert not result.succeeded
    assert lines(tmp_path / "src" / "succeeding") == ["0"]


@pytest.mark.parametrize(
    ("failing_phase", "next_phase", "next_state"),
    [
        ("build", "post_build", SUCCEEDED),
        ("install", "build", NOT_RUN),
        ("pre_build", "build", NOT_RUN),
    ],
)
def test_without_on_failure_codebuild_transitions_apply(
    tmp_path, failing_phase, next_phase, next_state
):
    result = run(
        tmp_path,
        f"""\
        version: 0.2
        phases:
          {failing_phase}:
            commands: ["false"]
          {next_phase}:
            commands: ["true"]
        """,
    )
    assert result.phase_states == {failing_phase: FAILED, next_phase: next_state}


def test_variables_and_directory_carry_from_command_to_command(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          pre_build:
            commands:
              - GREETING=hello
              - mkdir -p sub && cd sub
          build:
            commands:
              - echo "$GREETING $(basename "$PWD")" > ../carried
        """,
    )
    assert result.succeeded, result.first_failure
    assert lines(tmp_path / "src" / "carried") == ["hello", "sub"]


def test_project_variables_override_the_buildspec_which_overrides_the_container(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        env:
          variables:
            FROM_CONTAINER: buildspec
            FROM_PROJECT: buildspec
            ONLY_BUILDSPEC: buildspec
        phases:
          build:
            commands:
              - echo "$FROM_CONTAINER $FROM_PROJECT $ONLY_BUILDSPEC $ONLY_CONTAINER" > seen
        """,
        environment={**CONTAINER, "FROM_CONTAINER": "container", "ONLY_CONTAINER": "container"},
        project_variables={"FROM_PROJECT": "project"},
    )
    assert result.succeeded
    assert lines(tmp_path / "src" / "seen") == ["buildspec", "project", "buildspec", "container"]


def test_codebuild_variables_are_set_for_the_commands(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          build:
            commands: [echo "$CODEBUILD_SRC_DIR $CODEBUILD_BUILD_SUCCEEDING" > seen]
        """,
    )
    assert result.succeeded
    assert lines(tmp_path / "src" / "seen") == [str(tmp_path / "src"), "1"]


def test_exported_variables_come_back_with_their_final_values(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        env:
          exported-variables: [MODEL_VERSION, NEVER_SET]
        phases:
          build:
            commands:
              - MODEL_VERSION=1
          post_build:
            commands:
              - MODEL_VERSION=2
        """,
    )
    assert result.exported == {"MODEL_VERSION": "2"}


def test_parameter_store_and_secrets_manager_values_come_from_the_resolvers(tmp_path):
    requested = []

    def secret(secret_id):
        requested.append(secret_id)
        return '{"token": "s3cr3t"}'

    result = run(
        tmp_path,
        f"""\
        version: 0.2
        env:
          parameter-store:
            ENDPOINT: /project/endpoint-name
          secrets-manager:
            TOKEN: {SECRET_ARN}:token
        phases:
          build:
            commands: [echo "$ENDPOINT $TOKEN" > seen]
        """,
        parameter_store={"/project/endpoint-name": "staging"}.__getitem__,
        secrets_manager=secret,
    )
    assert result.succeeded
    assert lines(tmp_path / "src" / "seen") == ["staging", "s3cr3t"]
    assert requested == [SECRET_ARN]


def test_a_missing_parameter_is_one_line_naming_the_variable_and_the_parameter(tmp_path):
    with pytest.raises(BuildspecError) as raised:
        run(
            tmp_path,
            """\
            version: 0.2
            env:
              parameter-store:
                ENDPOINT: /project/missing
            phases:
              build:
                commands: ["true"]
            """,
            parameter_store={}.__getitem__,
        )
    message = str(raised.value)
    assert "ENDPOINT" in message and "/project/missing" in message and "\n" not in message


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("build/token", ("build/token", "")),
        ("build/token:token:AWSCURRENT", ("build/token", "token")),
        (SECRET_ARN, (SECRET_ARN, "")),
        (f"{SECRET_ARN}:token::", (SECRET_ARN, "token")),
    ],
)
def test_secret_references_split_an_arn_from_its_json_key(reference, expected):
    assert split_secret_reference(reference) == expected


def test_skipped_phases_do_not_run_and_are_reported(tmp_path):
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          install:
            runtime-versions:
              python: "3.12"
            commands: [touch installed]
          build:
            commands: [touch built]
        """,
        skip_phases={"install"},
    )
    assert result.succeeded
    assert result.skipped_phases == ["install"]
    assert result.phase_states["install"] == SKIPPED
    assert not (tmp_path / "src" / "installed").exists()
    assert (tmp_path / "src" / "built").exists()
    assert "Skipping command touch installed" in (tmp_path / "build.log").read_text()
    assert result.buildspec.runtime_versions() == {"python": "3.12"}


def test_the_log_holds_each_command_and_its_output(tmp_path):
    run(
        tmp_path,
        """\
        version: 0.2
        phases:
          build:
            commands:
              - echo to-stdout
              - echo to-stderr >&2
        """,
    )
    log = (tmp_path / "build.log").read_text()
    assert "Running command echo to-stdout" in log
    assert "to-stdout\n" in log and "to-stderr\n" in log
    assert "Phase complete: BUILD State: SUCCEEDED" in log


def test_a_build_past_its_timeout_is_stopped(tmp_path):
    started = time.monotonic()
    result = run(
        tmp_path,
        """\
        version: 0.2
        phases:
          build:
            commands: [sleep 30]
        """,
        timeout_seconds=0.5,
    )
    assert time.monotonic() - started < 10
    assert result.first_failure.timed_out
    assert not result.succeeded


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version: 0.1\nphases: {build: {commands: [x]}}\n", "version 0.1 is not supported"),
        ("version: 0.2\nphases: {deploy: {commands: [x]}}\n", "unknown phase 'deploy'"),
        ("version: 0.2\nphases: {build: {commands: make test}}\n", "must be a list"),
        (
            "version: 0.2\nphases: {build: {on-failure: RETRY, commands: [x]}}\n",
            "ABORT or CONTINUE",
        ),
        ("version: 0.2\nphases: {build: {command: [x]}}\n", "unknown key 'command'"),
        ("version: 0.2\nenv: {shell: zsh}\nphases: {build: {commands: [x]}}\n", "env.shell"),
        ("version: 0.2\nphases: {}\n", "no phases"),
        ("- version: 0.2\n", "a YAML mapping"),
        ("version: 0.2\nphases: {build: {commands: [x]}\n", "not valid YAML"),
        (
            "version: 0.2\nphases: {build: {runtime-versions: {python: 3.12}, commands: [x]}}\n",
            "install phase",
        ),
        (
            "version: 0.2\nphases: {build: {commands: [x]}}\nartifacts: {name: x}\n",
            "artifacts.files",
        ),
    ],
)
def test_a_wrong_buildspec_is_one_line_naming_the_file_and_the_problem(tmp_path, text, problem):
    path = tmp_path / "buildspec.yml"
    path.write_text(text)
    with pytest.raises(BuildspecError) as raised:
        load_buildspec(path)
    message = str(raised.value)
    assert problem in message
    assert str(path) in message
    assert "\n" not in message


def test_a_missing_buildspec_file_is_one_line(tmp_path):
    with pytest.raises(BuildspecError, match=r"^buildspecs/gone\.yml: no such buildspec file$"):
        load_buildspec(tmp_path / "gone.yml", "buildspecs/gone.yml")


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("**/*", "Makefile", True),
        ("**/*", "src/pkg/module.py", True),
        (".venv/**/*", ".venv/bin/python", True),
        (".venv/**/*", "src/.venv/x", False),
        ("*.xml", "unit.xml", True),
        ("*.xml", "nested/unit.xml", False),
        ("build/**/*.json", "build/deploy/staging.json", True),
    ],
)
def test_path_patterns_follow_codebuild_globs(pattern, path, matches):
    assert bool(glob_pattern(pattern).match(path)) is matches


def test_artifacts_are_the_files_matched_minus_the_excluded_ones(tmp_path):
    source = tmp_path / "src"
    for name in ("Makefile", "build/deploy/staging.json", ".venv/bin/python", ".git/HEAD"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(name)
    buildspec = load_buildspec(
        write_buildspec(
            tmp_path,
            """\
            version: 0.2
            phases:
              build:
                commands: ["true"]
            artifacts:
              files: ["**/*"]
              exclude-paths: [".venv/**/*", ".git/**/*"]
            """,
        )
    )
    copied = collect_artifacts(buildspec, source, tmp_path / "artifact")
    assert copied == ["Makefile", "build/deploy/staging.json"]
    assert (tmp_path / "artifact" / "build" / "deploy" / "staging.json").read_text() == (
        "build/deploy/staging.json"
    )


def test_artifacts_honour_base_directory_and_discard_paths(tmp_path):
    source = tmp_path / "src"
    (source / "build" / "deploy").mkdir(parents=True)
    (source / "build" / "deploy" / "prod.json").write_text("{}")
    buildspec = load_buildspec(
        write_buildspec(
            tmp_path,
            """\
            version: 0.2
            phases:
              build:
                commands: ["true"]
            artifacts:
              base-directory: build
              files: ["deploy/*.json"]
              discard-paths: yes
            """,
        )
    )
    assert collect_artifacts(buildspec, source, tmp_path / "artifact") == ["deploy/prod.json"]
    assert (tmp_path / "artifact" / "prod.json").is_file()


def test_artifacts_that_match_nothing_fail_like_codebuild(tmp_path):
    (tmp_path / "src").mkdir()
    buildspec = load_buildspec(
        write_buildspec(
            tmp_path,
            """\
            version: 0.2
            phases:
              build:
                commands: ["true"]
            artifacts:
              files: ["dist/*.whl"]
            """,
        )
    )
    with pytest.raises(BuildspecError, match="no file matches"):
        collect_artifacts(buildspec, tmp_path / "src", tmp_path / "artifact")


def test_report_files_are_found_under_their_base_directory(tmp_path):
    reports = tmp_path / "src" / "build" / "reports"
    reports.mkdir(parents=True)
    (reports / "unit.xml").write_text("<testsuite/>")
    (reports / "notes.txt").write_text("")
    buildspec = load_buildspec(
        write_buildspec(
            tmp_path,
            """\
            version: 0.2
            phases:
              build:
                commands: ["true"]
            reports:
              junit:
                base-directory: build/reports
                files: ["*.xml"]
            """,
        )
    )
    assert report_files(buildspec, tmp_path / "src") == {"junit": [reports / "unit.xml"]}
    assert matching_files(tmp_path / "missing", ["**/*"]) == []


@pytest.mark.parametrize("project", ["default_bake", "github_bake"], ids=["default", "github"])
@pytest.mark.parametrize("name", ["build.yml", "test.yml", "deploy.yml"])
def test_the_baked_buildspecs_load_and_have_a_build_phase(request, project, name):
    root = request.getfixturevalue(project)
    buildspec = load_buildspec(root / "buildspecs" / name, f"buildspecs/{name}")
    assert buildspec.phase("build") is not None
    assert buildspec.phase("build").commands
