"""The exact file set of a bake, for each combination of answers.

Add a file here when you add one to the template: the bake tests compare both ways, so a
file missing from a bake and a stray file in it both fail.
"""

# Files every bake has, whatever the answers (the package folder written as <pkg>, the
# operations package beside it as <pkg>_ops).
COMMON = """
.gitignore
.pre-commit-config.yaml
Makefile
README.md
pyproject.toml
scripts/in-venv
uv.lock
buildspecs/build.yml
buildspecs/deploy.yml
buildspecs/test.yml
data/README.md
docs/change-the-model.md
docs/installs-and-cloud-time.md
docs/model.md
docs/operations.md
docs/pull-requests.md
docs/rehearsal.md
docs/rollback.md
infra/bootstrap.yml
infra/config/prod.json
infra/config/staging.json
infra/endpoint.yml
infra/infra.mk
infra/model-build-pipeline.yml
infra/model-deploy-pipeline.yml
infra/rehearse.mk
infra/stack-policies/model-build.json
infra/stack-policies/model-deploy.json
lambdas/merge_dev_to_master/README.md
lambdas/merge_dev_to_master/app.py
lambdas/merge_dev_to_master/merge_common.py
lambdas/merge_dev_to_master/review.py
rehearsal/README.md
rehearsal/__init__.py
rehearsal/__main__.py
rehearsal/accounts.py
rehearsal/actions.py
rehearsal/approval.py
rehearsal/bootstrap.py
rehearsal/buildspec.py
rehearsal/cloudformation.py
rehearsal/environment.py
rehearsal/flow.py
rehearsal/git_hosts.py
rehearsal/hook/sitecustomize.py
rehearsal/iam.py
rehearsal/merge.py
rehearsal/moto_shims.py
rehearsal/pull_requests.py
rehearsal/pushes.py
rehearsal/retraining.py
rehearsal/sagemaker_pipeline.py
rehearsal/settings.py
rehearsal/source.py
rehearsal/stacks.py
rehearsal/standins.py
src/<pkg>/__init__.py
src/<pkg>/config.py
src/<pkg>/data.py
src/<pkg>/local.py
src/<pkg>/pipeline.py
src/<pkg>/report.py
src/<pkg>/server.py
src/<pkg>/steps/__init__.py
src/<pkg>/steps/classifier.py
src/<pkg>/steps/evaluate.py
src/<pkg>/steps/inference.py
src/<pkg>/steps/preprocess.py
src/<pkg>/steps/data_schema.py
src/<pkg>/steps/train.py
src/<pkg>_ops/__init__.py
src/<pkg>_ops/__main__.py
src/<pkg>_ops/aws.py
src/<pkg>_ops/cli.py
src/<pkg>_ops/deploy.py
src/<pkg>_ops/errors.py
src/<pkg>_ops/pipeline_service.py
src/<pkg>_ops/pull_request.py
src/<pkg>_ops/registry.py
src/<pkg>_ops/rollback.py
src/<pkg>_ops/stacks.py
tests/conftest.py
tests/integration/test_approval_rule.py
tests/integration/test_endpoint.py
tests/integration/test_endpoint_stack.py
tests/integration/rule_support.py
tests/integration/test_local_pipeline.py
tests/integration/test_new_data_rule.py
tests/integration/test_notification_rules.py
tests/integration/test_sagemaker_moto.py
tests/integration/test_step_cache.py
tests/unit/infra_support.py
tests/unit/merge_lambda_support.py
tests/unit/ml_support.py
tests/unit/registry_support.py
tests/unit/test_aws.py
tests/unit/test_aws_cli.py
tests/unit/test_buildspecs.py
tests/unit/test_cli.py
tests/unit/test_data.py
tests/unit/test_deploy.py
tests/unit/test_iam_scope.py
tests/unit/test_infra_templates.py
tests/unit/test_merge_lambda.py
tests/unit/test_new_data_trigger.py
tests/unit/test_package_boundary.py
tests/unit/test_pipeline.py
tests/unit/test_pipeline_service.py
tests/unit/test_pull_request.py
tests/unit/test_review.py
tests/unit/test_registry.py
tests/unit/test_inference.py
tests/unit/test_rollback.py
tests/unit/test_server.py
tests/unit/test_stacks.py
tests/unit/test_steps.py
""".split()

# Files that only one value of an answer produces: (answer, value) -> files.
CONDITIONAL: dict[tuple[str, object], list[str]] = {
    ("source_provider", "codecommit"): [
        "lambdas/merge_dev_to_master/codecommit_merge.py",
        "lambdas/merge_dev_to_master/codecommit_review.py",
        "tests/unit/test_merge_codecommit.py",
    ],
    ("source_provider", "github"): [
        "lambdas/merge_dev_to_master/github_merge.py",
        "lambdas/merge_dev_to_master/github_review.py",
        "lambdas/merge_dev_to_master/git_host_api.py",
        "src/<pkg>_ops/connection.py",
        "tests/unit/test_connection.py",
        "tests/unit/test_merge_github.py",
        "tests/contracts/github.json",
    ],
    ("source_provider", "gitlab"): [
        "lambdas/merge_dev_to_master/gitlab_merge.py",
        "lambdas/merge_dev_to_master/gitlab_review.py",
        "lambdas/merge_dev_to_master/git_host_api.py",
        "src/<pkg>_ops/connection.py",
        "tests/unit/test_connection.py",
        "tests/contracts/gitlab.json",
        "tests/unit/test_merge_git_host.py",
    ],
    ("source_provider", "bitbucket"): [
        "lambdas/merge_dev_to_master/bitbucket_merge.py",
        "lambdas/merge_dev_to_master/bitbucket_review.py",
        "lambdas/merge_dev_to_master/git_host_api.py",
        "src/<pkg>_ops/connection.py",
        "tests/unit/test_connection.py",
        "tests/contracts/bitbucket.json",
        "tests/unit/test_merge_git_host.py",
    ],
}


# Files of a bake with separate stage accounts (prod_account_id set).
STAGE_ACCOUNTS = [
    "docs/accounts.md",
    "infra/account.yml",
    "src/<pkg>_ops/accounts.py",
    "tests/unit/test_accounts.py",
]


def expected_files(choices: dict) -> set[str]:
    """The relative paths a bake with these choices must contain, and nothing else."""
    package = choices.get("project_slug", "churn-model").replace("-", "_")
    names = list(COMMON)
    for (variable, value), files in CONDITIONAL.items():
        if choices.get(variable) == value:
            names += files
    if choices.get("prod_account_id"):
        names += STAGE_ACCOUNTS
    return {name.replace("<pkg>", package) for name in names}
