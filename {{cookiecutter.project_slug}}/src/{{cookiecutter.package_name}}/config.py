"""Every name and setting the project derives from its cookiecutter answers, in one place.

The CloudFormation templates and buildspecs receive the same values as parameters and
environment variables; Python code imports them from here.
"""

import os

PROJECT_NAME = "{{ cookiecutter.project_name | replace('\\', '\\\\') | replace('"', '\\"') }}"
PROJECT_SLUG = "{{ cookiecutter.project_slug }}"
DEFAULT_AWS_REGION = "{{ cookiecutter.aws_region }}"
AWS_REGION = (
    os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_AWS_REGION
)

DEV_BRANCH = {{ cookiecutter.dev_branch | tojson }}
MAIN_BRANCH = {{ cookiecutter.main_branch | tojson }}

BUILD_STACK_NAME = "{{ cookiecutter.__build_stack_name }}"
SAGEMAKER_PIPELINE_NAME = "{{ cookiecutter.__sagemaker_pipeline_name }}"
MODEL_PACKAGE_GROUP_NAME = "{{ cookiecutter.__model_package_group_name }}"
ARTIFACT_BUCKET_PREFIX = "{{ cookiecutter.__artifact_bucket_prefix }}"
SAGEMAKER_ROLE_NAME = "{{ cookiecutter.__sagemaker_role_name }}"
{%- if cookiecutter.source_provider != 'codecommit' %}
# The CodeConnections connection to the git host: its name and ProviderType.
CONNECTION_NAME = "{{ cookiecutter.__connection_name }}"
CONNECTION_PROVIDER_TYPE = "{{ cookiecutter.__git_host }}"
GIT_HOST = "{{ cookiecutter.__git_host }}"
{%- endif %}
STAGING_ENDPOINT_NAME = "{{ cookiecutter.__staging_endpoint_name }}"
PROD_ENDPOINT_NAME = "{{ cookiecutter.__prod_endpoint_name }}"
# The production endpoint's stack: its ModelPackageArn parameter names the model production
# runs, the champion a new model is compared with.
PROD_STACK_NAME = "{{ cookiecutter.__prod_stack_name }}"
{%- if cookiecutter.prod_account_id %}
# The stage accounts (make bootstrap-account there); the pipelines run in another one. The
# production stack lives in the production account, so the deploy pipeline records the
# package production serves under this key of the artifact bucket, for the champion.
STAGING_ACCOUNT_ID = "{{ cookiecutter.staging_account_id }}"
PROD_ACCOUNT_ID = "{{ cookiecutter.prod_account_id }}"
PRODUCTION_RECORD_KEY = "production/model-package.json"
{%- endif %}

# New data: files uploaded under s3://<artifact bucket>/<DATA_PREFIX><batch>/ start one build
# when the batch's DATA_READY_MARKER object is created beside them.
DATA_PREFIX = "{{ cookiecutter.__data_prefix }}"
DATA_READY_MARKER = "{{ cookiecutter.__data_ready_marker }}"

# Approval status given to a package that passes the quality gate.
MODEL_APPROVAL_STATUS = "{{ cookiecutter.__model_approval_status }}"
QUALITY_METRIC = "{{ cookiecutter.quality_metric }}"
QUALITY_THRESHOLD = {{ cookiecutter.quality_threshold | float }}
# The gate also refuses a model whose metric does not beat a model that always answers the
# majority class by BASELINE_MARGIN (class balance alone can score a high accuracy or f1),
# or falls below the production model's, on the same test rows, by more than CHAMPION_MARGIN.
BASELINE_MARGIN = 0.05
CHAMPION_MARGIN = 0.02

PROCESSING_INSTANCE_TYPE = "{{ cookiecutter.processing_instance_type }}"
TRAINING_INSTANCE_TYPE = "{{ cookiecutter.training_instance_type }}"
ENDPOINT_INSTANCE_TYPE = "{{ cookiecutter.endpoint_instance_type }}"

TAGS = [{"Key": "project", "Value": PROJECT_SLUG}]
