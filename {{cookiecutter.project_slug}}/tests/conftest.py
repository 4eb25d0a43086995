"""Test-wide isolation: no real AWS credentials, no SageMaker telemetry, no network."""

import os
import socket
from collections.abc import Iterator

import pytest

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "{{ cookiecutter.aws_region }}",
    "AWS_REGION": "{{ cookiecutter.aws_region }}",
    # The SDK checks the execution role with iam:SimulatePrincipalPolicy unless told not to.
    "SAGEMAKER_VALIDATE_ROLE": "false",
}


@pytest.fixture(autouse=True, scope="session")
def _isolated_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point every AWS client at fake credentials and opt out of SageMaker telemetry.

    With ENDPOINT_NAME set (the staging and production endpoint tests in CodeBuild) the
    tests invoke a real endpoint, so this process's own AWS settings are kept.
    """
    sdk_config = tmp_path_factory.mktemp("sagemaker") / "config.yaml"
    sdk_config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
        "      TelemetryOptOut: true\n"
    )
    saved = dict(os.environ)
    if not os.environ.get("ENDPOINT_NAME"):
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        os.environ.update(FAKE_AWS_ENV)
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"] = str(sdk_config)
    yield
    os.environ.clear()
    os.environ.update(saved)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 (a free port), started and stopped by this fixture."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
