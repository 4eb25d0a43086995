"""Plays a SageMaker pipeline execution that moto started but does not run.

moto marks an execution Succeeded at once and runs nothing. This reads the execution's own
pipeline definition and parameters from moto and does what SageMaker would:
- the Processing and Training steps run through the project's local runner
  (`python -m <cli> local`), on the input data the execution points at in S3, with the
  champion model.tar.gz the evaluate step's champion input names (if any);
- their outputs go to the S3 locations the definition gives them (the model artifact to
  <S3OutputPath>/<job>/output/model.tar.gz, each processing output to its S3Uri);
- Condition steps are evaluated on the property files (evaluation.json), then their branch
  runs: RegisterModel registers the package in moto with the definition's arguments (its
  metrics, commit and approval status), a Fail step fails with its message.
"""

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

PROCESSING_ROOT = "/opt/ml/processing/"
# Where the local runner leaves what a SageMaker job would upload: a processing output
# /opt/ml/processing/<name> is <build dir>/<name>; the training job's model.tar.gz is
# <build dir>/model/model.tar.gz (see the local runner's module docstring).
LOCAL_MODEL_ARCHIVE = Path("model", "model.tar.gz")
MODEL_ARCHIVE_NAME = "model.tar.gz"
CODE_INPUT_DIR = PROCESSING_ROOT + "input/code"
DATA_INPUT_DIR = PROCESSING_ROOT + "input"
CHAMPION_INPUT_DIR = PROCESSING_ROOT + "champion"
JOB_STEP_TYPES = ("Processing", "Training")
PROPERTY_PATH = re.compile(r"\.?([A-Za-z0-9_]+)|\[(?:'([^']*)'|\"([^\"]*)\"|(\d+))\]")
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda left, right: left == right,
    "GreaterThan": lambda left, right: left > right,
    "GreaterThanOrEqualTo": lambda left, right: left >= right,
    "LessThan": lambda left, right: left < right,
    "LessThanOrEqualTo": lambda left, right: left <= right,
}
PARAMETER_TYPES: dict[str, Callable[[Any], Any]] = {
    "String": str,
    "Integer": int,
    "Float": float,
    "Boolean": lambda value: str(value).lower() == "true",
}


class PipelineExecutionError(RuntimeError):
    """The execution cannot be played or a step failed; the message names the step."""


@dataclass
class PlayedExecution:
    """What the played execution did."""

    execution_arn: str
    parameters: dict[str, Any]
    uploads: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    model_package_arn: str | None = None
    condition_outcomes: dict[str, bool] = field(default_factory=dict)


def newest_execution(sagemaker: Any, pipeline_name: str) -> str:
    """The ARN of the pipeline's most recently started execution."""
    try:
        summaries = sagemaker.list_pipeline_executions(PipelineName=pipeline_name)[
            "PipelineExecutionSummaries"
        ]
    except ClientError as error:
        raise PipelineExecutionError(
            f"no SageMaker pipeline {pipeline_name} to run: the model build pipeline did not"
            f" create it ({error.response['Error'].get('Message', '')})"
        ) from error
    if not summaries:
        raise PipelineExecutionError(
            f"SageMaker pipeline {pipeline_name} has no execution: the Train action did not"
            " start one"
        )
    return max(summaries, key=lambda summary: summary["StartTime"])["PipelineExecutionArn"]


class ExecutionPlayer:
    """Plays one execution; run_local(data_dir, build_dir, champion) runs the local runner
    (champion: the model.tar.gz to compare with, or None)."""

    def __init__(
        self,
        sagemaker: Any,
        s3: Any,
        execution_arn: str,
        workdir: Path,
        run_local: Callable[[Path, Path, Path | None], subprocess.CompletedProcess],
    ) -> None:
        self.sagemaker = sagemaker
        self.s3 = s3
        self.execution_arn = execution_arn
        self.execution_id = execution_arn.rsplit("/", 1)[-1]
        self.workdir = workdir
        self.run_local = run_local
        self.definition = json.loads(
            sagemaker.describe_pipeline_definition_for_execution(
                PipelineExecutionArn=execution_arn
            )["PipelineDefinition"]
        )
        self.parameters = self._parameters()
        self.properties: dict[str, dict[str, Any]] = {}
        self.property_files: dict[str, dict[str, Path]] = {}
        self.build_dir = workdir / "local"
        self.played = PlayedExecution(execution_arn, dict(self.parameters))

    def _parameters(self) -> dict[str, Any]:
        declared = {item["Name"]: item for item in self.definition.get("Parameters", [])}
        values = {name: item.get("DefaultValue") for name, item in declared.items()}
        given = self.sagemaker.list_pipeline_parameters_for_execution(
            PipelineExecutionArn=self.execution_arn
        )["PipelineParameters"]
        values.update({item["Name"]: item["Value"] for item in given})
        return {
            name: PARAMETER_TYPES.get(declared.get(name, {}).get("Type", "String"), str)(value)
            for name, value in values.items()
            if value is not None
        }

    def play(self) -> PlayedExecution:
        """Run the jobs locally, publish their outputs, then the control steps."""
        steps = self.definition.get("Steps", [])
        unknown = [
            step
            for step in steps
            if step["Type"] not in (*JOB_STEP_TYPES, "Condition", "RegisterModel", "Fail")
        ]
        if unknown:
            raise PipelineExecutionError(
                f"step {unknown[0]['Name']} is of type {unknown[0]['Type']}, which the rehearsal"
                " does not play"
            )
        exit_status = self._run_jobs(steps)
        try:
            for step in steps:
                if step["Type"] in JOB_STEP_TYPES:
                    self._publish(step)
        except PipelineExecutionError as error:
            if exit_status:
                jobs = ", ".join(self.played.jobs)
                raise PipelineExecutionError(
                    f"the local runner failed running {jobs} (exit status {exit_status}): {error}"
                ) from error
            raise
        for step in steps:
            if step["Type"] not in JOB_STEP_TYPES:
                self._control(step)
        return self.played

    def job_requests(self) -> list[tuple[str, dict[str, Any]]]:
        """The CreateProcessingJob and CreateTrainingJob requests SageMaker made for the
        played job steps (name and role; the jobs themselves ran locally)."""
        requests = []
        for step in self.definition.get("Steps", []):
            if step["Type"] not in JOB_STEP_TYPES:
                continue
            kind = "Processing" if step["Type"] == "Processing" else "Training"
            params = {
                f"{kind}JobName": f"pipelines-{self.execution_id}-{step['Name']}",
                "RoleArn": str(self.resolve(step["Arguments"]["RoleArn"])),
            }
            requests.append((f"Create{kind}Job", params))
        return requests

    # ------------------------------------------------------------------ jobs

    def _run_jobs(self, steps: list[dict[str, Any]]) -> int:
        """Download the data the first job reads, run every job with the local runner; its
        exit status (a failed local gate still leaves the outputs the Condition step reads)."""
        data_dir = self.workdir / "input"
        data_dir.mkdir(parents=True, exist_ok=True)
        first = next((step for step in steps if step["Type"] == "Processing"), None)
        if first is None:
            raise PipelineExecutionError("the pipeline has no Processing step to read its data")
        for processing_input in first["Arguments"].get("ProcessingInputs", []):
            s3_input = processing_input.get("S3Input", {})
            if s3_input.get("LocalPath") != DATA_INPUT_DIR:
                continue
            uri = str(self.resolve(s3_input["S3Uri"]))
            self._download(
                uri, data_dir, f"step {first['Name']} input {processing_input['InputName']}"
            )
        result = self.run_local(data_dir, self.build_dir, self._champion(steps))
        self.played.jobs.extend(step["Name"] for step in steps if step["Type"] in JOB_STEP_TYPES)
        return result.returncode

    def _champion(self, steps: list[dict[str, Any]]) -> Path | None:
        """Download what a step's champion input names; its model.tar.gz, if it holds one."""
        directory = self.workdir / "champion-input"
        shutil.rmtree(directory, ignore_errors=True)
        for step in steps:
            for processing_input in step["Arguments"].get("ProcessingInputs", []):
                s3_input = processing_input.get("S3Input", {})
                if s3_input.get("LocalPath") != CHAMPION_INPUT_DIR:
                    continue
                uri = str(self.resolve(s3_input["S3Uri"]))
                self._download(uri, directory, f"step {step['Name']} input champion")
                archive = directory / MODEL_ARCHIVE_NAME
                return archive if archive.is_file() else None
        return None

    def _download(self, uri: str, directory: Path, what: str) -> None:
        bucket, key = split_s3_uri(uri)
        listed = self.s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])
        if not listed:
            raise PipelineExecutionError(f"{what}: nothing at {uri} (was the data set uploaded?)")
        for item in listed:
            relative = (
                Path(item["Key"]).name
                if item["Key"] == key
                else item["Key"][len(key) :].lstrip("/")
            )
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(bucket, item["Key"], str(target))

    def _upload(self, local: Path, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        self.s3.upload_file(str(local), bucket, key)
        self.played.uploads.append(uri)

    def _publish(self, step: dict[str, Any]) -> None:
        """Upload a job's outputs where SageMaker would, and record its properties."""
        name, arguments = step["Name"], step["Arguments"]
        job_name = f"pipelines-{self.execution_id}-{name}"
        if step["Type"] == "Training":
            archive = self.build_dir / LOCAL_MODEL_ARCHIVE
            if not archive.is_file():
                raise PipelineExecutionError(f"step {name}: the local runner left no {archive}")
            output_path = str(self.resolve(arguments["OutputDataConfig"]["S3OutputPath"]))
            uri = f"{output_path.rstrip('/')}/{job_name}/output/{MODEL_ARCHIVE_NAME}"
            self._upload(archive, uri)
            self.properties[name] = {
                "TrainingJobName": job_name,
                "TrainingJobStatus": "Completed",
                "ModelArtifacts": {"S3ModelArtifacts": uri},
            }
            return
        outputs = {}
        for output in arguments.get("ProcessingOutputConfig", {}).get("Outputs", []):
            s3_output = output["S3Output"]
            uri = str(self.resolve(s3_output["S3Uri"]))
            local_dir = self.build_dir / s3_output["LocalPath"].removeprefix(PROCESSING_ROOT)
            if local_dir.is_dir():
                for path in sorted(local_dir.rglob("*")):
                    if path.is_file():
                        self._upload(
                            path, f"{uri.rstrip('/')}/{path.relative_to(local_dir).as_posix()}"
                        )
            outputs[output["OutputName"]] = {
                "OutputName": output["OutputName"],
                "S3Output": {**s3_output, "S3Uri": uri},
            }
        self.properties[name] = {
            "ProcessingJobName": job_name,
            "ProcessingJobStatus": "Completed",
            "ProcessingOutputConfig": {"Outputs": outputs},
        }
        for property_file in step.get("PropertyFiles", []):
            output = next(
                (
                    item
                    for item in arguments["ProcessingOutputConfig"]["Outputs"]
                    if item["OutputName"] == property_file["OutputName"]
                ),
                None,
            )
            if output is None:
                raise PipelineExecutionError(
                    f"step {name}: property file {property_file['PropertyFileName']} names an"
                    f" output {property_file['OutputName']} the step does not have"
                )
            local_dir = self.build_dir / output["S3Output"]["LocalPath"].removeprefix(
                PROCESSING_ROOT
            )
            path = local_dir / property_file["FilePath"]
            if not path.is_file():
                raise PipelineExecutionError(
                    f"step {name}: the local runner left no {path} for property file"
                    f" {property_file['PropertyFileName']}"
                )
            self.property_files.setdefault(name, {})[property_file["PropertyFileName"]] = path

    # ------------------------------------------------------------------ control steps

    def _control(self, step: dict[str, Any]) -> None:
        name, kind = step["Name"], step["Type"]
        if kind == "Condition":
            outcome = all(self.condition(item) for item in step["Arguments"]["Conditions"])
            self.played.condition_outcomes[name] = outcome
            self.played.steps.append(f"{name} {'true' if outcome else 'false'}")
            branch = step["Arguments"]["IfSteps" if outcome else "ElseSteps"]
            for inner in branch:
                self._control(inner)
        elif kind == "RegisterModel":
            arguments = self.resolve(step["Arguments"])
            arguments = {key: value for key, value in arguments.items() if value is not None}
            try:
                response = self.sagemaker.create_model_package(**arguments)
            except Exception as error:
                raise PipelineExecutionError(
                    f"step {name}: create_model_package failed: {error}"
                ) from error
            self.played.model_package_arn = response["ModelPackageArn"]
            version = response["ModelPackageArn"].rsplit("/", 2)[-2:]
            self.played.steps.append(f"{name} {'/'.join(version)}")
        elif kind == "Fail":
            message = self.resolve(step["Arguments"].get("ErrorMessage", ""))
            raise PipelineExecutionError(f"step {name} (Fail): {message}")
        else:
            raise PipelineExecutionError(
                f"step {name}: a {kind} step inside a condition is not played"
            )

    def condition(self, condition: Mapping[str, Any]) -> bool:
        """One condition of a Condition step, evaluated."""
        kind = condition["Type"]
        if kind in COMPARISONS:
            left, right = (
                self.resolve(condition["LeftValue"]),
                self.resolve(condition["RightValue"]),
            )
            return COMPARISONS[kind](left, right)
        if kind == "Not":
            return not self.condition(condition["Expression"])
        if kind == "Or":
            return any(self.condition(item) for item in condition["Conditions"])
        if kind == "In":
            values = [self.resolve(value) for value in condition["Values"]]
            return self.resolve(condition["QueryValue"]) in values
        raise PipelineExecutionError(f"condition type {kind} is not played by the rehearsal")

    # ------------------------------------------------------------------ expressions

    def resolve(self, node: Any) -> Any:
        """A definition value with its Get, Std:Join and Std:JsonGet expressions evaluated."""
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Get"}:
            return self._get(node["Get"])
        if set(node) == {"Std:Join"}:
            join = node["Std:Join"]
            return str(join["On"]).join(_text(self.resolve(value)) for value in join["Values"])
        if set(node) == {"Std:JsonGet"}:
            return self._json_get(node["Std:JsonGet"])
        return {key: self.resolve(value) for key, value in node.items()}

    def _get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Parameters":
            if rest not in self.parameters:
                raise PipelineExecutionError(f"{path}: no such pipeline parameter")
            return self.parameters[rest]
        if head == "Execution":
            values = {
                "PipelineExecutionId": self.execution_id,
                "PipelineExecutionArn": self.execution_arn,
            }
            if rest not in values:
                raise PipelineExecutionError(f"{path} is not played by the rehearsal")
            return values[rest]
        if head == "Steps":
            step_name, _, property_path = rest.partition(".")
            if step_name not in self.properties:
                raise PipelineExecutionError(f"{path}: step {step_name} has not run")
            return navigate(self.properties[step_name], property_path, path)
        raise PipelineExecutionError(f"{path} is not played by the rehearsal")

    def _json_get(self, spec: Mapping[str, Any]) -> Any:
        reference = spec["PropertyFile"]
        reference = reference.get("Get", "") if isinstance(reference, dict) else str(reference)
        match = re.fullmatch(r"Steps\.([^.]+)\.PropertyFiles\.(.+)", reference)
        if not match:
            raise PipelineExecutionError(f"property file reference {reference!r} is not played")
        step_name, file_name = match.groups()
        path = self.property_files.get(step_name, {}).get(file_name)
        if path is None:
            raise PipelineExecutionError(f"{reference}: no such property file")
        return navigate(json.loads(path.read_text()), spec["Path"], f"{path.name}:{spec['Path']}")


def navigate(document: Any, path: str, where: str) -> Any:
    """The value at a property path like `A.B['c'][0].D` inside document."""
    value = document
    position = 0
    while position < len(path):
        match = PROPERTY_PATH.match(path, position)
        if not match or match.end() == position:
            raise PipelineExecutionError(f"{where}: cannot read the path {path!r}")
        name, quoted, double_quoted, index = match.groups()
        key: Any = name or quoted or double_quoted
        try:
            if index is not None:
                value = (
                    list(value.values())[int(index)]
                    if isinstance(value, dict)
                    else value[int(index)]
                )
            else:
                value = value[key]
        except (KeyError, IndexError, TypeError):
            raise PipelineExecutionError(f"{where}: nothing at {path!r}") from None
        position = match.end()
    return value


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI."""
    if not uri.startswith("s3://"):
        raise PipelineExecutionError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _text(value: Any) -> str:
    """A value as Std:Join writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
