"""`make bootstrap-account` and `make teardown-account` of the three-account bake, with the
real AWS CLI against a moto server, each as a stage account's credentials would run them;
and what `make bootstrap` and `make bootstrap-account` refuse, one line each.

moto gives credentials its STS issued for a role the role's account (moto/sts/models.py),
which is how these runs stand in a stage account.
"""

import os

import boto3
import pytest
from conftest import GITLAB, make
from engine_support import rendered_answers
from moto.server import ThreadedMotoServer
from rehearsal.moto_shims import moto_as_aws

PIPELINES = "123456789012"


@pytest.fixture(scope="module")
def moto_url():
    """A moto server in this process (with the rehearsal's shims), stopped at the end."""
    with moto_as_aws():
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


def credentials_in(moto_url: str, account: str, tmp_path) -> dict[str, str]:
    """The environment of someone signed in to account (an administrator role there)."""
    sts = boto3.client(
        "sts",
        endpoint_url=moto_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    issued = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/administrator", RoleSessionName="bootstrap"
    )["Credentials"]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        **{key: value for key, value in os.environ.items() if not key.startswith("AWS_")},
        "HOME": str(home),
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": issued["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": issued["SecretAccessKey"],
        "AWS_SESSION_TOKEN": issued["SessionToken"],
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error:" in line]


# moto's CloudFormation skips bucket policies (the rehearsal reads them from the templates).
@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
def test_a_stage_account_is_bootstrapped_and_torn_down(gitlab_bake, moto_url, tmp_path):
    answers = rendered_answers(**GITLAB)
    prod, region = answers["prod_account_id"], answers["aws_region"]
    env = credentials_in(moto_url, prod, tmp_path)

    result = make("bootstrap-account", gitlab_bake, env={**env, "PIPELINES_ACCOUNT": PIPELINES})
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    assert f"prod in {prod}, trusting the pipelines in {PIPELINES}" in result.stdout

    def client(service):
        keys = {key.lower(): env[key] for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        return boto3.client(
            service,
            endpoint_url=moto_url,
            region_name=region,
            aws_session_token=env["AWS_SESSION_TOKEN"],
            **keys,
        )

    (stack,) = client("cloudformation").describe_stacks(StackName=answers["__account_stack_name"])[
        "Stacks"
    ]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert f":{prod}:stack/" in stack["StackId"]
    roles = {role["RoleName"] for role in client("iam").list_roles()["Roles"]}
    slug = answers["project_slug"]
    # Only production's roles: staging lives in another account.
    assert {f"{slug}-prod-deploy", f"{slug}-prod-cloudformation", f"{slug}-prod-endpoint"} <= roles
    assert not {f"{slug}-staging-deploy", f"{slug}-staging-test"} & roles
    assert client("s3").head_bucket(Bucket=f"{answers['__artifact_bucket_prefix']}-{prod}")

    refused = make("teardown-account", gitlab_bake, env=env)
    assert refused.returncode != 0
    assert f"run: make teardown-account CONFIRM={slug}" in refused.stderr

    result = make("teardown-account", gitlab_bake, env={**env, "CONFIRM": slug})
    assert result.returncode == 0, result.stdout[-1500:] + result.stderr[-1500:]
    assert "Kept the endpoint key arn:aws:kms:" in result.stdout
    stacks = client("cloudformation").list_stacks(StackStatusFilter=["CREATE_COMPLETE"])
    assert not stacks["StackSummaries"]


def test_bootstrap_refuses_the_wrong_accounts_in_one_line(gitlab_bake, moto_url, tmp_path):
    answers = rendered_answers(**GITLAB)
    staging = answers["staging_account_id"]
    in_staging = credentials_in(moto_url, staging, tmp_path)
    in_pipelines = credentials_in(moto_url, PIPELINES, tmp_path)
    # The git host is read first: a local repository stands in for it.
    remote = {"GIT_REMOTE": str(gitlab_bake)}

    result = make("bootstrap", gitlab_bake, env={**in_staging, **remote})
    assert result.returncode != 0
    [line] = error_lines(result)
    assert f"account {staging} is the staging account of this project" in line

    result = make(
        "bootstrap-account", gitlab_bake, env={**in_pipelines, "PIPELINES_ACCOUNT": PIPELINES}
    )
    assert result.returncode != 0
    [line] = error_lines(result)
    assert f"account {PIPELINES} hosts no stage of this project" in line

    result = make("bootstrap-account", gitlab_bake, env=in_staging)
    assert result.returncode != 0
    [line] = error_lines(result)
    assert "PIPELINES_ACCOUNT='' must be the 12-digit id" in line
