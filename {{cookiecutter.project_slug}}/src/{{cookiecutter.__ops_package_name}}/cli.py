"""The project's command line, which the make targets call (`--help` lists the commands).

It serves both packages: the ML package's local tools (data, local, serve) and the operations
(the SageMaker pipeline, the model registry, deploy, rollback{% if cookiecutter.source_provider != 'codecommit' %}, the {{ cookiecutter.__git_host }} connection{% endif %}).
Heavy libraries (the SageMaker SDK, pandas, xgboost, boto3) are imported inside the command
that needs them, so `--help` and argument errors answer at once, and the deploy commands run
with boto3 alone. A mistake the user can fix (a bad argument, a missing setting: UserError) is
one line on stderr and exit status 2; a failed gate, step, execution or AWS call, exit status 1.
"""

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path

from {{ cookiecutter.package_name }} import config

from . import deploy
from .errors import UserError

DEFAULT_DEFINITION_PATH = Path("build", "pipeline-definition.json")
DEFAULT_MODEL_ARCHIVE = Path("build", "local", "model", "model.tar.gz")
DEFAULT_PORT = 8080


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus message."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def failed(args: argparse.Namespace, message: object) -> int:
    """Print a failure (a gate, a step, an execution) as one line; exit status 1."""
    print(f"{args.command}: error: {message}", file=sys.stderr)
    return 1


def sagemaker_client():
    """A SageMaker client in the project's region."""
    import boto3

    return boto3.client("sagemaker", region_name=config.AWS_REGION)


# ---------------------------------------------------------------- the ML package's tools


def cmd_data(args: argparse.Namespace) -> int:
    """Write the data set CSV (load_dataset()'s, or --source's), or only check it."""
    from {{ cookiecutter.package_name }}.data import dataset_csv_bytes, write_dataset

    try:
        if args.check:
            rows = dataset_csv_bytes().count(b"\n") - 1
            print(f"Data: load_dataset() gives {rows} rows with every schema column")
            return 0
        path = write_dataset(args.output_dir, args.source)
    except ValueError as error:
        raise UserError(error) from error
    except OSError as error:
        raise UserError(f"cannot write the data set: {error}") from error
    print(f"Wrote {path}" + (f" from {args.source}" if args.source else ""))
    if args.source:
        print(
            "make local-pipeline trains on it. CI and the cloud train on data in S3: upload it"
            " under s3://<artifact bucket>/{{ cookiecutter.__data_prefix }}<batch>/ with the"
            " {{ cookiecutter.__data_ready_marker }} marker (README, Your data)"
        )
    return 0


# A gate the sample data clears by more than this passes nearly any model.
LOOSE_GATE_MARGIN = 0.15


def kept_champion(build_dir: Path) -> Path:
    """Where a local run keeps the last model that passed its gate: beside build_dir."""
    return build_dir.parent / "champion" / "model.tar.gz"


def local_champion(choice: str, build_dir: Path) -> Path | None:
    """The model the local gate compares with: --champion's archive, none, or the last
    local model that passed the gate (if there is one)."""
    if choice == "none":
        return None
    if choice == "previous":
        previous = kept_champion(build_dir)
        return previous if previous.is_file() else None
    path = Path(choice)
    if not path.is_file():
        raise UserError(
            f"--champion {choice}: no such file; give a model.tar.gz (one a local run left"
            " in build/local/model/, or downloaded from the registry), or none"
        )
    return path


def local_commit() -> str | None:
    """The checkout's commit, with -dirty when files differ from it; None outside git."""
    import subprocess

    def git(*args: str) -> str | None:
        result = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    return commit


def cmd_local(args: argparse.Namespace) -> int:
    """Run preprocess, train and evaluate locally and apply the quality gate."""
    from {{ cookiecutter.package_name }} import local

    champion = local_champion(args.champion, args.build_dir)
    if not any(Path(args.data_dir).glob("*.csv")):
        from {{ cookiecutter.package_name }}.data import write_dataset

        print(f"Wrote load_dataset()'s table to {write_dataset(args.data_dir)}")
    started = time.perf_counter()
    try:
        run = local.run_local_pipeline(
            args.data_dir, args.build_dir, champion=champion, commit=local_commit()
        )
    except local.StepFailedError as error:
        return failed(args, error)
    report = run.report()
    metric = config.QUALITY_METRIC
    value = local.metric_value(report, metric)
    print(
        "Timing: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.timings.items())
        + f"; total {time.perf_counter() - started:.1f} s"
    )
    print(
        f"Model: {run.model_archive}\nEvaluation: {run.evaluation_file}\nReport: {run.report_file}"
    )
    print(f"Compared with: {report['quality_gate'][metric]['explanation']}")
    if champion is not None and report["champion"]["metrics"] is None:
        print(f"Champion {champion}: {report['champion']['not_comparable']}")
    failures = local.gate_failures(report, metric, args.threshold)
    if failures:
        return failed(args, f"quality gate failed: {metric} {value:.4f}: " + "; ".join(failures))
    print(f"Quality gate passed: {metric} {value:.4f} >= {args.threshold:.4f}")
    kept = kept_champion(args.build_dir)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(run.model_archive.read_bytes())
    print(f"Kept as the local champion, which the next run compares with: {kept}")
    if value - args.threshold > LOOSE_GATE_MARGIN:
        print(
            f"warning: {metric} {value:.4f} beats the threshold {args.threshold:.4f} by more"
            f" than {LOOSE_GATE_MARGIN}: a gate this low passes nearly any model; raise"
            f" QUALITY_THRESHOLD in src/{{ cookiecutter.package_name }}/config.py towards"
            f" {value - 0.05:.2f}"
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a model.tar.gz on 127.0.0.1 until interrupted."""
    from {{ cookiecutter.package_name }}.server import ModelServer

    try:
        server = ModelServer(args.model, args.port, args.host)
    except ValueError as error:
        raise UserError(f"{error} (train one with `make local-pipeline`)") from error
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from error
    host, port = server.server_address[:2]
    print(f"Serving {args.model} on http://{host}:{port} (GET /ping, POST /invocations)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped")
    finally:
        server.server_close()
    return 0


# ---------------------------------------------------------------- the SageMaker pipeline


def cmd_definition(args: argparse.Namespace) -> int:
    """Write the pipeline definition JSON, against AWS or offline under moto."""
    from . import aws
    from .pipeline_service import pipeline_definition

    if args.offline:
        commit_id = aws.resolve_commit_id(args.commit_id, fallback=aws.OFFLINE_COMMIT_ID)
        with aws.offline_aws():
            definition = pipeline_definition(
                role_arn=args.role_arn or aws.OFFLINE_ROLE_ARN,
                bucket=args.bucket or aws.OFFLINE_BUCKET,
                commit_id=commit_id,
                create_bucket_first=True,
            )
    else:
        settings = aws.cloud_settings(args.role_arn, args.bucket, args.commit_id)
        definition = pipeline_definition(settings.role_arn, settings.bucket, settings.commit_id)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(definition + "\n")
    print(f"Wrote {args.output}")
    return 0


def cmd_upsert(args: argparse.Namespace) -> int:
    """Create or update the SageMaker pipeline."""
    from . import aws
    from .pipeline_service import build_pipeline, upsert_pipeline

    settings = aws.cloud_settings(args.role_arn, args.bucket, args.commit_id)
    pipeline = build_pipeline(settings.role_arn, settings.bucket, settings.commit_id)
    arn = upsert_pipeline(
        sagemaker_client(),
        pipeline.name,
        pipeline.definition(),
        role_arn=settings.role_arn,
        description=f"{config.PROJECT_NAME}: preprocess, train, evaluate, register",
        tags=config.TAGS,
    )
    print(f"Upserted {arn}")
    return 0


def production_champion(client, bucket: str) -> tuple[dict | None, str]:
    """(the package production serves, or None; where that was read): the champion."""
    import boto3
{%- if cookiecutter.prod_account_id %}

    from .registry import recorded_production_model

    # The production stack is in the production account: the deploy pipeline records what
    # it serves in the artifact bucket.
    s3 = boto3.client("s3", region_name=config.AWS_REGION)
    try:
        champion = recorded_production_model(s3, client, bucket, config.PRODUCTION_RECORD_KEY)
    except ValueError as error:
        raise UserError(error) from error
    return champion, f"production (s3://{bucket}/{config.PRODUCTION_RECORD_KEY})"
{%- else %}

    from .registry import production_model

    cloudformation = boto3.client("cloudformation", region_name=config.AWS_REGION)
    return production_model(cloudformation, client, config.PROD_STACK_NAME), config.PROD_STACK_NAME
{%- endif %}


def cmd_start(args: argparse.Namespace) -> int:
    """Start the SageMaker pipeline (with the production model as the champion) and
    optionally wait for it."""
    from . import aws
    from .pipeline_service import (
        ExecutionFailedError,
        previous_input_data_url,
        start_execution,
        wait_for_execution,
    )
    from .registry import model_data_url

    commit_id = aws.resolve_commit_id(args.commit_id)
    data_url = aws.input_data_url(args.input_data_url)
    client = sagemaker_client()
    if data_url is None:
        data_url = previous_input_data_url(client, config.SAGEMAKER_PIPELINE_NAME)
{%- if cookiecutter.prod_account_id %}
    bucket = aws.artifact_bucket()
    try:
        champion, serving = production_champion(client, bucket)
    except UserError as error:
        return failed(args, error)
{%- else %}
    champion, serving = production_champion(client, "")
{%- endif %}
    champion_url = model_data_url(champion) if champion else None
    execution_arn = start_execution(
        client,
        commit_id,
        config.SAGEMAKER_PIPELINE_NAME,
        input_data_url=data_url,
        champion_url=champion_url,
    )
    data = data_url or "the pipeline's default data set"
    print(f"Started {execution_arn} (commit {commit_id}, data {data})")
    if champion:
        built_from = champion.get("MetadataProperties", {}).get("CommitId", "an unknown commit")
        print(
            f"Champion: {champion['ModelPackageArn']} (built from {built_from}), which"
            f" {serving} serves: {champion_url}"
        )
    else:
        print(f"Champion: none ({serving} serves no model yet)")
    if args.wait:
        try:
            wait_for_execution(client, execution_arn, poll_seconds=args.poll_seconds)
        except ExecutionFailedError as error:
            return failed(args, error)
    return 0


def cmd_latest_approved(args: argparse.Namespace) -> int:
    """Print the newest Approved model package ARN of the group."""
    from .registry import latest_approved_package

    try:
        package = latest_approved_package(
            sagemaker_client(), config.MODEL_PACKAGE_GROUP_NAME, commit_id=args.commit_id
        )
    except LookupError as error:
        return failed(args, error)
    print(package["ModelPackageArn"])
    return 0


# ---------------------------------------------------------------- the pull-request check


def pull_request_sample(s3, bucket: str, data_dir: Path) -> str:
    """Fill data_dir with the check's sample: the CSVs under the sample prefix of the
    artifact bucket, else load_dataset()'s table; what it is, for the comment."""
    from {{ cookiecutter.package_name }}.data import write_dataset

    from .pull_request import SAMPLE_PREFIX

    data_dir.mkdir(parents=True, exist_ok=True)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=SAMPLE_PREFIX).get("Contents", [])
    keys = [item["Key"] for item in listed if item["Key"].endswith(".csv")]
    for key in keys:
        s3.download_file(bucket, key, str(data_dir / Path(key).name))
    if keys:
        return f"s3://{bucket}/{SAMPLE_PREFIX} ({len(keys)} CSV files)"
    write_dataset(data_dir)
    return "load_dataset()'s table (no CSV under s3://" + f"{bucket}/{SAMPLE_PREFIX})"


def cmd_pull_request_check(args: argparse.Namespace) -> int:
    """Diff the pipeline definition against dev's, train on the sample and compare with
    production; write the result for the pull-request function (exit 0 once written)."""
    import json
    import os
    import re
    import shutil

    import boto3

    from {{ cookiecutter.package_name }} import local

    from . import aws
    from . import pull_request as check
    from .pipeline_service import pipeline_definition
    from .registry import model_data_url

    settings = aws.cloud_settings(args.role_arn, args.bucket, args.commit_id)
    commit_id, bucket = settings.commit_id, settings.bucket
    execution_id = args.execution_id or os.environ.get("CHECK_EXECUTION_ID", "")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", execution_id):
        raise UserError(
            "missing the check pipeline's execution id (--execution-id, or CHECK_EXECUTION_ID,"
            " which the Check action sets): the Report action reads the result under it"
        )
    s3 = boto3.client("s3", region_name=config.AWS_REGION)
    client = sagemaker_client()
    shutil.rmtree(args.build_dir, ignore_errors=True)
    args.build_dir.mkdir(parents=True)

    definition = definition_error = None
    try:
        dev = check.dev_definition(client, config.SAGEMAKER_PIPELINE_NAME)
        with aws.offline_aws():
            head = json.loads(
                pipeline_definition(settings.role_arn, bucket, commit_id, create_bucket_first=True)
            )
        definition = check.definition_diff(head, dev)
    except Exception as error:  # the pull request's own code: anything can fail, and is said
        definition_error = check.error_line(error)
    print(f"Definition: {definition or definition_error}")

    model = model_error = None
    sample = "none"
    try:
        sample = pull_request_sample(s3, bucket, args.build_dir / "data")
        champion, serving = production_champion(client, bucket)
        archive = None
        if champion:
            archive = args.build_dir / "production" / "model.tar.gz"
            archive.parent.mkdir(parents=True)
            url = model_data_url(champion)
            champion_bucket, _, key = url.removeprefix("s3://").partition("/")
            s3.download_file(champion_bucket, key, str(archive))
        run = local.run_local_pipeline(
            args.build_dir / "data", args.build_dir / "local", champion=archive, commit=commit_id
        )
        model = check.model_comparison(run.report(), config.QUALITY_METRIC)
        model["production_package"] = champion["ModelPackageArn"] if champion else None
        model["serving"] = serving
    except local.StepFailedError as error:
        model_error = str(error)
    except Exception as error:  # the pull request's own code: anything can fail, and is said
        model_error = check.error_line(error)
    print(f"Model: {model or model_error}")

    document = check.result_document(
        commit_id,
        tests_passed=args.tests_status == 0,
        tests_log=check.log_tail(args.tests_log),
        definition=definition,
        definition_error=definition_error,
        model=model,
        model_error=model_error,
        sample=sample,
    )
    document["execution_id"] = execution_id
    body = json.dumps(document, indent=2)
    (args.build_dir / "result.json").write_text(body + "\n")
    key = check.result_key(execution_id)
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    verdict = "passes" if document["passed"] else "fails"
    print(f"The check {verdict}; result in s3://{bucket}/{key} (the Report action posts it)")
    return 0


# ---------------------------------------------------------------- deploy and teardown


def cmd_stage_config(args: argparse.Namespace) -> int:
    """Resolve the commit's Approved package; write build/deploy/<stage>.json per stage."""
    import json

    from . import aws

    commit_id = aws.resolve_commit_id(args.commit_id)
    try:
        written = deploy.write_stage_configs(
            sagemaker_client(), commit_id, args.config_dir, args.output_dir
        )
    except LookupError as error:
        return failed(args, error)
    for stage, path in written.items():
        arn = json.loads(path.read_text())["Parameters"]["ModelPackageArn"]
        print(f"{stage}: {arn} (commit {commit_id}) -> {path}")
    return 0


def cmd_overrides(args: argparse.Namespace) -> int:
    """Print a stage file's parameters (or tags) as Key=Value words."""
    document = deploy.load_stage_config(args.config_dir, args.stage)
    print(deploy.key_value_words(document.get("Tags", {}) if args.tags else document["Parameters"]))
    return 0


def cmd_prepare_stack(args: argparse.Namespace) -> int:
    """Save what a stack serves before a deploy, or clear a failed first creation."""
    import boto3

    cloudformation = boto3.client("cloudformation", region_name=config.AWS_REGION)
    done, _ = deploy.prepare_stack(cloudformation, args.stack, args.output_dir, args.name)
    print(done)
    return 0


def cmd_package_lambda(args: argparse.Namespace) -> int:
    """Zip a Lambda folder reproducibly; print its S3 key."""
    print(deploy.package_lambda(args.source, args.output_dir))
    return 0


def cmd_empty_bucket(args: argparse.Namespace) -> int:
    """Delete every object version of a bucket."""
    import boto3

    count = deploy.empty_bucket(boto3.resource("s3", region_name=config.AWS_REGION), args.bucket)
    print(f"deleted {count} object versions from s3://{args.bucket}")
    return 0


def cmd_delete_model_packages(args: argparse.Namespace) -> int:
    """Delete every package of the model package group."""
    count = deploy.delete_model_packages(sagemaker_client(), args.group)
    print(f"deleted {count} model packages from {args.group}")
    return 0


# ---------------------------------------------------------------- the pipelines' own stacks


def cmd_check_roles(args: argparse.Namespace) -> int:
    """Check the roles of pipeline templates against the permissions boundary."""
    from . import stacks

    summary, problems = stacks.check_roles(args.boundary, args.templates)
    for problem in problems:
        print(f"check-roles: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(summary)
    return 0


def cmd_update_stacks(args: argparse.Namespace) -> int:
    """Update existing stacks through change sets, refusing what their stack policies keep."""
    from . import aws, stacks

    updates, restarts = stacks.parse_updates(args.stack, args.parameter, args.restarts)
    problem = aws.bucket_problem(args.template_bucket) or aws.role_arn_problem(args.role_arn)
    if problem:
        raise UserError(problem)
    import boto3
    from botocore.config import Config

    cloudformation = boto3.client("cloudformation", region_name=config.AWS_REGION)
    # As `aws cloudformation deploy --s3-bucket` uploads: a SigV4 client in the region.
    s3 = boto3.client("s3", region_name=config.AWS_REGION, config=Config(signature_version="s3v4"))
    try:
        stacks.update_stacks(
            cloudformation,
            s3,
            updates,
            args.template_bucket,
            args.template_prefix,
            args.role_arn,
            restarts,
        )
    except stacks.Refused as refused:
        for line in refused.args[0]:
            print(line, file=sys.stderr)
        return 1
    except stacks.UpdateFailed as error:
        return failed(args, error)
    return 0


def cmd_stop_first_run(args: argparse.Namespace) -> int:
    """Stop the execution CodePipeline started when it created the pipeline."""
    import boto3
    from botocore.exceptions import NoCredentialsError

    from . import stacks

    client = boto3.client("codepipeline", region_name=config.AWS_REGION)
    try:
        lines = stacks.stop_first_run(client, args.pipeline)
    except NoCredentialsError as error:
        raise UserError(f"no AWS credentials: {error}") from error
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------- git{% if cookiecutter.source_provider != 'codecommit' %} and {{ cookiecutter.__git_host }}{% endif %}


def cmd_rollback(args: argparse.Namespace) -> int:
    """Show what rolling the dev branch back to production undoes; write it with --confirm."""
    from . import rollback

    plan = rollback.plan(args.repo, args.production_ref, args.dev_branch)
    print(rollback.describe(plan, args.production_ref, args.dev_branch))
    if args.confirm is None:
        return 0
    commit = rollback.apply(args.repo, plan, args.production_ref, args.dev_branch, args.confirm)
    print(
        f"Wrote {commit[:12]} on {args.dev_branch}: its files are production's. Push it"
        f" (git push <remote> {args.dev_branch}) to rebuild, then approve, deploy and merge"
        " as usual."
    )
    return 0
{%- if cookiecutter.source_provider != 'codecommit' %}


def cmd_connection(args: argparse.Namespace) -> int:
    """Print the ARN of the AVAILABLE {{ cookiecutter.__git_host }} connection (found, created or given)."""
    import boto3

    from .connection import ConnectionNotReady, ensure_connection, wait_until_available

    def echo(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    client = boto3.client("codeconnections", region_name=config.AWS_REGION)
    arn = ensure_connection(client, args.arn, args.name, echo)
    try:
        wait_until_available(client, arn, config.AWS_REGION, echo, args.wait_seconds)
    except ConnectionNotReady as error:
        return failed(args, error)
    print(arn)
    return 0
{%- endif %}


# ---------------------------------------------------------------- the parser


{% if cookiecutter.prod_account_id -%}
def caller_account() -> str:
    """The account of the credentials in use."""
    import boto3

    return boto3.client("sts", region_name=config.AWS_REGION).get_caller_identity()["Account"]


def cmd_check_account(args: argparse.Namespace) -> int:
    """Check that the caller's account may run make bootstrap (or bootstrap-account)."""
    from . import accounts

    caller = caller_account()
    if args.stage_account:
        print(accounts.check_stage_account(caller, args.pipelines_account))
    else:
        print(accounts.check_pipelines_account(caller))
    return 0


def cmd_target_profile(args: argparse.Namespace) -> int:
    """Write the AWS config file whose profile assumes a stage account's role."""
    import os

    from . import accounts

    text = accounts.target_profile(args.role_arn, args.session_name, os.environ)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"{args.output}: profile {accounts.PROFILE} assumes {args.role_arn}")
    return 0


def cmd_record_production(args: argparse.Namespace) -> int:
    """Record, in the artifact bucket, the package a stage file put in production."""
    import boto3

    from . import aws
    from .registry import record_production

    bucket = aws.artifact_bucket(args.bucket)
    document = deploy.load_stage_config(args.config_dir, args.stage)
    s3 = boto3.client("s3", region_name=config.AWS_REGION)
    arn = record_production(s3, bucket, config.PRODUCTION_RECORD_KEY, document)
    print(f"production serves {arn}: recorded in s3://{bucket}/{config.PRODUCTION_RECORD_KEY}")
    return 0


{% endif -%}
def port_number(text: str) -> int:
    """A TCP port number (argparse type)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def positive_seconds(text: str) -> float:
    """A positive number of seconds (argparse type)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subcommand per step the make targets run."""
    parser = OneLineParser(prog=f"python -m {__package__}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def commit_option(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument(
            "--commit-id",
            help=f"git commit {what}, 40 hex digits (env CODEBUILD_RESOLVED_SOURCE_VERSION,"
            " else git HEAD)",
        )

    def cloud_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--role-arn",
            help="SageMaker execution role (env SAGEMAKER_ROLE_ARN, else the build stack's)",
        )
        sub.add_argument(
            "--bucket", help="artifact bucket name (env ARTIFACT_BUCKET, else the build stack's)"
        )
        commit_option(sub, "being built")

    data = command("data", cmd_data, "write the data set CSV into data/")
    data.add_argument("--output-dir", type=Path, default=Path("data"))
    data.add_argument("--source", help="a CSV file (.csv, .csv.gz) or s3:// URI to copy instead")
    data.add_argument("--check", action="store_true", help="only check that load_dataset() works")

    local = command("local", cmd_local, "run preprocess, train, evaluate and the gate locally")
    local.add_argument("--data-dir", type=Path, default=Path("data"))
    local.add_argument("--build-dir", type=Path, default=Path("build", "local"))
    local.add_argument("--threshold", type=float, default=config.QUALITY_THRESHOLD)
    local.add_argument(
        "--champion",
        default="previous",
        help="the model.tar.gz to compare with, `previous` (the last one that passed) or `none`",
    )

    serve = command("serve", cmd_serve, "serve a model.tar.gz with the SageMaker contract")
    serve.add_argument("--model", type=Path, default=DEFAULT_MODEL_ARCHIVE)
    serve.add_argument("--port", type=port_number, default=DEFAULT_PORT)
    serve.add_argument("--host", default="127.0.0.1")

    definition = command("definition", cmd_definition, "write the pipeline definition JSON")
    definition.add_argument("--offline", action="store_true", help="build it under moto")
    definition.add_argument("--output", type=Path, default=DEFAULT_DEFINITION_PATH)
    cloud_options(definition)

    upsert = command("upsert", cmd_upsert, "create or update the SageMaker pipeline")
    cloud_options(upsert)

    start = command("start", cmd_start, "start the SageMaker pipeline")
    start.add_argument("--wait", action="store_true", help="follow it to the end")
    start.add_argument("--poll-seconds", type=positive_seconds, default=30.0)
    start.add_argument(
        "--input-data-url",
        help="s3:// URI of the training data, or 'previous' (env INPUT_DATA_URL; default:"
        " the data of the previous execution, else the pipeline's default data set)",
    )
    commit_option(start, "being built")

    latest = command(
        "latest-approved", cmd_latest_approved, "print the newest Approved model package ARN"
    )
    latest.add_argument("--commit-id", help="only packages built from this commit")

    pull_request = command(
        "pull-request-check",
        cmd_pull_request_check,
        "diff the pipeline against dev's, train on the sample against production, write the result",
    )
    pull_request.add_argument(
        "--tests-status", type=int, required=True, help="exit status of make ci-build"
    )
    pull_request.add_argument(
        "--tests-log", type=Path, required=True, help="its log (the end goes in the comment)"
    )
    pull_request.add_argument("--build-dir", type=Path, default=Path("build", "pull-request"))
    pull_request.add_argument(
        "--execution-id", help="the check pipeline's execution (env CHECK_EXECUTION_ID)"
    )
    cloud_options(pull_request)

    stage = command("stage-config", cmd_stage_config, "write build/deploy/<stage>.json")
    commit_option(stage, "being deployed")
    stage.add_argument("--config-dir", type=Path, default=deploy.CONFIG_DIR)
    stage.add_argument("--output-dir", type=Path, default=deploy.DEPLOY_DIR)

    overrides = command("overrides", cmd_overrides, "print a stage's Key=Value words")
    overrides.add_argument(
        "--stage",
        choices=[*deploy.STAGES, *(name + deploy.PREVIOUS_SUFFIX for name in deploy.STAGES)],
        required=True,
        help="<stage> or <stage>-previous (written by prepare-stack)",
    )
    overrides.add_argument("--config-dir", type=Path, default=deploy.DEPLOY_DIR)
    overrides.add_argument(
        "--tags", action="store_true", help="print the tags instead of the parameters"
    )

    prepare = command("prepare-stack", cmd_prepare_stack, "save or recover a stack before a deploy")
    prepare.add_argument("--stack", required=True, help="the stack's name")
    prepare.add_argument(
        "--name", choices=deploy.STAGES, required=True, help="the stage: names the saved files"
    )
    prepare.add_argument("--output-dir", type=Path, default=deploy.DEPLOY_DIR)

    package = command("package-lambda", cmd_package_lambda, "zip a Lambda folder, print its S3 key")
    package.add_argument("--source", type=Path, required=True)
    package.add_argument("--output-dir", type=Path, default=Path("build"))

    bucket = command("empty-bucket", cmd_empty_bucket, "delete every object version of a bucket")
    bucket.add_argument("--bucket", required=True)

    packages = command(
        "delete-model-packages", cmd_delete_model_packages, "delete the group's packages"
    )
    packages.add_argument("--group", default=config.MODEL_PACKAGE_GROUP_NAME)

    roles = command(
        "check-roles", cmd_check_roles, "check pipeline templates' roles against the boundary"
    )
    roles.add_argument(
        "--boundary",
        required=True,
        metavar="TEMPLATE:LOGICAL_ID",
        help="the bootstrap template and the logical id of its AWS::IAM::ManagedPolicy",
    )
    roles.add_argument("templates", nargs="+", type=Path, metavar="TEMPLATE")

    update_stacks = command(
        "update-stacks", cmd_update_stacks, "update existing stacks through change sets"
    )
    update_stacks.add_argument(
        "--stack",
        action="append",
        required=True,
        metavar="NAME=TEMPLATE",
        help="a stack and its new template; repeat it, in the order to update them",
    )
    update_stacks.add_argument(
        "--template-bucket", required=True, help="the bucket the templates are uploaded to"
    )
    update_stacks.add_argument(
        "--template-prefix", default="", help="a key prefix in that bucket (default: none)"
    )
    update_stacks.add_argument(
        "--role-arn", required=True, help="the CloudFormation service role of the updates"
    )
    update_stacks.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="STACK:KEY=VALUE",
        help="a parameter value (default: the stack's current value, else the default)",
    )
    update_stacks.add_argument(
        "--restarts",
        action="append",
        default=[],
        metavar="STACK:LOGICAL_ID",
        help="a pipeline whose update restarts the running execution (say so if it changes)",
    )

    first_run = command(
        "stop-first-run", cmd_stop_first_run, "stop the run CodePipeline starts on creation"
    )
    first_run.add_argument("--pipeline", required=True, help="the pipeline's name")

    rollback = command(
        "rollback", cmd_rollback, "roll the dev branch back to production's files (git)"
    )
    rollback.add_argument("--repo", type=Path, default=Path("."), help="the git checkout")
    rollback.add_argument(
        "--production-ref",
        default=config.MAIN_BRANCH,
        help=f"the commit production runs (default: {config.MAIN_BRANCH})",
    )
    rollback.add_argument("--dev-branch", default=config.DEV_BRANCH)
    rollback.add_argument(
        "--confirm", help="production's commit id (as the dry run prints it): write the commit"
    )
{%- if cookiecutter.prod_account_id %}

    check_account = command(
        "check-account",
        cmd_check_account,
        "check that these credentials' account may run make bootstrap (or bootstrap-account)",
    )
    check_account.add_argument(
        "--stage-account", action="store_true", help="check for make bootstrap-account"
    )
    check_account.add_argument(
        "--pipelines-account",
        help="the pipelines' account, checked with --stage-account when given",
    )

    target_profile = command(
        "target-profile", cmd_target_profile, "write a profile that assumes a stage account's role"
    )
    target_profile.add_argument("--role-arn", required=True, help="the role to assume")
    target_profile.add_argument("--session-name", default=config.PROJECT_SLUG)
    target_profile.add_argument("--output", type=Path, required=True, help="the config file")

    record = command(
        "record-production",
        cmd_record_production,
        "record the package production serves (the champion of the next builds)",
    )
    record.add_argument("--config-dir", type=Path, default=Path("build", "deploy"))
    record.add_argument("--stage", default="prod")
    record.add_argument(
        "--bucket", help="artifact bucket name (env ARTIFACT_BUCKET, else the build stack's)"
    )
{%- endif %}
{%- if cookiecutter.source_provider != 'codecommit' %}

    from .connection import DEFAULT_WAIT_SECONDS

    connection = command(
        "connection", cmd_connection, "print the ARN of the AVAILABLE {{ cookiecutter.__git_host }} connection"
    )
    connection.add_argument(
        "--arn", default="", help="an existing connection (default: find or create)"
    )
    connection.add_argument("--name", default=config.CONNECTION_NAME)
    connection.add_argument(
        "--wait-seconds",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help="how long to wait for the approval (0: check once)",
    )
{%- endif %}
    return parser


def quiet_sdk_output() -> None:
    """Show warnings and errors, except the SageMaker SDK's chatter below ERROR.

    Configuring the root logger first also stops an SDK module's import-time basicConfig
    from printing every INFO record.
    """
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.addFilter(
        lambda record: record.levelno >= logging.ERROR or not record.name.startswith("sagemaker")
    )
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING)
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the command, turn known failures into one-line errors."""
    args = build_parser().parse_args(argv)
    quiet_sdk_output()
    try:
        return args.handler(args)
    except UserError as error:
        print(f"{args.command}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError):
            return failed(args, f"AWS refused the request: {str(error).splitlines()[0]}")
        if isinstance(error, BotoCoreError):
            return failed(args, f"cannot reach AWS: {str(error).splitlines()[0]}")
        raise
