"""Plays the actions of a CodePipeline that a template declares, in their order.

Source hands on the working tree's files; CodeBuild runs the project's buildspec through the
local runner with CodeBuild's environment; CloudFormation deploys into moto; a manual
approval is approved; a Lambda invoke runs the function's handler in this process with
stubbed clients. Artifacts are folders, `#{Namespace.Variable}` references are resolved from
the variables earlier actions set, and a missing one fails like CodePipeline would.
"""

import contextlib
import json
import re
import shutil
import subprocess
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .buildspec import (
    collect_artifacts,
    load_buildspec,
    parse_buildspec,
    report_files,
    run_buildspec,
)
from .cloudformation import Stack, TemplateError, deploy_stack, resources_of_type
from .git_hosts import git_host
from .iam import (
    GLOBAL_CONTEXT,
    Authorization,
    Build,
    Call,
    IamDenied,
    RehearsalIam,
    authorizations,
)
from .merge import (
    CallerIdentity,
    CodePipelineJobs,
    GitCodeCommit,
    LambdaContext,
    StoredSecret,
    codepipeline_job_event,
    invoke_pipeline_lambda,
)
from .source import GitRepository, copy_tree

# install phases install uv and sync the virtual environment: downloads. The rehearsal runs
# every make target with PYTHON (an interpreter that has the dependencies) instead.
SKIPPED_PHASES = frozenset({"install"})
# The project's excerpts of the git hosts' API descriptions, which the stand-ins enforce.
CONTRACTS_DIR = "tests/contracts"
# A build's time limit: its project's TimeoutInMinutes, at most this.
MAX_BUILD_SECONDS = 15 * 60
DEFAULT_BUILD_MINUTES = 60
PIPELINE_VARIABLE = re.compile(r"#\{([A-Za-z0-9@_-]+)\.([A-Za-z0-9@_-]+)\}")
CLOUDFORMATION_MODES = ("CREATE_UPDATE", "REPLACE_ON_FAILURE")
# The deploy template's pull-request check pipeline, played on its own (pull_requests.py).
CHECK_PIPELINE = "CheckPipeline"


class ActionFailed(Exception):
    """An action failed; the message names the command or the problem."""

    def __init__(self, problem: str, log_path: Path | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.log_path = log_path


@dataclass
class Workspace:
    """What every action of a rehearsal shares: the source, moto's clients, the paths."""

    git: GitRepository
    commit: str
    source_dir: Path
    work_dir: Path
    log_dir: Path
    python: str
    # The package the builds run as `python -m <cli> <command>`: the project's command line.
    cli: str
    region: str
    account_id: str
    clients: dict[str, Any]
    base_env: dict[str, str]
    git_token: str
    iam: RehearsalIam | None = None
    # Stage accounts: the account stack's name, and moto's clients in another account.
    account_stack: str = ""
    clients_in: Callable[[str], dict[str, Any]] | None = None
    # The pull requests into the dev branch (pull_requests.PullRequestStore) the git host
    # fakes serve to the pull-request function.
    pull_requests: Any = None

    def clients_of(self, role_arn: str) -> dict[str, Any]:
        """moto's clients in the account of role_arn."""
        account = role_arn.split(":")[4]
        if account == self.account_id or self.clients_in is None:
            return self.clients
        return self.clients_in(account)

    def check_iam(
        self,
        calls: list[Any],
        where: str,
        log_path: Path | None = None,
        platform: tuple[str, list[Any]] | None = None,
    ) -> None:
        """ActionFailed naming every call the actor's policies would refuse."""
        if self.iam is None:
            return
        try:
            self.iam.check(calls, where, platform)
        except IamDenied as denied:
            raise ActionFailed("; ".join(denied.lines), log_path) from None

    def acting_as(self, role_arn: str, where: str) -> Any:
        """Record this process's AWS calls inside the block as the role's."""
        if self.iam is None:
            return contextlib.nullcontext([])
        return self.iam.recorder.acting_as(self.iam.actor(role_arn), where)

    def run_python(
        self, args: list[str], log_path: Path, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `PYTHON args` in the source (its src/ importable); stderr to the log."""
        cwd = cwd or self.source_dir
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.base_env, "PYTHONPATH": str(cwd / "src")}
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"$ python {' '.join(args)}\n")
            log.flush()
            result = subprocess.run(
                [self.python, *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                check=False,
            )
            log.write(result.stdout)
        return result


@dataclass(frozen=True)
class PipelineAction:
    """One action of a CodePipeline, as the template declares it."""

    stage: str
    name: str
    category: str
    provider: str
    configuration: dict[str, Any]
    input_artifacts: tuple[str, ...]
    output_artifacts: tuple[str, ...]
    namespace: str | None
    # A cross-account action's role, which CodePipeline assumes to run it.
    role_arn: Any = None


def pipeline_resource(stack: Stack, logical_id: str | None = None) -> tuple[str, dict[str, Any]]:
    """(logical id, resource) of a CodePipeline of the template: logical_id's, else the one
    besides the pull-request check pipeline."""
    pipelines = resources_of_type(stack.template, "AWS::CodePipeline::Pipeline")
    if logical_id is not None:
        if logical_id not in pipelines:
            raise TemplateError(f"{stack.name}: no CodePipeline {logical_id}")
        return logical_id, pipelines[logical_id]
    others = {name: item for name, item in pipelines.items() if name != CHECK_PIPELINE}
    if len(others) != 1:
        raise TemplateError(f"{stack.name}: expected one CodePipeline, found {len(others)}")
    return next(iter(others.items()))


def pipeline_actions(stack: Stack, logical_id: str | None = None) -> list[PipelineAction]:
    """The actions of a CodePipeline of the template, in the order they run."""
    _, resource = pipeline_resource(stack, logical_id)
    actions = []
    for stage in resource["Properties"]["Stages"]:
        for action in sorted(stage["Actions"], key=lambda item: int(item.get("RunOrder", 1))):
            actions.append(
                PipelineAction(
                    stage=stage["Name"],
                    name=action["Name"],
                    category=action["ActionTypeId"]["Category"],
                    provider=action["ActionTypeId"]["Provider"],
                    configuration=dict(action.get("Configuration", {})),
                    input_artifacts=tuple(
                        item["Name"] for item in action.get("InputArtifacts", [])
                    ),
                    output_artifacts=tuple(
                        item["Name"] for item in action.get("OutputArtifacts", [])
                    ),
                    namespace=action.get("Namespace"),
                    role_arn=action.get("RoleArn"),
                )
            )
    return actions


def slug(text: str) -> str:
    """A file-name-safe form of a name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


@dataclass
class PipelinePlayer:
    """One execution of a CodePipeline: its artifacts and variables, action by action."""

    workspace: Workspace
    stack: Stack
    commit: str
    artifacts: dict[str, Path] = field(default_factory=dict)
    variables: dict[str, dict[str, str]] = field(default_factory=dict)
    skipped_phases: dict[str, set[str]] = field(default_factory=dict)
    runtimes: set[str] = field(default_factory=set)
    build_number: int = 0
    # The pipeline's logical id (None: the template's one pipeline besides the check).
    pipeline: str | None = None

    def __post_init__(self) -> None:
        # CodePipeline's own namespace, available to every action.
        self.variables["codepipeline"] = {"PipelineExecutionId": str(uuid.uuid4())}
        # Pipeline-level variables (#{variables.<name>}): their defaults until a start sets them.
        _, resource = pipeline_resource(self.stack, self.pipeline)
        self.variables["variables"] = {
            str(item["Name"]): str(item["DefaultValue"])
            for item in resource["Properties"].get("Variables", [])
            if "DefaultValue" in item
        }

    def start_with(self, variables: list[dict[str, str]]) -> None:
        """Set the variables a StartPipelineExecution request passes, as CodePipeline does:
        only declared ones (ActionFailed otherwise)."""
        _, resource = pipeline_resource(self.stack, self.pipeline)
        declared = {str(item["Name"]) for item in resource["Properties"].get("Variables", [])}
        for item in variables:
            if item["name"] not in declared:
                raise ActionFailed(
                    f"variable {item['name']} is not declared by pipeline {self.name}"
                    f" (it declares: {', '.join(sorted(declared)) or 'none'})"
                )
            self.variables["variables"][item["name"]] = item["value"]

    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self.stack.physical_id(pipeline_resource(self.stack, self.pipeline)[0])

    def actions(self) -> list[PipelineAction]:
        """The pipeline's actions in order."""
        return pipeline_actions(self.stack, self.pipeline)

    def play(self, action: PipelineAction) -> str:
        """Run one action; a line saying what ran. ActionFailed when it fails."""
        players: dict[str, Callable[[PipelineAction], str]] = {
            "CodeBuild": self._codebuild,
            "CloudFormation": self._cloudformation,
            "Manual": self._manual_approval,
            "Lambda": self._lambda,
        }
        if action.category == "Source":
            return self._source(action)
        if action.provider not in players:
            raise ActionFailed(f"provider {action.provider} is not played by the rehearsal")
        return players[action.provider](action)

    # ------------------------------------------------------------------ references

    def resolve_variables(self, text: str) -> str:
        """text with each #{Namespace.Variable} replaced by what an earlier action set."""

        def value_of(match: re.Match[str]) -> str:
            """The value of one #{Namespace.Variable}."""
            namespace, name = match.groups()
            if namespace not in self.variables:
                raise ActionFailed(f"{match.group(0)}: no earlier action has namespace {namespace}")
            if name not in self.variables[namespace]:
                known = ", ".join(sorted(self.variables[namespace])) or "none"
                raise ActionFailed(
                    f"{match.group(0)}: namespace {namespace} has no variable {name} (it has:"
                    f" {known})"
                )
            return self.variables[namespace][name]

        return PIPELINE_VARIABLE.sub(value_of, text)

    def artifact(self, name: str) -> Path:
        """The folder of an artifact an earlier action produced."""
        if name not in self.artifacts:
            raise ActionFailed(f"input artifact {name} was not produced by an earlier action")
        return self.artifacts[name]

    def artifact_file(self, reference: str, setting: str) -> Path:
        """The file an `Artifact::path` setting names."""
        artifact, separator, relative = reference.partition("::")
        if not separator:
            raise ActionFailed(f"{setting} {reference!r} is not <artifact>::<path>")
        path = self.artifact(artifact) / relative
        if not path.is_file():
            raise ActionFailed(f"{setting} {reference}: artifact {artifact} has no file {relative}")
        return path

    def _configuration(self, action: PipelineAction) -> dict[str, Any]:
        """The action's configuration with its references and variables resolved."""
        return {
            key: self.resolve_variables(value) if isinstance(value, str) else value
            for key, value in self.stack.resolve(action.configuration).items()
        }

    # ------------------------------------------------------------------ providers

    def _source(self, action: PipelineAction) -> str:
        workspace = self.workspace
        if self.commit != workspace.commit:
            raise ActionFailed(
                f"source at {self.commit}: only HEAD ({workspace.commit}) is rehearsed"
            )
        for name in action.output_artifacts:
            self.artifacts[name] = workspace.source_dir
        configuration = self.stack.resolve(action.configuration)
        git = workspace.git
        variables = {
            "CommitId": self.commit,
            "CommitMessage": git.commit_field(self.commit, "%s"),
            "AuthorDate": git.commit_field(self.commit, "%aI"),
            "CommitterDate": git.commit_field(self.commit, "%cI"),
            "BranchName": str(configuration.get("BranchName", "")),
        }
        for setting in ("RepositoryName", "FullRepositoryId", "ConnectionArn"):
            if setting in configuration:
                variables[setting] = str(configuration[setting])
        if action.namespace:
            self.variables[action.namespace] = variables
        return f"{action.provider} at {self.commit[:12]} ({variables['BranchName']}): working tree"

    def _codebuild(self, action: PipelineAction) -> str:
        workspace = self.workspace
        project_id, project = self._codebuild_project(action)
        properties = self.stack.resolve(project["Properties"])
        project_name = str(properties.get("Name") or self.stack.physical_id(project_id))
        input_name = action.configuration.get("PrimarySource") or action.input_artifacts[0]
        build_dir = workspace.work_dir / slug(self.name) / slug(action.name)
        copy_tree(self.artifact(input_name), build_dir)
        buildspec_ref = str(properties["Source"].get("BuildSpec", "buildspec.yml"))
        if "\n" in buildspec_ref:
            inline = Path(f"{project_name} (inline buildspec)")
            buildspec = parse_buildspec(yaml.safe_load(buildspec_ref), inline)
        else:
            buildspec = load_buildspec(build_dir / buildspec_ref, buildspec_ref)
        variables = {
            item["Name"]: self._variable(item["Name"], str(item["Value"]), item.get("Type"))
            for item in properties["Environment"].get("EnvironmentVariables", [])
        }
        overrides = json.loads(action.configuration.get("EnvironmentVariables", "[]"))
        for item in overrides:
            value = self.resolve_variables(str(item["value"]))
            variables[item["name"]] = self._variable(item["name"], value, item.get("type"))
        log_path = workspace.log_dir / slug(self.name) / f"{slug(action.name)}.log"
        minutes = int(properties.get("TimeoutInMinutes", DEFAULT_BUILD_MINUTES))
        environment = self._codebuild_environment(project_name, action, properties)
        actor = ""
        if workspace.iam is not None:
            actor = workspace.iam.actor(str(properties["ServiceRole"]))
            environment = workspace.iam.environment(environment, actor)
        run = run_buildspec(
            buildspec,
            build_dir,
            log_path,
            environment,
            variables,
            skip_phases=SKIPPED_PHASES,
            parameter_store=self._parameter,
            secrets_manager=self._secret,
            timeout_seconds=min(MAX_BUILD_SECONDS, 60 * minutes),
            python=workspace.python,
        )
        for phase in run.skipped_phases:
            self.skipped_phases.setdefault(phase, set()).add(str(buildspec.path))
        self.runtimes.update(
            f"{name} {version}" for name, version in buildspec.runtime_versions().items()
        )
        if workspace.iam is not None:
            where = action.name
            build = self._build_work(project_name, action, properties, environment, buildspec)
            platform = (actor, build.authorizations(workspace.iam.checker.account))
            calls = workspace.iam.recorded(actor, where)
            workspace.check_iam(calls, where, log_path, platform)
        failure = run.first_failure
        if failure is not None:
            how = "timed out" if failure.timed_out else f"exited with status {failure.exit_status}"
            raise ActionFailed(
                f"{buildspec.path}, phase {failure.phase}: command `{failure.command}` {how}"
                f" (CodeBuild project {project_name})",
                log_path,
            )
        if action.namespace:
            self.variables[action.namespace] = run.exported
        for name in action.output_artifacts:
            artifact_dir = workspace.work_dir / "artifacts" / slug(self.name) / slug(name)
            shutil.rmtree(artifact_dir, ignore_errors=True)
            collect_artifacts(buildspec, build_dir, artifact_dir)
            self.artifacts[name] = artifact_dir
        ran = str(buildspec.path)
        if "MAKE_TARGETS" in variables:
            ran += f" (MAKE_TARGETS={variables['MAKE_TARGETS']})"
        tests = junit_test_count(report_files(buildspec, build_dir))
        return ran + (f", {tests} JUnit tests" if tests else "")

    def _build_work(
        self,
        project_name: str,
        action: PipelineAction,
        properties: dict[str, Any],
        environment: dict[str, str],
        buildspec: Any,
    ) -> Build:
        """What CodeBuild itself does for this build with the project's role: its log
        stream, its reports, the pipeline's artifacts and the project's cache."""
        logs = properties.get("LogsConfig", {}).get("CloudWatchLogs", {})
        log_group = None
        if logs.get("Status", "ENABLED") == "ENABLED":
            # Without a group name CodeBuild logs to /aws/codebuild/<project>.
            log_group = str(logs.get("GroupName") or f"/aws/codebuild/{project_name}")
        build_dir = self.workspace.work_dir / slug(self.name) / slug(action.name)
        reports = report_files(buildspec, build_dir)
        # A report named by a buildspec goes to the group <project>-<report name>.
        groups = tuple(
            name.rsplit("/", 1)[-1] if name.startswith("arn:") else f"{project_name}-{name}"
            for name, files in reports.items()
            if files
        )
        source = environment["CODEBUILD_SOURCE_VERSION"].removeprefix("arn:aws:s3:::")
        bucket, _, key = source.partition("/")
        outputs = tuple(
            (bucket, f"{self.name[:20]}/{name[:20]}/{uuid.uuid4().hex[:7]}")
            for name in action.output_artifacts
        )
        cache = properties.get("Cache", {})
        cache_location = None
        if cache.get("Type") == "S3":
            cache_bucket, _, prefix = str(cache["Location"]).partition("/")
            cache_location = (cache_bucket, prefix)
        return Build(
            log_group=log_group,
            build_id=environment["CODEBUILD_BUILD_ID"].split(":", 1)[1],
            report_groups=groups,
            inputs=((bucket, key),) if action.input_artifacts else (),
            outputs=outputs,
            cache=cache_location,
        )

    def _codebuild_project(self, action: PipelineAction) -> tuple[str, dict[str, Any]]:
        projects = resources_of_type(self.stack.template, "AWS::CodeBuild::Project")
        reference = action.configuration.get("ProjectName")
        if isinstance(reference, dict) and reference.get("Ref") in projects:
            return reference["Ref"], projects[reference["Ref"]]
        name = self.stack.resolve(reference)
        for logical_id, project in projects.items():
            if self.stack.physical_id(logical_id) == name:
                return logical_id, project
        raise ActionFailed(f"ProjectName {name} is not a CodeBuild project of {self.stack.name}")

    def _codebuild_environment(
        self, project_name: str, action: PipelineAction, properties: dict[str, Any]
    ) -> dict[str, str]:
        """CodeBuild's own variables for a build a pipeline action starts."""
        workspace = self.workspace
        self.build_number += 1
        build_id = f"{project_name}:{uuid.uuid4()}"
        artifact_store = self.stack.resolve(
            pipeline_resource(self.stack, self.pipeline)[1]["Properties"]
        )["ArtifactStore"]["Location"]
        input_name = action.input_artifacts[0] if action.input_artifacts else "source"
        source_object = f"{self.name[:20]}/{input_name[:20]}/{uuid.uuid4().hex[:7]}"
        return {
            **workspace.base_env,
            "CODEBUILD_BUILD_ID": build_id,
            "CODEBUILD_BUILD_ARN": (
                f"arn:aws:codebuild:{workspace.region}:{workspace.account_id}:build/{build_id}"
            ),
            "CODEBUILD_BUILD_NUMBER": str(self.build_number),
            "CODEBUILD_BUILD_IMAGE": str(properties["Environment"].get("Image", "")),
            "CODEBUILD_KMS_KEY_ID": str(properties.get("EncryptionKey", "")),
            "CODEBUILD_INITIATOR": f"codepipeline/{self.name}",
            "CODEBUILD_RESOLVED_SOURCE_VERSION": self.commit,
            "CODEBUILD_SOURCE_VERSION": f"arn:aws:s3:::{artifact_store}/{source_object}",
            "CODEBUILD_CI": "true",
            "CODEBUILD_START_TIME": str(int(time.time() * 1000)),
            "CODEBUILD_LOG_PATH": str(uuid.uuid4()),
        }

    def _variable(self, name: str, value: str, kind: str | None) -> str:
        """An environment variable's value by its type (plain, Parameter Store, secret)."""
        if kind == "PARAMETER_STORE":
            return self._parameter(value)
        if kind == "SECRETS_MANAGER":
            return self._secret(value)
        if kind not in (None, "PLAINTEXT"):
            raise ActionFailed(f"environment variable {name}: type {kind} is not played")
        return value

    def _parameter(self, name: str) -> str:
        ssm = self.workspace.clients["ssm"]
        try:
            return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except ssm.exceptions.ParameterNotFound as error:
            raise KeyError(name) from error

    def _secret(self, secret_id: str) -> str:
        secrets = self.workspace.clients["secretsmanager"]
        try:
            return secrets.get_secret_value(SecretId=secret_id)["SecretString"]
        except secrets.exceptions.ResourceNotFoundException as error:
            raise KeyError(secret_id) from error

    def _cloudformation(self, action: PipelineAction) -> str:
        configuration = self._configuration(action)
        mode = configuration.get("ActionMode")
        if mode not in CLOUDFORMATION_MODES:
            raise ActionFailed(
                f"ActionMode {mode} is not played ({', '.join(CLOUDFORMATION_MODES)} are)"
            )
        template = self.artifact_file(configuration["TemplatePath"], "TemplatePath")
        parameters: dict[str, str] = {}
        tags: dict[str, str] = {}
        if "TemplateConfiguration" in configuration:
            path = self.artifact_file(
                configuration["TemplateConfiguration"], "TemplateConfiguration"
            )
            try:
                document = json.loads(path.read_text())
            except ValueError as error:
                raise ActionFailed(
                    f"TemplateConfiguration {path.name} is not JSON: {error}"
                ) from error
            parameters.update(
                {key: str(value) for key, value in document.get("Parameters", {}).items()}
            )
            tags.update({key: str(value) for key, value in document.get("Tags", {}).items()})
        if "ParameterOverrides" in configuration:
            overrides = json.loads(configuration["ParameterOverrides"])
            parameters.update({key: str(value) for key, value in overrides.items()})
        capabilities = tuple(
            item for item in str(configuration.get("Capabilities", "")).split(",") if item
        )
        # CodePipeline runs the action with the pipeline's role, or with the action's role
        # (in another account), which it assumes with the pipeline's.
        where = action.name
        pipeline = self.stack.resolve(pipeline_resource(self.stack, self.pipeline)[1]["Properties"])
        pipeline_role = str(pipeline["RoleArn"])
        acting_role, clients = pipeline_role, self.workspace.clients
        platform = None
        if action.role_arn:
            acting_role = str(self.stack.resolve(action.role_arn))
            clients = self.workspace.clients_of(acting_role)
            platform = self._cross_account_action(pipeline, pipeline_role, acting_role, action)
        with self.workspace.acting_as(acting_role, where) as calls:
            outputs = deploy_stack(
                clients["cloudformation"],
                configuration["StackName"],
                template,
                parameters,
                tags,
                configuration.get("RoleArn"),
                capabilities,
            )
        self.workspace.check_iam(calls, where, platform=platform)
        if action.namespace:
            self.variables[action.namespace] = outputs
        if configuration.get("OutputFileName") and action.output_artifacts:
            artifact_dir = self.workspace.work_dir / "artifacts" / slug(self.name)
            artifact_dir = artifact_dir / slug(action.output_artifacts[0])
            artifact_dir.mkdir(parents=True, exist_ok=True)
            (artifact_dir / configuration["OutputFileName"]).write_text(json.dumps(outputs))
            self.artifacts[action.output_artifacts[0]] = artifact_dir
        files = [configuration["TemplatePath"], configuration.get("TemplateConfiguration")]
        return f"stack {configuration['StackName']} from {', '.join(filter(None, files))}"

    def _cross_account_action(
        self,
        pipeline: dict[str, Any],
        pipeline_role: str,
        action_role: str,
        action: PipelineAction,
    ) -> tuple[str, list[Authorization]]:
        """What CodePipeline does to run an action with its own role (CodePipeline user
        guide, "Create a pipeline that uses resources from another AWS account"): the
        pipeline's role assumes the action's, which then reads the input artifacts from the
        artifact store (and its key). The AssumeRole is checked here, the reads returned."""
        iam = self.workspace.iam
        if iam is None:
            return "", []
        assume = Authorization("sts:AssumeRole", action_role, GLOBAL_CONTEXT)
        self.workspace.check_iam([], action.name, platform=(iam.actor(pipeline_role), [assume]))
        actor = iam.actor(action_role)
        bucket = str(pipeline["ArtifactStore"]["Location"])
        reads = []
        for name in action.input_artifacts:
            key = f"{self.name[:20]}/{name[:20]}/{uuid.uuid4().hex[:7]}"
            call = Call(actor, "s3", "GetObject", {"Bucket": bucket, "Key": key})
            reads += authorizations(call, iam.checker.account.of(actor))
        return actor, reads

    def _manual_approval(self, action: PipelineAction) -> str:
        return "approved by the rehearsal (a person approves it in the console)"

    def _lambda(self, action: PipelineAction) -> str:
        reference = action.configuration.get("FunctionName")
        if not (
            isinstance(reference, dict) and reference.get("Ref") in self.stack.template["Resources"]
        ):
            raise ActionFailed(f"FunctionName {reference} is not a function of {self.stack.name}")
        user_parameters = str(self._configuration(action).get("UserParameters", ""))

        def job_event(function_name: str) -> dict[str, Any]:
            return codepipeline_job_event(
                str(uuid.uuid4()), self.workspace.account_id, function_name, user_parameters
            )

        result, function, summary = self.invoke_function(
            reference["Ref"], job_event, action.name, CodePipelineJobs()
        )
        if not result.succeeded:
            raise ActionFailed(f"the function reported failure: {result.message}", result.log_path)
        return f"{function['Handler']}: {result.message} ({summary})"

    def invoke_function(
        self,
        logical_id: str,
        event_of: Callable[[str], dict[str, Any]],
        where: str,
        jobs: CodePipelineJobs,
    ) -> tuple[Any, dict[str, Any], str]:
        """Run a function of the stack on the event event_of(its name) gives, as its role
        (IAM checked), with the fakes of the services it calls: (what it reported, its
        resolved properties, what it wrote). ActionFailed when a request breaks a git host's
        API description."""
        workspace = self.workspace
        function = self.stack.resolve(self.stack.resource(logical_id)["Properties"])
        environment = {
            key: str(value)
            for key, value in function.get("Environment", {}).get("Variables", {}).items()
        }
        code_dir = workspace.work_dir / "functions" / slug(where)
        self._function_code(function["Code"], code_dir)
        services: dict[str, Any] = {"sts": CallerIdentity(str(function["Role"]))}
        codecommit = host = None
        if "REPOSITORY_NAME" in environment:
            codecommit = GitCodeCommit(
                workspace.git,
                environment["REPOSITORY_NAME"],
                pull_requests=workspace.pull_requests,
                caller_arn=str(function["Role"]),
            )
            services["codecommit"] = codecommit
        if "GIT_TOKEN_SECRET_ARN" in environment:
            services["secretsmanager"] = StoredSecret(
                environment["GIT_TOKEN_SECRET_ARN"], workspace.git_token
            )
            try:
                host = git_host(
                    environment.get("GIT_HOST", ""),
                    workspace.git,
                    environment.get("GIT_REPOSITORY", ""),
                    workspace.git_token,
                    workspace.source_dir / CONTRACTS_DIR,
                    workspace.pull_requests,
                )
            except (OSError, ValueError) as error:
                raise ActionFailed(f"{function.get('FunctionName')}: {error}") from error
            host.start()
            environment["GIT_API_URL"] = host.api_url
        environment.update({"AWS_REGION": workspace.region, "AWS_DEFAULT_REGION": workspace.region})
        function_name = str(function.get("FunctionName", logical_id))
        event = event_of(function_name)
        try:
            with workspace.acting_as(str(function["Role"]), where) as aws_calls:
                result = invoke_pipeline_lambda(
                    code_dir,
                    function["Handler"],
                    environment,
                    event,
                    LambdaContext(function_name, int(function.get("Timeout", 3))),
                    services,
                    workspace.region,
                    jobs,
                )
        finally:
            if host is not None:
                host.stop()
        workspace.check_iam(aws_calls, where)
        calls = result.calls + (
            [f"{environment['GIT_HOST']}:{request}" for request in host.requests] if host else []
        )
        log_path = workspace.log_dir / slug(self.name) / f"{slug(where)}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(
            f"event: {json.dumps(event)}\ncalls: {', '.join(calls)}\n{result.log_text}"
        )
        result.log_path = log_path
        violations = getattr(host, "violations", [])
        if violations:
            raise ActionFailed(
                f"the function's requests break the {environment['GIT_HOST']} API "
                f"description ({CONTRACTS_DIR}/{environment['GIT_HOST']}.json): "
                + "; ".join(violations[:5]),
                log_path,
            )
        moved = codecommit.moved if codecommit else (host.moved if host else {})
        written = "the move is recorded, not written to git" if moved else "nothing to write"
        return result, function, f"{written}; {len(calls)} stubbed calls"

    def _function_code(self, code: dict[str, Any], code_dir: Path) -> None:
        """Unpack a function's code (its zip in moto's S3, or inline) into code_dir."""
        shutil.rmtree(code_dir, ignore_errors=True)
        code_dir.mkdir(parents=True)
        if "ZipFile" in code:
            (code_dir / "index.py").write_text(code["ZipFile"])
            return
        archive = code_dir.parent / f"{code_dir.name}.zip"
        self.workspace.clients["s3"].download_file(code["S3Bucket"], code["S3Key"], str(archive))
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(code_dir)


def junit_test_count(reports: dict[str, list[Path]]) -> int:
    """How many test cases the JUnit report files hold."""
    import xml.etree.ElementTree as ElementTree

    count = 0
    for files in reports.values():
        for path in files:
            try:
                count += sum(1 for _ in ElementTree.parse(path).iter("testcase"))
            except ElementTree.ParseError:
                continue
    return count
