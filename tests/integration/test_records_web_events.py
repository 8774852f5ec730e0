"""The public event feed over HTTP: pages, positions, types and long-poll."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from services.records.web.testing import (
    RecordsWebClient,
    expect,
    expect_problem,
    make_client,
    pupil_body,
)
from shared.web import waiting_limiter

EVENTS = "/api/v1/events"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[RecordsWebClient]:
    """A records app on the in-memory store."""
    client = make_client(
        tmp_path, "memory://", PUPIL_RECORDS_MIN_POSITION_TIMEOUT="0.3"
    )
    yield client
    client.close()


@pytest.fixture
def backend_web(tmp_path: Path, database_url: str) -> Iterator[RecordsWebClient]:
    """A records app on each database backend."""
    client = make_client(tmp_path, database_url)
    yield client
    client.close()


def feed(web: RecordsWebClient, query: Any = None, role: str = "subscriber") -> Any:
    return expect(web.get(EVENTS, role, query, project=False), 200)


def register_later(
    web: RecordsWebClient, delay: float, **changes: Any
) -> threading.Thread:
    """Register a pupil from another thread after `delay` seconds."""
    client = web.app.test_client()
    headers = web.headers("registrar")

    def run() -> None:
        time.sleep(delay)
        client.post("/api/v1/pupils", json=pupil_body(**changes), headers=headers)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_feed_answers_cloudevents(backend_web):
    programme = backend_web.create_programme()
    pupil = backend_web.register_pupil()
    enrolment = backend_web.enrol(pupil["id"], programme["id"])

    response = backend_web.get(EVENTS, "subscriber", project=False)

    page = expect(response, 200)
    registered, enrolled = page["events"]
    assert registered["specversion"] == "1.0"
    assert registered["type"] == "pupil.registered"
    assert registered["subject"] == f"pupils/{pupil['id']}"
    # A registration also claims the pupil's identity, which is not public.
    assert registered["position"] < pupil["position"]
    assert registered["sequence"] == str(registered["position"])
    assert registered["time"].endswith("Z")
    assert registered["data"] == {"pupil_id": pupil["id"], "opened_on": "2024-08-26"}
    assert enrolled["type"] == "pupil.enrolled"
    assert enrolled["data"]["enrolment_id"] == enrolment["id"]
    assert enrolled["data"]["order"] == {"number": "12-у", "date": "2024-09-02"}
    assert "Иванов" not in response.get_data(as_text=True)
    assert page["last_position"] == backend_web.head()
    assert page["head_position"] == backend_web.head()


def test_feed_skips_internal_events(web):
    programme = web.create_programme()
    pupil = web.register_pupil()
    web.enrol(pupil["id"], programme["id"])
    web.attest(pupil["id"], programme["id"])

    page = feed(web, {"after": pupil["position"]})

    assert [event["type"] for event in page["events"]] == ["pupil.enrolled"]
    assert page["last_position"] == web.head()


def test_full_page_ends_at_its_last_event(web):
    first = web.register_pupil(surname="Алексеев")
    second = web.register_pupil(surname="Быков")

    page = feed(web, {"limit": 1})
    rest = feed(web, {"limit": 1, "after": page["last_position"]})

    assert [event["subject"] for event in page["events"]] == [f"pupils/{first['id']}"]
    assert page["last_position"] == page["events"][0]["position"]
    assert page["last_position"] < web.head()
    assert [event["subject"] for event in rest["events"]] == [f"pupils/{second['id']}"]
    assert rest["last_position"] == rest["events"][0]["position"]


def test_nothing_newer_keeps_after(web):
    web.register_pupil()
    head = web.head()

    page = feed(web, {"after": head})

    assert page["events"] == []
    assert page["last_position"] == head
    assert page["head_position"] == head


def test_empty_log_answers_position_zero(web):
    page = feed(web)

    assert page == {"events": [], "last_position": 0, "head_position": 0}


def test_type_filter_is_repeatable(web):
    programme = web.create_programme()
    pupil = web.register_pupil()
    web.enrol(pupil["id"], programme["id"])
    journal = web.open_journal(programme["id"])
    web.expel(pupil["id"], programme["id"], date(2025, 5, 31))

    page = feed(web, [("type", "journal.opened"), ("type", "pupil.expelled")])

    assert [event["type"] for event in page["events"]] == [
        "journal.opened",
        "pupil.expelled",
    ]
    assert page["events"][0]["subject"] == f"journals/{journal['id']}"
    assert page["last_position"] == web.head()


def test_type_filter_moves_past_other_events(web):
    web.register_pupil()

    page = feed(web, {"type": "pupil.expelled"})

    assert page["events"] == []
    assert page["last_position"] == web.head()


def test_unknown_type_is_422_at_query_type(web):
    response = web.get(
        EVENTS, "subscriber", [("type", "pupil.registered"), ("type", "pupil.born")]
    )

    assert list(expect_problem(response, 422)["errors"]) == ["query.type"]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"after": -1}, "query.after"),
        ({"after": "first"}, "query.after"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 1001}, "query.limit"),
        ({"wait": 31}, "query.wait"),
        ({"wait": -1}, "query.wait"),
        ({"wait": "nan"}, "query.wait"),
        ({"wait": "soon"}, "query.wait"),
        ([("after", 1), ("after", 2)], "query.after"),
        ({"since": 1}, "query.since"),
    ],
)
def test_feed_rejects_invalid_query(web, query, path):
    response = web.get(EVENTS, "subscriber", query, project=False)

    assert path in expect_problem(response, 422)["errors"]


@pytest.mark.parametrize(
    ("role", "status"),
    [
        ("subscriber", 200),
        ("archivist", 200),
        ("admin", 200),
        ("registrar", 403),
        ("methodist", 403),
        ("specialist", 403),
        ("inspector", 403),
        (None, 401),
    ],
)
def test_feed_roles(web, role, status):
    response = web.get(EVENTS, role, project=False)

    assert response.status_code == status


def test_long_poll_answers_when_an_event_arrives(web):
    head = web.head()
    thread = register_later(web, 0.2)

    started = time.monotonic()
    page = feed(web, {"after": head, "wait": 20})
    elapsed = time.monotonic() - started
    thread.join()

    assert [event["type"] for event in page["events"]] == ["pupil.registered"]
    assert elapsed < 20


def test_long_poll_times_out_with_empty_page(web):
    web.register_pupil()
    head = web.head()

    started = time.monotonic()
    page = feed(web, {"after": head, "wait": 0.3})

    assert time.monotonic() - started >= 0.3
    assert page["events"] == []
    assert page["last_position"] == head


def test_long_poll_waits_for_matching_type(web):
    head = web.head()
    thread = register_later(web, 0.05)

    started = time.monotonic()
    page = feed(web, {"after": head, "wait": 0.5, "type": "pupil.expelled"})
    thread.join()

    assert time.monotonic() - started >= 0.5
    assert page["events"] == []
    assert page["last_position"] == web.head()
    assert page["last_position"] > head


def test_long_poll_answers_at_once_when_events_exist(web):
    web.register_pupil()

    page = feed(web, {"wait": 30})

    assert len(page["events"]) == 1


def test_min_position_beyond_head_is_503_at_once(web):
    web.register_pupil()
    head = web.head()

    started = time.monotonic()
    response = web.get(EVENTS, "subscriber", {"min_position": head + 1}, project=False)

    assert time.monotonic() - started < 0.3
    problem = expect_problem(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert problem["head_position"] == head


def test_after_beyond_head_is_422(web):
    web.register_pupil()
    head = web.head()

    response = web.get(EVENTS, "subscriber", {"after": head + 1}, project=False)

    problem = expect_problem(response, 422)
    assert problem["errors"] == {"query.after": [f"Must not be greater than {head}."]}
    assert problem["head_position"] == head
    assert f"position {head}" in problem["detail"]


def test_after_on_empty_log_is_422(web):
    response = web.get(EVENTS, "subscriber", {"after": 1, "wait": 5}, project=False)

    problem = expect_problem(response, 422)
    assert problem["head_position"] == 0


# Waiting slots: the limits of one process on requests that wait.


@pytest.fixture
def limited_web(tmp_path: Path) -> Iterator[RecordsWebClient]:
    """A records app that lets 2 requests wait at once, 1 per token."""
    client = make_client(
        tmp_path,
        "memory://",
        PUPIL_RECORDS_MIN_POSITION_TIMEOUT="5",
        PUPIL_RECORDS_MAX_WAITING_REQUESTS="2",
        PUPIL_RECORDS_MAX_WAITING_PER_TOKEN="1",
    )
    yield client
    client.close()


def long_poll_in_thread(
    web: RecordsWebClient, role: str, query: dict[str, Any]
) -> tuple[threading.Thread, list[Any]]:
    """Start a feed request of `role` in a thread; its response lands in the list."""
    client = web.app.test_client()
    headers = web.headers(role)
    url = f"{EVENTS}?{urlencode(query)}"
    responses: list[Any] = []
    thread = threading.Thread(
        target=lambda: responses.append(client.get(url, headers=headers))
    )
    thread.start()
    return thread, responses


def wait_for_waiting(web: RecordsWebClient, count: int) -> None:
    limiter = waiting_limiter(web.app)
    deadline = time.monotonic() + 5
    while limiter.waiting != count:
        assert time.monotonic() < deadline, f"{limiter.waiting} requests wait"
        time.sleep(0.01)


def test_second_long_poll_of_token_answers_at_once(limited_web):
    head = limited_web.head()
    thread, first = long_poll_in_thread(
        limited_web, "subscriber", {"after": head, "wait": 10}
    )
    wait_for_waiting(limited_web, 1)

    started = time.monotonic()
    page = feed(limited_web, {"after": head, "wait": 10})
    elapsed = time.monotonic() - started

    assert elapsed < 5
    assert page == {"events": [], "last_position": head, "head_position": head}
    limited_web.register_pupil()
    thread.join(timeout=10)
    assert [event["type"] for event in first[0].get_json()["events"]] == [
        "pupil.registered"
    ]


def test_long_polls_beyond_process_cap_answer_at_once(limited_web):
    threads = [
        long_poll_in_thread(limited_web, role, {"wait": 10})[0]
        for role in ("subscriber", "archivist")
    ]
    wait_for_waiting(limited_web, 2)

    started = time.monotonic()
    page = feed(limited_web, {"wait": 10}, role="admin")

    assert time.monotonic() - started < 5
    assert page["events"] == []
    limited_web.register_pupil()
    for thread in threads:
        thread.join(timeout=10)
    assert waiting_limiter(limited_web.app).waiting == 0


@pytest.fixture
def limited_sqlite_web(tmp_path: Path) -> Iterator[RecordsWebClient]:
    """Like `limited_web` on SQLite, whose read model lags until projected."""
    client = make_client(
        tmp_path,
        f"sqlite:///{tmp_path / 'records.sqlite'}",
        PUPIL_RECORDS_MIN_POSITION_TIMEOUT="5",
        PUPIL_RECORDS_MAX_WAITING_REQUESTS="2",
        PUPIL_RECORDS_MAX_WAITING_PER_TOKEN="1",
    )
    yield client
    client.close()


def test_min_position_without_slot_is_503_at_once(limited_sqlite_web):
    pupil = limited_sqlite_web.register_pupil()
    head = pupil["position"]
    threads = [
        long_poll_in_thread(limited_sqlite_web, role, {"after": head, "wait": 10})[0]
        for role in ("subscriber", "archivist")
    ]
    wait_for_waiting(limited_sqlite_web, 2)

    # The read model has not projected the registration, so this read waits.
    started = time.monotonic()
    response = limited_sqlite_web.get(
        f"/api/v1/pupils/{pupil['id']}",
        "methodist",
        {"min_position": pupil["position"]},
        project=False,
    )

    assert time.monotonic() - started < 4
    problem = expect_problem(response, 503)
    assert "too many requests are waiting" in problem["detail"]
    assert response.headers["Retry-After"] == "1"
    limited_sqlite_web.register_pupil(surname="Петров")
    for thread in threads:
        thread.join(timeout=10)


def test_min_position_beyond_head_takes_no_slot(limited_web):
    limited_web.register_pupil()
    head = limited_web.head()
    threads = [
        long_poll_in_thread(limited_web, role, {"after": head, "wait": 10})[0]
        for role in ("subscriber", "archivist")
    ]
    wait_for_waiting(limited_web, 2)

    started = time.monotonic()
    response = limited_web.get(
        "/api/v1/pupils", "methodist", {"min_position": head + 1}, project=False
    )

    assert time.monotonic() - started < 4
    problem = expect_problem(response, 503)
    assert "beyond the head" in problem["detail"]
    assert problem["head_position"] == head
    limited_web.register_pupil(surname="Петров")
    for thread in threads:
        thread.join(timeout=10)


def test_reached_min_position_needs_no_slot(limited_web):
    pupil = limited_web.register_pupil()
    thread, _ = long_poll_in_thread(
        limited_web, "subscriber", {"after": limited_web.head(), "wait": 10}
    )
    wait_for_waiting(limited_web, 1)

    response = limited_web.get(
        EVENTS, "subscriber", {"min_position": pupil["position"]}, project=False
    )

    assert response.status_code == 200
    limited_web.register_pupil(surname="Петров")
    thread.join(timeout=10)
