"""`make rehearse`: the whole GitOps flow, offline (2.5 to 3.5 minutes on 2 cores).

Against a moto server on a free 127.0.0.1 port (always stopped at the end), it plays what AWS
would do with this commit, reading both pipelines from infra/*.yml:

1. Model build: the model build pipeline's actions in order: Source hands CodeBuild the
   working tree's files; each CodeBuild action runs its project's buildspec through the local
   buildspec runner with the environment CodeBuild gives (source version, region, the
   project's and the action's variables, the stack outputs they reference). The SageMaker
   pipeline execution the Train action starts in moto is then played from its definition:
   jobs through the local runner, outputs to S3, the quality gate, the registration.
2. Approval: the package is approved (model_approval manual); the deploy pipeline's approval
   rule must pass its state-change event on a moto event bus with an SQS target, and the
   rule's starter function must start the deploy pipeline at the commit that built it; the
   same state change again (what an edit of the Approved package sends) must start nothing.
3. Model deploy: the deploy pipeline's actions: buildspecs as above, CloudFormation deploys
   into moto, manual approvals approved; endpoint tests are answered by the local inference
   server serving the deployed package's artifact.
4. Merge: the merge Lambda's handler, run here on the job event the pipeline sends, with
   stubbed AWS clients that check each request against the service model.
5. Retraining: new data lands under the data prefix and its ready marker reaches the new-data
   rule alone; the rule's starter function starts the build pipeline with the batch's URI as a
   pipeline variable, which the Train action passes on, and the package records it. A schedule
   tick (when the template has one) trains on that previous data. A broken batch then fails,
   and every failure must reach exactly one notification rule, and no success any.
6. Pipeline update: pushes to a scratch copy of the commit replay the build pipeline's
   UpdatePipelines action (pushes.py): a changed build pipeline template updates its stack
   through a change set and the restarted run has the change; a cfn-lint error and a role
   given iam:* are refused with both stacks unchanged, and notified; a change to the merge
   function's code reaches the deploy stack's function. The CloudFormation stand-in
   (stacks.py) hosts the bootstrap and pipeline stacks; what CloudFormation's handlers do is
   checked against the stacks role, every role within its permissions boundary.
7. Champion gate: a push with a weaker model is refused by the comparison with production's
   model; the restored one is registered.
8. Pull requests: pull requests into the dev branch start the check pipeline as their event
   (CodeCommit) or trigger (a git host) would; a harmless one passes, a weaker model on the
   same pull request fails in the same comment, a broken command line fails the Check action
   and the check-failed rule's function says so, a fork stops before its code runs
   (pull_requests.py).

With stage accounts (infra/account.yml), each account stack is made in its own moto account,
the deploy pipeline's cross-account actions and builds work there as the stage roles, and
every request to another account's resource is checked against that resource's policy too
(accounts.py, iam.py).

`--until STAGE` (make rehearse UNTIL=...) stops after that stage.

Nothing is downloaded: install phases are skipped (PYTHON has the dependencies) and listed in
the summary. Each stage prints a line when it starts and when it ends; a failure names the
stage, the action and the command, and the logs stay under build/rehearsal/.
"""

import argparse
import contextlib
import dataclasses
import json
import logging
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .accounts import account_clients
from .actions import CHECK_PIPELINE, ActionFailed, PipelinePlayer, Workspace, pipeline_actions
from .approval import (
    ApprovalFailed,
    approval_rule,
    approve,
    deliver_state_change,
    rule_target_role,
    start_deploy,
    started_commit,
)
from .bootstrap import (
    BUILD_TEMPLATE,
    DEPLOY_TEMPLATE,
    MERGE_CODE_KEY_PARAMETER,
    BootstrapError,
    Stacks,
    bootstrap,
    host_stacks,
    rehearsal_iam,
)
from .buildspec import BuildspecError
from .cloudformation import Stack, TemplateError, load_template, resources_of_type
from .environment import (
    DIFFERENCES_FROM_CODEBUILD,
    build_environment,
    process_environment,
    write_aws_cli,
)
from .iam import (
    GLOBAL_CONTEXT,
    Authorization,
    Call,
    IamError,
    Recorder,
    RehearsalIam,
    authorizations,
)
from .merge import CodePipelineJobs
from .moto_shims import execution_failed, moto_as_aws
from .pull_requests import (
    PullRequestStore,
    codecommit_event,
    pull_request_rule,
    trigger_matches,
)
from .pushes import (
    LOWERED_GATE,
    MARKER_VARIABLE,
    RESTART_LINE,
    PipelineUpdates,
    Pushes,
    broken_command_line,
    build_action_project,
    changed_pipeline,
    function_archive_has,
    function_code_change,
    harmless_change,
    lint_error,
    play_push,
    shuffled_labels,
    weaker_model,
    widened_role,
)
from .retraining import (
    RetrainingFailed,
    action_execution_event,
    alarm_event,
    as_delivered,
    check_schedule,
    data_landing,
    enable_bucket_events,
    land_batch,
    model_package_event,
    notification_rules,
    pipeline_execution_event,
    route,
    sagemaker_execution_event,
    watch_rule,
)
from .sagemaker_pipeline import ExecutionPlayer, PipelineExecutionError, newest_execution
from .settings import Settings, SettingsError, load_settings
from .source import GitRepository, SourceError, snapshot
from .stacks import PipelineStacks
from .standins import ContainerCredentials, SageMakerRuntime, StandInError

# The build template's parameter naming the SageMaker pipeline the Train action runs.
SAGEMAKER_PIPELINE_PARAMETER = "SageMakerPipelineName"
GIT_TOKEN = "rehearsal-git-token"
DEFAULT_LOG_DIR = Path("build", "rehearsal")
# moto's default account; every ARN of a rehearsal is in it.
ACCOUNT_ID = "123456789012"
# The builds' credentials, served the way CodeBuild serves them.
BUILD_ACCESS_KEY_ID = "ASIAREHEARSALBUILD00"
BUILD_SECRET_ACCESS_KEY = "rehearsal-build-secret"
BUILD_SESSION_TOKEN = "rehearsal-build-session"
MOTO_CLIENTS = (
    "s3",
    "sagemaker",
    "iam",
    "kms",
    "events",
    "sqs",
    "cloudformation",
    "ssm",
    "secretsmanager",
    "cloudwatch",
    "dynamodb",
)
STAGES = (
    "Model build",
    "Approval",
    "Model deploy",
    "Merge",
    "Retraining",
    "Pipeline update",
    "Champion gate",
    "Pull requests",
)
# The batches the Retraining stage lands: the sample data set in parts, and a broken one.
NEW_BATCH = "rehearsal-batch"
BROKEN_BATCH = "rehearsal-broken-batch"
BATCH_PARTS = 3
TAIL_LINES = 15
# What a failing step raises, as opposed to a defect of the rehearsal itself.
EXPECTED_FAILURES = (
    RetrainingFailed,
    ActionFailed,
    ApprovalFailed,
    BootstrapError,
    BuildspecError,
    PipelineExecutionError,
    SourceError,
    StandInError,
    TemplateError,
    IamError,
    ClientError,
    BotoCoreError,
)


class StageFailed(Exception):
    """A stage failed; the message names the action and the command or the problem."""

    def __init__(self, problem: str, log_path: Path | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.log_path = log_path


@dataclass
class Row:
    """One line of the summary table."""

    stage: str
    action: str
    seconds: float
    result: str
    ran: str


class Rehearsal:
    """One rehearsal of the flow in the repository at root."""

    def __init__(
        self,
        root: Path,
        python: str,
        log_dir: Path = DEFAULT_LOG_DIR,
        echo: Callable[[str], None] = print,
        until: str | None = None,
    ) -> None:
        if until is not None and until not in STAGES:
            raise ValueError(f"--until {until!r} is not a stage: {', '.join(STAGES)}")
        # The last stage to play (None: all of them).
        self.until = until
        self.root = root.resolve()
        self.python = python
        self.log_dir = (self.root / log_dir).resolve()
        self.work_dir = self.log_dir / "work"
        self.echo = echo
        self.git = GitRepository(self.root)
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.workspace: Workspace | None = None
        self.stacks: Stacks | None = None
        self.runtime: SageMakerRuntime | None = None
        self.credentials: ContainerCredentials | None = None
        self.moto_url = ""
        self.model_package_arn = ""
        self.deploy: PipelinePlayer | None = None
        self.approval_rule_id = ""
        self.approval_event: dict[str, Any] = {}
        self.players: list[PipelinePlayer] = []
        self.approved_package_arn = ""
        self.retrained_package_arn = ""
        self.new_data_queue = ""
        self.new_data_url = ""
        self.new_data_start: dict[str, Any] = {}
        self.iam: RehearsalIam | None = None
        self.settings: Settings | None = None
        self.cloudformation: PipelineStacks | None = None

    # ------------------------------------------------------------------ run

    def run(self) -> int:
        """Rehearse every stage; 0 when the whole flow passed, 1 when a stage failed."""
        started = time.perf_counter()
        for needed in (BUILD_TEMPLATE, DEPLOY_TEMPLATE, Path("Makefile")):
            if not (self.root / needed).is_file():
                self.echo(f"rehearse: no {needed} in {self.root}: run it at the repository root")
                return 2
        try:
            self.settings = load_settings(self.root)
        except SettingsError as error:
            self.echo(f"rehearse: {error}")
            return 2
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True)
        failed = None
        with contextlib.ExitStack() as cleanup:
            cleanup.enter_context(self._logging())
            try:
                self._prepare(cleanup)
            except Exception as error:  # one line; the traceback goes to the log
                logging.exception("setup failed")
                log = self._shown(self.log_dir / "rehearsal.log")
                expected = isinstance(error, (*EXPECTED_FAILURES, OSError))
                self.echo(f"rehearse: cannot start: {error if expected else repr(error)} ({log})")
                return 1
            self.echo(
                f"rehearse: commit {self.workspace.commit[:12]}, moto on"
                f" {self.moto_url.removeprefix('http://')}, logs in {self._shown(self.log_dir)}/"
            )
            stages = (
                self._model_build,
                self._approval,
                self._model_deploy,
                self._merge,
                self._retraining,
                self._pipeline_update,
                self._champion_gate,
                self._pull_requests,
            )
            for number, (stage, play) in enumerate(zip(STAGES, stages, strict=True), 1):
                if not self._stage(number, stage, play):
                    failed = stage
                    break
                if stage == self.until:
                    self.echo(f"rehearse: stopped after {stage} (--until); later stages not played")
                    break
        self._summary(time.perf_counter() - started, failed)
        return 1 if failed else 0

    def _stage(self, number: int, stage: str, play: Callable[[], None]) -> bool:
        """Run one stage between its start and end lines; whether it passed."""
        started = time.perf_counter()
        label = f"{number}/{len(STAGES)} {stage}"
        self.echo(f"[{_clock()}] {label}: started")
        try:
            play()
        except StageFailed as failure:
            self._report(label, started, failure)
            return False
        except Exception as error:  # a defect of the rehearsal itself: say where to look
            logging.exception("unexpected error in %s", stage)
            log = self._shown(self.log_dir / "rehearsal.log")
            self._report(label, started, StageFailed(f"unexpected {error!r} (traceback in {log})"))
            return False
        self.echo(f"[{_clock()}] {label}: passed in {time.perf_counter() - started:.1f} s")
        return True

    def _report(self, label: str, started: float, failure: StageFailed) -> None:
        self.echo(f"[{_clock()}] {label}: FAILED after {time.perf_counter() - started:.1f} s")
        self.echo(f"rehearse: {label.split(' ', 1)[1]} failed: {failure.problem}")
        if failure.log_path and failure.log_path.is_file():
            self.echo(f"  last lines of {self._shown(failure.log_path)}:")
            for line in failure.log_path.read_text(errors="replace").splitlines()[-TAIL_LINES:]:
                self.echo(f"  | {line}")

    def _timed(self, stage: str, action: str, play: Callable[[], str]) -> None:
        """Run one step of a stage and add its row; StageFailed names the step."""
        started = time.perf_counter()
        try:
            ran = play()
        except (StageFailed, *EXPECTED_FAILURES) as error:
            self.rows.append(Row(stage, action, time.perf_counter() - started, "FAILED", ""))
            problem = getattr(error, "problem", None) or str(error)
            raise StageFailed(f"{action}: {problem}", getattr(error, "log_path", None)) from error
        self.rows.append(Row(stage, action, time.perf_counter() - started, "ok", ran))

    def _shown(self, path: Path) -> str:
        """A path relative to the repository when it is inside it."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    @contextlib.contextmanager
    def _logging(self) -> Iterator[None]:
        """This process's logging (moto's, warnings) goes to rehearsal.log, not the terminal."""
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        handler = logging.FileHandler(self.log_dir / "rehearsal.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        for noisy in ("werkzeug", "botocore", "boto3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        logging.captureWarnings(True)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            handler.close()
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)

    # ------------------------------------------------------------------ setup

    def _prepare(self, cleanup: contextlib.ExitStack) -> None:
        """The source snapshot, moto, the stand-ins, the builds' environment, the bootstrap."""
        started = time.perf_counter()
        commit = self.git.head()
        source_dir = self.work_dir / "source"
        count = snapshot(self.git, source_dir)
        if self.git.is_dirty():
            self.notes.append(
                f"the working tree has uncommitted changes: rehearsed as commit {commit[:12]}"
            )
        from moto.server import ThreadedMotoServer

        # Every botocore session made from here on records the calls made for an actor.
        recorder = Recorder()
        recorder.install()
        cleanup.callback(recorder.uninstall)
        cleanup.enter_context(moto_as_aws())
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        cleanup.callback(moto.stop)
        host, port = moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        settings = self.settings
        cleanup.enter_context(process_environment(self.moto_url, settings.region))
        clients = {
            name: _moto_client(name, self.moto_url, settings.region) for name in MOTO_CLIENTS
        }
        in_accounts: dict[str, dict[str, Any]] = {}

        def clients_in(account_id: str) -> dict[str, Any]:
            if account_id == ACCOUNT_ID:
                return clients
            if account_id not in in_accounts:
                in_accounts[account_id] = account_clients(
                    lambda name: _moto_client(name, self.moto_url, settings.region),
                    MOTO_CLIENTS,
                    account_id,
                )
            return in_accounts[account_id]

        credentials = ContainerCredentials(
            BUILD_ACCESS_KEY_ID, BUILD_SECRET_ACCESS_KEY, BUILD_SESSION_TOKEN
        )
        self.credentials = credentials
        credentials.start()
        cleanup.callback(credentials.stop)
        endpoints_dir = self.work_dir / "endpoints"
        endpoints_dir.mkdir(parents=True)
        self.runtime = SageMakerRuntime(
            sagemaker=clients["sagemaker"],
            sagemaker_in=lambda account_id: clients_in(account_id)["sagemaker"],
            s3=clients["s3"],
            access_key_id=BUILD_ACCESS_KEY_ID,
            serve_command=self._serve_command,
            serve_environment={},
            workdir=endpoints_dir,
            log_path=self.log_dir / "inference-server.log",
        )
        # CloudFormation for the bootstrap and pipeline stacks, which moto cannot host.
        self.cloudformation = PipelineStacks(self.moto_url, clients["s3"])
        self.cloudformation.start()
        cleanup.callback(self.cloudformation.stop)
        bin_dir = self.log_dir / "bin"
        base_env = build_environment(
            self.python,
            settings.region,
            self.moto_url,
            self.runtime.url,
            credentials.full_uri,
            bin_dir,
            self.log_dir / "sagemaker-sdk-config.yaml",
            cloudformation_url=self.cloudformation.url,
        )
        logging.info("builds differ from CodeBuild in: %s", "; ".join(DIFFERENCES_FROM_CODEBUILD))
        self.runtime.serve_environment = {**base_env, "PYTHONPATH": str(source_dir / "src")}
        self.runtime.start()
        cleanup.callback(self.runtime.stop)
        write_aws_cli(bin_dir, self.python)
        self.workspace = Workspace(
            git=self.git,
            commit=commit,
            source_dir=source_dir,
            work_dir=self.work_dir,
            log_dir=self.log_dir,
            python=self.python,
            cli=settings.cli_package,
            region=settings.region,
            account_id=ACCOUNT_ID,
            clients=clients,
            base_env=base_env,
            git_token=GIT_TOKEN,
            account_stack=settings.account_stack or "",
            clients_in=clients_in,
        )
        self.stacks = bootstrap(
            self.workspace,
            settings.bootstrap_stack,
            settings.build_stack,
            settings.deploy_stack,
            settings.git_token_secret,
        )
        self.iam = rehearsal_iam(
            self.stacks,
            self.workspace,
            recorder,
            self.log_dir / "iam",
            (self.moto_url, self.runtime.url, self.cloudformation.url),
        )
        self.workspace.iam = self.iam
        self.updates = PipelineUpdates(self.workspace, self.stacks, self.iam)
        self.updates.check_creation()
        host_stacks(self.workspace, self.stacks, self.cloudformation)
        self.cloudformation.on_execute = self.updates.on_execute
        ran = (
            f"{count} source files; boundary, roles, buckets, key, model package group; merge"
            " function zip; stack policies"
        )
        self.rows.append(Row("Bootstrap", "moto", time.perf_counter() - started, "ok", ran))

    def _serve_command(self, archive: Path, port: int) -> list[str]:
        cli = self.settings.cli_package
        return [self.python, "-m", cli, "serve", "--model", str(archive), "--port", str(port)]

    # ------------------------------------------------------------------ stages

    def _model_build(self) -> None:
        stage = STAGES[0]
        build = PipelinePlayer(self.workspace, self.stacks.build, self.workspace.commit)
        self.players.append(build)
        for action in build.actions():
            self._timed(stage, action.name, lambda action=action: build.play(action))
        self._timed(stage, "SageMaker pipeline", self._play_sagemaker_pipeline)

    def _local_runner(self, log_path: Path, code_dir: Path | None = None) -> Callable:
        """run_local for the ExecutionPlayer: `python -m <cli> local` on the execution's data
        and champion, with the code of code_dir (the source by default)."""

        def run_local(data_dir: Path, build_dir: Path, champion: Path | None) -> Any:
            args = ["--data-dir", str(data_dir), "--build-dir", str(build_dir)]
            args += ["--champion", str(champion.resolve()) if champion else "none"]
            return self.workspace.run_python(
                ["-m", self.settings.cli_package, "local", *args], log_path, cwd=code_dir
            )

        return run_local

    def _play_sagemaker_pipeline(
        self,
        expected_data_url: str | None = None,
        workdir_name: str = "sagemaker-pipeline",
        code_dir: Path | None = None,
    ) -> str:
        """Play the execution the Train action started; check the package it registered
        (and the data URI it records, when one is expected)."""
        clients = self.workspace.clients
        log_path = self.log_dir / "sagemaker-pipeline.log"
        pipeline_name = self.stacks.build.parameter(SAGEMAKER_PIPELINE_PARAMETER)
        expected_status = self.settings.model_approval_status
        execution_arn = newest_execution(clients["sagemaker"], pipeline_name)

        run_local = self._local_runner(log_path, code_dir)
        # Each played execution downloads its own input: never another execution's files.
        workdir = self.work_dir / workdir_name
        # SageMaker runs the pipeline's jobs and its registration with the pipeline's role.
        role_arn = clients["sagemaker"].describe_pipeline(PipelineName=pipeline_name)["RoleArn"]
        try:
            player = ExecutionPlayer(
                clients["sagemaker"], clients["s3"], execution_arn, workdir, run_local
            )
            with self.workspace.acting_as(role_arn, "SageMaker pipeline") as calls:
                played = player.play()
        except PipelineExecutionError as error:
            execution_failed(execution_arn, str(error))
            raise StageFailed(f"{pipeline_name}: {error}", log_path) from error
        if self.iam is not None:
            actor = self.iam.actor(role_arn)
            calls.extend(
                Call(actor, "sagemaker", operation, params, "SageMaker pipeline")
                for operation, params in player.job_requests()
            )
        self.workspace.check_iam(calls, "SageMaker pipeline")
        if played.model_package_arn is None:
            raise StageFailed(f"{pipeline_name} registered no model package")
        package = clients["sagemaker"].describe_model_package(
            ModelPackageName=played.model_package_arn
        )
        problems = []
        if package["ModelApprovalStatus"] != expected_status:
            problems.append(
                f"its approval status is {package['ModelApprovalStatus']}, the project's answers"
                f" chose {expected_status}"
            )
        commit = package.get("MetadataProperties", {}).get("CommitId")
        if commit != self.workspace.commit:
            problems.append(f"it records CommitId {commit!r}, not {self.workspace.commit}")
        quality = package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {})
        if quality.get("S3Uri") not in played.uploads:
            problems.append(f"its metrics point at {quality.get('S3Uri')!r}, where nothing was put")
        data_url = package.get("CustomerMetadataProperties", {}).get("InputDataUrl")
        if expected_data_url and data_url != expected_data_url:
            problems.append(f"it records InputDataUrl {data_url!r}, not {expected_data_url}")
        if problems:
            raise StageFailed(f"package {played.model_package_arn}: " + "; ".join(problems))
        self.model_package_arn = played.model_package_arn
        return (
            f"{', '.join(played.jobs)} ran locally; {'; '.join(played.steps)}"
            f" ({package['ModelApprovalStatus']}, commit {self.workspace.commit[:7]}, metrics)"
        )

    def _approval(self) -> None:
        stage = STAGES[1]
        sagemaker = self.workspace.clients["sagemaker"]
        self._timed(stage, "Approve", lambda: approve(sagemaker, self.model_package_arn))
        self.deploy = PipelinePlayer(self.workspace, self.stacks.deploy, "")
        self.players.append(self.deploy)
        self._timed(stage, "ApprovalRule", self._deliver_approval)
        self._timed(stage, "StartDeploy", self._start_deploy)
        self._timed(stage, "EditApproved", self._edit_approved)

    def _deliver_approval(self) -> str:
        """The approval rule passes the package's Approved event, on a moto bus."""
        rule_id, rule = approval_rule(self.stacks.deploy)
        self.approval_rule_id = rule_id
        self.approval_event = self._delivered_state_change("rehearsal")
        name = rule["Properties"].get("Name", rule_id)
        return f"rule {name} passed the Approved event (not the Rejected one) to SQS on moto"

    def _delivered_state_change(self, bus_suffix: str) -> dict[str, Any]:
        """The package's Approved state change as the approval rule delivers it."""
        clients = self.workspace.clients
        package = clients["sagemaker"].describe_model_package(
            ModelPackageName=self.model_package_arn
        )
        return deliver_state_change(
            clients["events"],
            clients["sqs"],
            self.stacks.deploy,
            self.approval_rule_id,
            package,
            f"{self.settings.project}-{bus_suffix}",
        )

    def _run_starter(
        self, event: dict[str, Any], where: str, log_name: str, expected_starts: int
    ) -> list:
        """The rule's starter function on the event, as its role (IAM checked); its starts."""
        role_arn = rule_target_role(self.stacks.deploy, self.approval_rule_id)
        with self.workspace.acting_as(role_arn, where) as calls:
            starts, output = start_deploy(
                self.stacks.deploy,
                self.approval_rule_id,
                event,
                self.deploy.name,
                self.settings.region,
                expected_starts=expected_starts,
            )
        self.workspace.check_iam(calls, where)
        (self.log_dir / log_name).write_text(output)
        return starts

    def _start_deploy(self) -> str:
        """The rule's target starts the deploy pipeline at the commit that built the package."""
        starts = self._run_starter(self.approval_event, "StartDeploy", "start-deploy.log", 1)
        commit = started_commit(starts[0])
        if commit != self.workspace.commit:
            raise StageFailed(
                f"the deploy pipeline would start at commit {commit or '(none)'}, not at"
                f" {self.workspace.commit}, which built the package"
            )
        self.deploy.commit = commit
        return f"{self.deploy.name} started at {commit[:12]} (COMMIT_ID source revision)"

    def _edit_approved(self) -> str:
        """An edit of the approved package (its description, say) sends a state change the
        rule passes as it passed the approval: the starter must start nothing."""
        event = self._delivered_state_change("rehearsal-edit")
        self._run_starter(event, "EditApproved", "edit-approved.log", 0)
        return "the rule passed an edit of the Approved package; the starter started nothing"

    def _model_deploy(self) -> None:
        stage = STAGES[2]
        actions = [action for action in self.deploy.actions() if action.provider != "Lambda"]
        for action in actions:
            self._timed(stage, action.name, lambda action=action: self.deploy.play(action))
        # Every release after the first finds the production stack in place: the last
        # build of the deploy pipeline (the production deploy) runs once more, as the next
        # release would, against the stack it made.
        last = [action for action in actions if action.provider == "CodeBuild"][-1]
        self._timed(stage, f"{last.name} again", lambda: self.deploy.play(last))
        self._timed(stage, "Endpoints", self._check_endpoints)

    def _check_endpoints(self) -> str:
        """Every endpoint the tests invoked serves the approved package."""
        if not self.runtime.invocations:
            raise StageFailed("no endpoint was invoked: the endpoint tests did not run")
        for endpoint_name in self.runtime.invocations:
            account_id = self.runtime.accounts.get(endpoint_name)
            _, model = self.runtime.served_model(endpoint_name, account_id)
            served = model.get("PrimaryContainer", {}).get("ModelPackageName")
            if served != self.model_package_arn:
                raise StageFailed(
                    f"endpoint {endpoint_name} serves {served}, not {self.model_package_arn}"
                )
            if account_id is not None:
                self._endpoint_reads_its_model(endpoint_name, model)
        counts = ", ".join(str(count) for count in self.runtime.invocations.values())
        return (
            f"{len(self.runtime.invocations)} endpoints ({counts} invocations) serve the"
            " approved package"
        )

    def _endpoint_reads_its_model(self, endpoint_name: str, model: dict[str, Any]) -> None:
        """SageMaker reads a stage account's model files from the pipelines' account with the
        model's execution role (its identity policy, and the bucket and key policies there)."""
        iam = self.iam
        role_arn = str(model["ExecutionRoleArn"])
        actor = iam.actor(role_arn)
        url = self.runtime.artifact_url(model)
        bucket, _, key = url.removeprefix("s3://").partition("/")
        call = Call(actor, "s3", "GetObject", {"Bucket": bucket, "Key": key})
        requests = authorizations(call, iam.checker.account.of(actor))
        self.workspace.check_iam([], f"endpoint {endpoint_name}", platform=(actor, requests))

    def _merge(self) -> None:
        stage = STAGES[3]
        actions = [action for action in self.deploy.actions() if action.provider == "Lambda"]
        if not actions:
            raise StageFailed(f"{DEPLOY_TEMPLATE} has no Lambda invoke action to merge")
        for action in actions:
            self._timed(stage, action.name, lambda action=action: self.deploy.play(action))

    def _retraining(self) -> None:
        stage = STAGES[4]
        self.approved_package_arn = self.model_package_arn
        self._timed(stage, "NewData", self._land_new_data)
        self._timed(stage, "Retrain", self._retrain_on_new_data)
        self._timed(stage, "Schedule", self._schedule_tick)
        self._timed(stage, "Notifications", self._notifications)

    def _artifact_bucket(self) -> str:
        buckets = resources_of_type(self.stacks.build.template, "AWS::S3::Bucket")
        if len(buckets) != 1:
            raise StageFailed(f"{BUILD_TEMPLATE}: expected one bucket, found {len(buckets)}")
        return self.stacks.build.physical_id(next(iter(buckets)))

    def _batch_files(self) -> dict[str, bytes]:
        """The project's sample data set (its CLI writes it), in parts with their header."""
        folder = self.work_dir / "new-data"
        log_path = self.log_dir / "retraining.log"
        args = ["-m", self.settings.cli_package, "data", "--output-dir", str(folder)]
        if self.workspace.run_python(args, log_path).returncode != 0:
            raise StageFailed("the project's CLI could not write the sample data set", log_path)
        (dataset,) = sorted(folder.glob("*.csv"))
        header, *rows = dataset.read_text().splitlines(keepends=True)
        size = -(-len(rows) // BATCH_PARTS)
        return {
            f"part-{number:04d}.csv": (header + "".join(rows[start : start + size])).encode()
            for number, start in enumerate(range(0, len(rows), size))
        }

    def _start_build_on(self, batch: str, files: dict[str, bytes]) -> dict[str, Any]:
        """Land a batch; the rule passes its marker alone, and the starter function asks for
        one build with the batch's URI. The StartPipelineExecution request."""
        clients = self.workspace.clients
        build = self.stacks.build
        landing = data_landing(build)
        bucket = self._artifact_bucket()
        if not self.new_data_queue:
            enable_bucket_events(clients["s3"], build, bucket)
            name = f"{self.settings.project}-new-data"
            self.new_data_queue = watch_rule(
                clients["events"], clients["sqs"], build, landing.rule_id, name
            )
        event = land_batch(
            clients["s3"], clients["sqs"], self.new_data_queue, bucket, landing, batch, files
        )
        build_name = PipelinePlayer(self.workspace, build, self.workspace.commit).name
        starts, output = start_deploy(
            build, landing.rule_id, event, build_name, self.settings.region
        )
        with open(self.log_dir / "start-build.log", "a", encoding="utf-8") as log:
            log.write(output)
        (start,) = starts
        expected = f"s3://{bucket}/{landing.prefix}{batch}/"
        values = [item["value"] for item in start.get("variables", [])]
        if values != [expected]:
            raise StageFailed(
                f"the build pipeline would start with variables {start.get('variables')}, not"
                f" one holding {expected}"
            )
        return start

    def _land_new_data(self) -> str:
        files = self._batch_files()
        self.new_data_start = self._start_build_on(NEW_BATCH, files)
        (variable,) = self.new_data_start["variables"]
        self.new_data_url = variable["value"]
        return (
            f"{len(files)} files and the marker: one event; build pipeline started with"
            f" {variable['name']}={variable['value']}"
        )

    def _train_environment(self, build: PipelinePlayer) -> dict[str, str]:
        """The Train action's environment overrides, resolved for this execution."""
        train = next(action for action in build.actions() if action.name == "Train")
        environment = json.loads(train.configuration.get("EnvironmentVariables", "[]"))
        return {item["name"]: build.resolve_variables(item["value"]) for item in environment}

    def _start_training(self, environment: dict[str, str]) -> str:
        """What the Train action runs after its upsert (the pipeline is the one stage 1
        upserted: same commit): `start`, its environment given as options. The execution."""
        log_path = self.log_dir / "retraining.log"
        args = ["-m", self.settings.cli_package, "start", "--commit-id", self.workspace.commit]
        for name, value in environment.items():
            args += [f"--{name.lower().replace('_', '-')}", value]
        if self.workspace.run_python(args, log_path).returncode != 0:
            raise StageFailed(f"`python {' '.join(args)}` failed", log_path)
        pipeline_name = self.stacks.build.parameter(SAGEMAKER_PIPELINE_PARAMETER)
        return newest_execution(self.workspace.clients["sagemaker"], pipeline_name)

    def _retrain_on_new_data(self) -> str:
        """The started build's Train action gets the batch's URI, starts the SageMaker
        pipeline on it, and the package records (commit, data)."""
        build = PipelinePlayer(self.workspace, self.stacks.build, self.workspace.commit)
        build.start_with(self.new_data_start["variables"])
        environment = self._train_environment(build)
        if self.new_data_url not in environment.values():
            raise StageFailed(
                f"the Train action's environment {environment} does not carry {self.new_data_url}"
            )
        self._start_training(environment)
        played = self._play_sagemaker_pipeline(
            expected_data_url=self.new_data_url, workdir_name="sagemaker-pipeline-new-data"
        )
        self.retrained_package_arn = self.model_package_arn
        shown = ", ".join(f"{name}={value}" for name, value in environment.items())
        return f"Train with {shown}: {played}"

    def _schedule_tick(self) -> str:
        """A tick starts the build pipeline with its default variables: the Train action then
        starts the SageMaker pipeline on the previous run's data."""
        build = PipelinePlayer(self.workspace, self.stacks.build, self.workspace.commit)
        what = check_schedule(build.stack, build.name, self.settings.region)
        if what is None:
            return "no schedule in the template (retrain_schedule empty): nothing to play"
        environment = self._train_environment(build)
        execution = self._start_training(environment)
        parameters = self.workspace.clients["sagemaker"].list_pipeline_parameters_for_execution(
            PipelineExecutionArn=execution
        )["PipelineParameters"]
        used = {item["Name"]: item["Value"] for item in parameters}.get("InputDataUrl")
        if used != self.new_data_url:
            raise StageFailed(
                f"the scheduled run trains on {used!r}, not the previous run's {self.new_data_url}"
            )
        shown = ", ".join(f"{name}={value}" for name, value in environment.items())
        return f"{what} ({shown}): trains on {used}"

    def _notifications(self) -> str:
        """Provoke failures (a broken batch, a production alarm), then route them and the
        flow's successes through every notification rule."""
        clients = self.workspace.clients
        region = self.settings.region
        sagemaker = clients["sagemaker"]
        build_name = PipelinePlayer(self.workspace, self.stacks.build, "").name
        failures: dict[str, dict] = {}
        successes: dict[str, dict] = {}

        # A broken batch: its build trains, the SageMaker pipeline fails, so does the build.
        broken = self._start_build_on(BROKEN_BATCH, {"broken.csv": b"not,the,columns\n1,2,3\n"})
        (variable,) = broken["variables"]
        build = PipelinePlayer(self.workspace, self.stacks.build, self.workspace.commit)
        build.start_with(broken["variables"])
        execution_arn = self._start_training(self._train_environment(build))
        log_path = self.log_dir / "retraining.log"

        run_local = self._local_runner(log_path)
        try:
            ExecutionPlayer(
                sagemaker, clients["s3"], execution_arn, self.work_dir / "broken-batch", run_local
            ).play()
        except PipelineExecutionError as error:
            execution_failed(execution_arn, str(error))
        else:
            raise StageFailed(f"the SageMaker pipeline did not fail on {variable['value']}")
        execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
        failures["SageMaker pipeline failed"] = sagemaker_execution_event(region, execution)
        failures["build pipeline failed"] = pipeline_execution_event(
            region, build_name, "rehearsal-broken-batch", "FAILED"
        )

        retrained = sagemaker.describe_model_package(ModelPackageName=self.retrained_package_arn)
        label = f"new model {retrained['ModelApprovalStatus']}"
        if retrained["ModelApprovalStatus"] == "PendingManualApproval":
            failures[f"{label} (waits for a person)"] = model_package_event(region, retrained)
        else:
            successes[label] = model_package_event(region, retrained)
        approved = sagemaker.describe_model_package(ModelPackageName=self.approved_package_arn)
        successes["model approved"] = model_package_event(region, approved)

        prod_endpoint = self.stacks.deploy.parameter("ProdEndpointName")
        # With stage accounts the production endpoint and its alarms are in its account.
        prod_account = self.stacks.account_of("prod", ACCOUNT_ID)
        cloudwatch = self.workspace.clients_in(prod_account)["cloudwatch"]
        alarms = cloudwatch.describe_alarms(AlarmNamePrefix=f"{prod_endpoint}-")["MetricAlarms"]
        if not alarms:
            # moto's CloudFormation makes no alarms: the route is rehearsed with the state
            # change the endpoint stack's first alarm would send (from a stage account, through
            # its forwarding rule to the pipelines' bus).
            alarms = [self._endpoint_alarm(prod_account, prod_endpoint)]
            alarm_note = f"alarm {alarms[0]['AlarmName']} of account {prod_account} (in ALARM)"
            failures["production alarm"] = alarm_event(region, alarms[0])
        else:
            alarm_note = f"alarm {alarms[0]['AlarmName']} set to ALARM"
            name = alarms[0]["AlarmName"]
            cloudwatch.set_alarm_state(
                AlarmName=name, StateValue="ALARM", StateReason="make rehearse: errors injected"
            )
            (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
            failures["production alarm"] = alarm_event(region, alarm)
        if prod_account != ACCOUNT_ID:
            alarm_note += self._forward_alarm(prod_account, failures["production alarm"])

        successes["new-data build succeeded"] = pipeline_execution_event(
            region, build_name, "rehearsal-new-data", "SUCCEEDED"
        )
        successes["deploy succeeded"] = pipeline_execution_event(
            region,
            self.deploy.name,
            self.deploy.variables["codepipeline"]["PipelineExecutionId"],
            "SUCCEEDED",
        )
        for action in self.deploy.actions():
            if action.provider == "Lambda":
                successes[f"{action.name} succeeded"] = action_execution_event(
                    region,
                    self.deploy.name,
                    self.deploy.variables["codepipeline"]["PipelineExecutionId"],
                    action.stage,
                    action.name,
                    "SUCCEEDED",
                )

        rules = notification_rules([self.stacks.build, self.stacks.deploy])
        if not rules:
            raise StageFailed("no notification rule (a rule whose targets transform events)")
        reached = route(
            clients["events"],
            clients["sqs"],
            rules,
            {**failures, **successes},
            f"{self.settings.project}-notifications",
        )
        problems = [
            f"{label} reached {reached[label] or 'no rule'}"
            for label in failures
            if len(reached[label]) != 1
        ] + [f"{label} reached {reached[label]}" for label in successes if reached[label]]
        if problems:
            raise StageFailed("notification rules: " + "; ".join(problems))
        routed = ", ".join(f"{label} -> {reached[label][0]}" for label in failures)
        return f"{routed}; {len(successes)} successes reached no rule; {alarm_note}"

    def _endpoint_alarm(self, account_id: str, endpoint_name: str) -> dict[str, Any]:
        """The first alarm of the deploy pipeline's endpoint template, as DescribeAlarms
        would give it in ALARM, for the endpoint of that name in account_id."""
        templates = {
            str(action.configuration.get("TemplatePath", "")).split("::", 1)[-1]
            for action in self.deploy.actions()
            if action.provider == "CloudFormation"
        }
        for path in sorted(filter(None, templates)):
            template = load_template(self.workspace.source_dir / path)
            stack = Stack(
                "endpoint",
                template,
                account_id,
                self.settings.region,
                parameter_values={"EndpointName": endpoint_name},
            )
            for logical_id, alarm in resources_of_type(template, "AWS::CloudWatch::Alarm").items():
                name = str(stack.resolve(alarm["Properties"]["AlarmName"]))
                region = self.settings.region
                return {
                    "AlarmName": name,
                    "AlarmArn": f"arn:aws:cloudwatch:{region}:{account_id}:alarm:{name}",
                    "StateValue": "ALARM",
                    "StateReason": f"make rehearse: {logical_id} provoked",
                }
        raise StageFailed("the deploy pipeline's endpoint template has no alarm to provoke")

    def _forward_alarm(self, account_id: str, event: dict[str, Any]) -> str:
        """A stage account's alarm reaches the pipelines' bus through its account stack's
        forwarding rule (a rule whose target is the other account's bus, with a role: the
        EventBridge user guide's cross-account event delivery); the role's PutEvents needs
        its own policy and the bus policy of the pipelines' account."""
        (stack,) = [stack for stack in self.stacks.accounts if stack.account_id == account_id]
        forwarding = {
            logical_id: stack.resolve(resource["Properties"])
            for logical_id, resource in resources_of_type(
                stack.template, "AWS::Events::Rule"
            ).items()
            if any(
                ":event-bus/" in str(target.get("Arn"))
                for target in resource["Properties"].get("Targets", [])
            )
        }
        if not forwarding:
            raise StageFailed(f"account {account_id} has no rule that sends its alarms on")
        reached = route(
            self.workspace.clients_in(account_id)["events"],
            self.workspace.clients_in(account_id)["sqs"],
            {name: rule["EventPattern"] for name, rule in forwarding.items()},
            {"alarm": event},
            f"{self.settings.project}-forwarding",
        )["alarm"]
        if len(reached) != 1:
            raise StageFailed(
                f"the production alarm reached {reached or 'no'} forwarding rule of"
                f" account {account_id}"
            )
        (target,) = forwarding[reached[0]]["Targets"]
        actor = self.iam.actor(str(target["RoleArn"]))
        request = Authorization("events:PutEvents", str(target["Arn"]), GLOBAL_CONTEXT)
        self.workspace.check_iam(
            [], f"{reached[0]} of account {account_id}", platform=(actor, [request])
        )
        return f", forwarded from account {account_id} by {reached[0]} as {actor}"

    def _pipeline_update(self) -> None:
        stage = STAGES[5]
        self.pushes = Pushes(self.workspace.source_dir, self.work_dir / "pushes")
        self._timed(stage, "Pipeline change", self._push_pipeline_change)
        self._timed(stage, "Restarted run", self._restarted_run)
        self._timed(
            stage, "cfn-lint error", lambda: self._push_refused(lint_error, "cfn-lint", "E3012")
        )
        self._timed(
            stage,
            "iam:* on a role",
            lambda: self._push_refused(widened_role, "check-roles", "outside the permissions"),
        )
        self._timed(stage, "Function code", self._push_function_code)
        self._timed(stage, "First run", self._first_run_notification)

    def _champion_gate(self) -> None:
        stage = STAGES[6]
        self._timed(stage, "Weaker model", self._weaker_model_refused)
        self._timed(stage, "As good as production", self._as_good_as_production)

    def _train_at_push(self, message: str, edit: Callable[[Path], None]) -> tuple[str, Any, Any]:
        """A push's Source and Train actions (its lint, tests and pipeline update are
        rehearsed in stages 1 and 6), then its SageMaker pipeline execution played with
        the pushed code: (commit, the played execution or the PipelineExecutionError, the
        evaluation report)."""
        commit, files = self.pushes.push(message, edit)
        pushed = dataclasses.replace(
            self.workspace, git=self.pushes.git, commit=commit, source_dir=files
        )
        build = PipelinePlayer(pushed, self.stacks.build, commit)
        source, *actions = build.actions()
        build.play(source)
        build.play(next(action for action in actions if action.name == "Train"))
        clients = self.workspace.clients
        pipeline_name = self.stacks.build.parameter(SAGEMAKER_PIPELINE_PARAMETER)
        execution_arn = newest_execution(clients["sagemaker"], pipeline_name)
        role_arn = clients["sagemaker"].describe_pipeline(PipelineName=pipeline_name)["RoleArn"]
        log_path = self.log_dir / "champion-gate.log"
        player = ExecutionPlayer(
            clients["sagemaker"],
            clients["s3"],
            execution_arn,
            self.work_dir / f"champion-{commit[:7]}",
            self._local_runner(log_path, files),
        )
        with self.workspace.acting_as(role_arn, "SageMaker pipeline") as calls:
            try:
                outcome = player.play()
            except PipelineExecutionError as error:
                execution_failed(execution_arn, str(error))
                outcome = error
        self.workspace.check_iam(calls, "SageMaker pipeline")
        reports = [path for files in player.property_files.values() for path in files.values()]
        if not reports:
            raise StageFailed(f"the execution at {commit[:7]} wrote no evaluation report", log_path)
        report = json.loads(reports[0].read_text())
        # The gated metric, as the definition's Condition step reads it.
        (gate,) = [step for step in player.definition["Steps"] if step["Type"] == "Condition"]
        path = gate["Arguments"]["Conditions"][0]["LeftValue"]["Std:JsonGet"]["Path"]
        report["gated_metric"] = path.split(".")[1]
        return commit, outcome, report

    def _champion_numbers(self, report: dict[str, Any]) -> tuple[float, float]:
        """The gated metric's value and the champion floor it had to reach."""
        metric = report["gated_metric"]
        value = report["binary_classification_metrics"][metric]["value"]
        floor = report["quality_gate"][metric]["champion_floor"]
        if not (report.get("champion") or {}).get("metrics"):
            raise StageFailed(
                "the evaluation compared with no production model: the Train action did not"
                " pass the production endpoint's model as ChampionModelUrl"
            )
        return value, floor

    def _weaker_model_refused(self) -> str:
        """A weaker model, with the threshold and the baseline margin lowered so far that
        only the comparison with the production model can refuse it: refused, nothing
        registered."""
        before = self._package_count()
        commit, outcome, report = self._train_at_push(
            "a weaker model, and only the production model to beat", weaker_model()
        )
        self.pushes.revert()
        metric = report["gated_metric"]
        value, floor = self._champion_numbers(report)
        if not isinstance(outcome, PipelineExecutionError):
            raise StageFailed(
                f"push {commit[:7]}: {metric} {value:.4f} against production's floor"
                f" {floor:.4f}, and the gate registered {outcome.model_package_arn}"
            )
        if value >= floor:
            raise StageFailed(
                f"push {commit[:7]}: the weaker model scores {metric} {value:.4f}, not below"
                f" production's floor {floor:.4f}: the rehearsal's weaker model is not weaker"
                " on this data"
            )
        if "production model" not in str(outcome):
            raise StageFailed(f"the gate's message does not name the production model: {outcome}")
        if self._package_count() != before:
            raise StageFailed("the refused model was registered all the same")
        lowered = ", ".join(f"{k} {v}" for k, v in LOWERED_GATE.items())
        return (
            f"push {commit[:7]} (labels shuffled; {lowered}): {metric} {value:.4f} < the"
            f" production model's floor {floor:.4f}; FailQualityGate, nothing registered"
        )

    def _as_good_as_production(self) -> str:
        """The weaker change reverted: the model scores as production's does, and is
        registered, for its own commit."""
        commit, outcome, report = self._train_at_push("the classifier restored", lambda _: None)
        metric = report["gated_metric"]
        value, floor = self._champion_numbers(report)
        if isinstance(outcome, PipelineExecutionError):
            raise StageFailed(f"push {commit[:7]}: {outcome}")
        package = self.workspace.clients["sagemaker"].describe_model_package(
            ModelPackageName=outcome.model_package_arn
        )
        recorded = package.get("MetadataProperties", {}).get("CommitId")
        if recorded != commit:
            raise StageFailed(
                f"{outcome.model_package_arn} records commit {recorded}, not {commit}"
            )
        return (
            f"push {commit[:7]}: {metric} {value:.4f} >= the production model's floor"
            f" {floor:.4f}; registered {'/'.join(outcome.model_package_arn.rsplit('/', 2)[-2:])}"
        )

    # ------------------------------------------------------------------ pull requests

    def _pull_requests(self) -> None:
        stage = STAGES[7]
        self.pull_requests = PullRequestStore()
        self.workspace.pull_requests = self.pull_requests
        # The pull requests branch off the rehearsed commit (not the earlier stages' pushes).
        self.pushes = Pushes(self.workspace.source_dir, self.work_dir / "pull-requests")
        self._timed(stage, "Harmless change", self._harmless_pull_request)
        self._timed(stage, "Weaker model", self._weaker_pull_request)
        self._timed(stage, "Broken check", self._broken_check_pull_request)
        if "REPOSITORY_NAME" not in self._function_environment():
            self._timed(stage, "From a fork", self._fork_pull_request)

    def _function_environment(self) -> dict[str, Any]:
        """The environment of the function the check pipeline's first Invoke action calls."""
        deploy = self.stacks.deploy
        invoke = next(
            action
            for action in pipeline_actions(deploy, CHECK_PIPELINE)
            if action.provider == "Lambda"
        )
        function = deploy.resource(invoke.configuration["FunctionName"]["Ref"])["Properties"]
        return function.get("Environment", {}).get("Variables", {})

    def _check_pull_request(self, item: Any, kind: str, files: Path) -> tuple[Any, list[str]]:
        """Start the check pipeline as the pull request's event or trigger would, and play
        it: (the action that failed, or None; what each action did)."""
        deploy = self.stacks.deploy
        pushed = dataclasses.replace(
            self.workspace, git=self.pushes.git, commit=item.head, source_dir=files
        )
        player = PipelinePlayer(pushed, deploy, item.head, pipeline=CHECK_PIPELINE)
        if "REPOSITORY_NAME" in self._function_environment():
            rule_id = pull_request_rule(deploy)
            pattern = deploy.resolve(deploy.resource(rule_id)["Properties"]["EventPattern"])
            # The repository the rule names (CodeCommit sends its ARN as the resource).
            (repository,) = pattern["resources"]
            event = codecommit_event(
                item, kind, repository, self.settings.region, self.workspace.account_id
            )
            entry = {
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
                "Resources": event["resources"],
            }
            clients = self.workspace.clients
            reached = route(
                clients["events"],
                clients["sqs"],
                {rule_id: pattern},
                {kind: entry},
                f"{self.settings.project}-pr-{item.number}-{item.head[:7]}",
            )
            if reached[kind] != [rule_id]:
                raise StageFailed(f"rule {rule_id} does not pass CodeCommit's {kind} event")
            role_arn = rule_target_role(deploy, rule_id)
            with self.workspace.acting_as(role_arn, "StartCheck") as calls:
                starts, output = start_deploy(
                    deploy, rule_id, event, player.name, self.settings.region
                )
            self.workspace.check_iam(calls, "StartCheck")
            (self.log_dir / f"start-check-{item.number}.log").write_text(output)
            revisions = starts[0].get("sourceRevisions", [])
            if [r.get("revisionValue") for r in revisions] != [item.head]:
                raise StageFailed(f"the check would start at {revisions}, not at {item.head}")
            player.start_with(starts[0].get("variables", []))
        else:
            problem = trigger_matches(deploy, kind, item.destination_branch)
            if problem:
                raise StageFailed(problem)
        ran = []
        for action in player.actions():
            try:
                ran.append(f"{action.name}: {player.play(action)}")
            except ActionFailed as failure:
                (self.log_dir / f"pull-request-{item.number}-{item.head[:7]}.log").write_text(
                    "\n".join([*ran, f"{action.name} failed: {failure.problem}"])
                )
                if action.category == "Build":
                    ran.append(self._report_failed_build(player, action))
                return (action.name, failure), ran
        return None, ran

    def _report_failed_build(self, player: PipelinePlayer, action: Any) -> str:
        """A failed build action's state change, through the check-failed rule to its target
        function, which reads the execution and marks the pull request failed."""
        deploy = self.stacks.deploy
        execution_id = player.variables["codepipeline"]["PipelineExecutionId"]
        event = action_execution_event(
            self.settings.region, player.name, execution_id, action.stage, action.name, "FAILED"
        )
        rules = {
            logical_id: deploy.resolve(rule["Properties"]["EventPattern"])
            for logical_id, rule in resources_of_type(deploy.template, "AWS::Events::Rule").items()
            if "CodePipeline Action Execution State Change"
            in deploy.resolve(rule["Properties"]["EventPattern"]).get("detail-type", [])
        }
        clients = self.workspace.clients
        reached = route(
            clients["events"],
            clients["sqs"],
            rules,
            {"failed": event},
            f"{self.settings.project}-check-failed-{execution_id[:8]}",
        )["failed"]
        if len(reached) != 1:
            raise StageFailed(f"the failed {action.name} action reached {reached or 'no rule'}")
        target = deploy.resource(reached[0])["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0]
        jobs = CodePipelineJobs(
            executions={
                execution_id: {"commit": player.commit, "variables": player.variables["variables"]}
            }
        )
        delivered = as_delivered(event, self.workspace.account_id)
        where = f"{action.name}Failed"
        result, _, _ = player.invoke_function(target, lambda _: delivered, where, jobs)
        if "failed check reported" not in result.log_text:
            raise StageFailed(
                f"{reached[0]}'s function did not report the failed check", result.log_path
            )
        return f"{action.name} failed: {reached[0]} -> {target}, which marked the pull request"

    def _comment_of(self, item: Any) -> str:
        if len(item.comments) != 1:
            raise StageFailed(
                f"pull request {item.number} has {len(item.comments)} comments from the check:"
                " it must keep exactly one, updated in place"
            )
        return item.comments[0]["body"]

    def _state_of(self, item: Any) -> str:
        """The pass or fail state on the pull request's head: the host's status, or
        CodeCommit's approval of the current revision."""
        if "REPOSITORY_NAME" in self._function_environment():
            approved = [a for a in item.approvals if a["revision"] == item.revision]
            return "approved" if approved else "not approved"
        status = item.status_of(item.head)
        return str(status["state"]) if status else "none"

    def _harmless_pull_request(self) -> str:
        """A pull request that changes the README: it passes, every cached step is a hit."""
        base = self.pushes.git.head()
        commit, files = self.pushes.push("a harmless change", harmless_change())
        item = self.pull_requests.open(
            "A harmless change",
            "rehearsal-pull-request",
            self.stacks.deploy.parameter("DevBranch"),
            commit,
            base,
        )
        self.pull_request = item
        failed, ran = self._check_pull_request(item, "OPEN", files)
        if failed:
            raise StageFailed(f"{failed[0]}: {failed[1].problem}", failed[1].log_path)
        comment = self._comment_of(item)
        (self.log_dir / "pull-request-comment-passed.md").write_text(comment)
        state = self._state_of(item)
        if "check: passed" not in comment or state not in ("approved", "success", "SUCCESSFUL"):
            raise StageFailed(
                f"the harmless change was not marked passing (state {state}): {comment[:300]}"
            )
        return (
            f"pull request {item.number} at {commit[:7]}: passed, state {state}; {len(ran)} actions"
        )

    def _weaker_pull_request(self) -> str:
        """A new commit on the same pull request fits the classifier on shuffled labels: it is
        marked failing, in the same comment, with the metric against production's."""
        item = self.pull_request
        commit, files = self.pushes.push("a weaker model", shuffled_labels())
        self.pull_requests.push(item, commit)
        failed, _ = self._check_pull_request(item, "UPDATED", files)
        if failed is None or failed[0] != "Report":
            problem = failed[1].problem if failed else "the check passed"
            raise StageFailed(f"the weaker model's check must fail at Report: {problem}")
        comment = self._comment_of(item)
        (self.log_dir / "pull-request-comment-failed.md").write_text(comment)
        state = self._state_of(item)
        if "check: failed" not in comment or "below the floor" not in comment:
            raise StageFailed(
                f"the comment does not say the model fell below production's: {comment[:400]}"
            )
        if state in ("approved", "success", "SUCCESSFUL"):
            raise StageFailed(f"the weaker model's pull request is marked {state}")
        row = next((line for line in comment.splitlines() if "below the floor" in line), "")
        measured = row.split("|")[2].strip(" *")[:120]
        return f"pull request {item.number} at {commit[:7]}: failed, state {state}; {measured}"

    def _broken_check_pull_request(self) -> str:
        """A commit that breaks the command line: the Check action fails before it writes a
        result, Report never runs, and the check-failed rule has the function mark the pull
        request failed, in the same comment."""
        item = self.pull_request
        commit, files = self.pushes.push("a broken command line", broken_command_line())
        self.pull_requests.push(item, commit)
        failed, ran = self._check_pull_request(item, "UPDATED", files)
        if failed is None or failed[0] != "Check":
            problem = failed[1].problem if failed else "the check passed"
            raise StageFailed(f"the broken commit's check must fail at Check: {problem}")
        comment = self._comment_of(item)
        state = self._state_of(item)
        if "the Check action failed" not in comment or state in (
            "approved",
            "success",
            "SUCCESSFUL",
        ):
            raise StageFailed(f"the failed Check was not reported (state {state}): {comment[:300]}")
        return f"pull request {item.number} at {commit[:7]}: {ran[-1]}; state {state}"

    def _fork_pull_request(self) -> str:
        """A pull request from a fork: the check stops at Open, before any of its code runs."""
        self.pull_request.state = "closed"
        base = self.pull_request.destination_commit
        commit, files = self.pushes.push("a change from a fork", harmless_change())
        item = self.pull_requests.open(
            "From a fork",
            "rehearsal-fork",
            self.stacks.deploy.parameter("DevBranch"),
            commit,
            base,
            fork_of="someone-else/fork",
        )
        failed, _ = self._check_pull_request(item, "OPEN", files)
        if failed is None or failed[0] != "Open" or "another repository" not in failed[1].problem:
            raise StageFailed(f"the fork's check did not stop at Open: {failed}")
        comment = self._comment_of(item)
        if "not run" not in comment:
            raise StageFailed(
                f"the fork's comment does not say the check did not run: {comment[:300]}"
            )
        return (
            f"pull request {item.number} from a fork: stopped at Open, state {self._state_of(item)}"
        )

    def _package_count(self) -> int:
        group = self.stacks.build.parameter("ModelPackageGroupName")
        return len(
            self.workspace.clients["sagemaker"].list_model_packages(ModelPackageGroupName=group)[
                "ModelPackageSummaryList"
            ]
        )

    def _hosted(self) -> dict[str, Any]:
        return {name: (h.body, h.updates) for name, h in self.cloudformation.stacks.items()}

    def _push_pipeline_change(self) -> str:
        """A changed build pipeline template reaches both stacks; the run is cancelled."""
        self.push_mark = uuid.uuid4().hex[:12]
        commit, files = self.pushes.push(
            "a pipeline variable and a longer build timeout", changed_pipeline(self.push_mark)
        )
        before = self._hosted()
        _, output, failure = play_push(self.workspace, self.stacks, self.pushes, commit, files)
        if failure is not None:
            raise StageFailed(failure.problem, failure.log_path)
        self.updates.refresh_iam()
        build = self.stacks.build
        if self._hosted()[build.name][1] != before[build.name][1] + 1:
            raise StageFailed(f"{build.name} was not updated by the UpdatePipelines action")
        if RESTART_LINE not in output:
            raise StageFailed(
                "the pipeline's definition changed, but UpdatePipelines did not say that"
                " CodePipeline restarts the run"
            )
        self.push_commit, self.push_files = commit, files
        return (
            f"push {commit[:7]}: {build.name} updated through a change set as StacksRole;"
            " the run is cancelled (its definition changed) and restarted"
        )

    def _restarted_run(self) -> str:
        """The restarted run uses the updated pipeline; its UpdatePipelines changes nothing."""
        player, output, failure = play_push(
            self.workspace, self.stacks, self.pushes, self.push_commit, self.push_files
        )
        if failure is not None:
            raise StageFailed(failure.problem, failure.log_path)
        if player.variables["variables"].get(MARKER_VARIABLE) != self.push_mark:
            raise StageFailed(
                f"the restarted run does not have the pushed variable {MARKER_VARIABLE}"
            )
        unchanged = [name for name in (self.stacks.build.name, self.stacks.deploy.name)]
        missing = [name for name in unchanged if f"{name}: no changes" not in output]
        if missing:
            raise StageFailed(
                f"the restarted run's UpdatePipelines changed {', '.join(missing)} again"
            )
        project = build_action_project(self.stacks.build.template)["Properties"]
        return (
            f"the pipeline has {MARKER_VARIABLE}, the Build project TimeoutInMinutes"
            f" {project.get('TimeoutInMinutes')}; both stacks: no changes"
        )

    def _push_refused(self, edit: Callable[[Path], None], expected: str, marker: str) -> str:
        """A broken change fails UpdatePipelines before any stack changes, and the failure
        reaches the notification topic."""
        commit, files = self.pushes.push(f"a broken change ({expected})", edit)
        before = self._hosted()
        _, output, failure = play_push(self.workspace, self.stacks, self.pushes, commit, files)
        self.pushes.revert()
        if failure is None:
            raise StageFailed(f"UpdatePipelines accepted a push with {expected}")
        if marker not in output:
            raise StageFailed(
                f"UpdatePipelines failed, but not in {expected} ({marker!r})", failure.log_path
            )
        if self._hosted() != before:
            raise StageFailed("the refused push changed a stack")
        build_name = PipelinePlayer(self.workspace, self.stacks.build, "").name
        event = pipeline_execution_event(self.settings.region, build_name, commit, "FAILED")
        reached = route(
            self.workspace.clients["events"],
            self.workspace.clients["sqs"],
            notification_rules([self.stacks.build, self.stacks.deploy]),
            {"refused": event},
            f"{self.settings.project}-refused-{commit[:7]}",
        )["refused"]
        if len(reached) != 1:
            raise StageFailed(f"the failed run reached {reached or 'no rule'}, not one")
        return (
            f"push {commit[:7]} refused by {expected}; stacks unchanged; notified by {reached[0]}"
        )

    def _push_function_code(self) -> str:
        """A change to the merge function's code reaches the function."""
        mark = uuid.uuid4().hex[:12]
        commit, files = self.pushes.push("the merge function changed", function_code_change(mark))
        before = self.stacks.deploy.parameter(MERGE_CODE_KEY_PARAMETER)
        _, _, failure = play_push(self.workspace, self.stacks, self.pushes, commit, files)
        if failure is not None:
            raise StageFailed(failure.problem, failure.log_path)
        self.updates.refresh_iam()
        key = function_archive_has(self.workspace, self.stacks.deploy, mark)
        if not key or key == before:
            raise StageFailed("the deploy stack's merge function does not run the pushed code")
        return f"push {commit[:7]}: the merge function's code is {key} (was {before})"

    def _first_run_notification(self) -> str:
        """The run CodePipeline starts when it creates a pipeline notifies nobody when it
        fails (make bootstrap starts the first build); another failure still does."""
        region = self.settings.region
        build_name = PipelinePlayer(self.workspace, self.stacks.build, "").name
        entries = {
            "created": pipeline_execution_event(
                region, build_name, "first", "FAILED", "CreatePipeline"
            ),
            "pushed": pipeline_execution_event(region, build_name, "push", "FAILED", "WebhookV2"),
            "untold": pipeline_execution_event(region, build_name, "untold", "FAILED", None),
        }
        reached = route(
            self.workspace.clients["events"],
            self.workspace.clients["sqs"],
            notification_rules([self.stacks.build, self.stacks.deploy]),
            entries,
            f"{self.settings.project}-first-run",
        )
        counts = {label: len(rules) for label, rules in reached.items()}
        if counts != {"created": 0, "pushed": 1, "untold": 1}:
            raise StageFailed(f"failed runs reached these many rules: {counts}")
        return (
            "a failed CreatePipeline run reached no rule; a failed push run, and one"
            " without a trigger, one each"
        )

    # ------------------------------------------------------------------ summary

    def _summary(self, seconds: float, failed: str | None) -> None:
        table = [("stage", "action", "time", "result", "what ran")]
        table.extend(
            (row.stage, row.action, f"{row.seconds:.1f} s", row.result, row.ran)
            for row in self.rows
        )
        table.append(("Total", "", f"{seconds:.1f} s", "FAILED" if failed else "passed", ""))
        widths = [max(len(line[column]) for line in table) for column in range(4)]
        lines = ["", "Rehearsal summary"]
        for *cells, ran in table:
            padded = "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
            lines.append(f"  {padded}  {ran}".rstrip())
        if self.iam is not None:
            lines.extend(self.iam.checker.summary())
        lines.extend(self._footnotes())
        lines.append(f"Logs: {self._shown(self.log_dir)}/")
        text = "\n".join(lines)
        self.echo(text)
        (self.log_dir / "summary.txt").write_text(text.lstrip("\n") + "\n")

    def _footnotes(self) -> list[str]:
        skipped: dict[str, set[str]] = {}
        runtimes: set[str] = set()
        for player in self.players:
            for phase, buildspecs in player.skipped_phases.items():
                skipped.setdefault(phase, set()).update(buildspecs)
            runtimes.update(player.runtimes)
        notes = [
            f"Skipped: the {phase} phase of {', '.join(sorted(buildspecs))}; every make target"
            f" ran with PYTHON={self.python} and nothing was downloaded"
            for phase, buildspecs in sorted(skipped.items())
        ]
        version = f"python {sys.version_info.major}.{sys.version_info.minor}"
        notes.extend(
            f"Note: CodeBuild runs {runtime}; this rehearsal ran {version}"
            for runtime in sorted(runtimes)
            if runtime.startswith("python ") and runtime != version
        )
        notes.extend(f"Note: {note}" for note in self.notes)
        if self.until is not None and self.until != STAGES[-1]:
            later = STAGES[STAGES.index(self.until) + 1 :]
            notes.append(f"Not played (--until {self.until}): {', '.join(later)}")
        return notes


def _moto_client(service: str, endpoint_url: str, region: str) -> Any:
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def _clock() -> str:
    return datetime.now().astimezone().strftime("%H:%M:%S")


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m rehearsal`."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter for every make target (default: this one)",
    )
    parser.add_argument(
        "--until",
        choices=STAGES,
        help="the last stage to play (default: every stage)",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=DEFAULT_LOG_DIR,
        help="logs and work folders (build/rehearsal)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Rehearse the flow in the current directory (the repository root)."""
    args = build_parser().parse_args(argv)
    python = shutil.which(args.python)
    if python is None:
        print(
            f"rehearse: --python {args.python} is not an interpreter on this machine",
            file=sys.stderr,
        )
        return 2
    return Rehearsal(Path.cwd(), str(Path(python).absolute()), args.log_dir, until=args.until).run()
