"""Loads the merge Lambda from its folder and plays CodePipeline and AWS around it.

The Lambda folder is not a package (Lambda runs app.py from the zip's root), so its folder is
put on sys.path and app.py is loaded under a name no other test module uses. AWS clients are
real botocore clients wrapped in a Stubber, so every request is validated against the
service model; the CodePipeline job-result calls are recorded to count them.
"""

import importlib
import importlib.util
import json
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.session
from botocore.stub import ANY, Stubber

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambdas" / "merge_dev_to_master"
APP_MODULE_NAME = "merge_dev_to_master_app"
REGION = "{{ cookiecutter.aws_region }}"
DEV_BRANCH = {{ cookiecutter.dev_branch | tojson }}
MAIN_BRANCH = {{ cookiecutter.main_branch | tojson }}
JOB_RESULT_OPERATIONS = ("PutJobSuccessResult", "PutJobFailureResult")

DEPLOYED_COMMIT = "c0ffee" + "1" * 34
MAIN_HEAD = "ba5e00" + "2" * 34
OTHER_COMMIT = "d1ce00" + "3" * 34

# One botocore session for the whole test process: it caches the service models.
_session = botocore.session.get_session()


def load_app() -> ModuleType:
    """app.py of the merge Lambda, imported once per process."""
    if APP_MODULE_NAME in sys.modules:
        return sys.modules[APP_MODULE_NAME]
    if str(LAMBDA_DIR) not in sys.path:
        sys.path.insert(0, str(LAMBDA_DIR))
    spec = importlib.util.spec_from_file_location(APP_MODULE_NAME, LAMBDA_DIR / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[APP_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def merge_common() -> ModuleType:
    """The merge_common module app.py imported."""
    load_app()
    return importlib.import_module("merge_common")


def pipeline_event(job_id: str, user_parameters: Any) -> dict[str, Any]:
    """A CodePipeline Invoke action event; dict parameters are JSON-encoded like the console."""
    if not isinstance(user_parameters, str):
        user_parameters = json.dumps(user_parameters)
    return {
        "CodePipeline.job": {
            "id": job_id,
            "accountId": "123456789012",
            "data": {
                "actionConfiguration": {
                    "configuration": {
                        "FunctionName": "merge-dev-to-master",
                        "UserParameters": user_parameters,
                    }
                },
                "inputArtifacts": [],
                "outputArtifacts": [],
            },
        }
    }


def merge_parameters(commit_id: str = DEPLOYED_COMMIT) -> dict[str, str]:
    """The UserParameters the deploy pipeline passes."""
    return {"source_branch": DEV_BRANCH, "destination_branch": MAIN_BRANCH, "commit_id": commit_id}


def check_parameters(commit_id: str = DEPLOYED_COMMIT) -> dict[str, str]:
    """The UserParameters of the deploy pipeline's check before anything is deployed."""
    return {**merge_parameters(commit_id), "mode": "check"}


class LambdaContext:
    """The two attributes of the Lambda context the handler reads."""

    aws_request_id = "8f5b1f7e-0000-4000-8000-000000000001"

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the Lambda timeout."""
        return self.remaining_ms


class MergeLambdaHarness:
    """Stubbed AWS clients for the handler, the CodePipeline results it sends, its sleeps."""

    def __init__(self, monkeypatch: Any, services: tuple[str, ...]) -> None:
        self.app = load_app()
        self.job_id = str(uuid.uuid4())
        self.clients: dict[str, Any] = {}
        self.stubbers: dict[str, Stubber] = {}
        self.job_results: list[tuple[str, dict[str, Any]]] = []
        self.sleeps: list[float] = []
        for service in ("codepipeline", *services):
            client = _session.create_client(
                service,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            stubber = Stubber(client)
            stubber.activate()
            self.clients[service] = client
            self.stubbers[service] = stubber
        self.clients["codepipeline"].meta.events.register(
            "provide-client-params.codepipeline", self._record_job_result
        )
        monkeypatch.setattr(self.app, "aws_client", self.client)
        monkeypatch.setattr(merge_common(), "sleep", self.sleeps.append)

    def client(self, service: str) -> Any:
        """The stubbed client of a service (fails the test for a service not expected)."""
        return self.clients[service]

    def _record_job_result(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in JOB_RESULT_OPERATIONS:
            self.job_results.append((model.name, dict(params)))

    def stub(self, service: str) -> Stubber:
        """The Stubber of a service, to queue responses on."""
        return self.stubbers[service]

    def expect_success(self) -> None:
        """Queue CodePipeline's answer to one PutJobSuccessResult."""
        self.stub("codepipeline").add_response(
            "put_job_success_result", {}, {"jobId": self.job_id, "executionDetails": ANY}
        )

    def expect_failure(self) -> None:
        """Queue CodePipeline's answer to one PutJobFailureResult."""
        self.stub("codepipeline").add_response(
            "put_job_failure_result", {}, {"jobId": self.job_id, "failureDetails": ANY}
        )

    def invoke(self, parameters: Any = None, remaining_ms: int = 60_000) -> dict[str, Any]:
        """Call the handler with a pipeline event for this job."""
        if parameters is None:
            parameters = merge_parameters()
        event = pipeline_event(self.job_id, parameters)
        return self.app.handler(event, LambdaContext(remaining_ms))

    def only_result(self) -> tuple[str, dict[str, Any]]:
        """The one job result reported, after checking every queued response was used."""
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()
        assert len(self.job_results) == 1, self.job_results
        return self.job_results[0]

    def success_summary(self) -> str:
        """The summary of the one job result, which must be a success."""
        operation, params = self.only_result()
        assert operation == "PutJobSuccessResult", params
        assert params["jobId"] == self.job_id
        return params["executionDetails"]["summary"]

    def failure(self) -> tuple[str, str]:
        """(type, message) of the one job result, which must be a failure."""
        operation, params = self.only_result()
        assert operation == "PutJobFailureResult", params
        assert params["jobId"] == self.job_id
        details = params["failureDetails"]
        assert 0 < len(details["message"].encode("utf-8")) <= 5000
        return details["type"], details["message"]

    def close(self) -> None:
        """Deactivate the stubbers."""
        for stubber in self.stubbers.values():
            stubber.deactivate()


def log_records(text: str) -> list[dict[str, Any]]:
    """The JSON log lines the handler wrote (every line must be JSON)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
