"""The inference module's functions, called as the image's model server calls them."""

import json
import math

import numpy as np
import pytest
from ml_support import CATEGORICAL, FEATURES, NUMERIC, csv_lines, tiny_table, train_tiny_model

from {{ cookiecutter.package_name }}.steps import inference

ROWS = tiny_table(rows=4, seed=1)
LINES = csv_lines(ROWS)
RECORDS = ROWS[FEATURES].to_dict(orient="records")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    run = train_tiny_model(tmp_path_factory.mktemp("tiny"))
    return inference.model_fn(str(run.build_dir / "training" / "model"))


def transform(model, body, content_type="text/csv", accept="text/csv"):
    """input_fn, predict_fn, output_fn chained, as the image's worker does."""
    data = inference.input_fn(body, content_type)
    return inference.output_fn(inference.predict_fn(data, model), accept)


def scores(answer) -> list[float]:
    body, media_type = answer
    if media_type == inference.CSV:
        return [float(line) for line in body.splitlines()]
    return [item["score"] for item in json.loads(body)["predictions"]]


def test_csv_answer_has_one_probability_per_line(model):
    body, media_type = transform(model, "\n".join(LINES))
    assert media_type == "text/csv"
    assert body.endswith("\n") and len(body.splitlines()) == len(LINES)
    assert all(0 <= score <= 1 for score in scores((body, media_type)))


def test_json_records_score_as_the_csv_rows(model):
    as_csv = scores(transform(model, "\n".join(LINES)))
    as_json = transform(model, json.dumps(RECORDS), "application/json", "application/json")
    assert as_json[1] == "application/json"
    assert scores(as_json) == as_csv
    single = transform(model, json.dumps(RECORDS[0]), "application/json", "application/json")
    assert scores(single) == as_csv[:1]


def test_text_bytes_quotes_blank_lines_and_charset_are_all_read_alike(model):
    expected = scores(transform(model, "\n".join(LINES)))
    quoted = "\n".join(",".join(f'"{value}"' for value in line.split(",")) for line in LINES)
    variants = [
        ("\n".join(LINES).encode(), "text/csv"),
        (quoted, "text/csv"),
        ("\n\n" + "\n\n".join(LINES) + "\n\n", "text/csv"),
        ("\r\n".join(LINES), "text/csv; charset=utf-8"),
    ]
    for body, content_type in variants:
        assert scores(transform(model, body, content_type)) == expected, content_type


def test_an_empty_field_is_a_missing_value(model):
    blank = ["", *LINES[0].split(",")[1:]]
    explicit = transform(model, json.dumps({**RECORDS[0], FEATURES[0]: None}), "application/json")
    assert scores(transform(model, ",".join(blank))) == scores(explicit)


@pytest.mark.skipif(not CATEGORICAL, reason="the schema declares no categorical feature")
def test_an_unseen_category_scores_as_missing(model):
    unseen = {**RECORDS[0], CATEGORICAL[0]: "never-seen-in-training"}
    missing = {**RECORDS[0], CATEGORICAL[0]: None}
    as_unseen = transform(model, json.dumps(unseen), "application/json")
    assert scores(as_unseen) == scores(transform(model, json.dumps(missing), "application/json"))


def test_encode_keeps_the_feature_order_and_codes(model):
    matrix = model.encode([[RECORDS[0][name] for name in FEATURES]])
    for column, feature in enumerate(model.transform["features"]):
        value = RECORDS[0][feature["name"]]
        if feature["kind"] == inference.NUMERIC:
            assert matrix[0, column] == pytest.approx(float(value))
        elif str(value) in feature["categories"]:
            assert matrix[0, column] == feature["categories"].index(str(value))
        else:
            assert math.isnan(matrix[0, column])


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        ("", "text/csv", 400, "the body is empty"),
        ("\n\n", "text/csv", 400, "the body is empty"),
        (b"\xff\xfe", "text/csv", 400, "not UTF-8"),
        ('"unterminated', "text/csv", 400, "not valid CSV"),
        ("{", "application/json", 400, "not valid JSON"),
        ("[1, 2]", "application/json", 400, "keyed by feature name"),
        ("[]", "application/json", 400, "keyed by feature name"),
        ("x", "text/libsvm", 415, "'text/libsvm' is not supported"),
        ("x", "application/x-npy", 415, "is not supported"),
    ],
)
def test_input_fn_rejects_what_it_cannot_read(body, content_type, status, fragment):
    rejection = inference.input_fn(body, content_type)
    assert isinstance(rejection, inference.Rejection)
    assert rejection.status == status and fragment in rejection.message


def test_predict_fn_rejects_records_that_do_not_fit(model):
    cells = LINES[0].split(",")
    cases = {
        ",".join(cells[:-1]): f"has {len(cells) - 1} values, expected {len(FEATURES)}",
        ",".join([*cells, "1"]): f"has {len(cells) + 1} values",
        "\t".join(cells): "has 1 values",
    }
    if NUMERIC:
        bad = [
            ("abc" if name == NUMERIC[0] else cell)
            for name, cell in zip(FEATURES, cells, strict=True)
        ]
        cases[",".join(bad)] = f"'{NUMERIC[0]}' is numeric, got 'abc'"
    for body, fragment in cases.items():
        answer = inference.predict_fn(inference.input_fn(body, "text/csv"), model)
        assert isinstance(answer, inference.Rejection), body
        assert answer.status == 400 and fragment in answer.message


def test_json_records_need_exactly_the_feature_keys(model):
    extra = inference.predict_fn([{**RECORDS[0], "surprise": 1}], model)
    assert "unknown keys ['surprise']" in extra.message
    partial = {name: RECORDS[0][name] for name in FEATURES[1:]}
    assert f"missing keys ['{FEATURES[0]}']" in inference.predict_fn([partial], model).message


@pytest.mark.parametrize(
    ("accept", "answer"),
    [
        ("text/csv", "text/csv"),
        ("application/json", "application/json"),
        ("text/csv, application/json", "text/csv"),
        ("application/xml, application/json;q=0.9", "application/json"),
        ("application/xml, */*", "application/json"),
        ("TEXT/CSV; charset=utf-8", "text/csv"),
        ("application/xml", None),
        ("text/*", None),
    ],
)
def test_accept_negotiation(accept, answer):
    assert inference.answer_type(accept) == answer


def test_an_unsupported_accept_is_406():
    rejection = inference.output_fn(np.array([0.5]), "application/xml")
    assert rejection.status == 406 and "ask for text/csv or application/json" in rejection.message


def test_a_rejection_is_a_wsgi_response():
    rejection = inference.Rejection(400, "record 1 has 2 values")
    started = []
    body = b"".join(rejection({}, lambda status, headers: started.append((status, headers))))
    ((status, headers),) = started
    assert status == "400 Bad Request"
    assert dict(headers)["Content-Type"] == "application/json"
    assert json.loads(body) == {"error": "Bad Request", "error-message": "record 1 has 2 values"}
