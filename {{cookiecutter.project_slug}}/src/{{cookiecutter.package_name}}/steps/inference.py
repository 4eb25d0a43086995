"""The inference module: raw records in, the probability of the positive class out.

SageMaker serves the model with this file in script mode on the framework image that
classifier.py names: the training job copies both into model.tar.gz (`code/inference.py`,
`code/classifier.py`) and the registered model sets SAGEMAKER_PROGRAM and
SAGEMAKER_SUBMIT_DIRECTORY to them. The image's model server calls model_fn once per worker,
then input_fn, predict_fn and output_fn for each request. The local server
(`make serve`) and the evaluate step run this same file, taken from the same
model.tar.gz. It imports nothing from the project package but classifier.py, and nothing
from the machine-learning library itself: the encoding and the HTTP contract hold whatever
the classifier.

docs/model.md lists the requests and answers: text/csv (a record per line, values in the
order of `transform.json`) or application/json (objects keyed by feature name), a
probability per record. A bad request gets a 4xx answer with a JSON body {"error": ...,
"error-message": one line}. The image's server (sagemaker-containers, in the XGBoost and the
scikit-learn images alike) turns any exception raised here into a 500, so a rejection
travels as a value through predict_fn to output_fn, which returns it as a WSGI response (the
image's Flask worker calls it; the local server reads its status and body).
"""

# The container's Python may be older than the project's: keep annotations unevaluated.
from __future__ import annotations

import csv
import io
import json
import math
import threading
from pathlib import Path

import numpy as np

if __package__:  # imported from the project package (the tests)
    from . import classifier
else:  # imported next to it (the image's model server, the evaluate step, the train script)
    import classifier

TRANSFORM_FILE_NAME = "transform.json"
NUMERIC = "numeric"
CATEGORICAL = "categorical"
CSV = "text/csv"
JSON = "application/json"
ANY = "*/*"
SUPPORTED_ANSWERS = (CSV, JSON)
# The answer for `Accept: */*` inside a list; a missing Accept (or exactly */*) is the
# serving stack's default (SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, application/json).
DEFAULT_ANSWER = JSON
REASONS = {400: "Bad Request", 406: "Not Acceptable", 415: "Unsupported Media Type"}


class Rejection:
    """A request that cannot be scored: an HTTP status and a one-line reason.

    It is a WSGI application, so the image's Flask worker sends it as the response.
    """

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message

    def __call__(self, environ, start_response):
        reason = REASONS.get(self.status, "Error")
        body = json.dumps({"error": reason, "error-message": self.message}).encode()
        start_response(
            f"{self.status} {reason}", [("Content-Type", JSON), ("Content-Length", str(len(body)))]
        )
        return [body]

    def __repr__(self) -> str:
        return f"Rejection({self.status}, {self.message!r})"


class Model:
    """The fitted classifier and the fitted feature transform of one model.tar.gz."""

    def __init__(self, fitted, transform: dict):
        self.fitted = fitted
        self.transform = transform
        self.features = [feature["name"] for feature in transform["features"]]
        self.kinds = [feature["kind"] for feature in transform["features"]]
        # Category value -> code, as fitted on the training split.
        self.codes = [
            {value: code for code, value in enumerate(feature.get("categories", []))}
            for feature in transform["features"]
        ]
        self._lock = threading.Lock()

    def encode(self, records: list[list]) -> np.ndarray | Rejection:
        """The feature matrix of raw records (values in feature order), or why not."""
        matrix = np.full((len(records), len(self.features)), math.nan)
        for row, record in enumerate(records):
            for column, value in enumerate(record):
                text = "" if value is None else str(value).strip()
                if not text:
                    continue
                if self.kinds[column] == CATEGORICAL:
                    # A category the training data did not have stays missing.
                    matrix[row, column] = self.codes[column].get(text, math.nan)
                    continue
                try:
                    number = float(text)
                except ValueError:
                    return Rejection(
                        400,
                        f"record {row + 1}: {self.features[column]!r} is numeric, got {text!r}",
                    )
                matrix[row, column] = number
        return matrix

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """The probability of the positive class for each row of an encoded matrix."""
        # A fitted model (an XGBoost booster) may not be safe to call from several threads
        # at once.
        with self._lock:
            return np.asarray(classifier.predict(self.fitted, matrix))


def model_fn(model_dir: str) -> Model:
    """Load the classifier and the fitted transform from the unpacked model.tar.gz."""
    model_dir = Path(model_dir)
    transform = json.loads((model_dir / TRANSFORM_FILE_NAME).read_text())
    return Model(classifier.load(model_dir), transform)


def media_type(header: str) -> str:
    """The bare media type of one Content-Type or Accept entry ('text/csv; charset=..')."""
    return header.split(";")[0].strip().lower()


def input_fn(request_body, request_content_type: str):
    """Parse the body into records (CSV: lists of values; JSON: dicts), or a Rejection."""
    content_type = media_type(request_content_type or JSON)
    if content_type not in (CSV, JSON):
        return Rejection(
            415, f"Content-Type {content_type!r} is not supported: send {CSV} or {JSON}"
        )
    if isinstance(request_body, (bytes, bytearray)):
        try:
            request_body = bytes(request_body).decode("utf-8")
        except UnicodeDecodeError:
            return Rejection(400, "the body is not UTF-8 text")
    if not request_body.strip():
        return Rejection(400, f"the body is empty: send one or more {content_type} records")
    if content_type == CSV:
        try:
            rows = list(csv.reader(io.StringIO(request_body), strict=True))
        except csv.Error as error:
            return Rejection(400, f"the body is not valid CSV ({error})")
        # Blank lines (a trailing newline) separate nothing: skip them.
        return [row for row in rows if row]
    try:
        document = json.loads(request_body)
    except ValueError as error:
        return Rejection(400, f"the body is not valid JSON ({error})")
    records = document if isinstance(document, list) else [document]
    if not records or not all(isinstance(record, dict) for record in records):
        return Rejection(400, "send a JSON object, or a list of objects, keyed by feature name")
    return records


def records_in_feature_order(records: list, model: Model) -> list[list] | Rejection:
    """CSV rows checked for their length; JSON objects checked for their keys and ordered."""
    expected = len(model.features)
    ordered = []
    for number, record in enumerate(records, start=1):
        if isinstance(record, dict):
            unknown = sorted(set(record) - set(model.features))
            missing = [name for name in model.features if name not in record]
            if unknown or missing:
                problem = f"unknown keys {unknown}" if unknown else f"missing keys {missing}"
                return Rejection(
                    400, f"record {number} has {problem}: send the keys {model.features}"
                )
            ordered.append([record[name] for name in model.features])
        elif len(record) != expected:
            return Rejection(
                400,
                f"record {number} has {len(record)} values, expected {expected}: "
                f"{', '.join(model.features)}",
            )
        else:
            ordered.append(record)
    return ordered


def predict_fn(input_data, model: Model):
    """The probability of the positive class for each record (a Rejection passes through)."""
    if isinstance(input_data, Rejection):
        return input_data
    records = records_in_feature_order(input_data, model)
    if isinstance(records, Rejection):
        return records
    matrix = model.encode(records)
    if isinstance(matrix, Rejection):
        return matrix
    return model.predict(matrix)


def answer_type(accept: str) -> str | None:
    """The first supported media type an Accept header lists (None if there is none)."""
    for entry in (accept or ANY).split(","):
        wanted = media_type(entry)
        if wanted in SUPPORTED_ANSWERS:
            return wanted
        if wanted == ANY:
            return DEFAULT_ANSWER
    return None


def output_fn(prediction, accept: str):
    """(body, media type) for the probabilities; a Rejection is returned as it is."""
    if isinstance(prediction, Rejection):
        return prediction
    answer = answer_type(accept)
    if answer is None:
        return Rejection(406, f"Accept {accept!r} is not supported: ask for {CSV} or {JSON}")
    scores = [float(score) for score in prediction]
    if answer == CSV:
        return "".join(f"{score!r}\n" for score in scores), CSV
    return json.dumps({"predictions": [{"score": score} for score in scores]}), JSON
