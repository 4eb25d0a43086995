"""The command line: `python -m <package> <command>` (the Makefile targets call it).

Heavy libraries (the SageMaker SDK, xgboost, boto3) are imported inside the command that needs
them, so `--help` and argument errors answer at once. A bad argument or a missing setting is
one line on stderr and exit status 2; a failed gate, step or execution is exit status 1.
"""

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from . import config

DEFAULT_DEFINITION_PATH = Path("build", "pipeline-definition.json")
DEFAULT_MODEL_ARCHIVE = Path("build", "local", "model", "model.tar.gz")
DEFAULT_PORT = 8080


class CommandError(Exception):
    """A problem the user can fix; the message says how."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus message."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def cmd_data(args: argparse.Namespace) -> int:
    """Write the sample data set CSV."""
    from .data import write_dataset

    try:
        path = write_dataset(args.output_dir)
    except OSError as error:
        raise CommandError(f"cannot write the data set: {error}") from error
    print(f"Wrote {path}")
    return 0


def cmd_local(args: argparse.Namespace) -> int:
    """Run preprocess, train and evaluate locally and apply the quality gate."""
    from .local import StepFailedError, metric_value, run_local_pipeline

    if not any(Path(args.data_dir).glob("*.csv")):
        from .data import write_dataset

        print(f"Writing the sample data set to {write_dataset(args.data_dir)}")
    started = time.perf_counter()
    try:
        run = run_local_pipeline(args.data_dir, args.build_dir)
    except StepFailedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    value = metric_value(run.report(), config.QUALITY_METRIC)
    print(
        "Timing: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.timings.items())
        + f"; total {time.perf_counter() - started:.1f} s"
    )
    print(f"Model: {run.model_archive}\nEvaluation: {run.evaluation_file}")
    if value < args.threshold:
        print(
            f"error: quality gate failed: {config.QUALITY_METRIC} {value:.4f} is below the "
            f"threshold {args.threshold:.4f}",
            file=sys.stderr,
        )
        return 1
    print(f"Quality gate passed: {config.QUALITY_METRIC} {value:.4f} >= {args.threshold:.4f}")
    return 0


def cmd_definition(args: argparse.Namespace) -> int:
    """Write the pipeline definition JSON, against AWS or offline under moto."""
    from . import aws

    if args.offline:
        with aws.offline_aws():
            definition = _build_definition(
                role_arn=args.role_arn or aws.OFFLINE_ROLE_ARN,
                bucket=args.bucket or aws.OFFLINE_BUCKET,
                commit_id=aws.commit_id(args.commit_id, fallback=aws.OFFLINE_COMMIT_ID),
                create_bucket=True,
            )
    else:
        settings = aws.cloud_settings(args.role_arn, args.bucket, args.commit_id)
        definition = _build_definition(
            role_arn=settings.role_arn, bucket=settings.bucket, commit_id=settings.commit_id
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(definition + "\n")
    print(f"Wrote {args.output}")
    return 0


def _build_definition(role_arn: str, bucket: str, commit_id: str, create_bucket=False) -> str:
    """Publish the data set and return the pipeline definition as indented JSON."""
    import json

    pipeline = _pipeline(role_arn, bucket, commit_id, create_bucket=create_bucket)
    return json.dumps(json.loads(pipeline.definition()), indent=2, sort_keys=True)


def _pipeline(role_arn: str, bucket: str, commit_id: str, create_bucket=False):
    """The SageMaker pipeline, with the data set published to the artifact bucket."""
    import boto3

    from .aws import publish_dataset
    from .data import DATASET_FILE_NAME, dataset_csv_bytes

    # The SDK creates a SageMaker client when it is imported, in the default region.
    os.environ.setdefault("AWS_DEFAULT_REGION", config.AWS_REGION)
    from .pipeline import get_pipeline

    boto_session = boto3.Session(region_name=config.AWS_REGION)
    s3_client = boto_session.client("s3")
    if create_bucket:
        _create_bucket(s3_client, bucket)
    input_data_uri = publish_dataset(s3_client, bucket, dataset_csv_bytes(), DATASET_FILE_NAME)
    return get_pipeline(
        role_arn=role_arn,
        bucket=bucket,
        input_data_uri=input_data_uri,
        commit_id=commit_id,
        boto_session=boto_session,
    )


def _create_bucket(s3_client, bucket: str) -> None:
    """Create the bucket (offline, in moto); us-east-1 takes no location constraint."""
    if config.AWS_REGION == "us-east-1":
        s3_client.create_bucket(Bucket=bucket)
    else:
        s3_client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": config.AWS_REGION}
        )


def cmd_upsert(args: argparse.Namespace) -> int:
    """Create or update the SageMaker pipeline."""
    import boto3

    from . import aws
    from .pipeline_service import upsert_pipeline

    settings = aws.cloud_settings(args.role_arn, args.bucket, args.commit_id)
    role_arn = settings.role_arn
    pipeline = _pipeline(role_arn, settings.bucket, settings.commit_id)
    arn = upsert_pipeline(
        boto3.client("sagemaker", region_name=config.AWS_REGION),
        pipeline.name,
        pipeline.definition(),
        role_arn=role_arn,
        description=f"{config.PROJECT_NAME}: preprocess, train, evaluate, register",
        tags=config.TAGS,
    )
    print(f"Upserted {arn}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    """Start the SageMaker pipeline and optionally wait for it."""
    import boto3

    from . import aws
    from .pipeline_service import (
        ExecutionFailedError,
        previous_input_data_url,
        start_execution,
        wait_for_execution,
    )

    commit_id = aws.commit_id(args.commit_id)
    data_url = aws.input_data_url(args.input_data_url)
    client = boto3.client("sagemaker", region_name=config.AWS_REGION)
    if data_url is None:
        data_url = previous_input_data_url(client, config.SAGEMAKER_PIPELINE_NAME)
    execution_arn = start_execution(
        client, commit_id, config.SAGEMAKER_PIPELINE_NAME, input_data_url=data_url
    )
    data = data_url or "the pipeline's default data set"
    print(f"Started {execution_arn} (commit {commit_id}, data {data})")
    if args.wait:
        try:
            wait_for_execution(client, execution_arn, poll_seconds=args.poll_seconds)
        except ExecutionFailedError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


def cmd_latest_approved(args: argparse.Namespace) -> int:
    """Print the newest Approved model package ARN of the group."""
    import boto3

    # Imported here: the registry module belongs to the deploy side of the project.
    from .registry import latest_approved_package

    client = boto3.client("sagemaker", region_name=config.AWS_REGION)
    try:
        package = latest_approved_package(
            client, config.MODEL_PACKAGE_GROUP_NAME, commit_id=args.commit_id
        )
    except LookupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(package["ModelPackageArn"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve a model.tar.gz on 127.0.0.1 until interrupted."""
    from .server import make_server

    try:
        server = make_server(args.model, args.port, args.host)
    except ValueError as error:
        raise CommandError(f"{error} (train one with `make local-pipeline`)") from error
    except OSError as error:
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from error
    host, port = server.server_address[:2]
    print(f"Serving {args.model} on http://{host}:{port} (GET /ping, POST /invocations)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped")
    finally:
        server.server_close()
    return 0


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
    """The parser with one subcommand per Makefile target."""
    parser = OneLineParser(prog=f"python -m {__package__}", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    def cloud_options(sub: argparse.ArgumentParser, *, role: bool, bucket: bool) -> None:
        if role:
            sub.add_argument(
                "--role-arn",
                help="SageMaker execution role (env SAGEMAKER_ROLE_ARN, else the build stack's)",
            )
        if bucket:
            sub.add_argument(
                "--bucket",
                help="artifact bucket name (env ARTIFACT_BUCKET, else the build stack's)",
            )
        sub.add_argument(
            "--commit-id",
            help="git commit being built (env CODEBUILD_RESOLVED_SOURCE_VERSION, else git HEAD)",
        )

    data = command("data", cmd_data, "write the sample data set CSV")
    data.add_argument("--output-dir", type=Path, default=Path("data"))

    local = command("local", cmd_local, "run preprocess, train, evaluate and the gate locally")
    local.add_argument("--data-dir", type=Path, default=Path("data"))
    local.add_argument("--build-dir", type=Path, default=Path("build", "local"))
    local.add_argument("--threshold", type=float, default=config.QUALITY_THRESHOLD)

    definition = command("definition", cmd_definition, "write the pipeline definition JSON")
    definition.add_argument("--offline", action="store_true", help="build it under moto")
    definition.add_argument("--output", type=Path, default=DEFAULT_DEFINITION_PATH)
    cloud_options(definition, role=True, bucket=True)

    upsert = command("upsert", cmd_upsert, "create or update the SageMaker pipeline")
    cloud_options(upsert, role=True, bucket=True)

    start = command("start", cmd_start, "start the SageMaker pipeline")
    start.add_argument("--wait", action="store_true", help="follow it to the end")
    start.add_argument("--poll-seconds", type=positive_seconds, default=30.0)
    start.add_argument(
        "--input-data-url",
        help="s3:// URI of the training data, or 'previous' (env INPUT_DATA_URL; default:"
        " the data of the previous execution, else the pipeline's default data set)",
    )
    cloud_options(start, role=False, bucket=False)

    latest = command(
        "latest-approved", cmd_latest_approved, "print the newest Approved model package ARN"
    )
    latest.add_argument("--commit-id", help="only packages built from this commit")

    serve = command("serve", cmd_serve, "serve a model.tar.gz with the SageMaker contract")
    serve.add_argument("--model", type=Path, default=DEFAULT_MODEL_ARCHIVE)
    serve.add_argument("--port", type=port_number, default=DEFAULT_PORT)
    serve.add_argument("--host", default="127.0.0.1")
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
    from .aws import SettingError

    try:
        return args.handler(args)
    except (CommandError, SettingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, ClientError):
            print(f"error: AWS refused the request: {str(error).splitlines()[0]}", file=sys.stderr)
            return 1
        if isinstance(error, BotoCoreError):
            print(f"error: cannot reach AWS: {str(error).splitlines()[0]}", file=sys.stderr)
            return 1
        raise
