"""A local inference server with the SageMaker hosting contract, for a trained model.tar.gz.

It runs the inference module inside the archive (`code/inference.py`: model_fn, input_fn,
predict_fn, output_fn) the way the SageMaker XGBoost image serves it in script mode, and
answers as that image's serving stack (nginx, then the sagemaker-containers Flask worker):
- `GET /ping`: 200 with an empty body once the model is loaded.
- `POST /invocations`: the Content-Type is the `ContentType` or `Content-Type` header, else
  application/json; the Accept is the `Accept` header unless missing or `*/*`, else
  SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT (application/json); the body reaches input_fn as text
  for exactly `text/csv` or `application/json`, else as bytes.
- a tuple (body, media type) from output_fn is a 200; a rejection is its own status and
  JSON body; an exception in the module is a 500.
- other paths: 404 with the body `{}`; another method on /ping or /invocations: 405.
One difference, on purpose: a body over 6 MB gets 413 here. The image itself sets no limit;
SageMaker's InvokeEndpoint refuses such a body before it reaches the container.
"""

import json
import os
import shutil
import sys
import tempfile
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .steps.evaluate import unpack_model

DEFAULT_HOST = "127.0.0.1"
# SageMaker real-time endpoints accept request bodies up to 6 MB.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# A refused body up to this size is read first, so that the client gets the answer.
MAX_DRAINED_BYTES = 8 * MAX_PAYLOAD_BYTES
JSON = "application/json"
CSV = "text/csv"
# The serving stack hands the body to input_fn as text for exactly these types.
TEXT_TYPES = (JSON, CSV)
DEFAULT_ACCEPT_VARIABLE = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
# The methods each path of the contract answers.
ROUTES = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",)}


class InvocationHandler(BaseHTTPRequestHandler):
    """One request to a ModelServer, answered as the image's serving stack answers it."""

    server: "ModelServer"
    server_version = "LocalSageMakerModel/2.0"

    def _route(self) -> None:
        path = self.path.split("?")[0]
        allowed = ROUTES.get(path)
        if allowed is None:
            self._drain()
            # As nginx in front of the image answers any other path.
            self._reply(HTTPStatus.NOT_FOUND, b"{}", "application/octet-stream")
        elif self.command not in allowed:
            self._drain()
            self._reply_error(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} {path} is not allowed"
            )
        elif path == "/ping":
            # The model is loaded, or the server would not have started.
            self._reply(HTTPStatus.OK, b"", JSON, send_body=self.command != "HEAD")
        else:
            self._invoke()

    # Every method is routed, so that the ones outside the contract get the image's 405.
    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _route

    def _invoke(self) -> None:
        length = self._content_length()
        if length is None:
            self._reply_error(HTTPStatus.BAD_REQUEST, "invalid Content-Length header")
            return
        if length > MAX_PAYLOAD_BYTES:
            # Answer first: a client that waits for the answer before sending the body
            # gets it at once; then read what it sends, so it does not get a reset.
            self.close_connection = True
            self._reply_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body is {length} bytes; the limit is {MAX_PAYLOAD_BYTES}",
            )
            self.wfile.flush()
            self._drain()
            return
        body = self.rfile.read(length)
        content_type = self.headers.get("ContentType") or self.headers.get("Content-Type") or JSON
        accept = self.headers.get("Accept")
        if not accept or accept == "*/*":
            accept = self.server.default_accept
        if content_type in TEXT_TYPES:
            body = body.decode("utf-8", errors="replace")
        try:
            result = self.server.invoke(body, content_type, accept)
        except Exception as error:  # the image answers any error with 500
            traceback.print_exc(file=sys.stderr)
            self._reply_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}")
            return
        if not isinstance(result, tuple):
            self._reply_wsgi(result)
            return
        answer, media_type = result
        # Flask sends text types with their charset.
        if media_type.startswith("text/") and "charset" not in media_type:
            media_type += "; charset=utf-8"
        if isinstance(answer, str):
            answer = answer.encode()
        self._reply(HTTPStatus.OK, answer, media_type)

    def _reply_wsgi(self, application) -> None:
        """Send what a WSGI application answers (the image's Flask worker calls it)."""
        started = {}

        def start_response(status: str, headers: list, exc_info=None) -> None:
            started.update(status=status, headers=dict(headers))

        body = b"".join(application({"REQUEST_METHOD": "POST"}, start_response))
        status = HTTPStatus(int(started["status"].split()[0]))
        self._reply(status, body, started["headers"].get("Content-Type", JSON))

    def _content_length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        return length if length >= 0 else None

    def _drain(self) -> None:
        """Read a request body nobody will use, so the client always gets the answer."""
        length = self._content_length() or 0
        if length > MAX_DRAINED_BYTES:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _reply_error(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"error": status.phrase, "error-message": message}).encode()
        self._reply(status, body, JSON)

    def _reply(
        self, status: HTTPStatus, body: bytes, content_type: str, send_body: bool = True
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        """No access log: a request per line would drown the test and serve output."""


class ModelServer(ThreadingHTTPServer):
    """The model of one model.tar.gz, unpacked into a private directory and served."""

    daemon_threads = True

    def __init__(self, archive: Path, address: tuple[str, int]):
        self.default_accept = os.environ.get(DEFAULT_ACCEPT_VARIABLE, JSON)
        self.model_dir = Path(tempfile.mkdtemp(prefix="model-"))
        try:
            # The evaluate step loads the model the same way, so the gate and this server
            # judge the same code.
            self.module, self.model = unpack_model(Path(archive), self.model_dir)
            super().__init__(address, InvocationHandler)
        except BaseException:
            shutil.rmtree(self.model_dir, ignore_errors=True)
            raise

    def invoke(self, body, content_type: str, accept: str):
        """input_fn, predict_fn and output_fn, as the image's worker chains them."""
        data = self.module.input_fn(body, content_type)
        prediction = self.module.predict_fn(data, self.model)
        return self.module.output_fn(prediction, accept)

    def server_close(self) -> None:
        """Stop listening and remove the unpacked model."""
        super().server_close()
        shutil.rmtree(self.model_dir, ignore_errors=True)


def make_server(archive: Path, port: int, host: str = DEFAULT_HOST) -> ModelServer:
    """A server for the model in archive, bound but not yet serving (port 0 picks a free one)."""
    return ModelServer(archive, (host, port))
