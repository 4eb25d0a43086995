"""The local inference server: the SageMaker hosting contract and 4xx answers to bad input."""

import http.client
import json
import tarfile
import threading

import pytest
import xgboost as xgb
from ml_support import TINY_FEATURES, tiny_booster, tiny_table, write_model_archive

from {{ cookiecutter.package_name }} import server
from {{ cookiecutter.package_name }}.steps.preprocess import LABEL_COLUMN

ROWS = tiny_table(rows=3).drop(columns=LABEL_COLUMN).to_numpy()
CSV_BODY = "\n".join(",".join(str(value) for value in row) for row in ROWS)


@pytest.fixture(scope="module")
def booster():
    return tiny_booster()


@pytest.fixture(scope="module")
def address(booster, tmp_path_factory):
    """host, port of a server for the tiny model, running in a thread."""
    archive = write_model_archive(tmp_path_factory.mktemp("model"), booster)
    httpd = server.make_server(archive, port=0)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield httpd.server_address[:2]
    httpd.shutdown()
    httpd.server_close()


def request(address, method: str, path: str, body: str | bytes = b"", headers=None):
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
    assert request(address, "GET", "/ping")[0] == 200


def test_csv_rows_get_one_probability_each(address, booster):
    status, content_type, body = invoke(address, CSV_BODY)
    assert (status, content_type) == (200, "text/csv")
    expected = booster.predict(xgb.DMatrix(ROWS))
    assert [float(value) for value in body.split(",")] == pytest.approx(expected.tolist())


def test_json_answer_and_default_content_type(address):
    status, content_type, body = invoke(
        address, CSV_BODY, content_type=None, accept="application/json"
    )
    assert (status, content_type) == (200, "application/json")
    scores = json.loads(body)
    assert len(scores) == len(ROWS)
    assert all(0 <= score <= 1 for score in scores)


@pytest.mark.parametrize(
    ("body", "content_type", "accept", "status", "fragment"),
    [
        ("1,2,3", "text/csv", None, 400, f"{TINY_FEATURES} feature values"),
        ("1,2,x,4", "text/csv", None, 400, "non-numeric"),
        ("", "text/csv", None, 400, "an empty body"),
        (b"\xff\xfe", "text/csv", None, 400, "not UTF-8"),
        ('{"rows": []}', "application/json", None, 415, "send text/csv"),
        (CSV_BODY, "text/csv", "text/html", 406, "text/csv or application/json"),
    ],
)
def test_bad_requests_get_a_4xx_and_one_line(address, body, content_type, accept, status, fragment):
    answer = invoke(address, body, content_type, accept)
    assert answer[0] == status
    assert fragment in answer[2]
    assert answer[2].count("\n") == 1
    # The server is still up.
    assert request(address, "GET", "/ping")[0] == 200


def test_oversized_body_is_refused_before_reading(address):
    connection = http.client.HTTPConnection(*address, timeout=10)
    connection.putrequest("POST", "/invocations")
    connection.putheader("Content-Type", "text/csv")
    connection.putheader("Content-Length", str(server.MAX_PAYLOAD_BYTES + 1))
    connection.endheaders()
    assert connection.getresponse().status == 413
    connection.close()


def test_unknown_paths_are_404(address):
    assert request(address, "GET", "/invocations")[0] == 404
    assert request(address, "POST", "/predict", CSV_BODY)[0] == 404


def test_archive_without_the_model_file_is_refused(tmp_path):
    archive = tmp_path / "model.tar.gz"
    (tmp_path / "other").write_text("x")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "other", arcname="other")
    with pytest.raises(ValueError, match="has no xgboost-model file"):
        server.make_server(archive, port=0)


def test_media_type_ignores_parameters_and_wildcards():
    assert server.media_type("text/csv; charset=utf-8", "x") == "text/csv"
    assert server.media_type("*/*", "text/csv") == "text/csv"
    assert server.media_type(None, "text/csv") == "text/csv"
