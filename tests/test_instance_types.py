"""The instance types the pre-gen hook accepts, per use, and the endpoint template's
local-storage condition: current with botocore's sagemaker model and EC2's data, and what a
bake deploys."""

import importlib.util
import json
import re
import sys

import pytest
from conftest import TEMPLATE, bake


def load_module(name, path):
    """Import a file of the template (or of a bake) as a module."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


instance_types = load_module("instance_types", TEMPLATE / "scripts" / "instance_types.py")
pre_gen = load_module("pre_gen_for_instance_types", TEMPLATE / "hooks" / "pre_gen_project.py")
ACCEPTED = pre_gen.INSTANCE_TYPES
DEFAULTS = {answer: "ml.m5.large" for answer in ACCEPTED}


def test_hook_and_endpoint_blocks_are_what_the_sources_give_now():
    assert instance_types.main(["--check"]) == 0, "run make instance-types"


def test_each_answer_is_checked_against_the_shape_its_operation_takes():
    assert pre_gen.INSTANCE_TYPE_SHAPES == {
        "processing_instance_type": "ProcessingInstanceType",
        "training_instance_type": "TrainingInstanceType",
        "endpoint_instance_type": "ProductionVariantInstanceType",
    }
    # The three enums differ: no single list would do.
    assert len({ACCEPTED[answer] for answer in ACCEPTED}) == 3


def test_a_hosting_type_is_refused_for_processing():
    # ml.m5d.large is in ProductionVariantInstanceType, not in ProcessingInstanceType.
    endpoint = {**DEFAULTS, "endpoint_instance_type": "ml.m5d.large"}
    assert pre_gen.check_instance_types(endpoint) == []
    processing = {**DEFAULTS, "processing_instance_type": "ml.m5d.large"}
    assert pre_gen.check_instance_types(processing) == [
        "processing_instance_type: 'ml.m5d.large' is not an instance type SageMaker processing "
        "jobs accept (botocore's ProcessingInstanceType; it is one for endpoint_instance_type); "
        "for example ml.m5.large"
    ]


def test_an_unknown_size_gets_a_size_of_its_family_as_example():
    [problem] = pre_gen.check_instance_types({**DEFAULTS, "endpoint_instance_type": "ml.m5d.foo"})
    assert problem == (
        "endpoint_instance_type: 'ml.m5d.foo' is not an instance type SageMaker hosting accepts "
        "(botocore's ProductionVariantInstanceType); for example ml.m5d.large"
    )


@pytest.mark.parametrize("value", [None, 5, ["ml.m5.large"], {"ml.m5.large": 1}])
def test_answers_that_are_not_text_are_refused(value):
    [problem] = pre_gen.check_instance_types({**DEFAULTS, "training_instance_type": value})
    assert problem.startswith(f"training_instance_type: {value!r} is not an instance type")


def test_every_default_answer_is_in_its_set():
    cookiecutter_json = json.loads((TEMPLATE / "cookiecutter.json").read_text())
    for answer, accepted in ACCEPTED.items():
        assert cookiecutter_json[answer] in accepted, answer


def test_the_local_storage_rule():
    # EC2's naming convention: d after the generation digit; the series letters do not count.
    assert [instance_types.has_d_attribute(f) for f in ("m5d", "g4dn", "p4de", "c6gd")] == [
        True
    ] * 4
    assert [instance_types.has_d_attribute(f) for f in ("dl1", "p6-b200", "p6e-gb200")] == [
        False
    ] * 3
    model = instance_types.sagemaker_model()
    hosting = ACCEPTED["endpoint_instance_type"]
    families = instance_types.local_storage_families(
        model, hosting, instance_types.ec2_instance_types()
    )
    # botocore's ResourceConfig text names these with NVMe instance storage, and ml.c5 and
    # ml.p2 with EBS volumes only.
    assert {"p4d", "g4dn", "g5"} <= set(families)
    assert not {"c5", "p2", "m5"} & set(families)
    assert families == sorted(families)


@pytest.fixture(scope="module")
def local_storage_bake(tmp_path_factory):
    """(project, the baked rehearsal's cloudformation module) for ml.m5d.large."""
    project = bake(tmp_path_factory.mktemp("m5d"), endpoint_instance_type="ml.m5d.large")
    cloudformation = load_module(
        "baked_cloudformation", project / "rehearsal" / "cloudformation.py"
    )
    return project, cloudformation


def endpoint_stack(project, cloudformation, template=None, **parameters):
    """The baked endpoint template as the production stack, with its prod.json parameters."""
    template = template or cloudformation.load_template(project / "infra" / "endpoint.yml")
    config = json.loads((project / "infra" / "config" / "prod.json").read_text())
    values = {**config["Parameters"], **parameters}
    values["KmsKeyArn"] = (
        "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )
    values["DataCaptureS3Uri"] = "s3://bucket/data-capture/prod"
    return cloudformation.Stack("prod", template, "123456789012", "us-east-1", values)


def test_local_storage_bake_omits_the_volume_key(local_storage_bake):
    project, cloudformation = local_storage_bake
    stack = endpoint_stack(project, cloudformation)
    assert stack.parameter("InstanceType") == "ml.m5d.large"
    assert stack.condition("HasLocalStorage") is True
    assert stack.condition("EncryptVolume") is False


def test_ebs_backed_bake_keeps_the_volume_key(default_bake):
    cloudformation = load_module(
        "default_bake_cloudformation", default_bake / "rehearsal" / "cloudformation.py"
    )
    stack = endpoint_stack(default_bake, cloudformation)
    assert stack.parameter("InstanceType") == "ml.m5.large"
    assert stack.condition("HasLocalStorage") is False
    assert stack.condition("EncryptVolume") is True


def test_condition_is_true_exactly_for_the_local_storage_families(local_storage_bake):
    project, cloudformation = local_storage_bake
    template = cloudformation.load_template(project / "infra" / "endpoint.yml")
    families = set(
        instance_types.local_storage_families(
            instance_types.sagemaker_model(),
            ACCEPTED["endpoint_instance_type"],
            instance_types.ec2_instance_types(),
        )
    )
    wrong = [
        instance_type
        for instance_type in sorted(ACCEPTED["endpoint_instance_type"])
        if endpoint_stack(project, cloudformation, template, InstanceType=instance_type).condition(
            "HasLocalStorage"
        )
        != (instance_type.split(".")[1] in families)
    ]
    assert wrong == []


def or_sizes(node):
    """The number of conditions of every Fn::Or in node."""
    if isinstance(node, list):
        return [size for item in node for size in or_sizes(item)]
    if not isinstance(node, dict):
        return []
    own = [len(node["Fn::Or"])] if "Fn::Or" in node else []
    return own + [size for value in node.values() for size in or_sizes(value)]


def test_every_or_takes_two_to_ten_conditions(local_storage_bake):
    project, cloudformation = local_storage_bake
    template = cloudformation.load_template(project / "infra" / "endpoint.yml")
    sizes = or_sizes(template["Conditions"]["HasLocalStorage"])
    assert sizes and all(2 <= size <= 10 for size in sizes), sizes


def test_every_hosting_type_fits_the_endpoint_parameter(local_storage_bake):
    project, cloudformation = local_storage_bake
    template = cloudformation.load_template(project / "infra" / "endpoint.yml")
    pattern = template["Parameters"]["InstanceType"]["AllowedPattern"]
    refused = [
        t for t in sorted(ACCEPTED["endpoint_instance_type"]) if not re.fullmatch(pattern, t)
    ]
    assert refused == []
