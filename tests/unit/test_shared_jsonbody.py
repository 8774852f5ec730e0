"""Strict JSON bodies and the flattening of validation errors."""

from __future__ import annotations

import gzip
import json
from typing import Any

import marshmallow as ma
import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.jsonbody import MAX_DEPTH, flatten_errors, read_json_body
from shared.problems import Problem


@pytest.fixture(scope="module")
def app() -> Flask:
    app = Flask("jsonbody-test")
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    return app


def read(app: Flask, data: bytes, content_type: str = "application/json") -> Any:
    with app.test_request_context(
        "/", method="POST", data=data, content_type=content_type
    ):
        return read_json_body()


def problem_of(app: Flask, data: bytes, content_type: str = "application/json"):
    with pytest.raises(Problem) as caught:
        read(app, data, content_type)
    return caught.value


def nested(depth: int, container: str = "object") -> bytes:
    if container == "object":
        text = '{"a": ' * (depth - 1) + '{"leaf": 1}' + "}" * (depth - 1)
    else:
        text = '{"a": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"
    return text.encode()


def test_reads_object(app: Flask):
    assert read(app, '{"имя": "Анна", "n": [1, 2.5, null]}'.encode()) == {
        "имя": "Анна",
        "n": [1, 2.5, None],
    }


def test_bom_is_skipped(app: Flask):
    assert read(app, b'\xef\xbb\xbf{"a": 1}') == {"a": 1}


@pytest.mark.parametrize("container", ["object", "array"])
def test_depth_limit(app: Flask, container: str):
    assert read(app, nested(MAX_DEPTH, container))

    assert problem_of(app, nested(MAX_DEPTH + 1, container)).status == 400


def test_duplicate_key_deep_inside_is_400(app: Flask):
    problem = problem_of(app, b'{"a": [{"b": {"c": 1, "c": 2}}]}')

    assert problem.status == 400
    assert "'c'" in problem.detail


def test_rejected_numbers_reported_by_path(app: Flask):
    problem = problem_of(app, b'{"a": [1, NaN], "b": {"c": -Infinity}, "d": 1e999}')

    assert problem.status == 422
    assert problem.errors is not None
    assert set(problem.errors) == {"a.1", "b.c", "d"}


def test_huge_integer_is_422(app: Flask):
    problem = problem_of(app, b'{"n": ' + b"9" * 5000 + b"}")

    assert problem.status == 422
    assert problem.errors == {"n": ["The number is out of range."]}


def test_lone_surrogate_escape_is_kept_for_validation(app: Flask):
    assert read(app, b'{"a": "\\ud800"}') == {"a": "\ud800"}


@pytest.mark.parametrize(
    ("content_type", "status"),
    [("text/json", 415), ("application/problem+json", 415), ("", 415)],
)
def test_content_type(app: Flask, content_type: str, status: int):
    assert problem_of(app, b'{"a": 1}', content_type).status == status


def read_encoded(app: Flask, data: bytes, coding: str) -> Any:
    with app.test_request_context(
        "/",
        method="POST",
        data=data,
        content_type="application/json",
        headers={"Content-Encoding": coding},
    ):
        return read_json_body()


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "GZIP", "identity, gzip"])
def test_content_coding_is_415(app: Flask, coding: str):
    body = gzip.compress(b'{"a": 1}')

    with pytest.raises(Problem) as caught:
        read_encoded(app, body, coding)

    problem = caught.value
    assert problem.status == 415
    assert "Content codings are not accepted" in problem.detail
    assert problem.headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("coding", ["identity", "", "Identity"])
def test_identity_coding_is_read(app: Flask, coding: str):
    assert read_encoded(app, b'{"a": 1}', coding) == {"a": 1}


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_any_json_object_round_trips(document: dict[str, Any]):
    app = Flask("round-trip")
    data = json.dumps(document, ensure_ascii=False).encode()

    assert read(app, data) == document


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash(data: bytes):
    app = Flask("bytes")
    try:
        result = read(app, data)
    except Problem as problem:
        assert problem.status in (400, 422)
    else:
        assert isinstance(result, dict)


class Attendance(ma.Schema):
    pupil_id = ma.fields.UUID(required=True)


class Order(ma.Schema):
    date = ma.fields.Date(required=True)


class Body(ma.Schema):
    order = ma.fields.Nested(Order)
    attendance = ma.fields.List(ma.fields.Nested(Attendance))
    pupils = ma.fields.Nested(Attendance, many=True)
    scores = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    ids = ma.fields.List(ma.fields.UUID())
    renamed = ma.fields.String(data_key="startTime")


def errors_of(schema: ma.Schema, data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ma.ValidationError) as caught:
        schema.load(data)
    assert isinstance(caught.value.messages, dict)
    return caught.value.messages


def test_flatten_nested_list_and_dict():
    schema = Body()
    messages = errors_of(
        schema,
        {
            "order": {"date": "x"},
            "attendance": [{"pupil_id": "1"}, {}, {"pupil_id": "no"}],
            "scores": {"speech": "many"},
            "ids": ["a"],
            "startTime": 5,
            "extra": 1,
        },
    )

    flat = flatten_errors(messages, schema)

    assert set(flat) == {
        "order.date",
        "attendance.0.pupil_id",
        "attendance.1.pupil_id",
        "attendance.2.pupil_id",
        "scores.speech",
        "ids.0",
        "startTime",
        "extra",
    }
    assert all(isinstance(m, str) for messages in flat.values() for m in messages)


def test_flatten_wrong_container_types():
    schema = Body()
    messages = errors_of(schema, {"pupils": {"a": 1}, "attendance": 3, "order": []})

    flat = flatten_errors(messages, schema)

    assert set(flat) == {"pupils", "attendance", "order"}


def test_flatten_schema_level_errors():
    assert flatten_errors({"_schema": ["Bad."]}, None) == {"body": ["Bad."]}
    assert flatten_errors({"_schema": ["Bad."]}, None, "query") == {"query": ["Bad."]}


def test_flatten_with_prefix():
    schema = Body()

    flat = flatten_errors(errors_of(schema, {"order": {}}), schema, "query")

    assert flat == {"query.order.date": ["Missing data for required field."]}
