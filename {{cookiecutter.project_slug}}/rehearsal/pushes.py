"""Pushes that change the pipelines themselves, and what CloudFormation does with them.

The Pipeline update stage commits changes to a scratch copy of the rehearsed commit (never
to the project's repository) and plays the model build pipeline's UpdatePipelines action on
each, as CodePipeline would after a push to the dev branch:
- a changed build pipeline template (a pipeline variable and a build timeout): both stacks
  update through change sets, CodePipeline cancels the run and starts it again on the
  updated pipeline (RestartExecutionOnUpdate), whose own UpdatePipelines finds no change;
- a template cfn-lint refuses, and a role granted iam:*: the action fails before any stack
  changes;
- a change to the merge function's code: its new zip reaches the deploy stack's function.

What CloudFormation's handlers do for a stack change is checked as the role the change set
names (the bootstrap stack's StacksRole), against its policies; the roles' own policies as
the updated templates give them, within the permissions boundary.
"""

import dataclasses
import json
import re
import shutil
import subprocess
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .actions import (
    ActionFailed,
    PipelineAction,
    PipelinePlayer,
    Workspace,
    pipeline_resource,
    slug,
)
from .bootstrap import BUILD_TEMPLATE, STACKS_ROLE_OUTPUT, BootstrapError, Stacks, stack_roles
from .cloudformation import CloudFormationLoader, Stack, resources_of_type
from .iam import RehearsalIam, stack_change_authorizations, write_policies
from .source import GitRepository, copy_tree
from .stacks import ChangeSet, HostedStack, _resolved

UPDATE_STAGE = "UpdatePipelines"
RESTART_LINE = "CodePipeline cancels this run"
MARKER_VARIABLE = "RehearsalPush"


class Pushes:
    """A scratch git repository holding the rehearsed commit; each push is one commit."""

    def __init__(self, source_dir: Path, folder: Path) -> None:
        self.folder = folder
        self.repo = folder / "repository"
        shutil.rmtree(folder, ignore_errors=True)
        copy_tree(source_dir, self.repo)
        self._git("init", "--quiet", "--initial-branch=rehearsal")
        self.commit("the rehearsed commit")
        self.count = 0

    def _git(self, *args: str) -> str:
        identity = ("-c", "user.name=rehearsal", "-c", "user.email=rehearsal@example.invalid")
        result = subprocess.run(
            ["git", *identity, *args], cwd=self.repo, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ActionFailed(f"git {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def commit(self, message: str) -> str:
        """Commit every file of the working tree; the commit id."""
        self._git("add", "--all")
        self._git("commit", "--quiet", "--allow-empty", "-m", message)
        return self._git("rev-parse", "HEAD")

    def push(self, message: str, edit: Callable[[Path], None]) -> tuple[str, Path]:
        """Edit the tree, commit: (commit id, a copy of its files for the Source action)."""
        edit(self.repo)
        commit = self.commit(message)
        self.count += 1
        snapshot = self.folder / f"push-{self.count}"
        shutil.rmtree(snapshot, ignore_errors=True)
        shutil.copytree(self.repo, snapshot, ignore=shutil.ignore_patterns(".git"))
        return commit, snapshot

    def revert(self) -> None:
        """Undo the last push (a refused change is reverted before the next one)."""
        self._git("revert", "--no-edit", "HEAD")

    @property
    def git(self) -> GitRepository:
        return GitRepository(self.repo)


# ---------------------------------------------------------------------------- the edits


def _edit_template(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Load a template, change it, write it back as JSON (which YAML reads alike)."""
    template = yaml.load(path.read_text(), Loader=CloudFormationLoader)
    change(template)
    path.write_text(json.dumps(template, indent=1) + "\n")


def build_action_project(template: dict[str, Any]) -> dict[str, Any]:
    """The CodeBuild project of the first CodeBuild action after UpdatePipelines."""
    stages = pipeline_resource_of(template)["Properties"]["Stages"]
    for stage in stages[2:]:
        for action in stage["Actions"]:
            if action["ActionTypeId"]["Provider"] == "CodeBuild":
                reference = action["Configuration"]["ProjectName"]
                return template["Resources"][reference["Ref"]]
    raise ActionFailed(f"{BUILD_TEMPLATE}: no CodeBuild action after the {UPDATE_STAGE} stage")


def pipeline_resource_of(template: dict[str, Any]) -> dict[str, Any]:
    pipelines = resources_of_type(template, "AWS::CodePipeline::Pipeline")
    if len(pipelines) != 1:
        raise ActionFailed(f"{BUILD_TEMPLATE}: expected one pipeline, found {len(pipelines)}")
    return next(iter(pipelines.values()))


def changed_pipeline(mark: str) -> Callable[[Path], None]:
    """A new pipeline variable and a longer timeout of the Build action's project."""

    def change(template: dict[str, Any]) -> None:
        pipeline = pipeline_resource_of(template)["Properties"]
        pipeline.setdefault("Variables", []).append(
            {"Name": MARKER_VARIABLE, "DefaultValue": mark, "Description": "make rehearse"}
        )
        project = build_action_project(template)["Properties"]
        project["TimeoutInMinutes"] = int(project.get("TimeoutInMinutes", 60)) + 1

    return lambda root: _edit_template(root / BUILD_TEMPLATE, change)


def lint_error(root: Path) -> None:
    """A timeout that is not a number: cfn-lint refuses the template (E3012)."""

    def change(template: dict[str, Any]) -> None:
        build_action_project(template)["Properties"]["TimeoutInMinutes"] = "thirty minutes"

    _edit_template(root / BUILD_TEMPLATE, change)


def widened_role(root: Path) -> None:
    """iam:* on every resource, added to the Build action's project role."""

    def change(template: dict[str, Any]) -> None:
        role_id = build_action_project(template)["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
        policy = template["Resources"][role_id]["Properties"]["Policies"][0]
        policy["PolicyDocument"]["Statement"].append(
            {"Sid": "RehearsalWidening", "Effect": "Allow", "Action": "iam:*", "Resource": "*"}
        )

    _edit_template(root / BUILD_TEMPLATE, change)


def function_code_change(mark: str) -> Callable[[Path], None]:
    """A line added to the merge function's handler module."""

    def change(root: Path) -> None:
        (handler,) = sorted((root / "lambdas").glob("*/app.py"))
        with open(handler, "a", encoding="utf-8") as module:
            module.write(f"\n# make rehearse: {mark}\n")

    return change


# Appended to the classifier module: its own fit, given shuffled training labels. Whatever
# the classifier, the model then learns nothing (docs/change-the-model.md: fit is the one
# call train.py makes, with (features, labels) pairs).
SHUFFLED_LABELS_FIT = """

# make rehearse: a weaker model, fitted on shuffled training labels.
_fit_on_the_real_labels = fit


def fit(train, validation, *rest):
    import numpy

    features, labels = train
    shuffled = numpy.random.default_rng(0).permutation(labels)
    return _fit_on_the_real_labels((features, shuffled), validation, *rest)
"""
# What the push sets in config.py, so that only the comparison with production can refuse
# the weaker model: no threshold to speak of, and floors below any majority-class baseline.
LOWERED_GATE = {"QUALITY_THRESHOLD": "0.0", "BASELINE_MARGIN": "-1.0"}


def shuffled_labels() -> Callable[[Path], None]:
    """The classifier fitted on shuffled labels: a weaker model, the rest unchanged."""

    def change(root: Path) -> None:
        (classifier,) = sorted(root.glob("src/*/steps/classifier.py"))
        text = classifier.read_text()
        if not re.search(r"^def fit\(", text, flags=re.M):
            raise ActionFailed(
                f"{classifier} has no fit function: the rehearsal makes a weaker model by"
                " giving fit shuffled labels"
            )
        classifier.write_text(text + SHUFFLED_LABELS_FIT)

    return change


def harmless_change() -> Callable[[Path], None]:
    """A line added to the README: nothing the pipeline or the model reads."""

    def change(root: Path) -> None:
        readme = root / "README.md"
        readme.write_text(readme.read_text() + "\nA harmless line, added by make rehearse.\n")

    return change


def broken_command_line() -> Callable[[Path], None]:
    """The project's command line exits at once: every make target that runs it fails."""

    def change(root: Path) -> None:
        for main in sorted(root.glob("src/*/__main__.py")):
            main.write_text('raise SystemExit("the command line is broken by make rehearse")\n')

    return change


def weaker_model() -> Callable[[Path], None]:
    """The classifier fitted on shuffled labels, and the config's threshold and baseline
    margin lowered (LOWERED_GATE)."""

    def change(root: Path) -> None:
        shuffled_labels()(root)
        (config,) = sorted(root.glob("src/*/config.py"))
        text = config.read_text()
        for name, value in LOWERED_GATE.items():
            text, count = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, flags=re.M)
            if count != 1:
                raise ActionFailed(f"{config} has no {name} line")
        config.write_text(text)

    return change


# ---------------------------------------------------------------------------- CloudFormation


@dataclasses.dataclass
class PipelineUpdates:
    """What the rehearsal knows about CloudFormation's side of a stack change."""

    workspace: Workspace
    stacks: Stacks
    iam: RehearsalIam | None

    def _stacks_role(self) -> str:
        return self.stacks.bootstrap.outputs()[STACKS_ROLE_OUTPUT]

    def _denials(self, role_arn: str, stack: str, before: Any, now: Any, where: str) -> list[str]:
        if self.iam is None:
            return []
        actor = self.iam.actor(role_arn)
        account = self.iam.checker.account
        return [
            decision.line()
            for request in stack_change_authorizations(stack, before, now, account)
            if not (decision := self.iam.checker.check_request(actor, request, where)).allowed
        ]

    def check_creation(self) -> None:
        """make bootstrap creates both pipeline stacks as StacksRole: its policies must
        allow every create handler of their resources."""
        role_arn = self._stacks_role()
        denied = [
            line
            for stack in (self.stacks.build, self.stacks.deploy)
            for line in self._denials(role_arn, stack.name, {}, _resolved(stack), "bootstrap")
        ]
        if denied:
            raise BootstrapError("creating the pipeline stacks as StacksRole: " + "; ".join(denied))

    def on_execute(self, hosted: HostedStack, after: Stack, change_set: ChangeSet) -> Any:
        """CloudFormation runs the change set's handlers as its role: a denial fails it."""
        if not change_set.role_arn:
            return "the change set names no role: CloudFormation would act as the caller"
        denied = self._denials(
            change_set.role_arn,
            hosted.stack.name,
            _resolved(hosted.stack),
            _resolved(after),
            f"{UPDATE_STAGE}, CloudFormation",
        )
        return "; ".join(denied) or None

    def refresh_iam(self) -> None:
        """The roles' policies as the updated templates give them."""
        if self.iam is None:
            return
        policies, roles = stack_roles(self.stacks)
        current = self.iam.checker.policies
        changed = {role: found for role, found in policies.items() if current.get(role) != found}
        self.iam.checker.policies.update(changed)  # type: ignore[attr-defined]
        self.iam.roles.update(roles)  # type: ignore[attr-defined]
        write_policies(self.iam.policies_path, self.iam.checker.policies, self.iam.checker.account)


def update_action(player: PipelinePlayer) -> PipelineAction:
    """The UpdatePipelines action of the build pipeline."""
    for action in player.actions():
        if action.stage == UPDATE_STAGE:
            return action
    raise ActionFailed(f"{BUILD_TEMPLATE} has no {UPDATE_STAGE} stage after Source")


def play_push(workspace: Workspace, stacks: Stacks, pushes: Pushes, commit: str, files: Path):
    """Source and UpdatePipelines of the build pipeline at a pushed commit: (player, what
    UpdatePipelines printed, or the ActionFailed it raised)."""
    pushed = dataclasses.replace(workspace, git=pushes.git, commit=commit, source_dir=files)
    player = PipelinePlayer(pushed, stacks.build, commit)
    actions = player.actions()
    player.play(actions[0])
    action = update_action(player)
    log_path = workspace.log_dir / slug(player.name) / f"{slug(action.name)}.log"
    start = log_path.stat().st_size if log_path.is_file() else 0
    try:
        player.play(action)
        failure = None
    except ActionFailed as error:
        failure = error
    output = ""
    if log_path.is_file():
        with open(log_path, encoding="utf-8", errors="replace") as log:
            log.seek(start)
            output = log.read()
    kept = log_path.with_name(f"{slug(action.name)}-{commit[:7]}.log")
    kept.write_text(output)
    if failure is not None:
        failure.log_path = kept
    return player, output, failure


def function_archive_has(workspace: Workspace, stack: Stack, mark: str) -> str:
    """The S3 key of the deploy stack's merge function code, if its zip holds mark."""
    functions = resources_of_type(stack.template, "AWS::Lambda::Function")
    for logical_id, function in functions.items():
        code = stack.resolve(function["Properties"].get("Code", {}))
        if "S3Key" not in code:
            continue
        archive = workspace.work_dir / f"{logical_id}-{uuid.uuid4().hex[:6]}.zip"
        workspace.clients["s3"].download_file(code["S3Bucket"], code["S3Key"], str(archive))
        with zipfile.ZipFile(archive) as zipped:
            if any(
                mark in zipped.read(name).decode(errors="replace")
                for name in zipped.namelist()
                if name.endswith(".py")
            ):
                return str(code["S3Key"])
    return ""


__all__ = ["PipelineUpdates", "Pushes", "pipeline_resource"]
