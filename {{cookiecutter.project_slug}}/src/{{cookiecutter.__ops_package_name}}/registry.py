"""Find approved model packages in the SageMaker Model Registry."""

from typing import Any

APPROVED = "Approved"


def latest_approved_package(
    sagemaker_client: Any, group_name: str, commit_id: str | None = None
) -> dict[str, Any]:
    """The describe_model_package response of the newest Approved package of the group.

    With commit_id, the newest Approved package whose MetadataProperties.CommitId is that
    commit. Raises LookupError (one line naming the group, the commit and the fix) when
    there is none.
    """
    summaries = []
    paginator = sagemaker_client.get_paginator("list_model_packages")
    for page in paginator.paginate(ModelPackageGroupName=group_name, ModelApprovalStatus=APPROVED):
        summaries.extend(page["ModelPackageSummaryList"])
    # Versions grow by one per registration within a group: the highest is the newest.
    summaries.sort(key=lambda summary: summary.get("ModelPackageVersion", 0), reverse=True)
    for summary in summaries:
        package = sagemaker_client.describe_model_package(
            ModelPackageName=summary["ModelPackageArn"]
        )
        if package.get("ModelApprovalStatus") != APPROVED:
            continue
        if commit_id is None or package.get("MetadataProperties", {}).get("CommitId") == commit_id:
            return package
    if commit_id is None:
        raise LookupError(
            f"no Approved model package in group {group_name}: approve one in the SageMaker"
            " Model Registry (or push to the dev branch to train one)"
        )
    raise LookupError(
        f"no Approved model package in group {group_name} was built from commit {commit_id}:"
        " approve that commit's package in the SageMaker Model Registry, or deploy a commit"
        " that has one"
    )
