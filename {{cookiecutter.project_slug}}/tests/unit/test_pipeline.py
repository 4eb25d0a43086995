"""The SageMaker pipeline definition, built once offline (moto) through the CLI.

The pipeline module (and with it the SageMaker SDK) is imported by the fixtures, not at
collection, so test workers that do not run these tests do not pay for the import.
"""

import hashlib
import io
import json
import os
import tarfile

import pytest

from {{ cookiecutter.package_name }} import config, data
from {{ cookiecutter.package_name }}.steps import classifier, data_schema, preprocess
from {{ cookiecutter.__ops_package_name }} import cli

COMMIT_ID = "c0ffee" + "0" * 34
PREPROCESS, TRAIN, EVALUATE = "PreprocessData", "TrainModel", "EvaluateModel"
GATE, REGISTER, FAIL = "CheckModelQuality", "RegisterModel", "FailQualityGate"
JOB_STEPS = [PREPROCESS, TRAIN, EVALUATE]


@pytest.fixture(scope="module")
def pipeline():
    """The pipeline module."""
    from {{ cookiecutter.package_name }} import pipeline

    return pipeline


@pytest.fixture(scope="module")
def definition(tmp_path_factory):
    """The definition `definition --offline` writes, as a dict, built with no AWS settings at
    all in the environment (no credentials, region or SDK config): --offline brings its own."""
    output = tmp_path_factory.mktemp("definition") / "pipeline-definition.json"
    argv = ["definition", "--offline", "--output", str(output), "--commit-id", COMMIT_ID]
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith(("AWS_", "SAGEMAKER_"))]:
            patch.delenv(name)
        assert cli.main(argv) == 0
    return json.loads(output.read_text())


@pytest.fixture(scope="module")
def steps(definition):
    """Every step by name, the condition's branches included."""
    found = {}
    for step in definition["Steps"]:
        found[step["Name"]] = step
        for branch in ("IfSteps", "ElseSteps"):
            found.update({inner["Name"]: inner for inner in step["Arguments"].get(branch, [])})
    return found


def get(name: str) -> dict:
    """The definition's reference to a pipeline parameter."""
    return {"Get": f"Parameters.{name}"}


def test_steps_and_types(definition, steps):
    assert [step["Name"] for step in definition["Steps"]] == [
        *JOB_STEPS,
        GATE,
    ]
    assert {name: step["Type"] for name, step in steps.items()} == {
        PREPROCESS: "Processing",
        TRAIN: "Training",
        EVALUATE: "Processing",
        GATE: "Condition",
        REGISTER: "RegisterModel",
        FAIL: "Fail",
    }
    gate = steps[GATE]["Arguments"]
    assert [step["Name"] for step in gate["IfSteps"]] == [REGISTER]
    assert [step["Name"] for step in gate["ElseSteps"]] == [FAIL]


def test_parameters_default_to_the_project_settings(definition, pipeline):
    defaults = {param["Name"]: param["DefaultValue"] for param in definition["Parameters"]}
    digest = hashlib.sha256(data.dataset_csv_bytes()).hexdigest()[:16]
    assert defaults == {
        "InputDataUrl": defaults["InputDataUrl"],
        "ProcessingInstanceType": config.PROCESSING_INSTANCE_TYPE,
        "ProcessingInstanceCount": 1,
        "TrainingInstanceType": config.TRAINING_INSTANCE_TYPE,
        "TrainingInstanceCount": 1,
        "QualityThreshold": config.QUALITY_THRESHOLD,
        "ModelApprovalStatus": config.MODEL_APPROVAL_STATUS,
        "CommitId": COMMIT_ID,
        "ChampionModelUrl": defaults["ChampionModelUrl"],
    }
    assert defaults["InputDataUrl"].endswith(f"/input/{digest}/{data.DATASET_FILE_NAME}")
    # No production model: a placeholder the evaluate step finds no model.tar.gz in.
    assert defaults["ChampionModelUrl"].endswith(f"/{pipeline.NO_CHAMPION_FILE}")


def test_training_reads_the_preprocessed_splits(steps):
    channels = steps[TRAIN]["Arguments"]["InputDataConfig"]
    assert {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3Uri"]
        for channel in channels
    } == {
        name: {"Get": f"Steps.{PREPROCESS}.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"}
        for name in ("train", "validation")
    }


def images(steps) -> set[str]:
    """The images of the three jobs and of the registered model."""
    (container,) = steps[REGISTER]["Arguments"]["InferenceSpecification"]["Containers"]
    return {
        steps[PREPROCESS]["Arguments"]["AppSpecification"]["ImageUri"],
        steps[TRAIN]["Arguments"]["AlgorithmSpecification"]["TrainingImage"],
        steps[EVALUATE]["Arguments"]["AppSpecification"]["ImageUri"],
        container["Image"],
    }


def test_the_jobs_and_the_model_run_on_the_image_the_classifier_names(steps):
    from sagemaker.core import image_uris

    (image,) = images(steps)
    # <account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>
    region = image.split(".")[3]
    assert image == image_uris.retrieve(classifier.FRAMEWORK, region, classifier.FRAMEWORK_VERSION)


def test_training_runs_the_script_in_script_mode(steps, pipeline):
    arguments = steps[TRAIN]["Arguments"]
    hyperparameters = arguments["HyperParameters"]
    assert hyperparameters["sagemaker_program"] == '"train.py"'
    code_uri = json.loads(hyperparameters["sagemaker_submit_directory"])
    archive_digest = hashlib.sha256(pipeline.training_code_archive()).hexdigest()
    assert code_uri.endswith(f"/code/{archive_digest}/sourcedir.tar.gz")
    for name, value in classifier.HYPERPARAMETERS.items():
        assert json.loads(hyperparameters[name]) == value
    assert arguments["ResourceConfig"]["InstanceType"] == get("TrainingInstanceType")


def test_training_code_archive_is_stable_and_holds_the_script_and_its_imports(pipeline):
    archive = pipeline.training_code_archive()
    assert archive == pipeline.training_code_archive()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.getnames() == ["train.py", "data_schema.py", "inference.py", "classifier.py"]
        for name in tar.getnames():
            assert tar.extractfile(name).read() == (pipeline.STEPS_DIR / name).read_bytes()


def test_preprocess_gets_the_schema_label_and_classes(steps):
    arguments = steps[PREPROCESS]["Arguments"]["AppSpecification"]["ContainerArguments"]
    options = dict(zip(arguments[::2], arguments[1::2], strict=True))
    assert options == {
        "--label-column": data_schema.LABEL,
        "--positive-class": str(data_schema.POSITIVE_CLASS),
        "--negative-class": str(data_schema.NEGATIVE_CLASS),
    }
    assert arguments == preprocess.label_options(data_schema)


def test_evaluation_scores_the_trained_model_on_the_test_split(steps, pipeline):
    arguments = steps[EVALUATE]["Arguments"]
    sources = {
        item["InputName"]: item["S3Input"]["S3Uri"] for item in arguments["ProcessingInputs"]
    }
    assert sources["model"] == {"Get": f"Steps.{TRAIN}.ModelArtifacts.S3ModelArtifacts"}
    assert sources["test"] == {
        "Get": f"Steps.{PREPROCESS}.ProcessingOutputConfig.Outputs['test'].S3Output.S3Uri"
    }
    assert steps[EVALUATE]["PropertyFiles"] == [
        {
            "PropertyFileName": pipeline.EVALUATION_REPORT,
            "OutputName": pipeline.EVALUATION_OUTPUT,
            "FilePath": "evaluation.json",
        }
    ]


def test_gate_needs_the_threshold_the_baseline_floor_and_the_champion_floor(steps):
    def report(path: str) -> dict:
        property_file = {"Get": f"Steps.{EVALUATE}.PropertyFiles.EvaluationReport"}
        return {"Std:JsonGet": {"Path": path, "PropertyFile": property_file}}

    metric = report(f"binary_classification_metrics.{config.QUALITY_METRIC}.value")
    floors = f"quality_gate.{config.QUALITY_METRIC}"
    conditions = steps[GATE]["Arguments"]["Conditions"]
    assert conditions == [
        {"Type": "GreaterThanOrEqualTo", "LeftValue": metric, "RightValue": right}
        for right in (
            get("QualityThreshold"),
            report(f"{floors}.baseline_floor"),
            report(f"{floors}.champion_floor"),
        )
    ]
    message = steps[FAIL]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    assert config.QUALITY_METRIC in message[0]
    assert message[1] == metric
    assert get("QualityThreshold") in message
    assert message[-1] == report(f"{floors}.explanation")


def test_the_evaluate_step_reads_the_champion_parameter_and_the_configured_margins(steps):
    arguments = steps[EVALUATE]["Arguments"]
    inputs = {item["InputName"]: item["S3Input"] for item in arguments["ProcessingInputs"]}
    assert inputs["champion"]["S3Uri"] == get("ChampionModelUrl")
    assert inputs["champion"]["LocalPath"] == "/opt/ml/processing/champion"
    assert arguments["AppSpecification"]["ContainerArguments"] == [
        "--champion-url",
        get("ChampionModelUrl"),
        "--baseline-margin",
        str(config.BASELINE_MARGIN),
        "--champion-margin",
        str(config.CHAMPION_MARGIN),
    ]


def test_registration_records_metrics_commit_data_and_approval(steps):
    arguments = steps[REGISTER]["Arguments"]
    assert arguments["ModelPackageGroupName"] == config.MODEL_PACKAGE_GROUP_NAME
    assert arguments["ModelApprovalStatus"] == get("ModelApprovalStatus")
    assert arguments["MetadataProperties"]["CommitId"] == get("CommitId")
    assert arguments["CustomerMetadataProperties"] == {"InputDataUrl": get("InputDataUrl")}
    assert arguments["ModelPackageDescription"] == (
        f"{config.PROJECT_NAME}: {classifier.DESCRIPTION}"
    )
    statistics = arguments["ModelMetrics"]["ModelQuality"]["Statistics"]
    assert statistics["ContentType"] == "application/json"
    assert statistics["S3Uri"]["Std:Join"]["Values"][-1] == "evaluation.json"
    (container,) = arguments["InferenceSpecification"]["Containers"]
    assert container["ModelDataUrl"] == {"Get": f"Steps.{TRAIN}.ModelArtifacts.S3ModelArtifacts"}
    # Script mode: the image's model server imports the inference module that the
    # training job left in model.tar.gz (unpacked into /opt/ml/model).
    assert container["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
    }
    specification = arguments["InferenceSpecification"]
    assert specification["SupportedContentTypes"] == ["text/csv", "application/json"]
    assert specification["SupportedResponseMIMETypes"] == ["text/csv", "application/json"]


def test_every_job_step_is_cached(steps):
    cached = {name for name, step in steps.items() if step.get("CacheConfig", {}).get("Enabled")}
    assert cached == set(JOB_STEPS)


@pytest.mark.parametrize(
    ("step_name", "script"), [(PREPROCESS, "preprocess.py"), (EVALUATE, "evaluate.py")]
)
def test_processing_code_sits_under_its_content_hash(steps, pipeline, step_name, script):
    arguments = steps[step_name]["Arguments"]
    (code,) = [item for item in arguments["ProcessingInputs"] if item["InputName"] == "code"]
    digest = hashlib.sha256((pipeline.STEPS_DIR / script).read_bytes()).hexdigest()
    assert code["S3Input"]["S3Uri"].endswith(f"/code/{digest}/{script}")
    entrypoint = arguments["AppSpecification"]["ContainerEntrypoint"]
    assert entrypoint == ["python3", f"/opt/ml/processing/input/code/{script}"]


@pytest.mark.parametrize("step_name", JOB_STEPS)
def test_job_steps_retry_throttling_and_capacity_errors(steps, step_name):
    retried = {
        exception
        for policy in steps[step_name]["RetryPolicies"]
        for exception in policy["ExceptionType"]
    }
    assert {"Step.THROTTLING", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT"} <= retried


def test_registration_retries_throttling(steps):
    (policy,) = steps[REGISTER]["RetryPolicies"]
    assert "Step.THROTTLING" in policy["ExceptionType"]


def test_job_outputs_are_unique_to_each_execution(steps):
    for step_name in (PREPROCESS, EVALUATE):
        outputs = steps[step_name]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        for output in outputs:
            values = output["S3Output"]["S3Uri"]["Std:Join"]["Values"]
            assert {"Get": "Execution.PipelineExecutionId"} in values
