"""A local inference server with the SageMaker hosting contract, for a trained model.tar.gz.

It answers like the SageMaker XGBoost container in algorithm mode (the way the endpoints serve
the same artifact): `GET /ping`; `POST /invocations` with `text/csv` rows of features (no
label, no header); the response is the probability of the positive class for each row,
comma-separated (`Accept: text/csv`, the default) or a JSON list (`Accept: application/json`).
Bad requests get a 4xx status and a one-line message; the server keeps running.
"""

import csv
import io
import json
import math
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import xgboost as xgb

from .steps.evaluate import load_booster

DEFAULT_HOST = "127.0.0.1"
# The same request size limit as SageMaker real-time endpoints.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
CSV = "text/csv"
JSON = "application/json"


class BadRequestError(Exception):
    """The request cannot be scored; carries the HTTP status to answer with."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class Model:
    """A booster loaded from model.tar.gz; predictions are serialised (xgboost is not
    thread-safe for prediction on one booster)."""

    def __init__(self, archive: Path):
        self.booster = load_booster(archive)
        self.num_features = self.booster.num_features()
        self._lock = threading.Lock()

    def parse_csv(self, body: bytes) -> np.ndarray:
        """Rows of feature values; an empty field is a missing value, as in the container."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadRequestError(HTTPStatus.BAD_REQUEST, "the body is not UTF-8 text") from error
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
        if not rows:
            raise BadRequestError(HTTPStatus.BAD_REQUEST, self._expected("an empty body"))
        values = []
        for number, row in enumerate(rows, start=1):
            if len(row) != self.num_features:
                raise BadRequestError(
                    HTTPStatus.BAD_REQUEST, self._expected(f"row {number} has {len(row)} values")
                )
            try:
                values.append([float(cell) if cell.strip() else math.nan for cell in row])
            except ValueError as error:
                raise BadRequestError(
                    HTTPStatus.BAD_REQUEST, f"row {number} has a non-numeric value ({error})"
                ) from error
        return np.asarray(values, dtype=float)

    def predict(self, features: np.ndarray) -> list[float]:
        """Probability of the positive class for each row."""
        with self._lock:
            return self.booster.predict(xgb.DMatrix(features, missing=math.nan)).tolist()

    def _expected(self, problem: str) -> str:
        return f"{problem}: send one text/csv row of {self.num_features} feature values per line"


def media_type(header: str | None, default: str) -> str:
    """The bare media type of a Content-Type or Accept header ('text/csv; charset=..')."""
    if not header or header.strip() in ("", "*/*"):
        return default
    return header.split(",")[0].split(";")[0].strip().lower()


def make_handler(model: Model) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one loaded model."""

    class InvocationHandler(BaseHTTPRequestHandler):
        server_version = "LocalSageMakerModel/1.0"

        def do_GET(self) -> None:
            """GET /ping: 200 while the model is loaded (it is, or the server would not start)."""
            if self.path == "/ping":
                self._reply(HTTPStatus.OK, b"", CSV)
            else:
                self._reply_error(HTTPStatus.NOT_FOUND, "only GET /ping and POST /invocations")

        def do_POST(self) -> None:
            """POST /invocations: score text/csv rows."""
            if self.path != "/invocations":
                self._reply_error(HTTPStatus.NOT_FOUND, "only GET /ping and POST /invocations")
                return
            try:
                body, accept = self._read_request()
                predictions = model.predict(model.parse_csv(body))
            except BadRequestError as error:
                self._reply_error(error.status, str(error))
                return
            if accept == JSON:
                self._reply(HTTPStatus.OK, json.dumps(predictions).encode(), JSON)
            else:
                self._reply(HTTPStatus.OK, ",".join(map(str, predictions)).encode(), CSV)

        def _read_request(self) -> tuple[bytes, str]:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if length < 0:
                raise BadRequestError(HTTPStatus.BAD_REQUEST, "invalid Content-Length header")
            if length > MAX_PAYLOAD_BYTES:
                raise BadRequestError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    f"the body is {length} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                )
            # Read the body before judging the headers, so the client always gets the answer.
            body = self.rfile.read(length)
            content_type = media_type(self.headers.get("Content-Type"), CSV)
            if content_type != CSV:
                raise BadRequestError(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    f"Content-Type {content_type!r} is not supported: send text/csv",
                )
            accept = media_type(self.headers.get("Accept"), CSV)
            if accept not in (CSV, JSON):
                raise BadRequestError(
                    HTTPStatus.NOT_ACCEPTABLE,
                    f"Accept {accept!r} is not supported: ask for text/csv or application/json",
                )
            return body, accept

        def _reply_error(self, status: HTTPStatus, message: str) -> None:
            self._reply(status, (message + "\n").encode(), "text/plain")

        def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            """No access log: a request per line would drown the test and serve output."""

    return InvocationHandler


def make_server(archive: Path, port: int, host: str = DEFAULT_HOST) -> ThreadingHTTPServer:
    """A server for the model in archive, bound but not yet serving (port 0 picks a free one)."""
    server = ThreadingHTTPServer((host, port), make_handler(Model(Path(archive))))
    server.daemon_threads = True
    return server
