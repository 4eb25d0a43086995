"""The SageMaker pipeline: preprocess, train, evaluate, gate on quality, register or fail.

Built with the SageMaker Python SDK v3 (`sagemaker.mlops.workflow`). Building it uploads the
step scripts to the artifact bucket, so it needs S3 (moto is enough: `definition --offline`).
All three jobs run on the SageMaker framework image that `steps/classifier.py` names, which
also serves the model.

One function builds each step from the parameters and a StepContext (session, image,
processor), built once; `get_pipeline` composes them.
"""

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, fields
from pathlib import Path

import boto3
from sagemaker.core import image_uris
from sagemaker.core.processing import ScriptProcessor
from sagemaker.core.shapes import (
    MetadataProperties,
    MetricsSource,
    ModelMetrics,
    ModelQuality,
    OutputDataConfig,
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
    Tag,
)
from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
from sagemaker.core.workflow.execution_variables import ExecutionVariables
from sagemaker.core.workflow.functions import Join, JsonGet
from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
from sagemaker.core.workflow.pipeline_context import PipelineSession
from sagemaker.core.workflow.properties import PropertyFile
from sagemaker.mlops.workflow.condition_step import ConditionStep
from sagemaker.mlops.workflow.fail_step import FailStep
from sagemaker.mlops.workflow.model_step import ModelStep
from sagemaker.mlops.workflow.pipeline import Pipeline
from sagemaker.mlops.workflow.retry import (
    SageMakerJobExceptionTypeEnum,
    SageMakerJobStepRetryPolicy,
    StepExceptionTypeEnum,
    StepRetryPolicy,
)
from sagemaker.mlops.workflow.steps import CacheConfig, ProcessingStep, TrainingStep
from sagemaker.serve.model_builder import ModelBuilder
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData

from . import config
from .steps import classifier, data_schema, evaluate, inference, preprocess

STEPS_DIR = Path(__file__).resolve().parent / "steps"
PROCESSING_DIR = "/opt/ml/processing"

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
SERVICE_RETRY = StepRetryPolicy(
    exception_types=[StepExceptionTypeEnum.THROTTLING, StepExceptionTypeEnum.SERVICE_FAULT],
    interval_seconds=10,
    backoff_rate=2.0,
    max_attempts=5,
)
# No instance capacity or an account limit reached: wait longer before trying again.
CAPACITY_RETRY = SageMakerJobStepRetryPolicy(
    exception_types=[
        SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
        SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
    ],
    interval_seconds=60,
    backoff_rate=2.0,
    max_attempts=3,
)
JOB_RETRIES = [SERVICE_RETRY, CAPACITY_RETRY]
CONTENT_TYPES = [inference.CSV, inference.JSON]
RESPONSE_TYPES = [inference.CSV, inference.JSON]
# The training code archive: the train script and the files it imports.
TRAINING_CODE_FILES = ("train.py", "data_schema.py", "inference.py", "classifier.py")
# Script-mode serving on the framework image: the image's model server imports
# SAGEMAKER_PROGRAM from SAGEMAKER_SUBMIT_DIRECTORY. The training job leaves the inference
# module in model.tar.gz under code/, which SageMaker unpacks into /opt/ml/model; these are
# the values the SDK itself sets for a model repacked with its code.
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


def code_key(pipeline_name: str, file_name: str, body: bytes) -> str:
    """The S3 key of a step's code: the same bytes always get the same key."""
    return f"{pipeline_name}/code/{hashlib.sha256(body).hexdigest()}/{file_name}"


def upload_code(
    boto_session: boto3.Session, bucket: str, pipeline_name: str, file_name: str, body: bytes
) -> str:
    """Upload step code under a key holding its content hash; return its S3 URI.

    The step's arguments (its cache key) then change exactly when the code does. Left to
    the SDK, a local script path is hashed together with its absolute path, so every new
    checkout directory (CodeBuild's is new for each build) would rerun every job.
    """
    key = code_key(pipeline_name, file_name, body)
    boto_session.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    return f"s3://{bucket}/{key}"


def step_script(name: str) -> bytes:
    """The bytes of one step script (`preprocess.py`, `evaluate.py`)."""
    return (STEPS_DIR / name).read_bytes()


def execution_output(bucket: str, pipeline_name: str, step_name: str, output_name: str) -> Join:
    """An S3 prefix unique to each execution, so runs never overwrite each other's files."""
    return Join(
        on="/",
        values=[
            "s3:/",
            bucket,
            pipeline_name,
            ExecutionVariables.PIPELINE_EXECUTION_ID,
            step_name,
            output_name,
        ],
    )


@dataclass(frozen=True)
class PipelineParameters:
    """The pipeline's parameters: an execution may override each of them."""

    input_data: ParameterString
    processing_instance_type: ParameterString
    processing_instance_count: ParameterInteger
    training_instance_type: ParameterString
    training_instance_count: ParameterInteger
    quality_threshold: ParameterFloat
    approval_status: ParameterString
    commit: ParameterString

    def all(self) -> list:
        """Every parameter, in the order the definition lists them."""
        return [getattr(self, field.name) for field in fields(self)]


def pipeline_parameters(input_data_uri: str, commit_id: str) -> PipelineParameters:
    """The parameters, defaulting to this project's settings."""
    return PipelineParameters(
        input_data=ParameterString("InputDataUrl", default_value=input_data_uri),
        processing_instance_type=ParameterString(
            "ProcessingInstanceType", default_value=config.PROCESSING_INSTANCE_TYPE
        ),
        processing_instance_count=ParameterInteger("ProcessingInstanceCount", default_value=1),
        training_instance_type=ParameterString(
            "TrainingInstanceType", default_value=config.TRAINING_INSTANCE_TYPE
        ),
        training_instance_count=ParameterInteger("TrainingInstanceCount", default_value=1),
        quality_threshold=ParameterFloat(
            "QualityThreshold", default_value=config.QUALITY_THRESHOLD
        ),
        approval_status=ParameterString(
            "ModelApprovalStatus", default_value=config.MODEL_APPROVAL_STATUS
        ),
        commit=ParameterString("CommitId", default_value=commit_id),
    )


@dataclass(frozen=True)
class StepContext:
    """What the steps share: where they run, the SDK session, the image and the processor."""

    role_arn: str
    bucket: str
    pipeline_name: str
    region: str
    boto_session: boto3.Session
    session: PipelineSession
    image_uri: str
    # One processor for both processing jobs: same image and instance type (the job names
    # come from the step names at run time).
    processor: ScriptProcessor

    def upload(self, file_name: str, body: bytes) -> str:
        """Upload step code under its content hash (`upload_code`); its S3 URI."""
        return upload_code(self.boto_session, self.bucket, self.pipeline_name, file_name, body)

    def output(self, step_name: str, name: str) -> ProcessingOutput:
        """A processing job's output, under a prefix unique to each execution."""
        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(
                s3_uri=execution_output(self.bucket, self.pipeline_name, step_name, name),
                local_path=f"{PROCESSING_DIR}/{name}",
                s3_upload_mode="EndOfJob",
            ),
        )


def step_context(
    *,
    role_arn: str,
    bucket: str,
    pipeline_name: str,
    region: str,
    boto_session: boto3.Session,
    parameters: PipelineParameters,
) -> StepContext:
    """The session, the framework image and the processor, built once for every step."""
    session = PipelineSession(boto_session=boto_session, default_bucket=bucket)
    image_uri = image_uris.retrieve(classifier.FRAMEWORK, region, classifier.FRAMEWORK_VERSION)
    processor = ScriptProcessor(
        role=role_arn,
        image_uri=image_uri,
        command=["python3"],
        instance_type=parameters.processing_instance_type,
        instance_count=parameters.processing_instance_count,
        base_job_name=f"{config.PROJECT_SLUG}-processing",
        sagemaker_session=session,
        tags=config.TAGS,
    )
    return StepContext(
        role_arn=role_arn,
        bucket=bucket,
        pipeline_name=pipeline_name,
        region=region,
        boto_session=boto_session,
        session=session,
        image_uri=image_uri,
        processor=processor,
    )


def processing_input(name: str, source, local_dir: str) -> ProcessingInput:
    """An S3 prefix (or a step's output) copied into /opt/ml/processing/<local_dir>."""
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(
            s3_uri=source,
            local_path=f"{PROCESSING_DIR}/{local_dir}",
            s3_data_type="S3Prefix",
            s3_input_mode="File",
        ),
    )


def split_uri(preprocessed: ProcessingStep, name: str):
    """The S3 prefix of one split (train, validation, test) the preprocess step wrote."""
    return preprocessed.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri


def preprocess_step(context: StepContext, parameters: PipelineParameters) -> ProcessingStep:
    """PreprocessData: label and split the input table into train, validation and test."""
    return ProcessingStep(
        name=PREPROCESS_STEP,
        step_args=context.processor.run(
            code=context.upload("preprocess.py", step_script("preprocess.py")),
            arguments=preprocess.label_options(data_schema),
            inputs=[processing_input("input", parameters.input_data, "input")],
            outputs=[context.output(PREPROCESS_STEP, name) for name in preprocess.SPLIT_FILE_NAMES],
        ),
        cache_config=STEP_CACHE,
        retry_policies=JOB_RETRIES,
    )


def train_step(
    context: StepContext, parameters: PipelineParameters, preprocessed: ProcessingStep
) -> TrainingStep:
    """TrainModel: the train script in script mode, on the train and validation splits."""
    trainer = ModelTrainer(
        training_image=context.image_uri,
        compute=Compute(
            instance_type=parameters.training_instance_type,
            instance_count=parameters.training_instance_count,
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
        output_data_config=OutputDataConfig(
            s3_output_path=f"s3://{context.bucket}/{context.pipeline_name}/models",
            compression_type="GZIP",
        ),
        base_job_name=f"{config.PROJECT_SLUG}-train",
        role=context.role_arn,
        sagemaker_session=context.session,
        tags=[Tag(key=tag["Key"], value=tag["Value"]) for tag in config.TAGS],
    )
    return TrainingStep(
        name=TRAIN_STEP,
        step_args=trainer.train(),
        cache_config=STEP_CACHE,
        retry_policies=JOB_RETRIES,
    )


def model_data(trained: TrainingStep):
    """The S3 URI of the model.tar.gz the training job wrote."""
    return trained.properties.ModelArtifacts.S3ModelArtifacts


def evaluate_step(
    context: StepContext, preprocessed: ProcessingStep, trained: TrainingStep
) -> ProcessingStep:
    """EvaluateModel: score the test split with the trained model; evaluation.json."""
    report = PropertyFile(
        name=EVALUATION_REPORT,
        output_name=EVALUATION_OUTPUT,
        path=evaluate.EVALUATION_FILE_NAME,
    )
    return ProcessingStep(
        name=EVALUATE_STEP,
        step_args=context.processor.run(
            code=context.upload("evaluate.py", step_script("evaluate.py")),
            inputs=[
                processing_input("model", model_data(trained), "model"),
                processing_input("test", split_uri(preprocessed, "test"), "test"),
            ],
            outputs=[context.output(EVALUATE_STEP, EVALUATION_OUTPUT)],
        ),
        property_files=[report],
        # Cached too: a push that changes neither data nor code (deploy configuration, the
        # threshold) then runs no job at all and still registers a package for its commit.
        cache_config=STEP_CACHE,
        retry_policies=JOB_RETRIES,
    )


def quality(evaluated: ProcessingStep) -> JsonGet:
    """The gate's metric, read from the evaluation report."""
    (report,) = evaluated.property_files
    return JsonGet(
        step_name=evaluated.name,
        property_file=report,
        json_path=f"binary_classification_metrics.{config.QUALITY_METRIC}.value",
    )


def register_step(
    context: StepContext,
    parameters: PipelineParameters,
    trained: TrainingStep,
    evaluated: ProcessingStep,
) -> ModelStep:
    """RegisterModel: a model package with its metrics, commit, data and approval status."""
    evaluation_uri = Join(
        on="/",
        values=[
            evaluated.properties.ProcessingOutputConfig.Outputs[EVALUATION_OUTPUT].S3Output.S3Uri,
            evaluate.EVALUATION_FILE_NAME,
        ],
    )
    model_builder = ModelBuilder(
        s3_model_data_url=model_data(trained),
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
            content_types=CONTENT_TYPES,
            response_types=RESPONSE_TYPES,
            inference_instances=[config.ENDPOINT_INSTANCE_TYPE],
            transform_instances=[config.ENDPOINT_INSTANCE_TYPE],
            model_metrics=ModelMetrics(
                model_quality=ModelQuality(
                    statistics=MetricsSource(content_type="application/json", s3_uri=evaluation_uri)
                )
            ),
            metadata_properties=MetadataProperties(
                commit_id=parameters.commit,
                generated_by=ExecutionVariables.PIPELINE_EXECUTION_ARN,
            ),
            # With the commit above, every package maps to (commit, data).
            customer_metadata_properties={"InputDataUrl": parameters.input_data},
            approval_status=parameters.approval_status,
            description=f"{config.PROJECT_NAME}: {classifier.DESCRIPTION}",
        ),
        # Creating a model package runs no job: only the service-side retries apply.
        retry_policies=[SERVICE_RETRY],
    )


def fail_step(metric: JsonGet, threshold: ParameterFloat) -> FailStep:
    """FailQualityGate: stop the execution, naming the metric and the threshold."""
    return FailStep(
        name=FAIL_STEP,
        error_message=Join(
            on=" ",
            values=[
                f"Quality gate failed: {config.QUALITY_METRIC}",
                metric,
                "is below the threshold",
                threshold,
            ],
        ),
    )


def quality_gate_step(
    context: StepContext,
    parameters: PipelineParameters,
    trained: TrainingStep,
    evaluated: ProcessingStep,
) -> ConditionStep:
    """CheckModelQuality: register the model if its metric reaches the threshold, else fail."""
    metric = quality(evaluated)
    return ConditionStep(
        name=QUALITY_GATE_STEP,
        conditions=[ConditionGreaterThanOrEqualTo(left=metric, right=parameters.quality_threshold)],
        if_steps=[register_step(context, parameters, trained, evaluated)],
        else_steps=[fail_step(metric, parameters.quality_threshold)],
    )


def get_pipeline(
    *,
    role_arn: str,
    bucket: str,
    input_data_uri: str,
    commit_id: str,
    region: str = config.AWS_REGION,
    pipeline_name: str = config.SAGEMAKER_PIPELINE_NAME,
    boto_session: boto3.Session | None = None,
) -> Pipeline:
    """The SageMaker pipeline, with parameters defaulting to this project's settings."""
    parameters = pipeline_parameters(input_data_uri, commit_id)
    context = step_context(
        role_arn=role_arn,
        bucket=bucket,
        pipeline_name=pipeline_name,
        region=region,
        boto_session=boto_session or boto3.Session(region_name=region),
        parameters=parameters,
    )
    preprocessed = preprocess_step(context, parameters)
    trained = train_step(context, parameters, preprocessed)
    evaluated = evaluate_step(context, preprocessed, trained)
    return Pipeline(
        name=pipeline_name,
        # No SageMaker Experiments: nothing here reads them, and the execution role would
        # need the experiment and trial permissions the SDK's default setup uses.
        pipeline_experiment_config=None,
        parameters=parameters.all(),
        steps=[
            preprocessed,
            trained,
            evaluated,
            quality_gate_step(context, parameters, trained, evaluated),
        ],
        sagemaker_session=context.session,
    )
