"""The records app as a whole: order of checks, readiness, positions, documents."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import OperationalError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.records.web import create_app, get_runtime
from services.records.web.testing import (
    RecordsWebClient,
    expect,
    expect_problem,
    make_client,
    order,
    pupil_body,
    session_body,
)
from shared.config import Settings

MAX_BODY = 2048
UNKNOWN_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
ROLES_BY_OPERATION = {
    ("post", "/api/v1/programmes"): ["admin"],
    ("get", "/api/v1/programmes"): [
        "admin",
        "archivist",
        "inspector",
        "methodist",
        "registrar",
        "specialist",
    ],
    ("post", "/api/v1/pupils"): ["registrar"],
    ("get", "/api/v1/pupils"): ["inspector", "methodist", "registrar"],
    ("get", "/api/v1/pupils/{pupil_id}"): ["inspector", "methodist", "registrar"],
    ("get", "/api/v1/pupils/{pupil_id}/history"): ["inspector", "methodist"],
    ("post", "/api/v1/pupils/{pupil_id}/enrolments"): ["registrar"],
    (
        "post",
        "/api/v1/pupils/{pupil_id}/enrolments/{enrolment_id}/cancellation",
    ): ["registrar"],
    ("post", "/api/v1/pupils/{pupil_id}/transfers"): ["registrar"],
    ("post", "/api/v1/pupils/{pupil_id}/expulsions"): ["registrar"],
    (
        "post",
        "/api/v1/pupils/{pupil_id}/expulsions/{expulsion_id}/cancellation",
    ): ["registrar"],
    ("post", "/api/v1/pupils/{pupil_id}/attestations"): ["methodist"],
    (
        "post",
        "/api/v1/pupils/{pupil_id}/attestations/{attestation_id}/corrections",
    ): ["methodist"],
    ("post", "/api/v1/journals"): ["specialist"],
    ("get", "/api/v1/journals/{journal_id}"): ["inspector", "methodist", "specialist"],
    ("post", "/api/v1/journals/{journal_id}/sessions"): ["specialist"],
    ("post", "/api/v1/journals/{journal_id}/closure"): ["specialist"],
    ("get", "/api/v1/events"): ["admin", "archivist", "subscriber"],
}


@pytest.fixture
def web(tmp_path: Path) -> Iterator[RecordsWebClient]:
    """A records app on the in-memory store with a 2 KiB body limit."""
    client = make_client(
        tmp_path, "memory://", PUPIL_RECORDS_MAX_BODY_BYTES=str(MAX_BODY)
    )
    yield client
    client.close()


@pytest.fixture
def sqlite_web(tmp_path: Path) -> Iterator[RecordsWebClient]:
    """A records app on SQLite whose read models move only when a test projects."""
    client = make_client(
        tmp_path,
        f"sqlite:///{tmp_path / 'records.sqlite'}",
        PUPIL_RECORDS_MIN_POSITION_TIMEOUT="0.3",
        PUPIL_RECORDS_FOLLOWER_MAX_LAG="1",
    )
    yield client
    client.close()


@pytest.fixture
def enrolled(web: RecordsWebClient) -> dict[str, Any]:
    programme = web.create_programme()
    pupil = web.register_pupil()
    web.enrol(pupil["id"], programme["id"])
    return {"pupil": pupil["id"], "programme": programme["id"]}


def raw_post(
    web: RecordsWebClient,
    path: str,
    data: bytes | str,
    role: str | None,
    content_type: str = "application/json",
) -> Any:
    return web.client.post(
        path, data=data, content_type=content_type, headers=web.headers(role)
    )


def enrolment_request(programme_id: str) -> dict[str, Any]:
    return {
        "programme_id": programme_id,
        "effective_date": "2024-10-01",
        "order": order("13-у"),
    }


# Order of checks: path, 401, 403, 415, 413, 400, 422, 404, 422, 409


def test_unknown_path_is_404_before_authentication(web):
    expect_problem(web.client.get("/api/v1/pupils/x/y/z"), 404)
    expect_problem(web.client.post("/api/v1/grades", json={}), 404)


def test_wrong_method_is_405_with_allow_before_authentication(web):
    response = web.client.delete("/api/v1/pupils")

    expect_problem(response, 405)
    assert "POST" in response.headers["Allow"]
    assert "GET" in response.headers["Allow"]


def test_check_order_on_enrolment(web, enrolled):
    path = f"/api/v1/pupils/{enrolled['pupil']}/enrolments"
    unknown_path = f"/api/v1/pupils/{UNKNOWN_ID}/enrolments"
    oversized = "x" * (MAX_BODY + 1)
    valid = json.dumps(enrolment_request(enrolled["programme"]))
    head = web.head()

    expect_problem(raw_post(web, unknown_path, oversized, None, "text/plain"), 401)
    expect_problem(
        raw_post(web, unknown_path, oversized, "methodist", "text/plain"), 403
    )
    expect_problem(
        raw_post(web, unknown_path, oversized, "registrar", "text/plain"), 415
    )
    expect_problem(raw_post(web, unknown_path, oversized, "registrar"), 413)
    expect_problem(raw_post(web, unknown_path, "{not json", "registrar"), 400)
    expect_problem(raw_post(web, unknown_path, '{"programme_id": 1}', "registrar"), 422)
    expect_problem(raw_post(web, unknown_path, valid, "registrar"), 404)
    expect_problem(raw_post(web, path, valid, "registrar"), 409)
    assert web.head() == head


def test_body_id_checked_before_path_id(web):
    body = enrolment_request(UNKNOWN_ID)

    response = web.post(f"/api/v1/pupils/{UNKNOWN_ID}/enrolments", body, "registrar")

    assert list(expect_problem(response, 422)["errors"]) == ["programme_id"]


def test_journal_checks_come_before_domain_rules(web, enrolled):
    journal = web.open_journal(enrolled["programme"])
    path = f"/api/v1/journals/{journal['id']}/sessions"
    web.post(
        f"/api/v1/journals/{journal['id']}/closure",
        {"closed_on": "2025-05-31"},
        "specialist",
    )
    attendance = {enrolled["pupil"]: "present"}

    outside_year = web.post(
        path, session_body(attendance, date="2025-06-02"), "specialist"
    )
    closed = web.post(path, session_body(attendance), "specialist")

    assert list(expect_problem(outside_year, 422)["errors"]) == ["date"]
    expect_problem(closed, 409)


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        ("", "application/json"),
        ("[]", "application/json"),
        ('"text"', "application/json"),
        ('{"surname": "А", "surname": "Б"}', "application/json"),
        ("[" * 40 + "]" * 40, "application/json"),
        ('{"a": ' * 40 + "1" + "}" * 40, "application/json"),
        (b"\xff\xfe{}", "application/json"),
    ],
)
def test_bad_json_is_400(web, data, content_type):
    response = raw_post(web, "/api/v1/pupils", data, "registrar", content_type)

    expect_problem(response, 400)
    assert web.head() == 0


@pytest.mark.parametrize(
    "data",
    ['{"surname": NaN}', '{"birth_date": Infinity}', '{"surname": 1e999}'],
)
def test_non_finite_numbers_are_422(web, data):
    expect_problem(raw_post(web, "/api/v1/pupils", data, "registrar"), 422)


def test_body_with_bom_is_accepted(web):
    data = b"\xef\xbb\xbf" + json.dumps(pupil_body()).encode()

    response = raw_post(web, "/api/v1/pupils", data, "registrar")

    assert expect(response, 201)["surname"] == "Иванов"


def test_cyrillic_is_answered_as_is(web):
    response = web.post("/api/v1/pupils", pupil_body(), "registrar")

    assert "Иванов".encode() in response.data


def test_repeated_failed_authentication_is_429(web):
    headers = {"Authorization": "Bearer not-a-token"}
    statuses = [
        web.client.get("/api/v1/events", headers=headers).status_code for _ in range(21)
    ]

    assert statuses[:20] == [401] * 20
    assert statuses[20] == 429


def test_unknown_field_named_by_lone_surrogate_is_422(web):
    data = '{"\\ud800": 1, "surname": "Иванов"}'

    response = raw_post(web, "/api/v1/pupils", data, "registrar")

    expect_problem(response, 422)
    assert "\\ud800" in response.get_data(as_text=True)


# Arbitrary bodies never crash a command


JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["2024-09-02", "2999-01-01", "10:00", UNKNOWN_ID, "present", "other", "final"]
    )
)
FIELD_NAMES = st.sampled_from(
    [
        "surname",
        "name",
        "birth_date",
        "programme_id",
        "effective_date",
        "order",
        "number",
        "date",
        "ground",
        "ground_detail",
        "scores",
        "reason",
        "attendance",
        "pupil_id",
        "status",
        "start_time",
        "duration_minutes",
        "closed_on",
    ]
)
JSON_BODIES = st.dictionaries(
    FIELD_NAMES,
    st.recursive(
        JSON_LEAVES,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(FIELD_NAMES | st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=8,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=JSON_BODIES)
def test_arbitrary_bodies_never_crash(web, enrolled, body):
    journal_id = UNKNOWN_ID
    pupil = enrolled["pupil"]
    targets = [
        ("/api/v1/pupils", "registrar"),
        (f"/api/v1/pupils/{pupil}/enrolments", "registrar"),
        (f"/api/v1/pupils/{pupil}/expulsions", "registrar"),
        (f"/api/v1/pupils/{pupil}/attestations", "methodist"),
        (f"/api/v1/journals/{journal_id}/sessions", "specialist"),
    ]

    for path, role in targets:
        response = web.post(path, body, role)
        assert response.status_code in (201, 400, 404, 409, 422), (
            path,
            response.get_data(as_text=True),
        )


# Read models and min_position


def test_min_position_not_reached_is_503(sqlite_web):
    pupil = sqlite_web.register_pupil()
    path = f"/api/v1/pupils/{pupil['id']}"

    lagging = sqlite_web.get(
        path, "methodist", {"min_position": pupil["position"]}, project=False
    )

    expect_problem(lagging, 503)
    assert int(lagging.headers["Retry-After"]) >= 1
    sqlite_web.project()
    caught_up = sqlite_web.get(
        path, "methodist", {"min_position": pupil["position"]}, project=False
    )
    assert expect(caught_up, 200)["id"] == pupil["id"]


def test_min_position_waits_for_the_projector(tmp_path):
    web = make_client(
        tmp_path,
        f"sqlite:///{tmp_path / 'records.sqlite'}",
        PUPIL_RECORDS_MIN_POSITION_TIMEOUT="10",
    )
    pupil = web.register_pupil()
    projector = threading.Timer(0.2, web.project)
    projector.start()

    response = web.get(
        f"/api/v1/pupils/{pupil['id']}",
        "registrar",
        {"min_position": pupil["position"]},
        project=False,
    )
    projector.join()
    web.close()

    assert expect(response, 200)["status"] == "registered"


@pytest.mark.parametrize("beyond", [1, 10**15])
def test_min_position_beyond_head_is_503_at_once(tmp_path, beyond):
    web = make_client(
        tmp_path,
        f"sqlite:///{tmp_path / 'records.sqlite'}",
        PUPIL_RECORDS_MIN_POSITION_TIMEOUT="10",
    )
    pupil = web.register_pupil()
    head = pupil["position"]
    reads = [
        ("/api/v1/pupils", "methodist"),
        (f"/api/v1/pupils/{pupil['id']}", "registrar"),
        ("/api/v1/access-log", "admin"),
    ]

    for path, role in reads:
        started = time.monotonic()
        response = web.get(path, role, {"min_position": head + beyond})
        elapsed = time.monotonic() - started

        problem = expect_problem(response, 503)
        assert elapsed < 5, path
        assert response.headers["Retry-After"], path
        assert problem["head_position"] == head
    web.close()


def test_reads_without_min_position_may_lag(sqlite_web):
    pupil = sqlite_web.register_pupil()

    response = sqlite_web.get(
        f"/api/v1/pupils/{pupil['id']}", "methodist", project=False
    )

    expect_problem(response, 404)


def test_memory_store_reads_are_current(web):
    pupil = web.register_pupil()

    response = web.get(
        f"/api/v1/pupils/{pupil['id']}",
        "methodist",
        {"min_position": pupil["position"]},
        project=False,
    )

    assert expect(response, 200)["version"] == 1


# Health, readiness and start-up


def test_healthz_needs_no_token(web):
    assert web.client.get("/healthz").status_code == 200


def test_readyz_reports_projector_lag(sqlite_web):
    assert sqlite_web.client.get("/readyz").status_code == 200

    sqlite_web.register_pupil()
    lagging = sqlite_web.client.get("/readyz")

    assert "behind" in expect_problem(lagging, 503)["detail"]
    assert lagging.headers["Retry-After"]
    sqlite_web.project()
    assert sqlite_web.client.get("/readyz").status_code == 200


def test_unreachable_database_is_503(tmp_path):
    folder = tmp_path / "records.sqlite"
    folder.mkdir()
    web = make_client(tmp_path, f"sqlite:///{folder}")

    ready = web.client.get("/readyz")
    read = web.get("/api/v1/events", "subscriber", project=False)

    assert "unreachable" in expect_problem(ready, 503)["detail"]
    expect_problem(read, 503)
    assert read.headers["Retry-After"]


def test_database_error_during_request_is_503(web, monkeypatch):
    recorder = get_runtime(web.app).application.recorder

    def fail() -> int:
        raise OperationalError("connection lost")

    monkeypatch.setattr(recorder, "max_notification_id", fail)

    response = web.get("/api/v1/events", "subscriber", project=False)

    expect_problem(response, 503)
    assert response.headers["Retry-After"]


def test_components_are_built_on_first_use(tmp_path):
    database = tmp_path / "store" / "records.sqlite"
    settings = Settings.from_env(
        {"RECORDS_DATABASE_URL": f"sqlite:///{database}"}, data_dir=tmp_path
    )
    app = create_app(settings)
    runtime = get_runtime(app)

    app.test_client().get("/healthz")
    assert not runtime.started
    assert not database.exists()

    app.test_client().get("/readyz")
    assert runtime.started
    assert database.exists()
    runtime.close()


def test_create_app_reads_settings_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PUPIL_RECORDS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RECORDS_DATABASE_URL", "memory://")

    app = create_app()

    assert get_runtime(app).settings.data_dir == tmp_path
    assert app.test_client().get("/readyz").status_code == 200
    get_runtime(app).close()


# The OpenAPI document


def test_openapi_lists_every_operation_with_its_roles(web):
    response = web.client.get("/api/v1/openapi.json")

    spec = expect(response, 200)
    found = {
        (method, path): operation.get("x-roles")
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if method in ("get", "post")
    }
    for operation, roles in ROLES_BY_OPERATION.items():
        assert found.get(operation) == roles, operation


def test_openapi_documents_schemas_and_ids(web):
    spec = expect(web.client.get("/api/v1/openapi.json"), 200)

    schemas = spec["components"]["schemas"]
    assert "PupilRegistration" in schemas
    assert "PersonalFile" in schemas
    assert schemas["PupilRegistration"]["properties"]["birth_date"]["format"] == "date"
    pupil = spec["paths"]["/api/v1/pupils/{pupil_id}"]
    parameter = next(p for p in pupil["parameters"] if p["name"] == "pupil_id")
    assert parameter["schema"]["format"] == "uuid"
    created = spec["paths"]["/api/v1/pupils"]["post"]["responses"]["201"]
    assert "Location" in created["headers"]


def test_docs_page_needs_no_token(web):
    response = web.client.get("/api/v1/docs")

    assert response.status_code == 200
    assert b"/api/v1/pupils" in response.data


def test_rejected_commands_write_nothing(web, enrolled):
    head = web.head()
    requests = [
        ("/api/v1/pupils", pupil_body(), "registrar"),
        (f"/api/v1/pupils/{enrolled['pupil']}/enrolments", {}, "registrar"),
        (
            f"/api/v1/pupils/{enrolled['pupil']}/enrolments",
            enrolment_request(enrolled["programme"]),
            "registrar",
        ),
        ("/api/v1/journals", {"programme_id": UNKNOWN_ID}, "specialist"),
    ]

    statuses = [web.post(path, body, role).status_code for path, body, role in requests]

    assert statuses == [409, 422, 409, 422]
    assert web.head() == head
