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


# A stack in one of these serves nothing (or is going away): there is no production model.
NOT_SERVING = {
    "CREATE_IN_PROGRESS",
    "CREATE_FAILED",
    "ROLLBACK_IN_PROGRESS",
    "ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE",
    "DELETE_IN_PROGRESS",
    "DELETE_FAILED",
    "DELETE_COMPLETE",
}


def production_model(
    cloudformation_client: Any, sagemaker_client: Any, stack_name: str
) -> dict[str, Any] | None:
    """The model package the production endpoint stack serves (its ModelPackageArn
    parameter), described from the registry; None when there is no such stack yet.

    The merge step keeps the main branch at the commit this package was built from, so it
    is the package of the production branch's head. Its ModelDataUrl is the champion.
    """
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation_client.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in error.response.get("Error", {}).get("Message", ""):
            return None
        raise
    if not stacks or stacks[0]["StackStatus"] in NOT_SERVING:
        return None
    parameters = {
        p["ParameterKey"]: p.get("ParameterValue") for p in stacks[0].get("Parameters", [])
    }
    if not parameters.get("ModelPackageArn"):
        return None
    return sagemaker_client.describe_model_package(ModelPackageName=parameters["ModelPackageArn"])


{% if cookiecutter.prod_account_id -%}
def record_production(s3_client: Any, bucket: str, key: str, stage_config: dict[str, Any]) -> str:
    """Record the package production now serves (after a deploy whose smoke test passed):
    the production stack is in the production account, out of the build pipeline's reach."""
    import json

    arn = stage_config["Parameters"]["ModelPackageArn"]
    body = {"ModelPackageArn": arn, "CommitId": stage_config.get("Tags", {}).get("commit", "")}
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())
    return arn


def recorded_production_model(
    s3_client: Any, sagemaker_client: Any, bucket: str, key: str
) -> dict[str, Any] | None:
    """The package the deploy pipeline last put in production, described from the registry;
    None before the first production deploy."""
    import json

    from botocore.exceptions import ClientError

    try:
        body = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    try:
        arn = json.loads(body)["ModelPackageArn"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(
            f"s3://{bucket}/{key} is not a production record (JSON with a ModelPackageArn):"
            " delete it, and the next production deploy writes it again"
        ) from None
    return sagemaker_client.describe_model_package(ModelPackageName=arn)


{% endif -%}
def model_data_url(package: dict[str, Any]) -> str:
    """The S3 URI of a package's model.tar.gz."""
    container = package["InferenceSpecification"]["Containers"][0]
    return container.get("ModelDataUrl") or container["ModelDataSource"]["S3DataSource"]["S3Uri"]
