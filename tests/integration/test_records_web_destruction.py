"""Destruction of personal data over HTTP: the act, 410 Gone, the record."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.records.keys import MasterKeyError
from services.records.projector import open_components
from services.records.web import create_app
from services.records.web.testing import (
    RecordsWebClient,
    expect,
    expect_problem,
    make_client,
    order,
    pupil_body,
    scores,
    session_body,
)
from shared.config import ConfigurationError, Settings
from tests.conftest import BACKENDS

PUPILS = "/api/v1/pupils"
PURPOSE = {"X-Purpose": "%D0%BF%D1%80%D0%BE%D0%B2%D0%B5%D1%80%D0%BA%D0%B0"}
SURNAME = "Цвиркунова"
ACT = order("ЭК-3/2031", date(2025, 6, 2))
REASON = "истёк срок хранения"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[RecordsWebClient]:
    """A records app on the in-memory store."""
    client = make_client(tmp_path, "memory://")
    yield client
    client.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def file_web(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[RecordsWebClient]:
    """A records app on SQLite and on PostgreSQL, read through the projector."""
    client = make_client(tmp_path, BACKENDS[request.param](request, "records"))
    yield client
    client.close()


def departed(web: RecordsWebClient) -> dict[str, Any]:
    """Return a pupil who attended, was attested and left, with a classmate."""
    programme = web.create_programme()
    pupil = web.register_pupil(surname=SURNAME, name="Евпраксия")
    classmate = web.register_pupil()
    for someone in (pupil, classmate):
        web.enrol(someone["id"], programme["id"])
    journal = web.open_journal(programme["id"])
    web.record_session(journal["id"], {pupil["id"]: "ill", classmate["id"]: "present"})
    attestation = web.attest(pupil["id"], programme["id"], scores(9, 8, 4))
    expulsion = web.expel(pupil["id"], programme["id"], date(2025, 3, 31))
    return {
        "pupil": pupil,
        "classmate": classmate,
        "programme": programme,
        "journal": journal,
        "attestation": attestation,
        "expulsion": expulsion,
    }


def destruction_url(pupil_id: str) -> str:
    return f"{PUPILS}/{pupil_id}/personal-data-destruction"


def destroy(web: RecordsWebClient, pupil_id: str, **changes: Any) -> Any:
    body = {"act": ACT, "reason": REASON, **changes}
    return web.post(destruction_url(pupil_id), body, "archivist")


# The command


def test_destruction_answers_record(file_web):
    story = departed(file_web)
    pupil_id = story["pupil"]["id"]

    response = destroy(file_web, pupil_id)

    body = expect(response, 201)
    assert response.headers["Location"] == f"{PUPILS}/{pupil_id}/destruction-record"
    assert body["subject"] == pupil_id
    assert body["pupil_id"] == pupil_id
    assert body["act"] == ACT
    assert body["reason"] == REASON
    assert body["system"] == "pupil-records"
    assert "crypto-shredding" in body["method"]
    assert "full_name" in body["categories"]
    assert "attestation_results" in body["categories"]
    assert body["actor"]["role"] == "archivist"
    assert body["destroyed_at"].endswith("Z")
    assert body["position"] == file_web.head()


def test_file_answers_gone_after(file_web):
    story = departed(file_web)
    pupil_id = story["pupil"]["id"]
    destroy(file_web, pupil_id)

    problem = expect_problem(file_web.get(f"{PUPILS}/{pupil_id}", "methodist"), 410)

    assert "ЭК-3/2031" in problem["detail"]
    assert problem["act"] == ACT
    assert problem["destruction_record"] == f"{PUPILS}/{pupil_id}/destruction-record"


def test_history_keeps_envelopes_only(file_web):
    story = departed(file_web)
    pupil_id = story["pupil"]["id"]
    destroy(file_web, pupil_id)

    body = expect(file_web.get(f"{PUPILS}/{pupil_id}/history", "methodist"), 200)

    *earlier, last = body["items"]
    assert [entry["type"] for entry in earlier] == [
        "pupil.registered",
        "pupil.enrolled",
        "attendance.began",
        "attestation.recorded",
        "pupil.expelled",
    ]
    for entry in earlier:
        assert entry["data"] is None
        assert entry["reason"] is None
        assert entry["actor"]["name"]
        assert entry["recorded_at"].endswith("Z")
    assert last["type"] == "pupil.personal_data_destroyed"
    assert last["reason"] == REASON


def test_list_cursor_survives_destroyed_pupil(file_web):
    programme = file_web.create_programme()
    ids = {}
    for surname in ("Абрамов", "Борисова", "Волков", "Голубева"):
        ids[surname] = file_web.register_pupil(surname=surname)["id"]
    file_web.enrol(ids["Борисова"], programme["id"])
    file_web.expel(ids["Борисова"], programme["id"], date(2025, 3, 31))
    first = expect(file_web.get(PUPILS, "registrar", {"limit": 2}), 200)

    expect(destroy(file_web, ids["Борисова"]), 201)
    second = file_web.get(
        PUPILS, "registrar", {"limit": 2, "cursor": first["next_cursor"]}
    )

    assert [item["surname"] for item in first["items"]] == ["Абрамов", "Борисова"]
    assert [item["surname"] for item in expect(second, 200)["items"]] == [
        "Волков",
        "Голубева",
    ]


def test_lists_and_journals_forget_pupil(file_web):
    story = departed(file_web)
    pupil_id, classmate_id = story["pupil"]["id"], story["classmate"]["id"]
    destroy(file_web, pupil_id)

    everyone = expect(file_web.get(PUPILS, "registrar"), 200)["items"]
    left = expect(file_web.get(PUPILS, "registrar", {"status": "left"}), 200)["items"]
    journal = expect(
        file_web.get(f"/api/v1/journals/{story['journal']['id']}", "methodist"), 200
    )

    assert [item["id"] for item in everyone] == [classmate_id]
    assert left == []
    (session,) = journal["sessions"]
    assert session["attendance"] == [{"pupil_id": classmate_id, "status": "present"}]
    classmate = file_web.personal_file(classmate_id)
    assert classmate["attendance"][0]["present"] == 1


def test_only_departed_pupil_destroyed(web):
    programme = web.create_programme()
    registered = web.register_pupil()
    enrolled = web.register_pupil(surname="Петров")
    web.enrol(enrolled["id"], programme["id"])
    head = web.head()

    for pupil in (registered, enrolled):
        problem = expect_problem(destroy(web, pupil["id"]), 409)
        assert "left the centre" in problem["detail"]

    assert web.head() == head
    assert web.personal_file(enrolled["id"])["surname"] == "Петров"


def test_second_destruction_conflicts(web):
    pupil_id = departed(web)["pupil"]["id"]
    expect(destroy(web, pupil_id), 201)

    problem = expect_problem(destroy(web, pupil_id), 409)

    assert "ЭК-3/2031" in problem["detail"]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"act": {"number": "1", "date": "2999-01-01"}}, "act.date"),
        ({"act": {"number": "1", "date": "2025-02-30"}}, "act.date"),
        ({"act": {"date": "2025-06-02"}}, "act.number"),
        ({"reason": " "}, "reason"),
        ({"reason": None}, "reason"),
        ({"categories": ["all"]}, "categories"),
    ],
)
def test_invalid_act_rejected(web, changes, path):
    pupil_id = departed(web)["pupil"]["id"]
    head = web.head()

    problem = expect_problem(destroy(web, pupil_id, **changes), 422)

    assert path in problem["errors"]
    assert web.head() == head


def test_act_tomorrow_rejected(web):
    pupil_id = departed(web)["pupil"]["id"]
    tomorrow = {"number": "1", "date": web.tomorrow().isoformat()}

    problem = expect_problem(destroy(web, pupil_id, act=tomorrow), 422)

    assert "act.date" in problem["errors"]


def test_missing_reason_rejected(web):
    pupil_id = departed(web)["pupil"]["id"]
    body = {"act": ACT}

    problem = expect_problem(
        web.post(destruction_url(pupil_id), body, "archivist"), 422
    )

    assert "reason" in problem["errors"]


@pytest.mark.parametrize("role", ["registrar", "methodist", "inspector", "admin"])
def test_destruction_archivist_only(web, role):
    pupil_id = departed(web)["pupil"]["id"]
    body = {"act": ACT, "reason": REASON}

    expect_problem(web.post(destruction_url(pupil_id), body, role), 403)

    assert web.personal_file(pupil_id)["surname"] == SURNAME


def test_destruction_of_unknown_pupil(web):
    departed(web)

    for pupil_id in ("3fa85f64-5717-4562-b3fc-2c963f66afa6", "not-an-id"):
        expect_problem(destroy(web, pupil_id), 404)


# After the destruction


def test_writes_conflict_after(web):
    story = departed(web)
    pupil_id, programme_id = story["pupil"]["id"], story["programme"]["id"]
    expect(destroy(web, pupil_id), 201)
    head = web.head()
    writes = [
        (
            "registrar",
            f"{PUPILS}/{pupil_id}/enrolments",
            {
                "programme_id": programme_id,
                "effective_date": "2025-09-01",
                "order": order("50-у", date(2025, 6, 3)),
            },
        ),
        (
            "registrar",
            f"{PUPILS}/{pupil_id}/expulsions/{story['expulsion']['id']}/cancellation",
            {"reason": "ошибка", "order": order("51-у", date(2025, 6, 3))},
        ),
        (
            "methodist",
            f"{PUPILS}/{pupil_id}/attestations",
            {
                "programme_id": programme_id,
                "kind": "final",
                "date": "2025-03-20",
                "scores": scores(),
                "protocol": order("9-п", date(2025, 3, 20)),
            },
        ),
        (
            "methodist",
            f"{PUPILS}/{pupil_id}/attestations/{story['attestation']['id']}/corrections",
            {"scores": scores(1, 1, 1), "reason": "пересчёт"},
        ),
        (
            "specialist",
            f"/api/v1/journals/{story['journal']['id']}/sessions",
            session_body({pupil_id: "present"}, date="2024-10-14"),
        ),
    ]

    for role, path, body in writes:
        problem = expect_problem(web.post(path, body, role), 409)
        assert "destroyed" in problem["detail"], path

    assert web.head() == head


def test_record_readable_by_archive_roles(web):
    pupil_id = departed(web)["pupil"]["id"]
    created = expect(destroy(web, pupil_id), 201)
    path = f"{PUPILS}/{pupil_id}/destruction-record"

    by_archivist = expect(web.get(path, "archivist"), 200)
    by_inspector = expect(web.get(path, "inspector", **PURPOSE), 200)

    created.pop("position")
    assert by_archivist == created
    assert by_inspector == created
    expect_problem(web.get(path, "inspector"), 403)
    expect_problem(web.get(path, "methodist"), 403)


def test_no_record_before_destruction(web):
    pupil_id = departed(web)["pupil"]["id"]

    problem = expect_problem(
        web.get(f"{PUPILS}/{pupil_id}/destruction-record", "archivist"), 404
    )

    assert pupil_id in problem["detail"]


def test_same_person_registers_again(web):
    pupil_id = departed(web)["pupil"]["id"]
    expect(destroy(web, pupil_id), 201)

    again = web.register_pupil(surname=SURNAME, name="Евпраксия")

    assert again["id"] != pupil_id
    assert web.personal_file(again["id"])["surname"] == SURNAME


def test_feed_announces_destruction(web):
    pupil_id = departed(web)["pupil"]["id"]
    position = expect(destroy(web, pupil_id), 201)["position"]

    page = expect(
        web.get(
            "/api/v1/events", "subscriber", {"type": "pupil.personal_data_destroyed"}
        ),
        200,
    )

    (event,) = page["events"]
    assert event["position"] == position
    assert event["subject"] == f"pupils/{pupil_id}"
    assert event["data"]["pupil_id"] == pupil_id
    assert event["data"]["act"] == ACT
    assert event["data"]["destroyed_at"].endswith("Z")


# The master key


def production_settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(
        environ={
            "PUPIL_RECORDS_ENV": "production",
            "RECORDS_DATABASE_URL": f"sqlite:///{tmp_path / 'records.sqlite'}",
            **env,
        },
        data_dir=tmp_path,
    )


def test_production_without_key_fails(tmp_path):
    settings = production_settings(tmp_path)

    with pytest.raises(ConfigurationError, match="master key"):
        create_app(settings)
    with pytest.raises(MasterKeyError, match="no master key in production mode"):
        open_components(settings)
    assert not (tmp_path / "master.key").exists()


def test_wrong_key_fails_clearly(tmp_path):
    url = f"sqlite:///{tmp_path / 'records.sqlite'}"
    first = make_client(tmp_path, url)
    first.register_pupil()
    first.close()
    wrong = base64.b64encode(bytes(range(32))).decode()
    other = make_client(tmp_path, url, PUPIL_RECORDS_MASTER_KEY=wrong)
    try:
        ready = other.client.get("/readyz")
        problem = expect_problem(other.post(PUPILS, pupil_body(), "registrar"), 503)
    finally:
        other.close()

    assert ready.status_code == 503
    assert "master key" in ready.get_data(as_text=True)
    assert "master key" in problem["detail"]
    settings = Settings.from_env(
        {"RECORDS_DATABASE_URL": url, "PUPIL_RECORDS_MASTER_KEY": wrong},
        data_dir=tmp_path,
    )
    with pytest.raises(MasterKeyError, match="not the one this records database"):
        open_components(settings)


def test_refusal_explains_when_file_is_destroyable(web):
    programme = web.create_programme()
    mistaken = web.register_pupil()
    cancelled = web.register_pupil(surname="Петров")
    enrolment = web.enrol(cancelled["id"], programme["id"])
    web.post(
        f"{PUPILS}/{cancelled['id']}/enrolments/{enrolment['id']}/cancellation",
        {"reason": "ошибка", "order": {"number": "13-у", "date": "2024-09-03"}},
        "registrar",
    )

    for pupil in (mistaken, cancelled):
        detail = expect_problem(destroy(web, pupil["id"]), 409)["detail"]
        assert "never closed" in detail
        assert "expulsion ends their last programme" in detail
