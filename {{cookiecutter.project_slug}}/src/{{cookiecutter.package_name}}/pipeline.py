"""The SageMaker pipeline: preprocess, train, evaluate, gate on quality, register or fail.

The gate registers the model only if its metric reaches the threshold, beats the
majority-class baseline by BASELINE_MARGIN, and is at least the production model's (the
champion, scored on the same test rows) minus CHAMPION_MARGIN. The Train action passes the
champion's model.tar.gz as the ChampionModelUrl parameter; without one it points at a
placeholder object, and only the threshold and the baseline apply.

Built with the SageMaker Python SDK v3 (`sagemaker.mlops.workflow`). Building it uploads the
step scripts to the artifact bucket, so it needs S3 (moto is enough: `definition --offline`).
All three jobs run on the SageMaker framework image that `steps/classifier.py` names, which
also serves the model.
"""

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import boto3
from sagemaker.core import image_uris, shapes
from sagemaker.core.processing import ScriptProcessor
from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import (
    Parameter,
    ParameterFloat,
    ParameterInteger,
    ParameterString,
)
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow import retry
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData

from . import config
from .steps import classifier, data_schema, evaluate, inference, preprocess

STEPS_DIR = Path(__file__).resolve().parent / "steps"

PREPROCESS_STEP = "PreprocessData"
TRAIN_STEP = "TrainModel"
EVALUATE_STEP = "EvaluateModel"
QUALITY_GATE_STEP = "CheckModelQuality"
REGISTER_STEP = "RegisterModel"
FAIL_STEP = "FailQualityGate"

EVALUATION_OUTPUT = "evaluation"
EVALUATION_REPORT = "EvaluationReport"
# Steps whose result is reused while their inputs, code and settings are unchanged.
STEP_CACHE = CacheConfig(enable_caching=True, expire_after="P30D")
# The pipeline service itself was throttled or failed: retry soon.
SERVICE_RETRY = retry.StepRetryPolicy(
    exception_types=[
        retry.StepExceptionTypeEnum.THROTTLING,
        retry.StepExceptionTypeEnum.SERVICE_FAULT,
    ],
    interval_seconds=10,
    backoff_rate=2.0,
    max_attempts=5,
)
# No instance capacity or an account limit reached: wait longer before trying again.
CAPACITY_RETRY = retry.SageMakerJobStepRetryPolicy(
    exception_types=[
        retry.SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
        retry.SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
    ],
    interval_seconds=60,
    backoff_rate=2.0,
    max_attempts=3,
)
JOB_RETRIES = [SERVICE_RETRY, CAPACITY_RETRY]
# What the model accepts and answers (Content-Type and Accept).
MEDIA_TYPES = [inference.CSV, inference.JSON]
# The training code archive: the train script and the files it imports.
TRAINING_CODE_FILES = ("train.py", "data_schema.py", "inference.py", "classifier.py")
# Script mode: the image's model server imports SAGEMAKER_PROGRAM from code/ of model.tar.gz
# (unpacked into /opt/ml/model), the values the SDK sets for a model repacked with its code.
INFERENCE_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
}


def training_code_archive() -> bytes:
    """The training code archive (sourcedir.tar.gz): the same bytes for the same code.

    Fixed timestamps and owners keep the archive's hash (and so its S3 key and the training
    step's cache key) stable until the code changes.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in TRAINING_CODE_FILES:
            script = (STEPS_DIR / name).read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(script), 0o644, 0
            tar.addfile(info, io.BytesIO(script))
    return gzip.compress(buffer.getvalue(), mtime=0)


# What ChampionModelUrl points at when production runs no model yet: a prefix without a
# model.tar.gz (a processing input must name objects that exist).
NO_CHAMPION_FILE = "no-champion.txt"
NO_CHAMPION_TEXT = (
    b"No production model: the quality gate compares with the threshold and the baseline.\n"
)


def upload_code(s3_client, bucket: str, file_name: str, body: bytes) -> str:
    """Put body under <pipeline>/code/<its content hash>/file_name; return its S3 URI."""
    digest = hashlib.sha256(body).hexdigest()
    key = f"{config.SAGEMAKER_PIPELINE_NAME}/code/{digest}/{file_name}"
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def pipeline_parameters(
    input_data_uri: str, commit_id: str, no_champion_uri: str
) -> dict[str, Parameter]:
    """The parameters an execution may override, by name, in the definition's order."""
    parameters = [
        ParameterString("InputDataUrl", default_value=input_data_uri),
        ParameterString("ProcessingInstanceType", default_value=config.PROCESSING_INSTANCE_TYPE),
        ParameterInteger("ProcessingInstanceCount", default_value=1),
        ParameterString("TrainingInstanceType", default_value=config.TRAINING_INSTANCE_TYPE),
        ParameterInteger("TrainingInstanceCount", default_value=1),
        ParameterFloat("QualityThreshold", default_value=config.QUALITY_THRESHOLD),
        ParameterString("ModelApprovalStatus", default_value=config.MODEL_APPROVAL_STATUS),
        ParameterString("CommitId", default_value=commit_id),
        # The production model's model.tar.gz, which the Train action looks up.
        ParameterString("ChampionModelUrl", default_value=no_champion_uri),
    ]
    return {parameter.name: parameter for parameter in parameters}


class StepContext:
    """What the steps share: parameters, bucket, role, SDK session, image and processor."""

    def __init__(
        self,
        parameters: dict[str, Parameter],
        role_arn: str,
        bucket: str,
        boto_session: boto3.Session,
    ):
        self.parameters = parameters
        self.role_arn = role_arn
        self.bucket = bucket
        self.boto_session = boto_session
        self.region = boto_session.region_name
        self.session = PipelineSession(boto_session=boto_session, default_bucket=bucket)
        self.image_uri = image_uris.retrieve(
            classifier.FRAMEWORK, self.region, classifier.FRAMEWORK_VERSION
        )
        # One processor for both processing jobs: same image and instance type (the job
        # names come from the step names at run time).
        self.processor = ScriptProcessor(
            role=role_arn,
            image_uri=self.image_uri,
            command=["python3"],
            instance_type=parameters["ProcessingInstanceType"],
            instance_count=parameters["ProcessingInstanceCount"],
            base_job_name=f"{config.PROJECT_SLUG}-processing",
            sagemaker_session=self.session,
            tags=config.TAGS,
        )

    def upload(self, file_name: str, body: bytes | None = None) -> str:
        """Upload step code (the step script file_name, unless body is given) under a key
        holding its content hash; return its S3 URI.

        The step's arguments (its cache key) then change exactly when the code does. Left to
        the SDK, a local script path is hashed together with its absolute path, so every new
        checkout directory (CodeBuild's is new for each build) would rerun every job.
        """
        if body is None:
            body = (STEPS_DIR / file_name).read_bytes()
        return upload_code(self.boto_session.client("s3"), self.bucket, file_name, body)

    def output(self, step_name: str, name: str) -> shapes.ProcessingOutput:
        """A processing job's output, under a prefix per execution: no run overwrites another's."""
        execution_prefix = Join(
            on="/",
            values=[
                "s3:/",
                self.bucket,
                config.SAGEMAKER_PIPELINE_NAME,
                ExecutionVariables.PIPELINE_EXECUTION_ID,
                step_name,
                name,
            ],
        )
        return shapes.ProcessingOutput(
            output_name=name,
            s3_output=shapes.ProcessingS3Output(
                s3_uri=execution_prefix,
                local_path=f"{preprocess.PROCESSING_DIR}/{name}",
                s3_upload_mode="EndOfJob",
            ),
        )


def processing_input(name: str, source) -> shapes.ProcessingInput:
    """An S3 prefix (or a step's output) copied into /opt/ml/processing/<name>."""
    return shapes.ProcessingInput(
        input_name=name,
        s3_input=shapes.ProcessingS3Input(
            s3_uri=source,
            local_path=f"{preprocess.PROCESSING_DIR}/{name}",
            s3_data_type="S3Prefix",
            s3_input_mode="File",
        ),
    )


def split_uri(preprocessed: ProcessingStep, name: str):
    """The S3 prefix of one split (train, validation, test) the preprocess step wrote."""
    return preprocessed.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri


def preprocess_step(context: StepContext) -> ProcessingStep:
    """PreprocessData: label and split the input table into train, validation and test."""
    return ProcessingStep(
        name=PREPROCESS_STEP,
        step_args=context.processor.run(
            code=context.upload("preprocess.py"),
            arguments=preprocess.label_options(data_schema),
            inputs=[processing_input("input", context.parameters["InputDataUrl"])],
            outputs=[context.output(PREPROCESS_STEP, name) for name in preprocess.SPLIT_FILE_NAMES],
        ),
        cache_config=STEP_CACHE,
        retry_policies=JOB_RETRIES,
    )


def train_step(context: StepContext, preprocessed: ProcessingStep) -> TrainingStep:
    """TrainModel: the train script in script mode, on the train and validation splits."""
    trainer = ModelTrainer(
        training_image=context.image_uri,
        compute=Compute(
            instance_type=context.parameters["TrainingInstanceType"],
            instance_count=context.parameters["TrainingInstanceCount"],
        ),
        # Script mode of the framework image: it fetches the code and runs it. (A
        # ModelTrainer SourceCode would upload the code under a per-build timestamped key,
        # which changes the step's arguments on every build and defeats the step cache.)
        # The image's training toolkit reads every hyperparameter as JSON.
        hyperparameters={
            name: json.dumps(value)
            for name, value in {
                **classifier.HYPERPARAMETERS,
                "sagemaker_program": "train.py",
                "sagemaker_submit_directory": context.upload(
                    "sourcedir.tar.gz", training_code_archive()
                ),
                "sagemaker_region": context.region,
            }.items()
        },
        input_data_config=[
            InputData(
                channel_name=name,
                data_source=split_uri(preprocessed, name),
                content_type="text/csv",
            )
            for name in ("train", "validation")
        ],
        output_data_config=shapes.OutputDataConfig(
            s3_output_path=f"s3://{context.bucket}/{config.SAGEMAKER_PIPELINE_NAME}/models",
            compression_type="GZIP",
        ),
        base_job_name=f"{config.PROJECT_SLUG}-train",
        role=context.role_arn,
        sagemaker_session=context.session,
        tags=[shapes.Tag(key=tag["Key"], value=tag["Value"]) for tag in config.TAGS],
    )
    return TrainingStep(
        name=TRAIN_STEP,
        step_args=trainer.train(),
        cache_config=STEP_CACHE,
        retry_policies=JOB_RETRIES,
    )


def evaluate_step(
    context: StepContext, preprocessed: ProcessingStep, trained: TrainingStep
) -> ProcessingStep:
    """EvaluateModel: score the test split with the trained model and the champion, beside
    the majority-class baseline; evaluation.json."""
    champion = context.parameters["ChampionModelUrl"]
    report = PropertyFile(
        name=EVALUATION_REPORT,
        output_name=EVALUATION_OUTPUT,
        path=evaluate.EVALUATION_FILE_NAME,
    )
    return ProcessingStep(
        name=EVALUATE_STEP,
        step_args=context.processor.run(
            code=context.upload("evaluate.py"),
            arguments=[
                "--champion-url",
                champion,
                "--baseline-margin",
                str(config.BASELINE_MARGIN),
                "--champion-margin",
                str(config.CHAMPION_MARGIN),
            ],
            inputs=[
                processing_input("model", trained.properties.ModelArtifacts.S3ModelArtifacts),
                processing_input("test", split_uri(preprocessed, "test")),
                processing_input("champion", champion),
            ],
            outputs=[context.output(EVALUATE_STEP, EVALUATION_OUTPUT)],
        ),
        property_files=[report],
        # Cached too: a push that changes neither data nor code (deploy configuration, the
        # threshold) nor the production model then runs no job at all and still registers
        # a package for its commit.
        cache_config=STEP_CACHE,
        retry_policies=JOB_RETRIES,
    )


def register_step(
    context: StepContext, trained: TrainingStep, evaluated: ProcessingStep
) -> ModelStep:
    """RegisterModel: a model package with its metrics, commit, data and approval status."""
    parameters = context.parameters
    evaluation_uri = Join(
        on="/",
        values=[
            evaluated.properties.ProcessingOutputConfig.Outputs[EVALUATION_OUTPUT].S3Output.S3Uri,
            evaluate.EVALUATION_FILE_NAME,
        ],
    )
    model_builder = ModelBuilder(
        s3_model_data_url=trained.properties.ModelArtifacts.S3ModelArtifacts,
        image_uri=context.image_uri,
        role_arn=context.role_arn,
        sagemaker_session=context.session,
        # The inference code is already inside model.tar.gz: no source_code, so no repack
        # job and no upload; the environment points the image's model server at it.
        env_vars=dict(INFERENCE_ENVIRONMENT),
        dependencies=None,
    )
    return ModelStep(
        name=REGISTER_STEP,
        step_args=model_builder.register(
            model_package_group_name=config.MODEL_PACKAGE_GROUP_NAME,
            content_types=MEDIA_TYPES,
            response_types=MEDIA_TYPES,
            inference_instances=[config.ENDPOINT_INSTANCE_TYPE],
            transform_instances=[config.ENDPOINT_INSTANCE_TYPE],
            model_metrics=shapes.ModelMetrics(
                model_quality=shapes.ModelQuality(
                    statistics=shapes.MetricsSource(
                        content_type="application/json", s3_uri=evaluation_uri
                    )
                )
            ),
            metadata_properties=shapes.MetadataProperties(
                commit_id=parameters["CommitId"],
                generated_by=ExecutionVariables.PIPELINE_EXECUTION_ARN,
            ),
            # With the commit above, every package maps to (commit, data).
            customer_metadata_properties={"InputDataUrl": parameters["InputDataUrl"]},
            approval_status=parameters["ModelApprovalStatus"],
            description=f"{config.PROJECT_NAME}: {classifier.DESCRIPTION}",
        ),
        # Creating a model package runs no job: only the service-side retries apply.
        retry_policies=[SERVICE_RETRY],
    )


def fail_step(metric: JsonGet, threshold: ParameterFloat, explanation: JsonGet) -> FailStep:
    """FailQualityGate: stop the execution, naming the metric and every floor it had to reach."""
    return FailStep(
        name=FAIL_STEP,
        error_message=Join(
            on=" ",
            values=[
                f"Quality gate failed: {config.QUALITY_METRIC}",
                metric,
                "must reach the threshold",
                threshold,
                "and",
                explanation,
            ],
        ),
    )


def quality_gate_step(
    context: StepContext, trained: TrainingStep, evaluated: ProcessingStep
) -> ConditionStep:
    """CheckModelQuality: register the model if its metric reaches the threshold, the
    majority-class baseline plus its margin and the champion minus its margin; else fail."""
    (report,) = evaluated.property_files

    def value(path: str) -> JsonGet:
        return JsonGet(step_name=evaluated.name, property_file=report, json_path=path)

    metric = value(f"binary_classification_metrics.{config.QUALITY_METRIC}.value")
    floors = f"quality_gate.{config.QUALITY_METRIC}"
    threshold = context.parameters["QualityThreshold"]
    return ConditionStep(
        name=QUALITY_GATE_STEP,
        # All must hold.
        conditions=[
            ConditionGreaterThanOrEqualTo(left=metric, right=threshold),
            ConditionGreaterThanOrEqualTo(left=metric, right=value(f"{floors}.baseline_floor")),
            ConditionGreaterThanOrEqualTo(left=metric, right=value(f"{floors}.champion_floor")),
        ],
        if_steps=[register_step(context, trained, evaluated)],
        else_steps=[fail_step(metric, threshold, value(f"{floors}.explanation"))],
    )


def get_pipeline(
    *, role_arn: str, bucket: str, input_data_uri: str, commit_id: str, boto_session: boto3.Session
) -> Pipeline:
    """The SageMaker pipeline, with parameters defaulting to this project's settings."""
    no_champion_uri = upload_code(
        boto_session.client("s3"), bucket, NO_CHAMPION_FILE, NO_CHAMPION_TEXT
    )
    parameters = pipeline_parameters(input_data_uri, commit_id, no_champion_uri)
    context = StepContext(parameters, role_arn, bucket, boto_session)
    preprocessed = preprocess_step(context)
    trained = train_step(context, preprocessed)
    evaluated = evaluate_step(context, preprocessed, trained)
    return Pipeline(
        name=config.SAGEMAKER_PIPELINE_NAME,
        # No SageMaker Experiments: nothing here reads them, and the execution role would
        # need the experiment and trial permissions the SDK's default setup uses.
        pipeline_experiment_config=None,
        parameters=list(parameters.values()),
        steps=[
            preprocessed,
            trained,
            evaluated,
            quality_gate_step(context, trained, evaluated),
        ],
        sagemaker_session=context.session,
    )
