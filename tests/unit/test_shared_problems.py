"""problem+json errors for Problem, werkzeug's errors and webargs' aborts."""

from __future__ import annotations

import pytest
from flask import Flask, abort
from flask_smorest import abort as smorest_abort

from shared.problems import (
    Problem,
    bad_request,
    conflict,
    forbidden,
    gone,
    install_error_handlers,
    not_found,
    payload_too_large,
    retry_after_seconds,
    too_many_requests,
    unauthorized,
    unavailable,
    unsupported_media_type,
    validation,
    validation_error,
)


def test_problem_document_shape():
    problem = Problem(409, "Already enrolled.", existing_id="abc")

    assert problem.to_dict() == {
        "type": "about:blank",
        "title": "Conflict",
        "status": 409,
        "detail": "Already enrolled.",
        "existing_id": "abc",
    }


def test_validation_problem_has_errors():
    problem = validation({"order.date": ["Must not be later than today."]})

    assert problem.status == 422
    assert problem.to_dict()["errors"] == {
        "order.date": ["Must not be later than today."]
    }
    assert validation_error("surname", "Must not be blank.").errors == {
        "surname": ["Must not be blank."]
    }


@pytest.mark.parametrize(
    ("problem", "status"),
    [
        (bad_request("x"), 400),
        (unauthorized("x"), 401),
        (forbidden("x"), 403),
        (not_found("x"), 404),
        (conflict("x"), 409),
        (gone("x", act={"number": "1"}), 410),
        (payload_too_large(10), 413),
        (unsupported_media_type("x"), 415),
        (too_many_requests(3, "x"), 429),
        (unavailable("x"), 503),
    ],
)
def test_constructor_statuses(problem: Problem, status: int):
    assert problem.status == status


def test_headers_of_constructors():
    assert unauthorized("x").headers == {"WWW-Authenticate": "Bearer"}
    assert too_many_requests(2.1, "x").headers == {"Retry-After": "3"}
    assert unavailable("x", retry_after=0).headers == {"Retry-After": "1"}


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "1"), (0.2, "1"), (1, "1"), (1.01, "2"), (45, "45")]
)
def test_retry_after_whole_seconds(seconds: float, text: str):
    assert retry_after_seconds(seconds) == text


@pytest.fixture
def app() -> Flask:
    app = Flask("problems-test")
    install_error_handlers(app)

    @app.get("/problem")
    def raise_problem() -> None:
        raise conflict("Taken.", existing_id="p-1")

    @app.get("/abort/<int:status>")
    def raise_abort(status: int) -> None:
        abort(status)

    @app.get("/webargs")
    def raise_webargs() -> None:
        smorest_abort(
            422, errors={"json": {"order": {"date": ["Bad date."]}}}, message="Bad."
        )

    @app.get("/slash/")
    def with_slash() -> str:
        return "ok"

    @app.get("/crash")
    def crash() -> None:
        raise KeyError("internal")

    return app


def test_problem_raised_in_view(app: Flask):
    response = app.test_client().get("/problem")

    assert response.status_code == 409
    assert response.mimetype == "application/problem+json"
    assert response.get_json(force=True)["existing_id"] == "p-1"


@pytest.mark.parametrize("status", [400, 403, 404, 409, 410, 413, 415, 429, 503])
def test_werkzeug_errors_become_problems(app: Flask, status: int):
    response = app.test_client().get(f"/abort/{status}")

    body = response.get_json(force=True)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["type"] == "about:blank"


def test_unknown_path(app: Flask):
    response = app.test_client().get("/nowhere")

    assert response.status_code == 404
    assert "/nowhere" in response.get_json(force=True)["detail"]


def test_method_not_allowed_keeps_allow(app: Flask):
    response = app.test_client().post("/problem")

    assert response.status_code == 405
    assert response.mimetype == "application/problem+json"
    assert "GET" in response.headers["Allow"]


def test_webargs_abort_flattens_errors(app: Flask):
    body = app.test_client().get("/webargs").get_json(force=True)

    assert body["status"] == 422
    assert body["detail"] == "Bad."
    assert body["errors"] == {"json.order.date": ["Bad date."]}


def test_redirect_keeps_location(app: Flask):
    response = app.test_client().get("/slash")

    assert response.status_code == 308
    assert response.headers["Location"].endswith("/slash/")


def test_unexpected_error_hides_details(app: Flask, caplog: pytest.LogCaptureFixture):
    response = app.test_client().get("/crash")

    body = response.get_json(force=True)
    assert response.status_code == 500
    assert "internal" not in body["detail"]
    assert body["request_id"] in body["detail"]
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
