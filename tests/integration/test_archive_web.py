"""The archive HTTP API through the Flask test client."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest
from flask.testing import FlaskClient
from sqlalchemy.exc import OperationalError

from services.archive.application import ArchiveApplication
from services.archive.domain.schedule import load_schedule
from services.archive.readmodels import RetentionProjector, store_records_head
from services.archive.testing import FeedScript
from services.archive.web import create_app
from services.archive.web.runtime import ArchiveRuntime
from shared.auth import TokenStore
from shared.clock import today_in
from shared.config import Settings
from shared.storage import MEMORY_URL, create_sql_engine, eventsourcing_env

ROLES = ("archivist", "inspector", "admin", "registrar", "subscriber", "methodist")
ENTRY_FIELDS = {
    "record_class",
    "subject_id",
    "status",
    "closed_on",
    "closure_year",
    "expelled_on",
    "period_years",
    "kept_at_least_until",
    "destroyable_from",
    "basis",
    "position",
    "destroyed_at",
    "act",
}


@dataclass
class Service:
    client: FlaskClient
    app: ArchiveApplication
    runtime: ArchiveRuntime
    projector: RetentionProjector
    feed: FeedScript
    tokens: dict[str, str]
    settings: Settings

    def sync(self) -> None:
        after = self.app.processed_position()
        page = self.feed.parsed_page(after=after, limit=1000)
        self.app.apply_page(page)
        self.projector.catch_up()
        store_records_head(self.runtime.engine, page.head_position, datetime.now(UTC))

    def get(self, path: str, role: str | None = "archivist", **params):
        headers = {}
        if role is not None:
            headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return self.client.get(path, query_string=params, headers=headers)


def open_service(
    database_url: str, tmp_path, min_position_timeout: float = 0.5
) -> Service:
    store = TokenStore(tmp_path / "tokens.json")
    tokens = {role: store.issue(role, f"Сотрудник {role}") for role in ROLES}
    settings = Settings.from_env(
        {
            "ARCHIVE_DATABASE_URL": database_url,
            "PUPIL_RECORDS_TOKENS_FILE": str(tmp_path / "tokens.json"),
            "PUPIL_RECORDS_MIN_POSITION_TIMEOUT": str(min_position_timeout),
            "PUPIL_RECORDS_FOLLOWER_MAX_LAG": "10",
        },
        data_dir=tmp_path,
    )
    app = ArchiveApplication(env=eventsourcing_env(database_url))
    engine = create_sql_engine(database_url, writer=True)
    projector = RetentionProjector(app, engine, load_schedule())
    projector.prepare()
    runtime = ArchiveRuntime(settings, application=app, engine=engine)
    flask_app = create_app(settings, runtime=runtime)
    return Service(
        client=flask_app.test_client(),
        app=app,
        runtime=runtime,
        projector=projector,
        feed=FeedScript(),
        tokens=tokens,
        settings=settings,
    )


@pytest.fixture
def service(database_url, tmp_path):
    opened = open_service(database_url, tmp_path)
    yield opened
    opened.runtime.close()


@pytest.fixture
def http_service(tmp_path):
    """A service in memory, for checks of the HTTP layer alone."""
    opened = open_service(MEMORY_URL, tmp_path)
    yield opened
    opened.runtime.close()


@pytest.fixture
def shared_service(database_url, backend, tmp_path):
    """A service on a database that a second thread may write concurrently."""
    if backend == "memory":
        # The in-memory read model is one SQLite connection, which two threads
        # cannot use at once.
        pytest.skip("the in-memory read model serves one thread at a time")
    # Long enough for the other thread's write even on a busy machine.
    opened = open_service(database_url, tmp_path, min_position_timeout=10)
    yield opened
    opened.runtime.close()


def leave(service: Service, expelled_on: date, order_date: date | None = None) -> UUID:
    pupil_id = uuid4()
    service.feed.pupil_registered(pupil_id, date(2023, 9, 1))
    service.feed.pupil_enrolled(pupil_id, date(2023, 9, 1))
    service.feed.pupil_expelled(pupil_id, expelled_on, order_date=order_date)
    return pupil_id


def open_file(service: Service) -> UUID:
    pupil_id = uuid4()
    service.feed.pupil_registered(pupil_id, date(2024, 9, 2))
    return pupil_id


def close_journal(service: Service, closed_on: date) -> UUID:
    journal_id = uuid4()
    service.feed.journal_opened(journal_id, date(2025, 9, 1), date(2026, 5, 31))
    service.feed.journal_closed(journal_id, closed_on)
    return journal_id


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


# Single entries


def test_personal_file_entry_fields(service):
    pupil_id = leave(service, date(2026, 12, 31), order_date=date(2027, 1, 12))
    service.sync()
    response = service.get(
        f"/api/v1/retention/personal-files/{pupil_id}", on="2032-12-31"
    )

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == ENTRY_FIELDS
    assert body["record_class"] == "personal_file"
    assert body["subject_id"] == str(pupil_id)
    assert body["status"] == "retained"
    assert body["closed_on"] == "2027-01-12"
    assert body["closure_year"] == 2027
    assert body["expelled_on"] == "2026-12-31"
    assert body["period_years"] == 5
    assert body["kept_at_least_until"] == "2031-12-31"
    assert body["destroyable_from"] == "2033-01-01"
    assert "3.1" in body["basis"]
    assert body["position"] == service.feed.head
    assert body["destroyed_at"] is None
    assert body["act"] is None


def test_status_follows_on_date(service):
    pupil_id = leave(service, date(2025, 5, 31))
    service.sync()
    path = f"/api/v1/retention/personal-files/{pupil_id}"

    assert service.get(path, on="2030-12-31").get_json()["status"] == "retained"
    assert service.get(path, on="2031-01-01").get_json()["status"] == "destroyable"


def test_status_open_before_closing_date(service):
    pupil_id = leave(service, date(2024, 12, 31))
    service.sync()
    path = f"/api/v1/retention/personal-files/{pupil_id}"
    before = service.get(path, on="2024-10-01").get_json()
    on_closure = service.get(path, on="2024-12-31").get_json()

    assert before["status"] == "open"
    assert before["closed_on"] == "2024-12-31"
    assert before["destroyable_from"] == "2030-01-01"
    assert on_closure["status"] == "retained"


def test_future_expulsion_open_until_closure(service):
    today = today_in(service.settings.timezone)
    expelled_on = date(today.year + 1, 5, 31)
    pupil_id = leave(service, expelled_on, order_date=today)
    service.sync()
    path = f"/api/v1/retention/personal-files/{pupil_id}"
    now = service.get(path).get_json()
    after = service.get(path, on=expelled_on.isoformat()).get_json()

    assert now["status"] == "open"
    assert now["closed_on"] == expelled_on.isoformat()
    assert now["closure_year"] == expelled_on.year
    assert now["kept_at_least_until"] == date(today.year + 6, 5, 31).isoformat()
    assert now["destroyable_from"] == date(today.year + 7, 1, 1).isoformat()
    assert after["status"] == "retained"


def test_journal_open_before_closing_date(service):
    journal_id = close_journal(service, date(2026, 5, 29))
    service.sync()
    path = f"/api/v1/retention/journals/{journal_id}"

    assert service.get(path, on="2026-05-28").get_json()["status"] == "open"
    assert service.get(path, on="2026-05-29").get_json()["status"] == "retained"


def test_on_defaults_to_centre_today(service):
    pupil_id = leave(service, date(2019, 5, 31))
    service.sync()
    today = today_in(service.settings.timezone)
    body = service.get(f"/api/v1/retention/personal-files/{pupil_id}").get_json()

    expected = "destroyable" if today >= date(2025, 1, 1) else "retained"
    assert body["status"] == expected


def test_journal_entry(service):
    journal_id = close_journal(service, date(2026, 5, 29))
    service.sync()
    body = service.get(
        f"/api/v1/retention/journals/{journal_id}", role="inspector", on="2031-06-01"
    ).get_json()

    assert set(body) == ENTRY_FIELDS
    assert body["record_class"] == "journal"
    assert body["subject_id"] == str(journal_id)
    assert body["status"] == "retained"
    assert body["closed_on"] == "2026-05-29"
    assert body["closure_year"] == 2026
    assert body["kept_at_least_until"] == "2031-05-29"
    assert body["destroyable_from"] == "2032-01-01"
    assert "3.2" in body["basis"]


def test_open_file_entry_has_nulls(service):
    pupil_id = open_file(service)
    service.sync()
    body = service.get(f"/api/v1/retention/personal-files/{pupil_id}").get_json()

    assert body["status"] == "open"
    assert body["closed_on"] is None
    assert body["closure_year"] is None
    assert body["kept_at_least_until"] is None
    assert body["destroyable_from"] is None
    assert body["period_years"] == 5


def test_destroyed_entry_names_act(service):
    pupil_id = leave(service, date(2025, 5, 31))
    service.feed.personal_data_destroyed(
        pupil_id, "Акт 4", date(2031, 2, 1), datetime(2031, 2, 2, 8, tzinfo=UTC)
    )
    service.sync()
    body = service.get(
        f"/api/v1/retention/personal-files/{pupil_id}", on="2031-03-01"
    ).get_json()

    assert body["status"] == "destroyed"
    assert body["destroyed_at"] == "2031-02-02T08:00:00.000000Z"
    assert body["act"] == {"number": "Акт 4", "date": "2031-02-01"}


def test_unknown_pupil_is_404(service):
    leave(service, date(2025, 5, 31))
    service.sync()

    assert_problem(service.get(f"/api/v1/retention/personal-files/{uuid4()}"), 404)
    assert_problem(service.get(f"/api/v1/retention/journals/{uuid4()}"), 404)


def test_journal_id_is_not_a_pupil(service):
    journal_id = close_journal(service, date(2026, 5, 29))
    service.sync()

    assert_problem(service.get(f"/api/v1/retention/personal-files/{journal_id}"), 404)


def test_malformed_id_is_404(http_service):
    assert_problem(http_service.get("/api/v1/retention/personal-files/not-a-uuid"), 404)


@pytest.mark.parametrize(
    "on", ["2025-02-30", "31.05.2025", "2025-5-1", "", "today", "2025-01-01T00:00"]
)
def test_invalid_on_is_422(http_service, on):
    pupil_id = leave(http_service, date(2025, 5, 31))
    http_service.sync()
    body = assert_problem(
        http_service.get(f"/api/v1/retention/personal-files/{pupil_id}", on=on), 422
    )

    assert "query.on" in body["errors"]


# Roles


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/retention",
        "/api/v1/schedule",
        "/api/v1/status",
        f"/api/v1/retention/personal-files/{UUID(int=1)}",
        f"/api/v1/retention/journals/{UUID(int=1)}",
    ],
)
def test_missing_token_is_401(http_service, path):
    assert_problem(http_service.get(path, role=None), 401)
    response = http_service.client.get(path, headers={"Authorization": "Bearer nope"})
    assert_problem(response, 401)


@pytest.mark.parametrize("role", ["registrar", "subscriber", "methodist", "admin"])
def test_retention_roles(http_service, role):
    assert_problem(http_service.get("/api/v1/retention", role=role), 403)
    assert_problem(http_service.get("/api/v1/schedule", role=role), 403)


@pytest.mark.parametrize("role", ["archivist", "inspector"])
def test_retention_readers_allowed(http_service, role):
    assert http_service.get("/api/v1/retention", role=role).status_code == 200
    assert http_service.get("/api/v1/schedule", role=role).status_code == 200


@pytest.mark.parametrize("role", ["inspector", "registrar", "subscriber"])
def test_status_roles(http_service, role):
    assert_problem(http_service.get("/api/v1/status", role=role), 403)


def test_method_not_allowed(http_service):
    response = http_service.client.post(
        "/api/v1/retention",
        json={},
        headers={"Authorization": f"Bearer {http_service.tokens['archivist']}"},
    )

    assert_problem(response, 405)
    assert "GET" in response.headers["Allow"]


# The list


def populate(service: Service) -> dict[str, UUID]:
    return {
        "2031": leave(service, date(2025, 5, 31)),
        "2032a": leave(service, date(2025, 12, 31), order_date=date(2026, 1, 12)),
        "journal_2032": close_journal(service, date(2026, 5, 29)),
        "2030": leave(service, date(2024, 2, 29)),
        "2032b": leave(service, date(2026, 3, 1)),
        "open_a": open_file(service),
        "open_b": open_file(service),
    }


def list_all(service: Service, **params) -> list[dict]:
    items: list[dict] = []
    cursor = None
    for _ in range(50):
        query = dict(params)
        if cursor is not None:
            query["cursor"] = cursor
        response = service.get("/api/v1/retention", **query)
        assert response.status_code == 200
        body = response.get_json()
        assert set(body) == {"items", "next_cursor"}
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the list never ended")


def order_key(item: dict) -> tuple:
    return (item["destroyable_from"] or "9999-99-99", item["subject_id"])


def test_list_ordered_open_last(service):
    ids = populate(service)
    service.sync()
    items = list_all(service, limit=100)

    assert len(items) == 7
    assert items == sorted(items, key=order_key)
    assert items[0]["subject_id"] == str(ids["2030"])
    assert items[1]["subject_id"] == str(ids["2031"])
    assert {item["subject_id"] for item in items[2:5]} == {
        str(ids["2032a"]),
        str(ids["journal_2032"]),
        str(ids["2032b"]),
    }
    assert [item["status"] for item in items[-2:]] == ["open", "open"]


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_list_pages_join_up(service, limit):
    populate(service)
    service.sync()
    whole = list_all(service, limit=100)
    paged = list_all(service, limit=limit)

    assert paged == whole


def test_list_page_size_and_cursor(service):
    populate(service)
    service.sync()
    body = service.get("/api/v1/retention", limit=3).get_json()

    assert len(body["items"]) == 3
    assert isinstance(body["next_cursor"], str)
    padded = body["next_cursor"] + "=" * (-len(body["next_cursor"]) % 4)
    decoded = json.loads(base64.urlsafe_b64decode(padded))
    assert set(decoded) == {"destroyable_from", "subject_id", "journal"}


def test_list_filters_by_status(service):
    ids = populate(service)
    service.sync()
    destroyable = list_all(service, status="destroyable", on="2031-06-01")
    retained = list_all(service, status="retained", on="2031-06-01")
    opened = list_all(service, status="open", on="2031-06-01")

    assert [item["subject_id"] for item in destroyable] == [
        str(ids["2030"]),
        str(ids["2031"]),
    ]
    assert all(item["status"] == "destroyable" for item in destroyable)
    assert len(retained) == 3
    assert all(item["status"] == "retained" for item in retained)
    assert {item["subject_id"] for item in opened} == {
        str(ids["open_a"]),
        str(ids["open_b"]),
    }


def test_list_status_before_closing_date(service):
    ids = populate(service)
    service.sync()
    on = "2025-12-31"
    opened = list_all(service, status="open", on=on)
    retained = list_all(service, status="retained", on=on)
    everything = list_all(service, on=on)

    # The file expelled on 31 December 2025 closes with its order, signed on
    # 12 January 2026, so it is still open on 31 December 2025.
    assert {item["subject_id"] for item in retained} == {
        str(ids["2030"]),
        str(ids["2031"]),
    }
    assert {item["subject_id"] for item in opened} == {
        str(ids["2032a"]),
        str(ids["journal_2032"]),
        str(ids["2032b"]),
        str(ids["open_a"]),
        str(ids["open_b"]),
    }
    assert all(item["status"] == "open" for item in opened)
    assert all(item["status"] == "retained" for item in retained)
    assert list_all(service, status="destroyable", on=on) == []
    statuses = {item["subject_id"]: item["status"] for item in everything}
    assert statuses == {
        **{item["subject_id"]: "open" for item in opened},
        **{item["subject_id"]: "retained" for item in retained},
    }


def test_list_filters_destroyed(service):
    pupil_id = leave(service, date(2025, 5, 31))
    leave(service, date(2025, 5, 31))
    service.feed.personal_data_destroyed(
        pupil_id, "9", date(2031, 2, 1), datetime(2031, 2, 2, tzinfo=UTC)
    )
    service.sync()
    destroyed = list_all(service, status="destroyed")
    destroyable = list_all(service, status="destroyable", on="2031-06-01")

    assert [item["subject_id"] for item in destroyed] == [str(pupil_id)]
    assert destroyed[0]["act"] == {"number": "9", "date": "2031-02-01"}
    assert len(destroyable) == 1
    assert destroyable[0]["subject_id"] != str(pupil_id)


def test_list_filters_by_record_class(service):
    ids = populate(service)
    service.sync()
    journals = list_all(service, record_class="journal")
    files = list_all(service, record_class="personal_file", limit=2)

    assert [item["subject_id"] for item in journals] == [str(ids["journal_2032"])]
    assert len(files) == 6
    assert all(item["record_class"] == "personal_file" for item in files)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("status", "closed"),
        ("status", ""),
        ("record_class", "notebook"),
        ("on", "2031-13-01"),
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "ten"),
        ("cursor", "not a cursor"),
        ("cursor", "e30"),
        ("min_position", "-1"),
    ],
)
def test_list_invalid_query_is_422(http_service, name, value):
    body = assert_problem(http_service.get("/api/v1/retention", **{name: value}), 422)

    assert f"query.{name}" in body["errors"]


def forged_cursor(values: dict) -> str:
    raw = json.dumps(values).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "values",
    [
        {"destroyable_from": "2031-01-01", "subject_id": str(UUID(int=3))},
        {
            "destroyable_from": str(UUID(int=3)),
            "subject_id": str(UUID(int=3)),
            "journal": False,
        },
        {
            "destroyable_from": "2031-01-01",
            "subject_id": "2031-01-01",
            "journal": False,
        },
        {
            "destroyable_from": "2031-01-01",
            "subject_id": str(UUID(int=3)),
            "journal": 1,
        },
        {
            "destroyable_from": "2031-01-01",
            "subject_id": str(UUID(int=3)),
            "journal": "2031-01-01",
        },
    ],
)
def test_forged_cursor_is_422(http_service, values):
    response = http_service.get("/api/v1/retention", cursor=forged_cursor(values))
    body = assert_problem(response, 422)

    assert "query.cursor" in body["errors"]


def test_unknown_query_parameter_is_422(http_service):
    body = assert_problem(http_service.get("/api/v1/retention", colour="red"), 422)

    assert "query.colour" in body["errors"]


# Schedule and status


def test_schedule_lists_record_classes(http_service):
    body = http_service.get("/api/v1/schedule").get_json()

    assert body["next_cursor"] is None
    assert [item["record_class"] for item in body["items"]] == [
        "personal_file",
        "journal",
    ]
    for item in body["items"]:
        assert set(item) == {
            "record_class",
            "period_years",
            "counting_rule",
            "mark",
            "basis",
        }
        assert item["period_years"] == 5
        assert item["counting_rule"] == "from_january_after_closure"
        assert "№ 236" in item["basis"]


def test_status_zero_at_start(service):
    body = service.get("/api/v1/status", role="admin").get_json()

    assert body == {"processed_position": 0, "records_head": 0, "lag": 0}


def test_status_reports_lag(service):
    leave(service, date(2025, 5, 31))
    service.sync()
    service.feed.skip(4)
    store_records_head(service.runtime.engine, service.feed.head, datetime.now(UTC))
    body = service.get("/api/v1/status").get_json()

    assert body["processed_position"] == 3
    assert body["records_head"] == 7
    assert body["lag"] == 4


# min_position and readiness


def test_min_position_reached_answers(service):
    pupil_id = leave(service, date(2025, 5, 31))
    service.sync()
    response = service.get(
        f"/api/v1/retention/personal-files/{pupil_id}",
        min_position=service.feed.head,
    )

    assert response.status_code == 200


def test_min_position_not_reached_is_503(service):
    leave(service, date(2025, 5, 31))
    service.sync()
    started = time.monotonic()
    response = service.get("/api/v1/retention", min_position=service.feed.head + 1)

    assert_problem(response, 503)
    assert int(response.headers["Retry-After"]) >= 1
    assert time.monotonic() - started >= 0.4


def test_min_position_waits_for_follower(shared_service):
    pupil_id = leave(shared_service, date(2025, 5, 31))
    target = shared_service.feed.head
    timer = threading.Timer(0.2, shared_service.sync)
    timer.start()
    try:
        response = shared_service.get(
            f"/api/v1/retention/personal-files/{pupil_id}", min_position=target
        )
    finally:
        timer.join()

    assert response.status_code == 200
    assert response.get_json()["position"] == target


def test_min_position_before_404(shared_service):
    pupil_id = leave(shared_service, date(2025, 5, 31))
    timer = threading.Timer(0.2, shared_service.sync)
    timer.start()
    try:
        response = shared_service.get(
            f"/api/v1/retention/personal-files/{pupil_id}", min_position=1
        )
    finally:
        timer.join()

    assert response.status_code == 200


def test_min_position_waits_for_read_model(service):
    pupil_id = leave(service, date(2025, 5, 31))
    page = service.feed.parsed_page(after=0)
    service.app.apply_page(page)
    path = f"/api/v1/retention/personal-files/{pupil_id}"

    # The page is applied but not yet projected: the read model lags.
    assert_problem(service.get(path, min_position=page.last_position), 503)
    service.projector.catch_up()
    assert service.get(path, min_position=page.last_position).status_code == 200


def test_readyz_ready_when_caught_up(service):
    leave(service, date(2025, 5, 31))
    service.sync()

    assert service.client.get("/readyz").status_code == 200
    assert service.client.get("/healthz").status_code == 200


def test_readyz_lagging_is_503(service):
    service.feed.skip(11)
    store_records_head(service.runtime.engine, service.feed.head, datetime.now(UTC))
    body = assert_problem(service.client.get("/readyz"), 503)

    assert "11 events behind" in body["detail"]


def test_readyz_database_down_is_503(http_service, monkeypatch):
    def unreachable():
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(http_service.runtime, "status", unreachable)
    body = assert_problem(http_service.client.get("/readyz"), 503)

    assert "unreachable" in body["detail"]


def test_database_outage_is_503(http_service, monkeypatch):
    def unreachable(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr("services.archive.web.views.list_entries", unreachable)
    response = http_service.get("/api/v1/retention")

    assert_problem(response, 503)
    assert response.headers["Retry-After"] == "2"


def test_metrics_content_type(http_service):
    response = http_service.client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["Content-Type"].count("charset") == 1


def test_openapi_documents_archive_paths(http_service):
    paths = http_service.client.get("/api/v1/openapi.json").get_json()["paths"]

    assert "/api/v1/retention" in paths
    assert "/api/v1/retention/personal-files/{pupil_id}" in paths
    assert "/api/v1/retention/journals/{journal_id}" in paths
    assert "/api/v1/schedule" in paths
    assert "/api/v1/status" in paths
