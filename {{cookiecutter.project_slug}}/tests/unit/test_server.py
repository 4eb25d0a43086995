"""The local inference server: the hosting contract of the XGBoost image's serving stack.

The expected answers are those of the image (aws/sagemaker-xgboost-container, release 3.0-5,
script mode) around the project's inference module: the Content-Type and Accept defaults of
its worker, a WSGI response's own status, 404 `{}` from its nginx for other paths.
"""

import http.client
import json
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from ml_support import FEATURES, csv_lines, tiny_table, train_tiny_model

from {{ cookiecutter.package_name }} import server

ROWS = tiny_table(rows=3)
CSV_BODY = "\n".join(csv_lines(ROWS))
RECORDS = ROWS[FEATURES].to_dict(orient="records")


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("tiny")).model_archive


@contextmanager
def serving(httpd) -> Iterator[tuple[str, int]]:
    """host, port of the server, running in a thread until the block ends."""
    # shutdown() waits for the loop's next poll: 0.5 s a server with the default interval.
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield httpd.server_address[:2]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def address(archive):
    """host, port of a server for the tiny model."""
    with serving(server.ModelServer(archive, port=0)) as address:
        yield address


def request(address, method: str, path: str, body: str | bytes | None = None, headers=None):
    """Status, Content-Type and body text of one request."""
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read().decode()
    finally:
        connection.close()


def invoke(address, body, content_type="text/csv", accept=None):
    headers = {"Content-Type": content_type} if content_type else {}
    if accept:
        headers["Accept"] = accept
    return request(address, "POST", "/invocations", body, headers)


def test_ping(address):
    assert request(address, "GET", "/ping") == (200, "application/json", "")


def test_csv_rows_get_one_probability_per_line(address):
    status, content_type, body = invoke(address, CSV_BODY, accept="text/csv")
    assert (status, content_type) == (200, "text/csv; charset=utf-8")
    scores = [float(line) for line in body.splitlines()]
    assert len(scores) == len(ROWS) and all(0 <= score <= 1 for score in scores)


def test_without_accept_the_answer_is_json(address):
    status, content_type, body = invoke(address, CSV_BODY)
    assert (status, content_type) == (200, "application/json")
    assert len(json.loads(body)["predictions"]) == len(ROWS)


def test_without_content_type_the_body_is_read_as_json(address):
    as_json = invoke(address, json.dumps(RECORDS), content_type=None, accept="text/csv")
    as_csv = invoke(address, CSV_BODY, accept="text/csv")
    assert as_json[0] == 200 and as_json[2] == as_csv[2]
    # A CSV body without a Content-Type is malformed JSON.
    assert invoke(address, CSV_BODY, content_type=None)[0] == 400


def test_the_contenttype_header_counts_too(address):
    headers = {"ContentType": "text/csv", "Accept": "text/csv"}
    assert request(address, "POST", "/invocations", CSV_BODY, headers)[0] == 200


def test_the_default_accept_follows_the_serving_variable(archive, monkeypatch):
    monkeypatch.setenv(server.DEFAULT_ACCEPT_VARIABLE, "text/csv")
    with serving(server.ModelServer(archive, port=0)) as address:
        status, content_type, _ = invoke(address, CSV_BODY, accept="*/*")
    assert (status, content_type) == (200, "text/csv; charset=utf-8")


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "fragment"),
    [
        (",".join(["1"] * (len(FEATURES) - 1)), "text/csv", None, 400, "expected"),
        (",".join(["1"] * (len(FEATURES) + 1)), "text/csv", None, 400, "expected"),
        ("", "text/csv", None, 400, "the body is empty"),
        ("{not json", "application/json", None, 400, "not valid JSON"),
        ("0 1:2.5", "text/libsvm", None, 415, "text/csv or application/json"),
        (CSV_BODY, "text/csv", "text/html", 406, "text/csv or application/json"),
    ],
    ids=["short", "long", "empty", "bad-json", "libsvm", "accept-html"],
)
def test_bad_requests_get_a_4xx_with_a_one_line_reason(
    address, body, content_type, accept, status, fragment
):
    answer = invoke(address, body, content_type, accept)
    assert answer[:2] == (status, "application/json")
    message = json.loads(answer[2])["error-message"]
    assert fragment in message and "\n" not in message
    # The server is still up.
    assert request(address, "GET", "/ping")[0] == 200


def test_oversized_body_gets_413_before_it_is_sent(address):
    connection = http.client.HTTPConnection(*address, timeout=10)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "text/csv")
    connection.putheader("Content-Length", str(server.MAX_PAYLOAD_BYTES + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()


def test_oversized_body_sent_whole_still_gets_413(address):
    body = b"1\n" * (server.MAX_PAYLOAD_BYTES // 2 + 1)
    assert invoke(address, body)[0] == 413


def test_other_paths_are_404_and_other_methods_405(address):
    assert request(address, "POST", "/predict", CSV_BODY)[:3:2] == (404, "{}")
    assert request(address, "GET", "/invocations")[0] == 405
    assert request(address, "POST", "/ping", "x")[0] == 405


def test_an_error_in_the_inference_module_is_a_500(archive, monkeypatch):
    httpd = server.ModelServer(archive, port=0)
    monkeypatch.setattr(httpd, "model", None)  # predict_fn now fails
    with serving(httpd) as address:
        status, _, _ = invoke(address, CSV_BODY)
    assert status == 500


def test_archive_without_inference_code_is_refused(tmp_path):
    archive = tmp_path / "model.tar.gz"
    (tmp_path / "xgboost-model").write_text("x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "xgboost-model", arcname="xgboost-model")
    with pytest.raises(ValueError, match=r"has no code/inference\.py"):
        server.ModelServer(archive, port=0)


def test_missing_archive_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no model archive"):
        server.ModelServer(tmp_path / "missing.tar.gz", port=0)
