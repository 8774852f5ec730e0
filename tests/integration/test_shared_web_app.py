"""A small app built on create_base_app, checked against the API's common rules."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import marshmallow as ma
import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from flask.views import MethodView

from shared.access import PUBLIC_PATHS, AccessTable, Route
from shared.actor import find_principal, get_principal
from shared.auth import FailedAuthThrottle, TokenStore, requires
from shared.config import Settings
from shared.fields import (
    Cursor,
    Name,
    OrderSchema,
    PageQuerySchema,
    StrictDate,
    StrictInteger,
    UUIDField,
    encode_cursor,
    min_position_field,
)
from shared.problems import conflict
from shared.web import Api, Blueprint, create_base_app, ensure_min_position

MAX_BODY = 4096
PUPIL_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


class AttendanceSchema(ma.Schema):
    pupil_id = UUIDField(required=True)
    status = ma.fields.String(
        required=True, validate=ma.validate.OneOf(["present", "absent"])
    )


class SessionSchema(ma.Schema):
    topic = Name(required=True)
    date = StrictDate(required=True)
    order = ma.fields.Nested(OrderSchema, required=True)
    attendance = ma.fields.List(ma.fields.Nested(AttendanceSchema), required=True)
    scores = ma.fields.Dict(
        keys=ma.fields.String(), values=StrictInteger(), load_default=dict
    )


class ItemsQuerySchema(PageQuerySchema):
    cursor = Cursor(keys=("after",), load_default=None)
    min_position = min_position_field()
    type = ma.fields.List(ma.fields.String(), load_default=list)


blp = Blueprint("sessions", __name__, url_prefix="/api/v1/sessions")
ITEMS = [str(uuid.UUID(int=number)) for number in range(1, 8)]
read_model = {"position": 0}


@blp.route("")
class Sessions(MethodView):
    # The role is declared below the arguments on purpose: the check must
    # still come first.
    @blp.arguments(SessionSchema)
    @requires("specialist")
    @blp.response(201)
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        if body["topic"] == "конфликт":
            raise conflict("A session is already recorded then.", existing_id=PUPIL_ID)
        return {
            "topic": body["topic"],
            "date": body["date"],
            "order": body["order"],
            "actor": get_principal().name,
        }

    @requires("specialist", "inspector", personal_data=True)
    @blp.arguments(ItemsQuerySchema, location="query")
    @blp.response(200)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        ensure_min_position(lambda: read_model["position"], query["min_position"])
        start = 0
        if query["cursor"] is not None:
            start = ITEMS.index(query["cursor"]["after"]) + 1
        page = ITEMS[start : start + query["limit"]]
        more = start + len(page) < len(ITEMS)
        next_cursor = encode_cursor({"after": page[-1]}) if more and page else None
        return {
            "items": page,
            "next_cursor": next_cursor,
            "purpose": g.get("purpose"),
            "types": query["type"],
        }


@blp.route("/<uuid:session_id>/closure", methods=["POST"])
@requires("specialist")
def close_session(session_id: uuid.UUID) -> tuple[dict[str, str], int]:
    return {"id": str(session_id)}, 200


@blp.route("/boom")
@requires("specialist")
def boom() -> None:
    raise RuntimeError("secret internal detail")


@blp.route("/plain")
@requires("specialist")
def plain() -> dict[str, str]:
    return {"plain": "yes"}


@blp.route("/undeclared")
def undeclared() -> dict[str, str]:
    return {"reached": "yes"}


@blp.route("/mismatch")
@requires("admin")
def mismatch() -> dict[str, str]:
    return {"reached": "yes"}


def _rule(method: str, path: str, *roles: str, pupils: str | None = None) -> Route:
    return Route(
        "records",
        method,
        path,
        roles=frozenset(roles),
        personal_data=pupils is not None,
        pupils=pupils,
    )


# The role matrix of this test app; `/undeclared` is missing on purpose.
ACCESS = AccessTable(
    [
        *(Route("records", "GET", path, public=True) for path in PUBLIC_PATHS),
        _rule("POST", "/api/v1/sessions", "specialist"),
        _rule("GET", "/api/v1/sessions", "specialist", "inspector", pupils="items"),
        _rule("POST", "/api/v1/sessions/{session_id}/closure", "specialist"),
        _rule("GET", "/api/v1/sessions/boom", "specialist"),
        _rule("GET", "/api/v1/sessions/plain", "specialist"),
        _rule("GET", "/api/v1/sessions/mismatch", "specialist"),
    ]
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "tokens.json")


@pytest.fixture
def ready() -> dict[str, str | None]:
    return {"reason": None}


@pytest.fixture
def app(
    tmp_path: Path, store: TokenStore, clock: Clock, ready: dict[str, str | None]
) -> Iterator[Flask]:
    settings = Settings.from_env(
        {
            "PUPIL_RECORDS_MAX_BODY_BYTES": str(MAX_BODY),
            "PUPIL_RECORDS_MIN_POSITION_TIMEOUT": "0.2",
        },
        data_dir=tmp_path,
    )
    flask_app, api = create_base_app(
        name="test-service",
        title="Test service",
        settings=settings,
        readiness=lambda: ready["reason"],
        access=ACCESS,
        token_store=store,
        throttle=FailedAuthThrottle(clock=clock),
    )
    assert isinstance(api, Api)
    api.register_blueprint(blp)
    read_model["position"] = 0
    yield flask_app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def specialist(store: TokenStore) -> dict[str, str]:
    return {"Authorization": f"Bearer {store.issue('specialist', 'Анна Смирнова')}"}


@pytest.fixture
def inspector(store: TokenStore) -> dict[str, str]:
    return {"Authorization": f"Bearer {store.issue('inspector', 'Олег Иванов')}"}


def valid_session(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "topic": "Развитие речи",
        "date": "2024-03-01",
        "order": {"number": "12-о", "date": "2024-02-20"},
        "attendance": [{"pupil_id": PUPIL_ID, "status": "present"}],
    }
    body.update(changes)
    return body


def post_raw(
    client: FlaskClient,
    data: bytes | str,
    headers: dict[str, str],
    content_type: str | None = "application/json",
) -> Any:
    return client.post(
        "/api/v1/sessions", data=data, headers=headers, content_type=content_type
    )


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    return dict(body)


# Successful requests


def test_valid_post_returns_cyrillic_as_is(client, specialist):
    response = client.post("/api/v1/sessions", json=valid_session(), headers=specialist)

    assert response.status_code == 201
    assert "Анна Смирнова".encode() in response.data
    assert response.get_json()["date"] == "2024-03-01"
    assert response.get_json()["actor"] == "Анна Смирнова"


def test_security_headers_on_api(client, specialist):
    response = client.get("/api/v1/sessions", headers=specialist)

    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Request-Id"]


def test_principal_reset_after_request(client, specialist):
    client.get("/api/v1/sessions", headers=specialist)

    assert find_principal() is None


def test_bom_body_accepted(client, specialist):
    data = b"\xef\xbb\xbf" + json.dumps(valid_session()).encode()

    response = post_raw(client, data, specialist)

    assert response.status_code == 201


def test_domain_conflict_carries_extra_members(client, specialist):
    response = client.post(
        "/api/v1/sessions", json=valid_session(topic="конфликт"), headers=specialist
    )

    body = assert_problem(response, 409)
    assert body["existing_id"] == PUPIL_ID


# Path: 404 and 405 before anything else


def test_unknown_path_is_404_without_token(client):
    body = assert_problem(client.get("/api/v1/nothing-here"), 404)

    assert "/api/v1/nothing-here" in body["detail"]


def test_unknown_id_shape_in_path_is_404(client, specialist):
    response = client.post("/api/v1/sessions/not-a-uuid/closure", headers=specialist)

    assert_problem(response, 404)


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/api/v1/sessions")

    assert_problem(response, 405)
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed


# Authentication and roles


def test_missing_token_is_401(client):
    response = client.get("/api/v1/sessions")

    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header", ["Bearer nope", "Basic dXNlcjpwYXNz", "Bearer", "Bearer " + "x" * 600]
)
def test_unknown_or_malformed_token_is_401(client, header):
    assert_problem(
        client.get("/api/v1/sessions", headers={"Authorization": header}), 401
    )


def test_revoked_token_is_401(client, store):
    token = store.issue("specialist", "Временный")
    (info,) = store.list()
    store.revoke(info.id)

    response = client.get(
        "/api/v1/sessions", headers={"Authorization": f"Bearer {token}"}
    )

    assert_problem(response, 401)


def test_newly_issued_token_accepted_at_once(client, store):
    assert_problem(
        client.get("/api/v1/sessions", headers={"Authorization": "Bearer x"}), 401
    )
    token = TokenStore(store.path).issue("specialist", "Новый")

    response = client.get(
        "/api/v1/sessions", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200


def test_wrong_role_is_403(client, store):
    headers = {"Authorization": f"Bearer {store.issue('registrar', 'Регистратор')}"}

    body = assert_problem(client.get("/api/v1/sessions", headers=headers), 403)

    assert "registrar" in body["detail"]


def test_undeclared_route_is_403_for_everyone(client, store):
    headers = {"Authorization": f"Bearer {store.issue('admin', 'Администратор')}"}

    assert_problem(client.get("/api/v1/sessions/undeclared", headers=headers), 403)


def test_declaration_differing_from_matrix_is_403(client, specialist, store):
    admin = {"Authorization": f"Bearer {store.issue('admin', 'Администратор')}"}

    assert_problem(client.get("/api/v1/sessions/mismatch", headers=specialist), 403)
    assert_problem(client.get("/api/v1/sessions/mismatch", headers=admin), 403)


def test_options_needs_no_token(client):
    response = client.options("/api/v1/sessions")

    assert response.status_code == 200
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}


def test_public_paths_need_no_token(client):
    for path in (
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/api/v1/docs",
    ):
        assert client.get(path).status_code == 200, path


# X-Purpose


def test_inspector_without_purpose_is_403(client, inspector):
    body = assert_problem(client.get("/api/v1/sessions", headers=inspector), 403)

    assert "X-Purpose" in body["detail"]


def test_inspector_with_blank_purpose_is_403(client, inspector):
    headers = {**inspector, "X-Purpose": "%20%09%E2%80%8B"}

    assert_problem(client.get("/api/v1/sessions", headers=headers), 403)


def test_purpose_is_percent_decoded(client, inspector):
    purpose = "проверка личного дела по запросу №5"
    headers = {**inspector, "X-Purpose": quote(purpose, safe="")}

    response = client.get("/api/v1/sessions", headers=headers)

    assert response.status_code == 200
    assert response.get_json()["purpose"] == purpose


def test_purpose_optional_for_other_roles(client, specialist):
    response = client.get("/api/v1/sessions", headers=specialist)

    assert response.status_code == 200
    assert response.get_json()["purpose"] is None


@pytest.mark.parametrize(
    "purpose", ["%FF%FE", "%C3%28", "%ZZ", "проверка 100%", "%", "%4", "%4G", "a%%41"]
)
def test_purpose_not_utf8_is_400(client, inspector, purpose):
    headers = {**inspector, "X-Purpose": quote(purpose, safe="%")}

    body = assert_problem(client.get("/api/v1/sessions", headers=headers), 400)

    assert "header.X-Purpose" in body["errors"]
    assert "not percent-encoded UTF-8" in body["detail"]


def test_purpose_escaped_percent_is_decoded(client, inspector):
    headers = {**inspector, "X-Purpose": "100%25%2e"}

    response = client.get("/api/v1/sessions", headers=headers)

    assert response.status_code == 200
    assert response.get_json()["purpose"] == "100%."


# Throttle of failed authentication


def test_21st_failure_is_429_with_retry_after(client, clock):
    bad = {"Authorization": "Bearer wrong"}
    for _ in range(20):
        assert_problem(client.get("/api/v1/sessions", headers=bad), 401)
    clock.now += 15

    response = client.get("/api/v1/sessions", headers=bad)

    assert_problem(response, 429)
    assert response.headers["Retry-After"] == "45"


def test_valid_token_served_while_throttled(client, clock, specialist):
    for _ in range(25):
        client.get("/api/v1/sessions", headers={"Authorization": "Bearer wrong"})

    assert client.get("/api/v1/sessions", headers=specialist).status_code == 200


def test_throttle_ends_with_window(client, clock):
    bad = {"Authorization": "Bearer wrong"}
    for _ in range(21):
        client.get("/api/v1/sessions", headers=bad)
    clock.now += 60

    assert_problem(client.get("/api/v1/sessions", headers=bad), 401)


def test_throttle_counts_per_address(client, clock):
    bad = {"Authorization": "Bearer wrong"}
    for _ in range(21):
        client.get(
            "/api/v1/sessions", headers=bad, environ_base={"REMOTE_ADDR": "127.0.0.2"}
        )

    response = client.get(
        "/api/v1/sessions", headers=bad, environ_base={"REMOTE_ADDR": "127.0.0.3"}
    )

    assert_problem(response, 401)


def test_malformed_headers_count_as_failures(client):
    for _ in range(20):
        client.get("/api/v1/sessions", headers={"Authorization": "Basic dXNlcg=="})

    response = client.get("/api/v1/sessions", headers={"Authorization": "Bearer"})

    assert_problem(response, 429)


def test_missing_token_never_throttled(client):
    for _ in range(30):
        assert_problem(client.get("/api/v1/sessions"), 401)


# The order of checks: 401 before 403 before 415 before 413 before 400 before 422


def test_order_401_before_415(client):
    response = post_raw(client, "not json", {}, content_type="text/plain")

    assert_problem(response, 401)


def test_order_403_before_415(client, store):
    headers = {"Authorization": f"Bearer {store.issue('methodist', 'Методист')}"}

    assert_problem(post_raw(client, "x", headers, content_type="text/plain"), 403)


def test_order_415_before_413(client, specialist):
    data = "x" * (MAX_BODY * 2)

    assert_problem(post_raw(client, data, specialist, content_type="text/plain"), 415)


def test_order_413_before_400(client, specialist):
    body = assert_problem(post_raw(client, "{" * (MAX_BODY * 2), specialist), 413)

    assert str(MAX_BODY) in body["detail"]


def test_order_400_before_422(client, specialist):
    data = '{"topic": NaN, "topic": 1}'

    assert_problem(post_raw(client, data, specialist), 400)


def test_chunked_body_over_limit_is_413(client, specialist):
    response = client.post(
        "/api/v1/sessions",
        input_stream=io.BytesIO(b"[" * (MAX_BODY * 2)),
        headers={**specialist, "Transfer-Encoding": "chunked"},
        content_type="application/json",
        # Servers that decode chunked bodies (gunicorn, werkzeug) set this.
        environ_base={"wsgi.input_terminated": True},
    )

    assert_problem(response, 413)


# 415


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json; charset=latin-1",
    ],
)
def test_non_json_content_type_is_415(client, specialist, content_type):
    data = json.dumps(valid_session())

    assert_problem(post_raw(client, data, specialist, content_type=content_type), 415)


def test_body_without_content_type_is_415(client, specialist):
    assert_problem(post_raw(client, b'{"a": 1}', specialist, content_type=None), 415)


def test_json_with_utf8_charset_accepted(client, specialist):
    data = json.dumps(valid_session())
    content_type = "application/json; charset=UTF-8"

    assert (
        post_raw(client, data, specialist, content_type=content_type).status_code == 201
    )


# 400


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "missing"),
        (b"   ", "missing"),
        (b"{", "not valid JSON"),
        (b"{'a': 1}", "not valid JSON"),
        (b"[]", "array"),
        (b'"text"', "string"),
        (b"null", "null"),
        (b"42", "number"),
        (b'{"a": "\xff"}', "UTF-8"),
        (b'{"a": 1, "a": 1}', "more than once"),
    ],
)
def test_bad_json_is_400(client, specialist, data, words):
    body = assert_problem(post_raw(client, data, specialist), 400)

    assert words in body["detail"]


def test_missing_body_without_content_type_is_400(client, specialist):
    assert_problem(post_raw(client, b"", specialist, content_type=None), 400)


def test_duplicate_key_in_nested_object_is_400(client, specialist):
    data = '{"order": {"number": "1", "number": "2", "date": "2024-01-01"}}'

    assert_problem(post_raw(client, data, specialist), 400)


def nested(depth: int) -> str:
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


def test_depth_33_is_400(client, specialist):
    body = assert_problem(post_raw(client, nested(33), specialist), 400)

    assert "32" in body["detail"]


def test_depth_32_reaches_validation(client, specialist):
    assert_problem(post_raw(client, nested(32), specialist), 422)


def test_deep_arrays_are_400_not_500(client, specialist):
    data = '{"a": ' + "[" * 1500 + "]" * 1500 + "}"

    assert_problem(post_raw(client, data, specialist), 400)


# 422


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_number_is_422_at_its_path(client, specialist, constant):
    data = json.dumps(valid_session(scores={"a": 1})).replace(
        '"a": 1', f'"a": {constant}'
    )

    body = assert_problem(post_raw(client, data, specialist), 422)

    assert list(body["errors"]) == ["scores.a"]


def test_validation_errors_use_dotted_paths(client, specialist):
    body = valid_session(
        date="2023-02-29",
        order={"number": "1", "date": "2024-1-5"},
        attendance=[
            {"pupil_id": PUPIL_ID, "status": "present"},
            {"pupil_id": PUPIL_ID, "status": "present"},
            {"pupil_id": "42", "status": "present"},
        ],
        scores={"speech": 1.5},
    )

    response = client.post("/api/v1/sessions", json=body, headers=specialist)

    errors = assert_problem(response, 422)["errors"]
    assert set(errors) == {
        "date",
        "order.date",
        "attendance.2.pupil_id",
        "scores.speech",
    }
    assert "2023-02-29" in errors["date"][0]


def test_unknown_field_is_422(client, specialist):
    body = valid_session(extra=1, order={"number": "1", "date": "2024-01-01", "x": 2})

    errors = assert_problem(
        client.post("/api/v1/sessions", json=body, headers=specialist), 422
    )["errors"]

    assert set(errors) == {"extra", "order.x"}


def test_wrong_types_are_422(client, specialist):
    body = valid_session(topic=5, attendance={"pupil_id": PUPIL_ID})

    errors = assert_problem(
        client.post("/api/v1/sessions", json=body, headers=specialist), 422
    )["errors"]

    assert set(errors) == {"topic", "attendance"}


def test_blank_name_is_422(client, specialist):
    body = valid_session(topic=" \u200b\u00a0 ")

    errors = assert_problem(
        client.post("/api/v1/sessions", json=body, headers=specialist), 422
    )["errors"]

    assert list(errors) == ["topic"]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("limit=0", "query.limit"),
        ("limit=1001", "query.limit"),
        ("limit=ten", "query.limit"),
        ("limit=1.5", "query.limit"),
        ("limit=1&limit=2", "query.limit"),
        ("colour=red", "query.colour"),
        ("cursor=%%%", "query.cursor"),
        ("min_position=-1", "query.min_position"),
    ],
)
def test_bad_query_is_422_at_query_path(client, specialist, query, path):
    response = client.get(f"/api/v1/sessions?{query}", headers=specialist)

    assert list(assert_problem(response, 422)["errors"]) == [path]


def test_repeatable_query_parameter_accepted(client, specialist):
    response = client.get("/api/v1/sessions?type=a&type=b", headers=specialist)

    assert response.get_json()["types"] == ["a", "b"]


# Cursors and min_position


def test_cursor_round_trip_pages_through_all(client, specialist):
    seen: list[str] = []
    url = "/api/v1/sessions?limit=3"
    while True:
        page = client.get(url, headers=specialist).get_json()
        seen.extend(page["items"])
        if page["next_cursor"] is None:
            break
        url = f"/api/v1/sessions?limit=3&cursor={page['next_cursor']}"

    assert seen == ITEMS


def test_cursor_with_other_keys_is_422(client, specialist):
    cursor = encode_cursor({"position": 3})

    response = client.get(f"/api/v1/sessions?cursor={cursor}", headers=specialist)

    assert list(assert_problem(response, 422)["errors"]) == ["query.cursor"]


def test_min_position_reached(client, specialist):
    read_model["position"] = 5

    assert (
        client.get("/api/v1/sessions?min_position=5", headers=specialist).status_code
        == 200
    )


def test_min_position_not_reached_is_503(client, specialist):
    response = client.get("/api/v1/sessions?min_position=6", headers=specialist)

    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "1"


# Health, readiness, docs and unexpected errors


def test_readyz_503_with_reason(client, ready):
    ready["reason"] = "the projector is 5000 events behind"

    response = client.get("/readyz")

    body = assert_problem(response, 503)
    assert "5000 events behind" in body["detail"]
    assert response.headers["Retry-After"]


def test_openapi_document_has_bearer_scheme(client):
    spec = client.get("/api/v1/openapi.json").get_json()

    assert spec["openapi"].startswith("3.")
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["paths"]["/api/v1/sessions"]["get"]["x-roles"] == [
        "inspector",
        "specialist",
    ]
    assert spec["paths"]["/api/v1/sessions"]["get"]["x-personal-data"] is True
    assert spec["paths"]["/api/v1/sessions"]["post"]["x-roles"] == ["specialist"]
    assert "x-personal-data" not in spec["paths"]["/api/v1/sessions"]["post"]


def test_docs_page_is_self_contained(client):
    response = client.get("/api/v1/docs")
    page = response.get_data(as_text=True)

    assert response.mimetype == "text/html"
    assert "/api/v1/sessions" in page
    assert "<script" not in page
    assert "http://" not in page
    assert "https://" not in page


def test_unexpected_error_is_500_without_traceback(client, specialist, caplog):
    with caplog.at_level(logging.ERROR, logger="shared.problems"):
        response = client.get("/api/v1/sessions/boom", headers=specialist)

    body = assert_problem(response, 500)
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert body["request_id"] == response.headers["X-Request-Id"]
    records = [r for r in caplog.records if body["request_id"] in r.getMessage()]
    assert len(records) == 1


def test_token_never_logged(client, caplog, store):
    token = store.issue("specialist", "Тест")
    with caplog.at_level(logging.DEBUG):
        client.get(
            "/api/v1/sessions/boom", headers={"Authorization": f"Bearer {token}"}
        )
        client.get("/api/v1/sessions", headers={"Authorization": "Bearer leaked-guess"})

    assert token not in caplog.text
    assert "leaked-guess" not in caplog.text


def test_unreadable_token_file_is_503(client, store, specialist):
    store.path.write_text("{broken", encoding="utf-8")

    response = client.get("/api/v1/sessions", headers=specialist)

    assert_problem(response, 503)
    assert response.headers["Retry-After"]


def test_head_follows_get_roles(client, specialist, store):
    registrar = {"Authorization": f"Bearer {store.issue('registrar', 'Регистратор')}"}

    assert client.head("/api/v1/sessions", headers=specialist).status_code == 200
    assert client.head("/api/v1/sessions", headers=registrar).status_code == 403


def test_function_view_declares_roles(client, specialist, store):
    methodist = {"Authorization": f"Bearer {store.issue('methodist', 'Методист')}"}
    url = f"/api/v1/sessions/{PUPIL_ID}/closure"

    assert client.post(url, headers=specialist).get_json() == {"id": PUPIL_ID}
    assert_problem(client.post(url, headers=methodist), 403)


def test_metrics_label_routes_not_ids(client, specialist):
    client.post(f"/api/v1/sessions/{PUPIL_ID}/closure", headers=specialist)

    text = client.get("/metrics").get_data(as_text=True)

    assert "/api/v1/sessions/<uuid:session_id>/closure" in text
    assert PUPIL_ID not in text


def test_metrics_content_type_names_charset_once(client):
    response = client.get("/metrics")

    assert response.headers["Content-Type"] == (
        "text/plain; version=1.0.0; charset=utf-8"
    )


def test_get_without_query_schema_rejects_parameters(client, specialist):
    assert client.get("/api/v1/sessions/plain", headers=specialist).status_code == 200

    response = client.get("/api/v1/sessions/plain?min_position=1", headers=specialist)

    assert list(assert_problem(response, 422)["errors"]) == ["query.min_position"]


def test_undeclared_query_checked_after_auth(client):
    assert_problem(client.get("/api/v1/sessions/plain?x=1"), 401)
