"""Test-wide isolation: no real AWS credentials, no SageMaker telemetry, no network."""

import gc
import os
import socket
from collections.abc import Iterator

import pytest

# The suites import large libraries (pandas, scikit-learn, the SageMaker SDK): hundreds of
# thousands of objects that live until the end. With the default threshold (700 new objects)
# the collector runs thousands of times during those imports and finds nothing to free.
gc.set_threshold(50_000, 20, 20)

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
        # AWS_ENDPOINT_URL and the per-service AWS_ENDPOINT_URL_<SERVICE> ones.
        for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL")]:
            os.environ.pop(name)
        os.environ.pop("AWS_PROFILE", None)
        os.environ.update(FAKE_AWS_ENV)
        os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"] = str(sdk_config)
    yield
    os.environ.clear()
    os.environ.update(saved)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Exempt what exists after collection (imported modules, test items) from the collector.

    Nothing collected is freed before the end, yet every full collection walks it: pytest's
    end-of-run collection alone took about 0.9 s a process with the SDK and pandas loaded.
    """
    gc.freeze()


@pytest.fixture(autouse=True, scope="session")
def _aws_models_parsed_once() -> Iterator[None]:
    """Parse each of botocore's JSON model files once per test process, not once per session.

    moto gives every `mock_aws` block a new default boto3 session, and a new session parses
    the models again: endpoints.json and SageMaker's service model take about 0.1 s each,
    a quarter of the unit suite's time. The files do not change while the tests run, and
    botocore already shares one parsed copy among all the clients of a session.
    """
    from botocore.loaders import JSONFileLoader

    load_file = JSONFileLoader.load_file
    parsed: dict[str, object] = {}

    def load_file_once(loader: JSONFileLoader, file_path: str) -> object:
        if file_path not in parsed:
            parsed[file_path] = load_file(loader, file_path)
        return parsed[file_path]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(JSONFileLoader, "load_file", load_file_once)
        yield


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
