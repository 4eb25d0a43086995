"""Bootstrap deploys every accepted answer's templates: the AWS CLI's own size check.

`aws cloudformation deploy` refuses a template over 51,200 bytes unless it is given
--s3-bucket, before it makes any call (awscli customizations/cloudformation/deploy.py). The
longest answers the hook accepts make the pipeline stacks' templates that large, so bootstrap
sends them through the bootstrap stack's bucket. Checked with the real AWS CLI against a moto
server: refused without the bucket, uploaded with it.
"""

import re
import socket

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
    s3.create_bucket(Bucket="templates")
    run([*base, "--s3-bucket", "templates", "--s3-prefix", "longest"], longest, env=env)
    uploaded = s3.list_objects_v2(Bucket="templates", Prefix="longest/").get("Contents", [])
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
