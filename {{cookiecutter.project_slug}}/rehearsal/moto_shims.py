"""Where moto answers a call of the AWS CLI differently from AWS: the narrowest patch each,
inside the moto server the rehearsal runs in its own process.

CreateChangeSet with nothing to change. CloudFormation creates the change set and fails it
with "The submitted information didn't contain changes..."; `aws cloudformation deploy
--no-fail-on-empty-changeset` reads that reason and exits 0 (awscli
customizations/cloudformation/deployer.py, wait_for_changeset). moto's CreateChangeSet
response refuses the request instead ("No updates are to be performed", the UpdateStack
check in moto/cloudformation/responses.py), which the CLI reports as a failed deploy. The
patch skips that check for CreateChangeSet only; moto's own backend then fails the change
set with CloudFormation's reason. That backend compares the parameters as given: the
overrides the stack was created with against the full list the CLI sends for an update
(every parameter it does not override as UsePreviousValue, which moto fills in with typed
values), so an unchanged stack looks changed. CloudFormation compares the values in effect;
the patch compares them too: each parameter's value or default, as text.

ExecuteChangeSet and the stack's outputs. CloudFormation gives a stack its template's
outputs once a change set executes (`aws cloudformation describe-stacks` then reads them);
moto's change set updates the stack's resources but keeps the outputs of the stack's
previous template (none for a stack the change set created). The patch rebuilds them from
the executed template, as moto's UpdateStack does.

AWS::SageMaker::Endpoint's EndpointName. CloudFormation names the endpoint with it (the
resource type's schema); moto's CloudFormation ignores it and generates a name, so the
stack's EndpointName output would not be the endpoint the templates' policies name. The
patch gives moto the name property of that one resource type.

AWS::KMS::Key's Tags and KeyPolicy. CloudFormation takes a key's tags as Key and Value and
its policy as a JSON object (the resource type's schema); moto's CloudFormation passes both
to its KMS backend as they are, which reads tags as TagKey and TagValue (KMS's TagResource
shape) and fails on the template's. The patch hands moto the KMS shapes, so a stage
account's stack (infra/account.yml) deploys in moto as `make bootstrap-account` deploys it.

A pipeline execution's status. moto marks every execution Succeeded when it starts it and
runs nothing; the rehearsal plays the execution afterwards. SageMaker marks an execution
whose step failed Failed, with the failure reason (DescribePipelineExecution), and the
project reads that status (a failed batch is never retrained on). `execution_failed` sets
both on the execution moto keeps (moto's ListPipelineExecutions shows the reason; its
DescribePipelineExecution answers an empty FailureReason whatever it holds).
"""

import contextlib
import json
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def moto_as_aws() -> Iterator[None]:
    """moto's answers patched as above while the block runs."""
    from moto.cloudformation import parsing
    from moto.cloudformation.models import ChangeSet, Stack
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.kms.models import Key
    from moto.sagemaker.models import FakeEndpoint

    original = CloudFormationResponse.create_change_set
    original_apply = ChangeSet.apply
    original_has_parameters = Stack.has_parameters
    original_name_type = FakeEndpoint.__dict__["cloudformation_name_type"]
    original_key = Key.__dict__["create_from_cloudformation_json"]

    def create_key(
        cls: Any, resource_name: str, cloudformation_json: Any, *args: Any, **kwargs: Any
    ) -> Any:
        properties = dict(cloudformation_json.get("Properties", {}))
        properties["Tags"] = [
            {"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in properties.get("Tags", [])
        ]
        if isinstance(properties.get("KeyPolicy"), dict):
            properties["KeyPolicy"] = json.dumps(properties["KeyPolicy"])
        given = {**cloudformation_json, "Properties": properties}
        return original_key.__func__(cls, resource_name, given, *args, **kwargs)

    def create_change_set(self: Any) -> Any:
        # moto makes one response object per request: the patch stays with this request.
        self._validate_different_update = lambda *args, **kwargs: None
        return original(self)

    def apply(self: Any) -> None:
        original_apply(self)
        self.stack.template = self.template
        self.stack._parse_template()
        self.stack.output_map = self.stack._create_output_map()

    def has_parameters(self: Any, other: dict[str, Any]) -> bool:
        declared = self.template_dict.get("Parameters", {})
        defaults = {name: spec.get("Default") for name, spec in declared.items()}

        def in_effect(values: dict[str, Any]) -> dict[str, str | None]:
            """Each parameter's value or default, as text."""
            merged = {**defaults, **values}
            return {
                name: None
                if value is None
                else ",".join(map(str, value))
                if isinstance(value, list)
                else str(value)
                for name, value in merged.items()
            }

        return in_effect(self.stack_parameters) == in_effect(other)

    CloudFormationResponse.create_change_set = create_change_set  # type: ignore[method-assign]
    ChangeSet.apply = apply  # type: ignore[method-assign]
    Stack.has_parameters = has_parameters  # type: ignore[method-assign]
    FakeEndpoint.cloudformation_name_type = staticmethod(lambda: "EndpointName")  # type: ignore[method-assign]
    Key.create_from_cloudformation_json = classmethod(create_key)  # type: ignore[method-assign,assignment]
    parsing.get_name_type_map.cache_clear()
    try:
        yield
    finally:
        CloudFormationResponse.create_change_set = original  # type: ignore[method-assign]
        ChangeSet.apply = original_apply  # type: ignore[method-assign]
        Stack.has_parameters = original_has_parameters  # type: ignore[method-assign]
        FakeEndpoint.cloudformation_name_type = original_name_type  # type: ignore[method-assign]
        Key.create_from_cloudformation_json = original_key  # type: ignore[method-assign]
        parsing.get_name_type_map.cache_clear()


def execution_failed(execution_arn: str, reason: str) -> None:
    """Mark a played execution Failed in the moto server of this process, as SageMaker
    would; moto keeps it under its pipeline, in the account and region of its ARN."""
    from moto.sagemaker.models import sagemaker_backends

    _, _, _, region, account, resource = execution_arn.split(":", 5)
    pipeline_name = resource.split("/")[1]
    pipeline = sagemaker_backends[account][region].pipelines[pipeline_name]
    execution = pipeline.pipeline_executions[execution_arn]
    execution.pipeline_execution_status = "Failed"
    execution.pipeline_execution_failure_reason = reason
