"""Endpoint contract tests: the same assertions for any endpoint that serves the model.

Which endpoint:
- ENDPOINT_NAME set: that SageMaker endpoint, through sagemaker-runtime InvokeEndpoint (the
  staging test and the production smoke test);
- ENDPOINT_URL set (http://host:port): any server that follows the SageMaker hosting
  contract, for example the XGBoost image itself run under Docker with model.tar.gz
  unpacked into /opt/ml/model;
- neither: the local server (the command line's `serve`) on a free 127.0.0.1 port, serving
  a model the local pipeline trains here.

The records are the test split the repo's own preprocess code computes from the data loader
(seeded), so no artifact has to travel between stages; every expectation comes from the
schema. MAX_LATENCY_MS bounds the 90th percentile of single-record requests, after one
warm-up request.
"""

import csv
import http.client
import io
import json
import os
import threading
import time
import urllib.parse
from typing import NamedTuple

import numpy as np
import pytest

from {{ cookiecutter.package_name }} import config, data, local
from {{ cookiecutter.package_name }}.steps import data_schema, evaluate, preprocess

ENDPOINT_NAME = os.environ.get("ENDPOINT_NAME")
ENDPOINT_URL = os.environ.get("ENDPOINT_URL")
MAX_LATENCY_MS = float(os.environ.get("MAX_LATENCY_MS", "1000"))
LATENCY_SAMPLES = 20
FEATURES = list(data_schema.FEATURES)
NUMERIC = [name for name, kind in data_schema.FEATURES.items() if kind == data_schema.NUMERIC]
CSV, JSON = "text/csv", "application/json"


class Answer(NamedTuple):
    """What the endpoint said: an HTTP status and the body text."""

    status: int
    body: str


class SplitRecords(NamedTuple):
    """The test split as request records and 0/1 labels."""

    records: list[dict]
    labels: np.ndarray

    def csv_body(self, start: int = 0, stop: int | None = None) -> str:
        """Records as text/csv lines, values in the schema's feature order (quoted as needed)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for record in self.records[start:stop]:
            writer.writerow(["" if record[name] is None else record[name] for name in FEATURES])
        return buffer.getvalue()


@pytest.fixture(scope="module")
def test_split() -> SplitRecords:
    """The records and labels of the test split, as the preprocess step cuts it."""
    # The table as the preprocess step reads the CSV file: values as text.
    table = preprocess.read_csv_text(io.BytesIO(data.dataset_csv_bytes()))
    labelled = preprocess.label_rows(
        table, data_schema.LABEL, str(data_schema.POSITIVE_CLASS), str(data_schema.NEGATIVE_CLASS)
    )
    test = preprocess.split(labelled)["test"]
    records = [
        {name: (value if value != "" else None) for name, value in row.items()}
        for row in test[FEATURES].to_dict(orient="records")
    ]
    return SplitRecords(records, test[data_schema.LABEL].to_numpy())


@pytest.fixture(scope="module")
def invoke(tmp_path_factory):
    """invoke(body, content_type="text/csv", accept="text/csv") -> Answer."""
    if ENDPOINT_NAME:
        yield from _sagemaker_endpoint()
    elif ENDPOINT_URL:
        yield _http_endpoint(ENDPOINT_URL)
    else:
        yield from _local_server(tmp_path_factory.mktemp("endpoint"))


def _sagemaker_endpoint():
    import boto3
    from botocore.exceptions import ClientError

    # tests/conftest.py keeps this process's AWS settings when ENDPOINT_NAME is set.
    runtime = boto3.client("sagemaker-runtime", region_name=config.AWS_REGION)

    def call(body: str, content_type: str = CSV, accept: str = CSV) -> Answer:
        try:
            response = runtime.invoke_endpoint(
                EndpointName=ENDPOINT_NAME, Body=body, ContentType=content_type, Accept=accept
            )
        except runtime.exceptions.ModelError as error:
            # The container answered with an error status: report that status.
            return Answer(error.response.get("OriginalStatusCode", 500), str(error))
        except ClientError as error:
            # SageMaker refused the request before the container saw it (ValidationError).
            return Answer(error.response["ResponseMetadata"]["HTTPStatusCode"], str(error))
        return Answer(200, response["Body"].read().decode())

    yield call


def _http_endpoint(url: str):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise pytest.UsageError(f"ENDPOINT_URL={url!r}: use http://host:port")

    def call(body: str, content_type: str = CSV, accept: str = CSV) -> Answer:
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
        try:
            headers = {"Content-Type": content_type, "Accept": accept}
            connection.request("POST", "/invocations", body=body.encode(), headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.read().decode())
        finally:
            connection.close()

    return call


def _local_server(workdir):
    from {{ cookiecutter.package_name }}.server import ModelServer

    run = local.run_local_pipeline(
        data.write_dataset(workdir / "data").parent, workdir / "build", echo=lambda _: None
    )
    httpd = ModelServer(run.model_archive, port=0)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    host, port = httpd.server_address[:2]
    yield _http_endpoint(f"http://{host}:{port}")
    httpd.shutdown()
    httpd.server_close()


def csv_scores(answer: Answer) -> list[float]:
    """The probabilities of a text/csv answer: one per line."""
    assert answer.status == 200, answer.body
    return [float(line) for line in answer.body.splitlines()]


def json_scores(answer: Answer) -> list[float]:
    """The probabilities of an application/json answer: {"predictions": [{"score": p}]}."""
    assert answer.status == 200, answer.body
    return [item["score"] for item in json.loads(answer.body)["predictions"]]


def test_every_record_gets_a_probability(invoke, test_split):
    scores = csv_scores(invoke(test_split.csv_body()))
    assert len(scores) == len(test_split.records)
    assert all(0.0 <= score <= 1.0 for score in scores)


def test_answers_on_the_test_split_pass_the_quality_gate(invoke, test_split):
    scores = csv_scores(invoke(test_split.csv_body()))
    report = evaluate.quality_report(test_split.labels, np.asarray(scores))
    value = local.metric_value(report, config.QUALITY_METRIC)
    assert value >= config.QUALITY_THRESHOLD, f"{config.QUALITY_METRIC} {value:.4f}"


def test_json_records_get_the_csv_answers(invoke, test_split):
    records = test_split.records[:5]
    as_json = json_scores(invoke(json.dumps(records), content_type=JSON, accept=JSON))
    assert as_json == csv_scores(invoke(test_split.csv_body(0, 5)))
    one = json_scores(invoke(json.dumps(records[0]), content_type=JSON, accept=JSON))
    assert one == as_json[:1]


def malformed_requests() -> dict[str, tuple[str, str, str]]:
    """Name -> (body, content type, accept) of requests the endpoint must refuse."""
    width = len(FEATURES)
    requests = {
        "short row": (",".join(["1"] * (width - 1)), CSV, CSV),
        "long row": (",".join(["1"] * (width + 1)), CSV, CSV),
        "empty body": ("", CSV, CSV),
        "malformed json": ("{", JSON, JSON),
        "unknown json key": (json.dumps({"not_a_feature": 1}), JSON, JSON),
        "libsvm": ("0 1:1", "text/libsvm", CSV),
        "unsupported accept": (",".join(["1"] * width), CSV, "application/xml"),
    }
    if NUMERIC:
        row = ["not-a-number" if name == NUMERIC[0] else "1" for name in FEATURES]
        requests["non-numeric"] = (",".join(row), CSV, CSV)
    return requests


@pytest.mark.parametrize("request_name", list(malformed_requests()))
def test_malformed_requests_are_client_errors(invoke, request_name):
    answer = invoke(*malformed_requests()[request_name])
    assert 400 <= answer.status < 500, answer


def test_single_record_latency(invoke, test_split):
    body = test_split.csv_body(0, 1)
    csv_scores(invoke(body))  # warm-up: a serverless endpoint may start a container
    latencies_ms = []
    for _ in range(LATENCY_SAMPLES):
        started = time.perf_counter()
        csv_scores(invoke(body))
        latencies_ms.append((time.perf_counter() - started) * 1000)
    p90 = sorted(latencies_ms)[int(0.9 * LATENCY_SAMPLES) - 1]
    assert p90 <= MAX_LATENCY_MS, f"p90 {p90:.0f} ms > MAX_LATENCY_MS {MAX_LATENCY_MS:.0f} ms"
