"""Endpoint contract tests: the same tests for a real SageMaker endpoint and the local server.

With ENDPOINT_NAME set they invoke that endpoint through sagemaker-runtime (the staging test
and the production smoke test); without it they start the local server on a free 127.0.0.1
port, serving a model the local pipeline trains. The rows are the test split the repo's own
preprocess code computes (seeded), so no artifact has to travel between stages.

MAX_LATENCY_MS bounds the 90th percentile of single-row requests, after one warm-up request.
"""

import http.client
import json
import os
import threading
import time
from typing import NamedTuple

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import config, data, local
from {{ cookiecutter.package_name }}.steps import evaluate, preprocess

ENDPOINT_NAME = os.environ.get("ENDPOINT_NAME")
MAX_LATENCY_MS = float(os.environ.get("MAX_LATENCY_MS", "1000"))
LATENCY_SAMPLES = 20


class Answer(NamedTuple):
    """What the endpoint said: an HTTP status and the body text."""

    status: int
    body: str


@pytest.fixture(scope="module")
def test_split():
    """Features (as CSV lines) and labels of the test split."""
    table = preprocess.split(preprocess.clean(data.load_dataset()))["test"]
    labels = table[preprocess.LABEL_COLUMN].to_numpy()
    features = table.drop(columns=preprocess.LABEL_COLUMN)
    lines = [",".join(repr(float(value)) for value in row) for row in features.to_numpy()]
    return lines, labels


@pytest.fixture(scope="module")
def invoke(tmp_path_factory):
    """invoke(body, content_type="text/csv", accept="text/csv") -> Answer."""
    if ENDPOINT_NAME:
        yield from _real_endpoint()
    else:
        yield from _local_server(tmp_path_factory.mktemp("endpoint"))


def _real_endpoint():
    import boto3

    # tests/conftest.py keeps this process's AWS settings when ENDPOINT_NAME is set.
    runtime = boto3.client("sagemaker-runtime", region_name=config.AWS_REGION)

    def call(body: str, content_type: str = "text/csv", accept: str = "text/csv") -> Answer:
        try:
            response = runtime.invoke_endpoint(
                EndpointName=ENDPOINT_NAME, Body=body, ContentType=content_type, Accept=accept
            )
        except runtime.exceptions.ModelError as error:
            # The container answered with an error status: report it as a local server would.
            return Answer(error.response.get("OriginalStatusCode", 500), str(error))
        return Answer(200, response["Body"].read().decode())

    yield call


def _local_server(workdir):
    from {{ cookiecutter.package_name }}.server import make_server

    run = local.run_local_pipeline(
        data.write_dataset(workdir / "data").parent, workdir / "build", echo=lambda _: None
    )
    httpd = make_server(run.model_archive, port=0)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    host, port = httpd.server_address[:2]

    def call(body: str, content_type: str = "text/csv", accept: str = "text/csv") -> Answer:
        connection = http.client.HTTPConnection(host, port, timeout=30)
        try:
            headers = {"Content-Type": content_type, "Accept": accept}
            connection.request("POST", "/invocations", body=body, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.read().decode())
        finally:
            connection.close()

    yield call
    httpd.shutdown()
    httpd.server_close()


def scores_of(answer: Answer) -> list[float]:
    assert answer.status == 200, answer.body
    return [float(value) for value in answer.body.split(",")]


def test_every_row_gets_a_probability(invoke, test_split):
    lines, _ = test_split
    scores = scores_of(invoke("\n".join(lines)))
    assert len(scores) == len(lines)
    assert all(0.0 <= score <= 1.0 for score in scores)


def test_answers_on_the_test_split_pass_the_quality_gate(invoke, test_split):
    lines, labels = test_split
    scores = scores_of(invoke("\n".join(lines)))
    report = evaluate.quality_report(labels, np.asarray(scores))
    value = local.metric_value(report, config.QUALITY_METRIC)
    assert value >= config.QUALITY_THRESHOLD, f"{config.QUALITY_METRIC} {value:.4f}"


def test_json_answer_matches_the_csv_answer(invoke, test_split):
    lines, _ = test_split
    body = "\n".join(lines[:5])
    as_json = invoke(body, accept="application/json")
    assert as_json.status == 200, as_json.body
    assert json.loads(as_json.body) == pytest.approx(scores_of(invoke(body)))


@pytest.mark.parametrize(
    "body", ["1.0,2.0,3.0", "not,a,number", "1.0," * 40 + "1.0"], ids=["short", "text", "long"]
)
def test_malformed_rows_are_client_errors(invoke, body):
    answer = invoke(body)
    assert 400 <= answer.status < 500, answer


def test_single_row_latency(invoke, test_split):
    lines, _ = test_split
    scores_of(invoke(lines[0]))  # warm-up: a serverless endpoint may start a container
    latencies_ms = []
    for line in (lines * LATENCY_SAMPLES)[:LATENCY_SAMPLES]:
        started = time.perf_counter()
        scores_of(invoke(line))
        latencies_ms.append((time.perf_counter() - started) * 1000)
    p90 = sorted(latencies_ms)[int(0.9 * LATENCY_SAMPLES) - 1]
    assert p90 <= MAX_LATENCY_MS, f"p90 {p90:.0f} ms > MAX_LATENCY_MS {MAX_LATENCY_MS:.0f} ms"
