# AWS targets: bootstrap, teardown and the deploy pipeline's steps (included by the Makefile).
# They run the `aws` on PATH with your credentials, in the project's region unless AWS_REGION
# says otherwise: the AWS CLI v2 (CodeBuild's image, a laptop's install) or v1 from 1.42 on
# (`make install` puts it in .venv/bin; `make rehearse` runs that one). Both take every
# command and option used here alike: `cloudformation deploy` has the same arguments in both
# (awscli/customizations/cloudformation/deploy.py), given here as Key=Value words.

AWS_REGION ?= {{ cookiecutter.aws_region }}
AWS := aws --region $(AWS_REGION)
# v2 pages its output on a terminal; v1 never does.
export AWS_PAGER :=
BOOTSTRAP_STACK := {{ cookiecutter.__bootstrap_stack_name }}
BUILD_STACK := {{ cookiecutter.__build_stack_name }}
DEPLOY_STACK := {{ cookiecutter.__deploy_stack_name }}
STAGING_STACK := {{ cookiecutter.__staging_stack_name }}
PROD_STACK := {{ cookiecutter.__prod_stack_name }}
SAGEMAKER_PIPELINE := {{ cookiecutter.__sagemaker_pipeline_name }}
MODEL_PACKAGE_GROUP := {{ cookiecutter.__model_package_group_name }}
BUILD_PIPELINE := {{ cookiecutter.__build_pipeline_name }}
# retrain: the data to train on (an s3:// URI); empty keeps the previous run's data.
INPUT_DATA_URL ?=
comma := ,
MERGE_FUNCTION_SOURCE := lambdas/merge_dev_to_master
DEPLOY_DIR := build/deploy
{%- if cookiecutter.source_provider != 'codecommit' %}
GIT_REMOTE ?= {{ cookiecutter.__git_web_url }}/{{ cookiecutter.repository }}.git
GIT_TOKEN_SECRET ?= {{ cookiecutter.__git_token_secret_name }}
# Empty: bootstrap finds or creates the project's connection and waits for its approval.
CONNECTION_ARN ?= {{ cookiecutter.codeconnections_arn }}
CONNECTION_WAIT_SECONDS ?= 600
CONNECTION_ARN_FILE := build/connection-arn
{%- endif %}
# teardown deletes only when CONFIRM names the project.
CONFIRM ?=
{%- if cookiecutter.prod_account_id %}
ACCOUNT_STACK := {{ cookiecutter.__account_stack_name }}
# bootstrap-account: the 12-digit id of the account that runs (or will run) make bootstrap.
PIPELINES_ACCOUNT ?=
{%- endif %}

# $(call stack_output,<stack>,<output key>): one output value of a deployed stack.
stack_output = $(AWS) cloudformation describe-stacks --stack-name $(1) --query "Stacks[0].Outputs[?OutputKey=='$(2)'].OutputValue" --output text
# `aws cloudformation deploy` refuses a template over 51,200 bytes unless it goes through S3,
# and the pipeline stacks' templates can be larger: both go through the bootstrap stack's bucket.
TEMPLATE_UPLOAD = --s3-bucket "$$($(call stack_output,$(BOOTSTRAP_STACK),TemplateBucketName))" \
	--s3-prefix {{ cookiecutter.project_slug }}
# CloudFormation changes the pipeline stacks as the bootstrap stack's StacksRole, whoever
# starts the change (make bootstrap or the UpdatePipelines action).
STACKS_ROLE = --role-arn "$$($(call stack_output,$(BOOTSTRAP_STACK),StacksRoleArn))"
# $(call stack_policy,<stack>,<file>): the stack policy make bootstrap sets (no push can change it).
stack_policy = $(AWS) cloudformation set-stack-policy --stack-name $(1) --stack-policy-body file://$(2)

.PHONY: ci-build pull-request-check update-pipelines stage-config deploy-prod aws-cli bootstrap teardown retrain{% if cookiecutter.prod_account_id %} \
	bootstrap-account teardown-account{% endif %}

ci-build: check-data lint test-unit pipeline-definition ## The model build pipeline's Build stage: data, lint, unit tests, templates, definition

# Every role of the pipeline stacks within the permissions boundary (what UpdatePipelines
# checks first, and the pull-request check before the merge).
CHECK_ROLES = $(PY) -m $(CLI) check-roles --boundary infra/bootstrap.yml:PermissionsBoundary \
	infra/model-build-pipeline.yml infra/model-deploy-pipeline.yml

# The check's own failure is in its result, which the Report action posts: the target fails
# only when it cannot write that result.
PULL_REQUEST_LOG := build/pull-request-ci-build.log
pull-request-check: $(NEEDS_VENV) ## The pull-request check's Check action: ci-build and the roles' boundary, the pipeline definition against dev's, the model against production's
	@mkdir -p build
	@echo "==> make ci-build, as the model build pipeline's Build action runs it, and the roles within the boundary"
	status=0; { $(MAKE) --no-print-directory ci-build && $(CHECK_ROLES); } 2>&1 | tee $(PULL_REQUEST_LOG) || status=$$?; \
	echo "==> exit status $$status; comparing with dev and production"; \
	$(PY) -m $(CLI) pull-request-check --tests-status $$status --tests-log $(PULL_REQUEST_LOG)

update-pipelines: $(NEEDS_VENV) ## The UpdatePipelines action: check infra/, then update both pipeline stacks through change sets
	@echo "==> Checking infra/: every role within the permissions boundary, cfn-lint, checkov"
	$(CHECK_ROLES)
	$(BIN)cfn-lint infra/*.yml
	$(BIN)checkov --quiet --compact --skip-download --framework cloudformation -d infra
	@echo "==> Updating $(BUILD_STACK) and $(DEPLOY_STACK) through change sets (as the stacks role)"
	key="$$($(PY) -m $(CLI) package-lambda --source $(MERGE_FUNCTION_SOURCE) --output-dir build)"; \
	bucket="$$($(call stack_output,$(BUILD_STACK),ArtifactBucketName))"; \
	$(AWS) s3 cp "build/$${key#lambda/}" "s3://$$bucket/$$key"; \
	$(PY) -m $(CLI) update-stacks \
		--stack $(BUILD_STACK)=infra/model-build-pipeline.yml \
		--stack $(DEPLOY_STACK)=infra/model-deploy-pipeline.yml \
		--parameter $(DEPLOY_STACK):MergeFunctionCodeKey="$$key" \
		--template-bucket "$$($(call stack_output,$(BOOTSTRAP_STACK),TemplateBucketName))" \
		--template-prefix {{ cookiecutter.project_slug }} \
		--role-arn "$$($(call stack_output,$(BOOTSTRAP_STACK),StacksRoleArn))" \
		--restarts $(BUILD_STACK):BuildPipeline

stage-config: $(NEEDS_VENV) ## Resolve this commit's approved model package; write build/deploy/<stage>.json
	$(PY) -m $(CLI) stage-config --config-dir infra/config --output-dir $(DEPLOY_DIR)

# $(call deploy_endpoint,<template file>,<stage file name>): `aws cloudformation deploy` of
# the production endpoint stack with build/deploy/<stage file name>.json.
deploy_endpoint = parameters="$$($(PY) -m $(CLI) overrides --stage $(2) --config-dir $(DEPLOY_DIR))"; \
	tags="$$($(PY) -m $(CLI) overrides --stage $(2) --config-dir $(DEPLOY_DIR) --tags)"; \
	$(AWS) cloudformation deploy --stack-name $(PROD_STACK) --template-file $(1) \
		--no-fail-on-empty-changeset $(if $(CLOUDFORMATION_ROLE_ARN),--role-arn $(CLOUDFORMATION_ROLE_ARN)) \
		--parameter-overrides $$parameters --tags $$tags

deploy-prod: $(NEEDS_VENV){% if cookiecutter.prod_account_id %} $(TARGET_PROFILE){% endif %} ## Deploy the prod endpoint from build/deploy/prod.json (blue/green), smoke-test it, restore the previous model if the test fails{% if cookiecutter.prod_account_id %} (TARGET_ROLE_ARN: as that role){% endif %}
	@echo "==> Preparing $(PROD_STACK): save what it serves, or clear a failed first creation"
	$(PY) -m $(CLI) prepare-stack --stack $(PROD_STACK) --name prod --output-dir $(DEPLOY_DIR)
	@echo "==> Deploying $(PROD_STACK) (infra/endpoint.yml, $(DEPLOY_DIR)/prod.json)"
	$(call deploy_endpoint,infra/endpoint.yml,prod)
	@echo "==> Smoke-testing the production endpoint"
	@# The blue/green window has closed once the deploy returns: a failed smoke test
	@# redeploys what production served before (blue/green again), then fails the action.
	if ! ENDPOINT_NAME="$$($(call stack_output,$(PROD_STACK),EndpointName))" $(MAKE) test-endpoint; then \
		if [ -f $(DEPLOY_DIR)/prod-previous.json ]; then \
			echo "==> The smoke test failed: restoring the previous production model" >&2; \
			$(call deploy_endpoint,$(DEPLOY_DIR)/prod-previous.yml,prod-previous); \
			echo "deploy-prod: the smoke test failed; production serves the previous model again" >&2; \
		else \
			echo "deploy-prod: the smoke test failed on the first production model (there is no previous one to restore)" >&2; \
		fi; \
		exit 1; \
	fi
{%- if cookiecutter.prod_account_id %}
	@echo "==> Recording what production serves (the champion of the next builds)"
	$(IN_PIPELINES_ACCOUNT) $(PY) -m $(CLI) record-production --config-dir $(DEPLOY_DIR)
{%- endif %}

aws-cli: ## Check that the AWS CLI on PATH is v2, or v1 from 1.42 on
	@version="$$(aws --version 2>&1 | head -n 1)"; \
	case "$$version" in \
		aws-cli/2.*|aws-cli/1.4[2-9].*|aws-cli/1.[5-9][0-9].*) echo "==> $$version" ;; \
		*) echo "aws-cli: the AWS targets need the AWS CLI v2, or v1 1.42 or later (make install puts one in .venv/bin: PATH=\"$$PWD/.venv/bin:\$$PATH\"); found: $${version:-no aws on PATH}" >&2; exit 1 ;; \
	esac

bootstrap: $(NEEDS_VENV) aws-cli ## Deploy the bootstrap and both pipeline stacks, push {{ cookiecutter.main_branch }} and {{ cookiecutter.dev_branch }} (needs AWS credentials)
{%- if cookiecutter.source_provider != 'codecommit' %}
	@git ls-remote $(GIT_REMOTE) >/dev/null 2>&1 || { \
		echo "bootstrap: cannot read $(GIT_REMOTE): create the {{ cookiecutter.__git_host }} repository {{ cookiecutter.repository }} first (empty is fine) and let git reach it (GIT_REMOTE=... for another URL)" >&2; exit 1; }
{%- endif %}
	@echo "==> AWS identity"
	$(AWS) sts get-caller-identity --query Arn --output text
{%- if cookiecutter.prod_account_id %}
	$(PY) -m $(CLI) check-account
{%- endif %}
{%- if cookiecutter.source_provider != 'codecommit' %}
	@$(AWS) secretsmanager describe-secret --secret-id $(GIT_TOKEN_SECRET) --query ARN --output text >/dev/null 2>&1 || { \
		echo "bootstrap: no secret $(GIT_TOKEN_SECRET): create it with aws secretsmanager create-secret --name $(GIT_TOKEN_SECRET) --secret-string <{{ cookiecutter.__git_token_needs }}>" >&2; exit 1; }
	@echo "==> {{ cookiecutter.__git_host }} connection (CodeConnections; a new one waits for your approval in the console)"
	@mkdir -p build
	AWS_REGION=$(AWS_REGION) $(PY) -m $(CLI) connection --arn "$(CONNECTION_ARN)" \
		--wait-seconds $(CONNECTION_WAIT_SECONDS) > $(CONNECTION_ARN_FILE)
{%- endif %}
	@echo "==> Deploying $(BOOTSTRAP_STACK): template bucket, permissions boundary, the roles that update the pipeline stacks"
	$(AWS) cloudformation deploy --stack-name $(BOOTSTRAP_STACK) --template-file infra/bootstrap.yml \
		--capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset --tags project={{ cookiecutter.project_slug }}
	@echo "==> Deploying $(BUILD_STACK): artifact bucket, repository, SageMaker role, model build pipeline"
	$(AWS) cloudformation deploy --stack-name $(BUILD_STACK) --template-file infra/model-build-pipeline.yml \
		$(TEMPLATE_UPLOAD) $(STACKS_ROLE) \
		--capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset --tags project={{ cookiecutter.project_slug }}{% if cookiecutter.source_provider != 'codecommit' %} \
		--parameter-overrides ConnectionArn="$$(cat $(CONNECTION_ARN_FILE))"{% endif %}
	$(call stack_policy,$(BUILD_STACK),infra/stack-policies/model-build.json)
	@# CodePipeline runs a pipeline it creates at once; the first build is the push's.
	$(PY) -m $(CLI) stop-first-run --pipeline $(BUILD_PIPELINE)
	@echo "==> Uploading the merge function and deploying $(DEPLOY_STACK): approval rule, model deploy pipeline"
	bucket="$$($(call stack_output,$(BUILD_STACK),ArtifactBucketName))"; \
	key="$$($(PY) -m $(CLI) package-lambda --source $(MERGE_FUNCTION_SOURCE) --output-dir build)"; \
{%- if cookiecutter.source_provider != 'codecommit' %}
	secret="$$($(AWS) secretsmanager describe-secret --secret-id $(GIT_TOKEN_SECRET) --query ARN --output text)"; \
{%- endif %}
	$(AWS) s3 cp "build/$${key#lambda/}" "s3://$$bucket/$$key"; \
	$(AWS) cloudformation deploy --stack-name $(DEPLOY_STACK) --template-file infra/model-deploy-pipeline.yml \
		$(TEMPLATE_UPLOAD) $(STACKS_ROLE) \
		--capabilities {% if cookiecutter.prod_account_id %}CAPABILITY_NAMED_IAM{% else %}CAPABILITY_IAM{% endif %} --no-fail-on-empty-changeset --tags project={{ cookiecutter.project_slug }} \
		--parameter-overrides MergeFunctionCodeKey="$$key"{% if cookiecutter.source_provider != 'codecommit' %} GitTokenSecretArn="$$secret" ConnectionArn="$$(cat $(CONNECTION_ARN_FILE))"{% endif %}
	$(call stack_policy,$(DEPLOY_STACK),infra/stack-policies/model-deploy.json)
	$(PY) -m $(CLI) stop-first-run --pipeline {{ cookiecutter.__deploy_pipeline_name }}
	@echo "==> Pushing {{ cookiecutter.main_branch }} and {{ cookiecutter.dev_branch }} (the push to {{ cookiecutter.dev_branch }} starts the model build pipeline)"
{%- if cookiecutter.source_provider == 'codecommit' %}
	url="$$($(call stack_output,$(BUILD_STACK),RepositoryCloneUrlHttp))"; \
	git -c credential.helper= -c 'credential.helper=!$(AWS) codecommit credential-helper $$@' \
		-c credential.UseHttpPath=true push "$$url" {{ cookiecutter.main_branch }} {{ cookiecutter.dev_branch }}
{%- else %}
	git push $(GIT_REMOTE) {{ cookiecutter.main_branch }} {{ cookiecutter.dev_branch }}
	@# {{ cookiecutter.dev_branch }} points at a commit {{ cookiecutter.main_branch }} already holds: neither the CodePipeline nor the {{ cookiecutter.__git_host }}
	@# documentation says that such a push fires the V2 push trigger, so bootstrap starts the
	@# first build itself (the pipeline is SUPERSEDED: a run the trigger starts too replaces it).
	@echo "==> Starting the first build of $(BUILD_PIPELINE)"
	$(AWS) codepipeline start-pipeline-execution --name $(BUILD_PIPELINE) --query pipelineExecutionId --output text
{%- endif %}

retrain: ## Start the model build pipeline at the current {{ cookiecutter.dev_branch }} commit (INPUT_DATA_URL=s3://... trains on that data)
	$(AWS) codepipeline start-pipeline-execution --name $(BUILD_PIPELINE) --query pipelineExecutionId --output text \
		$(if $(INPUT_DATA_URL),--variables name=InputDataUrl$(comma)value=$(INPUT_DATA_URL))

teardown: $(NEEDS_VENV) ## Delete endpoints, pipelines, model packages and artifacts (CONFIRM={{ cookiecutter.project_slug }})
	@if [ "$(CONFIRM)" != "{{ cookiecutter.project_slug }}" ]; then \
		echo "teardown: this deletes {% if not cookiecutter.prod_account_id %}both endpoints, {% endif %}both pipelines, the SageMaker pipeline, every model package of $(MODEL_PACKAGE_GROUP) and the artifact bucket{% if cookiecutter.prod_account_id %} (the endpoints: make teardown-account in their accounts){% endif %}; run: make teardown CONFIRM={{ cookiecutter.project_slug }}" >&2; exit 1; fi
{%- if cookiecutter.prod_account_id %}
	$(PY) -m $(CLI) check-account
	@echo "==> Deleting $(DEPLOY_STACK) (the endpoints live in the stage accounts: make teardown-account there)"
	for stack in $(DEPLOY_STACK); do \
{%- else %}
	@echo "==> Deleting the endpoint stacks, then $(DEPLOY_STACK) (their CloudFormation role lives there)"
	for stack in $(PROD_STACK) $(STAGING_STACK) $(DEPLOY_STACK); do \
{%- endif %}
		$(AWS) cloudformation delete-stack --stack-name $$stack; \
		$(AWS) cloudformation wait stack-delete-complete --stack-name $$stack; \
	done
	@echo "==> Deleting the SageMaker pipeline and the model packages"
	$(AWS) sagemaker delete-pipeline --pipeline-name $(SAGEMAKER_PIPELINE) >/dev/null 2>&1 \
		|| echo "no SageMaker pipeline $(SAGEMAKER_PIPELINE)"
	$(PY) -m $(CLI) delete-model-packages --group $(MODEL_PACKAGE_GROUP)
	@echo "==> Emptying the artifact bucket (every version), then deleting $(BUILD_STACK)"
	bucket="$$($(call stack_output,$(BUILD_STACK),ArtifactBucketName) 2>/dev/null || true)"; \
	if [ -n "$$bucket" ] && [ "$$bucket" != None ]; then $(PY) -m $(CLI) empty-bucket --bucket "$$bucket"; fi
	$(AWS) cloudformation delete-stack --stack-name $(BUILD_STACK)
	$(AWS) cloudformation wait stack-delete-complete --stack-name $(BUILD_STACK)
	@echo "==> Emptying the template bucket, then deleting $(BOOTSTRAP_STACK)"
	bucket="$$($(call stack_output,$(BOOTSTRAP_STACK),TemplateBucketName) 2>/dev/null || true)"; \
	if [ -n "$$bucket" ] && [ "$$bucket" != None ]; then $(PY) -m $(CLI) empty-bucket --bucket "$$bucket"; fi
	$(AWS) cloudformation delete-stack --stack-name $(BOOTSTRAP_STACK)
	$(AWS) cloudformation wait stack-delete-complete --stack-name $(BOOTSTRAP_STACK)
{%- if cookiecutter.source_provider != 'codecommit' %}
	@echo "Kept the {{ cookiecutter.__git_host }} connection {{ cookiecutter.__connection_name }} (bootstrap reuses it); delete it with: $(AWS) codeconnections delete-connection --connection-arn <its ARN, in build/connection-arn>"
{%- endif %}
{%- if cookiecutter.source_provider == 'codecommit' %}
	@echo "Kept the CodeCommit repository {{ cookiecutter.__codecommit_repository_name }} (it holds the history); delete it with: $(AWS) codecommit delete-repository --repository-name {{ cookiecutter.__codecommit_repository_name }} (make bootstrap needs it gone to run again)"
{%- endif %}
{%- if cookiecutter.prod_account_id %}

bootstrap-account: $(NEEDS_VENV) aws-cli ## In a stage account, with its credentials: the roles the deploy pipeline assumes there (PIPELINES_ACCOUNT=<id>)
	@echo "==> AWS identity"
	$(AWS) sts get-caller-identity --query Arn --output text
	$(PY) -m $(CLI) check-account --stage-account --pipelines-account "$(PIPELINES_ACCOUNT)"
	@echo "==> Deploying $(ACCOUNT_STACK): deploy, CloudFormation, test and endpoint roles, endpoint key and logs, alarm forwarding"
	$(AWS) cloudformation deploy --stack-name $(ACCOUNT_STACK) --template-file infra/account.yml \
		--capabilities CAPABILITY_NAMED_IAM --no-fail-on-empty-changeset --tags project={{ cookiecutter.project_slug }} \
		--parameter-overrides PipelinesAccountId=$(PIPELINES_ACCOUNT)

teardown-account: $(NEEDS_VENV) ## In a stage account: delete its endpoints, captured data and roles (CONFIRM={{ cookiecutter.project_slug }})
	@if [ "$(CONFIRM)" != "{{ cookiecutter.project_slug }}" ]; then \
		echo "teardown-account: this deletes this account's endpoints of {{ cookiecutter.project_slug }}, the data production captured and the roles the deploy pipeline uses here; run: make teardown-account CONFIRM={{ cookiecutter.project_slug }}" >&2; exit 1; fi
	$(PY) -m $(CLI) check-account --stage-account
	@echo "==> Deleting this account's endpoint stacks (deleting a stack that is not here does nothing)"
	for stack in $(PROD_STACK) $(STAGING_STACK); do \
		$(AWS) cloudformation delete-stack --stack-name $$stack; \
		$(AWS) cloudformation wait stack-delete-complete --stack-name $$stack; \
	done
	@echo "==> Emptying the capture bucket (production's account), then deleting $(ACCOUNT_STACK)"
	bucket="$$($(call stack_output,$(ACCOUNT_STACK),CaptureBucketName) 2>/dev/null || true)"; \
	if [ -n "$$bucket" ] && [ "$$bucket" != None ]; then $(PY) -m $(CLI) empty-bucket --bucket "$$bucket"; fi
	@# The stack keeps its key (it may still decrypt kept logs) but deletes the key's alias.
	key="$$($(call stack_output,$(ACCOUNT_STACK),EndpointKeyArn) 2>/dev/null || true)"; \
	$(AWS) cloudformation delete-stack --stack-name $(ACCOUNT_STACK); \
	$(AWS) cloudformation wait stack-delete-complete --stack-name $(ACCOUNT_STACK); \
	if [ -n "$$key" ] && [ "$$key" != None ]; then \
		echo "Kept the endpoint key $$key; schedule its deletion with: $(AWS) kms schedule-key-deletion --key-id $$key"; fi
{%- endif %}
