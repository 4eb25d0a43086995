"""A local inference server with the SageMaker hosting contract, for a trained model.tar.gz.

It runs the inference module inside the archive (`code/inference.py`) the way the SageMaker
XGBoost image serves it in script mode, and answers as that image's serving stack (nginx,
then the sagemaker-containers Flask worker) does: docs/model.md lists the answers. One
difference, on purpose: a body over 6 MB gets 413 here. The image itself sets no limit;
SageMaker's InvokeEndpoint refuses such a body before it reaches the container.
"""

import json
import os
import shutil
import sys
import tempfile
import traceback
from http import HTTPStatus
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from .steps.evaluate import unpack_model

DEFAULT_HOST = "127.0.0.1"
# SageMaker real-time endpoints accept request bodies up to 6 MB.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# A refused body up to this size is read after the answer, so that the client gets it.
MAX_DRAINED_BYTES = 8 * MAX_PAYLOAD_BYTES
JSON = "application/json"
# The serving stack hands the body to input_fn as text for exactly these types.
TEXT_TYPES = (JSON, "text/csv")
DEFAULT_ACCEPT_VARIABLE = "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"
# The methods each path of the contract answers.
ROUTES = {"/ping": ("GET", "HEAD"), "/invocations": ("POST",)}


def content_length(environ: dict) -> int | None:
    """The request's Content-Length (0 if absent), None if it is not a length."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    return length if length >= 0 else None


def reply(start_response, status: HTTPStatus, body: bytes, content_type: str, unread=None):
    """Send one answer; then, given the environ of a request whose body is unread, read and
    drop that body, so that a client still sending it gets the answer rather than a reset."""
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    start_response(f"{status.value} {status.phrase}", headers)
    yield body  # the server writes and flushes it before asking for more
    length = (content_length(unread) or 0) if unread else 0
    if length > MAX_DRAINED_BYTES:
        return  # too much to read: the connection closes after the answer anyway
    while length > 0:
        chunk = unread["wsgi.input"].read(min(length, 1 << 20))
        if not chunk:
            break
        length -= len(chunk)


def reply_error(start_response, status: HTTPStatus, message: str, unread=None):
    """An error answer with the image's JSON body."""
    body = json.dumps({"error": status.phrase, "error-message": message}).encode()
    return reply(start_response, status, body, JSON, unread)


class RequestHandler(WSGIRequestHandler):
    """wsgiref's request handler, with no access log and no Content-Type the client omits."""

    def get_environ(self) -> dict:
        """The request's WSGI environ; CONTENT_TYPE only if the request has one."""
        environ = super().get_environ()
        if self.headers.get("Content-Type") is None:
            del environ["CONTENT_TYPE"]  # wsgiref's text/plain; the image's worker reads JSON
        return environ

    def log_message(self, format: str, *args) -> None:
        """Nothing: a line per request would drown the test and serve output."""


class ModelServer(ThreadingMixIn, WSGIServer):
    """A server for the model in archive, unpacked into a private directory: bound, not yet
    serving (port 0 picks a free one)."""

    daemon_threads = True

    def __init__(self, archive: Path, port: int, host: str = DEFAULT_HOST):
        self.default_accept = os.environ.get(DEFAULT_ACCEPT_VARIABLE, JSON)
        self.model_dir = Path(tempfile.mkdtemp(prefix="model-"))
        try:
            # The evaluate step loads the model the same way, so the gate and this server
            # judge the same code.
            self.module, self.model = unpack_model(Path(archive), self.model_dir)
            super().__init__((host, port), RequestHandler)
        except BaseException:
            shutil.rmtree(self.model_dir, ignore_errors=True)
            raise
        self.set_app(self.application)

    def application(self, environ: dict, start_response):
        """The WSGI application: ping, invocations, or the 404 and 405 the image answers."""
        path, method = environ["PATH_INFO"], environ["REQUEST_METHOD"]
        allowed = ROUTES.get(path)
        if allowed is None:
            # As nginx in front of the image answers any other path.
            return reply(
                start_response, HTTPStatus.NOT_FOUND, b"{}", "application/octet-stream", environ
            )
        if method not in allowed:
            return reply_error(
                start_response,
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{method} {path} is not allowed",
                environ,
            )
        if path == "/ping":
            # The model is loaded, or the server would not have started.
            return reply(start_response, HTTPStatus.OK, b"", JSON)
        length = content_length(environ)
        if length is None:
            return reply_error(
                start_response, HTTPStatus.BAD_REQUEST, "invalid Content-Length header"
            )
        if length > MAX_PAYLOAD_BYTES:
            message = f"the body is {length} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            return reply_error(
                start_response, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message, environ
            )
        body = environ["wsgi.input"].read(length)
        # The worker's defaults: JSON in; for a missing or */* Accept, its default answer.
        content_type = environ.get("HTTP_CONTENTTYPE") or environ.get("CONTENT_TYPE") or JSON
        accept = environ.get("HTTP_ACCEPT")
        if not accept or accept == "*/*":
            accept = self.default_accept
        if content_type in TEXT_TYPES:
            body = body.decode("utf-8", errors="replace")
        try:  # input_fn, predict_fn and output_fn, as the image's worker chains them
            data = self.module.input_fn(body, content_type)
            prediction = self.module.predict_fn(data, self.model)
            result = self.module.output_fn(prediction, accept)
        except Exception as error:  # the image answers any error with 500
            traceback.print_exc(file=sys.stderr)
            message = f"{type(error).__name__}: {error}"
            return reply_error(start_response, HTTPStatus.INTERNAL_SERVER_ERROR, message)
        if not isinstance(result, tuple):  # a rejection: a WSGI application, as in the image
            return result(environ, start_response)
        answer, media_type = result
        # Flask sends text types with their charset.
        if media_type.startswith("text/") and "charset" not in media_type:
            media_type += "; charset=utf-8"
        if isinstance(answer, str):
            answer = answer.encode()
        return reply(start_response, HTTPStatus.OK, answer, media_type)

    def server_close(self) -> None:
        """Stop listening and remove the unpacked model."""
        super().server_close()
        shutil.rmtree(self.model_dir, ignore_errors=True)
