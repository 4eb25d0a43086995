"""registry.latest_approved_package against moto's SageMaker Model Registry."""

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from registry_support import register_package

from {{ cookiecutter.package_name }} import config
from {{ cookiecutter.__ops_package_name }}.registry import latest_approved_package

OTHER_GROUP = "another-project-models"
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40


@pytest.fixture
def sagemaker() -> Iterator[Any]:
    """A SageMaker client on moto with this project's group and another group."""
    with mock_aws():
        client = boto3.client("sagemaker")
        for group in (config.MODEL_PACKAGE_GROUP_NAME, OTHER_GROUP):
            client.create_model_package_group(ModelPackageGroupName=group)
        yield client


def test_newest_approved_package_of_the_group(sagemaker: Any) -> None:
    register_package(sagemaker, COMMIT_A, "Approved")
    newest = register_package(sagemaker, COMMIT_B, "Approved")
    register_package(sagemaker, COMMIT_A, "PendingManualApproval")
    register_package(sagemaker, COMMIT_A, "Approved", group=OTHER_GROUP)
    package = latest_approved_package(sagemaker, config.MODEL_PACKAGE_GROUP_NAME)
    assert package["ModelPackageArn"] == newest
    assert package["MetadataProperties"]["CommitId"] == COMMIT_B


def test_newest_approved_package_of_a_commit(sagemaker: Any) -> None:
    register_package(sagemaker, COMMIT_A, "Approved")
    retrained = register_package(sagemaker, COMMIT_A, "Approved")
    register_package(sagemaker, COMMIT_B, "Approved")
    package = latest_approved_package(sagemaker, config.MODEL_PACKAGE_GROUP_NAME, COMMIT_A)
    assert package["ModelPackageArn"] == retrained


def test_rejected_and_pending_packages_are_never_returned(sagemaker: Any) -> None:
    register_package(sagemaker, COMMIT_A, "Approved")
    rejected = register_package(sagemaker, COMMIT_B, "Approved")
    sagemaker.update_model_package(ModelPackageArn=rejected, ModelApprovalStatus="Rejected")
    register_package(sagemaker, COMMIT_B, "PendingManualApproval")
    with pytest.raises(LookupError, match=f"commit {COMMIT_B}"):
        latest_approved_package(sagemaker, config.MODEL_PACKAGE_GROUP_NAME, COMMIT_B)
    package = latest_approved_package(sagemaker, config.MODEL_PACKAGE_GROUP_NAME)
    assert package["MetadataProperties"]["CommitId"] == COMMIT_A


def test_no_approved_package_is_one_clear_lookup_error(sagemaker: Any) -> None:
    register_package(sagemaker, COMMIT_A, "Approved", group=OTHER_GROUP)
    with pytest.raises(LookupError) as raised:
        latest_approved_package(sagemaker, config.MODEL_PACKAGE_GROUP_NAME)
    message = str(raised.value)
    assert "\n" not in message
    assert config.MODEL_PACKAGE_GROUP_NAME in message
    assert "approve" in message
