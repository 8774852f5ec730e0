"""Every public event type, read over HTTP, holds no names, birth dates or results."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.records.feed import PUBLIC_TYPES
from services.records.web.access import get_access_log_runtime
from services.records.web.testing import (
    RecordsWebClient,
    expect,
    make_client,
    order,
    scores,
)
from tests.sql_backends import SQL_BACKEND_PARAMS, fresh_url

# Keys that would carry a name, a birth date or an attestation result.
PRIVATE_KEYS = {
    "surname",
    "name",
    "patronymic",
    "birth_date",
    "scores",
    "total",
    "level",
    "attestation_id",
    "reason",
    "topic",
    "attendance",
    "status",
    "ground_detail",
}


@pytest.fixture(params=SQL_BACKEND_PARAMS)
def web(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordsWebClient]:
    client = make_client(tmp_path, fresh_url(request, str(request.param), tmp_path))
    yield client
    get_access_log_runtime(client.app).close()
    client.close()


def unique_word() -> str:
    """Return a made-up Cyrillic word that no fixed text contains."""
    letters = "бвгджзклмнпрстфхцчшщ"
    return "Ы" + "".join(secrets.choice(letters) for _ in range(9))


def keys_in(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_in(item)


class Scenario:
    """Drives the records API through every public event type."""

    def __init__(self, web: RecordsWebClient) -> None:
        self.web = web
        self.private: set[str] = set()

    def text(self) -> str:
        word = unique_word()
        self.private.add(word)
        return word

    def pupil(self, born: date) -> str:
        self.private.add(born.isoformat())
        body = self.web.register_pupil(
            surname=self.text(),
            name=self.text(),
            patronymic=self.text(),
            birth_date=born.isoformat(),
        )
        return str(body["id"])

    def post(self, path: str, body: dict[str, Any], role: str, status: int) -> Any:
        return expect(self.web.post(path, body, role), status)

    def run(self) -> None:
        web = self.web
        first = web.create_programme("КРЗ-1")["id"]
        second = web.create_programme("КРЗ-2")["id"]
        leaving = self.pupil(date(2014, 6, 17))
        mistaken = self.pupil(date(2015, 1, 29))
        pupils = f"/api/v1/pupils/{leaving}"

        web.enrol(leaving, first)
        journal = web.open_journal(first)["id"]
        web.record_session(journal, {leaving: "present"}, topic=self.text())
        attestation = web.attest(leaving, first, scores(9, 8, 4), date(2024, 10, 20))
        self.post(
            f"{pupils}/attestations/{attestation['id']}/corrections",
            {"scores": scores(3, 2, 1), "reason": self.text()},
            "methodist",
            200,
        )
        self.post(
            f"{pupils}/transfers",
            {
                "from_programme_id": first,
                "to_programme_id": second,
                "effective_date": "2024-11-01",
                "order": order("15-п", date(2024, 11, 1)),
            },
            "registrar",
            201,
        )
        expulsion = self.post(
            f"{pupils}/expulsions",
            {
                "programme_id": second,
                "effective_date": "2025-05-30",
                "ground": "other",
                "ground_detail": self.text(),
                "order": order("30-о", date(2025, 5, 30)),
            },
            "registrar",
            201,
        )
        self.post(
            f"{pupils}/expulsions/{expulsion['id']}/cancellation",
            {"reason": self.text(), "order": order("31-о", date(2025, 5, 30))},
            "registrar",
            200,
        )
        web.expel(leaving, second, date(2025, 5, 31))
        self.post(
            f"/api/v1/journals/{journal}/closure",
            {"closed_on": "2025-05-31"},
            "specialist",
            200,
        )
        self.post(
            f"{pupils}/personal-data-destruction",
            {"act": order("7-У", date(2025, 6, 2)), "reason": self.text()},
            "archivist",
            201,
        )

        enrolment = web.enrol(mistaken, first)
        self.post(
            f"/api/v1/pupils/{mistaken}/enrolments/{enrolment['id']}/cancellation",
            {"reason": self.text(), "order": order("16-у", date(2024, 9, 3))},
            "registrar",
            200,
        )


def test_every_public_type_is_private(web: RecordsWebClient):
    scenario = Scenario(web)
    scenario.run()

    page = expect(
        web.get("/api/v1/events", "subscriber", {"limit": 1000}, project=False), 200
    )
    events = page["events"]
    text = json.dumps(events, ensure_ascii=False)

    assert {event["type"] for event in events} == set(PUBLIC_TYPES)
    assert sorted(word for word in scenario.private if word in text) == []
    for event in events:
        leaked = PRIVATE_KEYS & set(keys_in(event["data"]))
        assert leaked == set(), event["type"]
