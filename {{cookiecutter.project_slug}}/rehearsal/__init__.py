"""`make rehearse`: the GitOps flow rehearsed offline (moto, the local runner, stubs).

A package of its own: it imports nothing from the project's packages under src/. It reads the
pipelines from infra/*.yml, a few names from [tool.rehearsal] in pyproject.toml (settings),
and drives the project through the make targets and the CLI that CodeBuild runs.

buildspec     the local buildspec runner (CodeBuild's phases, on-failure, finally, env)
cloudformation  templates, intrinsic functions, parameter checks, deploys into moto
sagemaker_pipeline  plays a SageMaker pipeline execution from its definition
standins      container credentials, the SageMaker runtime, the GitHub API, on 127.0.0.1
merge         runs a Lambda action's handler with Stubber-checked AWS clients
iam           every AWS call checked against the policies of the role making it in AWS
moto_shims    where moto answers the AWS CLI differently from AWS, patched in the server
settings      the project's names, from [tool.rehearsal] of pyproject.toml
flow          the four stages, their timing lines and the summary table
"""
