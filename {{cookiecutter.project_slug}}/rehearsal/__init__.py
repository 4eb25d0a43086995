"""`make rehearse`: the GitOps flow rehearsed offline (moto, the local runner, stubs).

buildspec     the local buildspec runner (CodeBuild's phases, on-failure, finally, env)
cloudformation  templates, intrinsic functions, parameter checks, deploys into moto
sagemaker_pipeline  plays a SageMaker pipeline execution from its definition
standins      container credentials, the SageMaker runtime, the GitHub API, on 127.0.0.1
merge         runs a Lambda action's handler with Stubber-checked AWS clients
awscli        the `aws` commands the deploy targets run, against moto
flow          the four stages, their timing lines and the summary table
"""
