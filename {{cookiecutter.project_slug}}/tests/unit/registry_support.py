"""Model packages for tests against moto's SageMaker Model Registry (not a test module)."""

from typing import Any

from {{ cookiecutter.package_name }} import config

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/xgboost:1"


def register_package(
    client: Any,
    commit_id: str,
    status: str = "Approved",
    group: str = config.MODEL_PACKAGE_GROUP_NAME,
) -> str:
    """Register a package built from commit_id with an approval status; return its ARN."""
    return client.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        MetadataProperties={"CommitId": commit_id},
        InferenceSpecification={
            "Containers": [{"Image": IMAGE}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]
