"""Session journals over HTTP: opening, sessions, attendance, closure, reads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.records.web.testing import (
    RecordsWebClient,
    expect,
    expect_problem,
    journal_body,
    make_client,
    session_body,
)

JOURNALS = "/api/v1/journals"
UNKNOWN_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
PURPOSE = {"X-Purpose": "%D0%BF%D1%80%D0%BE%D0%B2%D0%B5%D1%80%D0%BA%D0%B0"}


@pytest.fixture
def web(tmp_path: Path) -> Iterator[RecordsWebClient]:
    """A records app on the in-memory store."""
    client = make_client(tmp_path, "memory://")
    yield client
    client.close()


@pytest.fixture
def backend_web(tmp_path: Path, database_url: str) -> Iterator[RecordsWebClient]:
    """A records app on each database backend, read through the projector."""
    client = make_client(tmp_path, database_url)
    yield client
    client.close()


def open_class(web: RecordsWebClient, pupils: int = 2) -> dict[str, Any]:
    """Create a programme, enrol `pupils` pupils from 2 September 2024, open a
    journal for them."""
    programme = web.create_programme()
    pupil_ids = []
    for number in range(pupils):
        pupil = web.register_pupil(surname=f"Ученик{'абвгд'[number]}")
        web.enrol(pupil["id"], programme["id"])
        pupil_ids.append(pupil["id"])
    journal = web.open_journal(programme["id"])
    return {"programme": programme, "pupils": pupil_ids, "journal": journal}


@pytest.fixture
def group(web: RecordsWebClient) -> dict[str, Any]:
    return open_class(web)


def sessions_path(group: dict[str, Any]) -> str:
    return f"{JOURNALS}/{group['journal']['id']}/sessions"


def all_present(group: dict[str, Any]) -> dict[str, str]:
    return {pupil_id: "present" for pupil_id in group["pupils"]}


# Opening


def test_open_journal_returns_journal(backend_web):
    programme = backend_web.create_programme()

    response = backend_web.post(JOURNALS, journal_body(programme["id"]), "specialist")

    body = expect(response, 201)
    assert response.headers["Location"] == f"{JOURNALS}/{body['id']}"
    assert body["programme_id"] == programme["id"]
    assert body["specialist"]["position"] == "педагог-психолог"
    assert body["academic_year"] == {"start": "2024-09-02", "end": "2025-05-31"}
    assert body["kind"] == "group"
    assert body["group"] == "Группа 1"
    assert body["closed_on"] is None
    assert body["position"] == backend_web.head()


def test_open_individual_journal_without_group(web):
    programme = web.create_programme()
    request = journal_body(programme["id"], kind="individual")
    del request["group"]

    body = expect(web.post(JOURNALS, request, "specialist"), 201)

    assert body["kind"] == "individual"
    assert body["group"] is None


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"programme_id": UNKNOWN_ID}, "programme_id"),
        ({"kind": "class"}, "kind"),
        (
            {"academic_year": {"start": "2025-05-31", "end": "2024-09-02"}},
            "academic_year.end",
        ),
        (
            {"academic_year": {"start": "2024-09-02", "end": "2026-09-02"}},
            "academic_year.end",
        ),
        ({"academic_year": {"start": "2024-09-02"}}, "academic_year.end"),
        ({"specialist": {"name": "Смирнова О. П."}}, "specialist.position"),
        ({"group": ""}, "group"),
    ],
)
def test_open_journal_rejects_invalid_body(web, changes, path):
    programme = web.create_programme()
    head = web.head()

    body = journal_body(programme["id"])
    body.update(changes)

    response = web.post(JOURNALS, body, "specialist")

    assert path in expect_problem(response, 422)["errors"]
    assert web.head() == head


def test_open_journal_is_specialist_only(web):
    programme = web.create_programme()

    for role in ("methodist", "registrar", "admin", "inspector"):
        expect_problem(web.post(JOURNALS, journal_body(programme["id"]), role), 403)


# Sessions


def test_record_session_returns_session(backend_web):
    group = open_class(backend_web)
    attendance = {group["pupils"][0]: "present", group["pupils"][1]: "ill"}

    response = backend_web.post(
        sessions_path(group), session_body(attendance), "specialist"
    )

    body = expect(response, 201)
    assert response.headers["Location"] == f"{JOURNALS}/{group['journal']['id']}"
    assert body["journal_id"] == group["journal"]["id"]
    assert body["date"] == "2024-10-07"
    assert body["start_time"] == "10:00"
    assert body["duration_minutes"] == 40
    assert body["topic"] == "Развитие внимания"
    assert body["attendance"] == [
        {"pupil_id": group["pupils"][0], "status": "present"},
        {"pupil_id": group["pupils"][1], "status": "ill"},
    ]
    assert body["position"] == backend_web.head()


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"start_time": "24:00"}, "start_time"),
        ({"start_time": "9:30"}, "start_time"),
        ({"start_time": "09:60"}, "start_time"),
        ({"start_time": "09:30:00"}, "start_time"),
        ({"start_time": "10:00\n"}, "start_time"),
        ({"duration_minutes": 0}, "duration_minutes"),
        ({"duration_minutes": 601}, "duration_minutes"),
        ({"duration_minutes": 45.5}, "duration_minutes"),
        ({"duration_minutes": "45"}, "duration_minutes"),
        ({"topic": "   "}, "topic"),
        ({"date": "2024-13-01"}, "date"),
        (
            {"attendance": [{"pupil_id": UNKNOWN_ID, "status": "late"}]},
            "attendance.0.status",
        ),
        (
            {"attendance": [{"pupil_id": "Иванов", "status": "present"}]},
            "attendance.0.pupil_id",
        ),
        ({"attendance": None}, "attendance"),
    ],
)
def test_session_rejects_invalid_body(web, group, changes, path):
    head = web.head()

    body = session_body(all_present(group))
    body.update(changes)

    response = web.post(sessions_path(group), body, "specialist")

    assert path in expect_problem(response, 422)["errors"]
    assert web.head() == head


def test_session_edge_times_and_durations(web, group):
    for start_time, duration in (("00:00", 1), ("23:59", 600)):
        body = web.record_session(
            group["journal"]["id"],
            all_present(group),
            start_time=start_time,
            duration_minutes=duration,
        )
        assert body["start_time"] == start_time


def test_session_lists_each_pupil_once(web, group):
    first, second = group["pupils"]
    body = session_body({})
    body["attendance"] = [
        {"pupil_id": first, "status": "present"},
        {"pupil_id": second, "status": "present"},
        {"pupil_id": first, "status": "absent"},
    ]

    response = web.post(sessions_path(group), body, "specialist")

    assert expect_problem(response, 422)["errors"] == {
        "attendance.2.pupil_id": ["This pupil is already listed."]
    }


def test_session_with_unknown_pupil_is_422(web, group):
    attendance = {group["pupils"][0]: "present", UNKNOWN_ID: "present"}

    response = web.post(sessions_path(group), session_body(attendance), "specialist")

    assert "attendance.1.pupil_id" in expect_problem(response, 422)["errors"]


@pytest.mark.parametrize("on", ["2024-09-01", "2025-06-01"])
def test_session_outside_academic_year_is_422(web, group, on):
    response = web.post(
        sessions_path(group), session_body(all_present(group), date=on), "specialist"
    )

    assert "date" in expect_problem(response, 422)["errors"]


def test_session_in_the_future_is_422(web):
    programme = web.create_programme()
    today = web.today()
    first_year = today.year if today.month >= 9 else today.year - 1
    year = {
        "start": date(first_year, 9, 1).isoformat(),
        "end": date(first_year + 1, 8, 31).isoformat(),
    }
    journal = web.open_journal(programme["id"], academic_year=year)

    response = web.post(
        f"{JOURNALS}/{journal['id']}/sessions",
        session_body({}, date=web.tomorrow().isoformat()),
        "specialist",
    )

    assert "date" in expect_problem(response, 422)["errors"]


def test_session_needs_enrolment_that_day(web, group):
    late = web.register_pupil(surname="Поздняков")
    web.enrol(late["id"], group["programme"]["id"], date(2024, 11, 1))
    head = web.head()
    attendance = {**all_present(group), late["id"]: "present"}

    before = web.post(
        sessions_path(group), session_body(attendance, date="2024-10-31"), "specialist"
    )
    expect_problem(before, 409)
    assert web.head() == head

    on_first_day = web.record_session(
        group["journal"]["id"], attendance, date="2024-11-01"
    )
    assert len(on_first_day["attendance"]) == 3


def test_session_after_expulsion_last_day_is_409(web, group):
    leaving = group["pupils"][0]
    web.expel(leaving, group["programme"]["id"], date(2024, 12, 20))

    web.record_session(group["journal"]["id"], {leaving: "present"}, date="2024-12-20")
    response = web.post(
        sessions_path(group),
        session_body({leaving: "present"}, date="2024-12-23"),
        "specialist",
    )

    expect_problem(response, 409)


def test_session_of_pupil_not_in_programme_is_409(web, group):
    outsider = web.register_pupil(surname="Посторонний")

    response = web.post(
        sessions_path(group), session_body({outsider["id"]: "present"}), "specialist"
    )

    expect_problem(response, 409)


def test_session_twice_at_same_time_is_409(web, group):
    web.record_session(group["journal"]["id"], all_present(group))
    head = web.head()

    again = web.post(
        sessions_path(group), session_body(all_present(group)), "specialist"
    )
    expect_problem(again, 409)
    assert web.head() == head

    later = web.record_session(
        group["journal"]["id"], all_present(group), start_time="11:00"
    )
    assert later["start_time"] == "11:00"


def test_session_in_unknown_journal_is_404(web, group):
    for journal_id in (UNKNOWN_ID, "journal-1"):
        response = web.post(
            f"{JOURNALS}/{journal_id}/sessions",
            session_body(all_present(group)),
            "specialist",
        )
        expect_problem(response, 404)


def test_session_is_specialist_only(web, group):
    for role in ("methodist", "registrar", "inspector"):
        response = web.post(
            sessions_path(group), session_body(all_present(group)), role
        )
        expect_problem(response, 403)


# Closure


def test_close_journal(backend_web):
    group = open_class(backend_web)
    backend_web.record_session(group["journal"]["id"], all_present(group))
    path = f"{JOURNALS}/{group['journal']['id']}/closure"

    response = backend_web.post(path, {"closed_on": "2025-05-30"}, "specialist")

    body = expect(response, 200)
    assert body["id"] == group["journal"]["id"]
    assert body["closed_on"] == "2025-05-30"
    assert body["position"] == backend_web.head()
    expect_problem(
        backend_web.post(path, {"closed_on": "2025-05-31"}, "specialist"), 409
    )
    after = backend_web.post(
        sessions_path(group), session_body({}, date="2024-10-08"), "specialist"
    )
    expect_problem(after, 409)


def test_close_before_last_session_is_422(web, group):
    web.record_session(group["journal"]["id"], all_present(group), date="2024-10-07")

    response = web.post(
        f"{JOURNALS}/{group['journal']['id']}/closure",
        {"closed_on": "2024-10-06"},
        "specialist",
    )

    assert "closed_on" in expect_problem(response, 422)["errors"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"closed_on": "31.05.2025"},
        {"closed_on": "2025-05-31", "reason": "конец года"},
    ],
)
def test_close_rejects_invalid_body(web, group, body):
    response = web.post(
        f"{JOURNALS}/{group['journal']['id']}/closure", body, "specialist"
    )

    expect_problem(response, 422)


def test_close_in_the_future_is_422(web, group):
    body = {"closed_on": web.tomorrow().isoformat()}

    response = web.post(
        f"{JOURNALS}/{group['journal']['id']}/closure", body, "specialist"
    )

    assert "closed_on" in expect_problem(response, 422)["errors"]


def test_close_unknown_journal_is_404(web):
    response = web.post(
        f"{JOURNALS}/{UNKNOWN_ID}/closure", {"closed_on": "2025-05-30"}, "specialist"
    )

    expect_problem(response, 404)


# Reads


def test_journal_read_has_sessions_and_attendance(backend_web):
    group = open_class(backend_web)
    first, second = group["pupils"]
    backend_web.record_session(
        group["journal"]["id"], {first: "present", second: "absent"}, date="2024-10-14"
    )
    backend_web.record_session(
        group["journal"]["id"], {first: "ill", second: "excused"}, date="2024-10-07"
    )

    body = expect(
        backend_web.get(f"{JOURNALS}/{group['journal']['id']}", "methodist"), 200
    )

    assert body["id"] == group["journal"]["id"]
    assert body["session_count"] == 2
    assert [s["date"] for s in body["sessions"]] == ["2024-10-07", "2024-10-14"]
    assert body["sessions"][0]["attendance"] == [
        {"pupil_id": first, "status": "ill"},
        {"pupil_id": second, "status": "excused"},
    ]
    assert body["sessions"][0]["recorded_at"].endswith("Z")
    file = backend_web.personal_file(first)
    assert file["attendance"] == [
        {
            "journal_id": group["journal"]["id"],
            "programme_id": group["programme"]["id"],
            "sessions": 2,
            "present": 1,
            "absent": 1,
            "ill": 1,
            "excused": 0,
        }
    ]


def test_journal_read_of_unknown_journal_is_404(web):
    for journal_id in (UNKNOWN_ID, "x"):
        expect_problem(web.get(f"{JOURNALS}/{journal_id}", "specialist"), 404)


@pytest.mark.parametrize(
    ("role", "headers", "status"),
    [
        ("specialist", {}, 200),
        ("methodist", {}, 200),
        ("inspector", PURPOSE, 200),
        ("inspector", {}, 403),
        ("registrar", {}, 403),
        ("admin", {}, 403),
        ("subscriber", {}, 403),
    ],
)
def test_journal_read_roles(web, group, role, headers, status):
    response = web.get(f"{JOURNALS}/{group['journal']['id']}", role, **headers)

    assert response.status_code == status


# Rules between fields and against stored journals


@pytest.mark.parametrize(
    "changes",
    [{"kind": "individual", "group": "Группа 1"}, {"kind": "group", "group": None}],
)
def test_open_journal_group_optional_for_either_kind(web, changes):
    programme = web.create_programme()

    body = expect(
        web.post(JOURNALS, journal_body(programme["id"], **changes), "specialist"),
        201,
    )

    assert body["group"] == changes["group"]


def test_open_journal_year_before_records_is_422(web):
    programme = web.create_programme()
    year = {"start": "0001-09-01", "end": "0002-05-31"}

    response = web.post(
        JOURNALS, journal_body(programme["id"], academic_year=year), "specialist"
    )

    assert "academic_year.start" in expect_problem(response, 422)["errors"]


def test_journals_with_equal_fields_are_separate(web):
    programme = web.create_programme()
    request = journal_body(programme["id"])

    first = expect(web.post(JOURNALS, request, "specialist"), 201)
    second = expect(web.post(JOURNALS, request, "specialist"), 201)

    assert first["id"] != second["id"]


def test_group_journal_for_another_group_or_year(web):
    programme = web.create_programme()
    web.open_journal(programme["id"])

    other_group = web.open_journal(programme["id"], group="Группа 2")
    next_year = web.open_journal(
        programme["id"], academic_year={"start": "2025-09-01", "end": "2026-05-29"}
    )

    assert other_group["group"] == "Группа 2"
    assert next_year["academic_year"]["start"] == "2025-09-01"


def test_individual_journals_may_repeat(web):
    programme = web.create_programme()
    request = journal_body(programme["id"], kind="individual")
    del request["group"]

    first = expect(web.post(JOURNALS, request, "specialist"), 201)
    second = expect(web.post(JOURNALS, request, "specialist"), 201)

    assert first["id"] != second["id"]


def test_session_conflict_names_pupil_and_line(web, group):
    outsider = web.register_pupil(surname="Посторонний")
    attendance = {**all_present(group), outsider["id"]: "present"}

    response = web.post(sessions_path(group), session_body(attendance), "specialist")

    problem = expect_problem(response, 409)
    assert outsider["id"] in problem["detail"]
    assert "attendance.2.pupil_id" in problem["detail"]
    assert "2024-10-07" in problem["detail"]
    assert list(problem["errors"]) == ["attendance.2.pupil_id"]
    assert outsider["id"] in problem["errors"]["attendance.2.pupil_id"][0]


def test_session_conflict_names_every_pupil(web, group):
    outsiders = [
        web.register_pupil(surname=surname)["id"] for surname in ("Первый", "Второй")
    ]
    attendance = {outsiders[0]: "present", **all_present(group), outsiders[1]: "ill"}

    response = web.post(sessions_path(group), session_body(attendance), "specialist")

    problem = expect_problem(response, 409)
    assert set(problem["errors"]) == {"attendance.0.pupil_id", "attendance.3.pupil_id"}
    for pupil_id in outsiders:
        assert pupil_id in problem["detail"]
