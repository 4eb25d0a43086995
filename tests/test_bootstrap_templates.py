"""Bootstrap deploys every accepted answer's templates: the AWS CLI's own size check.

`aws cloudformation deploy` refuses a template over 51,200 bytes unless it is given
--s3-bucket, before it makes any call (awscli customizations/cloudformation/deploy.py). The
longest answers the hook accepts make the pipeline stacks' templates that large, so bootstrap
sends them through the bootstrap stack's bucket. Checked with the real AWS CLI against a moto
server: refused without the bucket, uploaded with it.
"""

import re
import socket
import uuid

import boto3
import pytest
from conftest import BIN, bake, make, run
from moto.server import ThreadedMotoServer

CLI_TEMPLATE_LIMIT = 51_200
LONGEST = {
    "project_name": "N" * 985,
    "project_slug": "a" * 40,
    "description": "d" * 1000,
    "retrain_schedule": "cron(0 3 ? * MON *)",
    "notification_email": "ml-team@example.com",
    "dev_branch": "d" * 250,
    "main_branch": "m" * 250,
}


@pytest.fixture(scope="module")
def longest(tmp_path_factory):
    """The CodeCommit bake with the longest answers, in us-east-1."""
    return bake(tmp_path_factory.mktemp("longest"), **LONGEST)


def bootstrap_deploys(project):
    """{template file: the `aws cloudformation deploy` command `make bootstrap` runs for it}."""
    result = make("bootstrap", project, env={"MAKEFLAGS": "-n"})
    assert result.returncode == 0, result.stderr
    commands = re.findall(r"cloudformation deploy [^\n]*", result.stdout.replace("\\\n", " "))
    return {re.search(r"--template-file (\S+)", command)[1]: command for command in commands}


def test_every_template_over_the_limit_goes_through_s3(longest):
    deploys = bootstrap_deploys(longest)
    assert sorted(deploys) == [
        "infra/bootstrap.yml",
        "infra/model-build-pipeline.yml",
        "infra/model-deploy-pipeline.yml",
    ]
    sizes = {path: (longest / path).stat().st_size for path in deploys}
    assert max(sizes.values()) > CLI_TEMPLATE_LIMIT
    for path, command in deploys.items():
        if sizes[path] > CLI_TEMPLATE_LIMIT:
            assert "--s3-bucket " in command, path
    # The bucket's own stack is deployed before any bucket exists.
    assert sizes["infra/bootstrap.yml"] <= CLI_TEMPLATE_LIMIT
    assert "--s3-bucket" not in deploys["infra/bootstrap.yml"]


@pytest.fixture(scope="module")
def moto_url():
    """A moto server on a free 127.0.0.1 port, stopped at the end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_the_aws_cli_refuses_the_largest_template_without_a_bucket_and_uploads_it_with_one(
    longest, moto_url
):
    template = max((longest / "infra").glob("*.yml"), key=lambda path: path.stat().st_size)
    assert template.stat().st_size > CLI_TEMPLATE_LIMIT
    env = {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_PAGER": "",
    }
    base = [str(BIN / "aws"), "cloudformation", "deploy", "--template-file", str(template)]
    base += ["--stack-name", "longest-answers", "--capabilities", "CAPABILITY_NAMED_IAM"]
    refused = run(base, longest, env=env)
    assert refused.returncode != 0
    assert re.search(r"greater than 51200|--s3-bucket", refused.stderr), refused.stderr
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    s3 = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1", **credentials)
    # moto keeps its buckets per process, for every server: a name no other test uses.
    bucket = f"templates-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    run([*base, "--s3-bucket", bucket, "--s3-prefix", "longest"], longest, env=env)
    uploaded = s3.list_objects_v2(Bucket=bucket, Prefix="longest/").get("Contents", [])
    assert [item["Size"] for item in uploaded] == [template.stat().st_size]


def test_github_bootstrap_checks_the_repository_first_and_starts_the_first_build(tmp_path):
    """The repository must exist before bootstrap; the push of a dev branch whose commit the
    main branch already holds may not fire the V2 push trigger (no AWS or GitHub document
    says it does), so bootstrap starts the first build itself."""
    project = bake(tmp_path, source_provider="github")
    result = make("bootstrap", project, env={"MAKEFLAGS": "-n"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()

    def first(pattern):
        return next(number for number, line in enumerate(lines) if re.search(pattern, line))

    assert first(r"git ls-remote ") < first(r"cloudformation deploy ")
    push = first(r"^git push ")
    start = first(r"codepipeline start-pipeline-execution --name model-build-")
    assert push < start


def test_the_longest_answers_bootstrap_in_the_rehearsal(longest, moto_url, tmp_path):
    """The rehearsal's bootstrap with the longest answers: every resource the stacks create
    is created as the stacks role (its policies and the boundary allow each create handler),
    and the CloudFormation stand-in answers for the three stacks."""
    import os
    import sys

    from rehearsal.actions import Workspace
    from rehearsal.bootstrap import bootstrap, host_stacks, rehearsal_iam
    from rehearsal.environment import process_environment
    from rehearsal.flow import ACCOUNT_ID, MOTO_CLIENTS, _moto_client
    from rehearsal.iam import Recorder
    from rehearsal.pushes import PipelineUpdates
    from rehearsal.settings import load_settings
    from rehearsal.source import GitRepository
    from rehearsal.stacks import PipelineStacks

    settings = load_settings(longest)
    with process_environment(moto_url, settings.region):
        clients = {name: _moto_client(name, moto_url, settings.region) for name in MOTO_CLIENTS}
        workspace = Workspace(
            git=GitRepository(longest),
            commit="0" * 40,
            source_dir=longest,
            work_dir=tmp_path / "work",
            log_dir=tmp_path / "logs",
            python=sys.executable,
            cli=settings.cli_package,
            region=settings.region,
            account_id=ACCOUNT_ID,
            clients=clients,
            base_env=dict(os.environ),
            git_token="token",
        )
        stacks = bootstrap(
            workspace,
            settings.bootstrap_stack,
            settings.build_stack,
            settings.deploy_stack,
            settings.git_token_secret,
        )
        iam = rehearsal_iam(stacks, workspace, Recorder(), tmp_path / "iam", (moto_url,))
        service = PipelineStacks(moto_url, clients["s3"]).start()
        try:
            PipelineUpdates(workspace, stacks, iam).check_creation()
            host_stacks(workspace, stacks, service)
            cloudformation = boto3.client(
                "cloudformation", region_name=settings.region, endpoint_url=service.url
            )
            for name in (settings.bootstrap_stack, settings.build_stack, settings.deploy_stack):
                (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
                assert stack["StackStatus"] == "CREATE_COMPLETE"
            policy = cloudformation.get_stack_policy(StackName=settings.build_stack)
            assert "LogicalResourceId/ArtifactBucket" in policy["StackPolicyBody"]
        finally:
            service.stop()
            iam.stop()
