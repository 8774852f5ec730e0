"""A client for tests of the records API: requests as domain steps.

`RecordsWebClient` wraps a Flask test client, keeps one bearer token per role
and offers the usual steps (create a programme, register and enrol a pupil,
open a journal, ...) with valid default bodies. A step asserts the status it
expects; the raw `post` and `get` return the response for checks of errors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from services.records.projector import RecordsProjector
from services.records.web import create_app
from services.records.web.runtime import get_runtime
from shared.auth import TokenStore
from shared.clock import today_in
from shared.config import Settings

Json = dict[str, Any]

# Three criteria with 25 points in total, so that 14 of 25 is exactly 0.56.
CRITERIA: list[Json] = [
    {"code": "attention", "title": "Внимание", "max_score": 10},
    {"code": "memory", "title": "Память", "max_score": 10},
    {"code": "speech", "title": "Речь", "max_score": 5},
]
YEAR_START = date(2024, 9, 2)
YEAR_END = date(2025, 5, 31)
ROLE_HOLDERS = {
    "registrar": "Орлова Анна Викторовна",
    "specialist": "Смирнова Ольга Петровна",
    "methodist": "Кузнецова Мария Игоревна",
    "archivist": "Белова Нина Сергеевна",
    "inspector": "Зайцев Олег Николаевич",
    "subscriber": "Архивная служба",
    "admin": "Администратор Центра",
}


class UnexpectedStatusError(AssertionError):
    """A step got another status than it expects; the message has the body."""


def order(number: str = "12-у", signed_on: date = date(2024, 9, 2)) -> Json:
    """Return an order as the API takes it."""
    return {"number": number, "date": signed_on.isoformat()}


def programme_body(code: str = "КРЗ-1", **changes: Any) -> Json:
    """Return a valid programme: three criteria, high 0.56, medium 0.3."""
    body: Json = {
        "code": code,
        "title": f"Программа {code}",
        "orientation": "социально-педагогическая",
        "approved_order": order("45-о", date(2024, 8, 20)),
        "criteria": [dict(criterion) for criterion in CRITERIA],
        "levels": {"high": 0.56, "medium": 0.3},
    }
    body.update(changes)
    return body


def pupil_body(**changes: Any) -> Json:
    """Return a valid registration, opened on 26 August 2024."""
    body: Json = {
        "surname": "Иванов",
        "name": "Пётр",
        "patronymic": "Сергеевич",
        "birth_date": "2015-04-03",
        "opened_on": "2024-08-26",
    }
    body.update(changes)
    return body


def journal_body(programme_id: str, **changes: Any) -> Json:
    """Return a valid group journal for the 2024/2025 academic year."""
    body: Json = {
        "programme_id": programme_id,
        "specialist": {
            "name": ROLE_HOLDERS["specialist"],
            "position": "педагог-психолог",
        },
        "academic_year": {
            "start": YEAR_START.isoformat(),
            "end": YEAR_END.isoformat(),
        },
        "kind": "group",
        "group": "Группа 1",
    }
    body.update(changes)
    return body


def session_body(attendance: Mapping[str, str], **changes: Any) -> Json:
    """Return a valid 40-minute session on 7 October 2024 at 10:00."""
    body: Json = {
        "date": "2024-10-07",
        "start_time": "10:00",
        "duration_minutes": 40,
        "topic": "Развитие внимания",
        "attendance": [
            {"pupil_id": pupil_id, "status": status}
            for pupil_id, status in attendance.items()
        ],
    }
    body.update(changes)
    return body


def scores(attention: int = 5, memory: int = 5, speech: int = 2) -> Json:
    """Return scores for the three default criteria."""
    return {"attention": attention, "memory": memory, "speech": speech}


class RecordsWebClient:
    """Requests to a records app as the holder of each role."""

    def __init__(self, app: Flask, store: TokenStore) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.store = store
        self._tokens: dict[str, str] = {}

    # Raw requests

    def headers(self, role: str | None, **extra: str) -> dict[str, str]:
        """Return request headers with the role's bearer token (none for None)."""
        headers = dict(extra)
        if role is not None:
            headers["Authorization"] = f"Bearer {self.token(role)}"
        return headers

    def token(self, role: str) -> str:
        """Return the token of `role`, issuing it on first use."""
        if role not in self._tokens:
            self._tokens[role] = self.store.issue(role, ROLE_HOLDERS[role])
        return self._tokens[role]

    def post(
        self, path: str, body: Any, role: str | None, **headers: str
    ) -> TestResponse:
        """POST `body` as JSON to `path` as `role`.

        The JSON is ASCII with escapes, so that a test can send lone surrogates.
        """
        return self.client.post(
            path,
            data=json.dumps(body),
            content_type="application/json",
            headers=self.headers(role, **headers),
        )

    def get(
        self,
        path: str,
        role: str | None,
        query: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        project: bool = True,
        **headers: str,
    ) -> TestResponse:
        """GET `path` as `role`, projecting the log first unless `project` is False."""
        if project:
            self.project()
        url = f"{path}?{urlencode(query)}" if query else path
        return self.client.get(url, headers=self.headers(role, **headers))

    def project(self) -> int:
        """Apply every stored event to the read models; return how many."""
        runtime = get_runtime(self.app)
        projector = RecordsProjector(runtime.application, runtime.engine)
        return projector.catch_up()

    def head(self) -> int:
        """Return the records log position of the newest event."""
        return get_runtime(self.app).application.head_position()

    def today(self) -> date:
        """Return today in the centre's time zone."""
        return today_in(get_runtime(self.app).settings.timezone)

    def tomorrow(self) -> date:
        return self.today() + timedelta(days=1)

    # Steps

    def create_programme(self, code: str = "КРЗ-1", **changes: Any) -> Json:
        """Create a programme as admin; return the response body."""
        response = self.post(
            "/api/v1/programmes", programme_body(code, **changes), "admin"
        )
        return expect(response, 201)

    def register_pupil(self, **changes: Any) -> Json:
        """Register a pupil as registrar; return the response body."""
        return expect(
            self.post("/api/v1/pupils", pupil_body(**changes), "registrar"), 201
        )

    def enrol(
        self,
        pupil_id: str,
        programme_id: str,
        effective_date: date = YEAR_START,
        order_date: date | None = None,
    ) -> Json:
        """Enrol a pupil; the order is signed on the effective date by default."""
        body = {
            "programme_id": programme_id,
            "effective_date": effective_date.isoformat(),
            "order": order("12-у", order_date or effective_date),
        }
        response = self.post(f"/api/v1/pupils/{pupil_id}/enrolments", body, "registrar")
        return expect(response, 201)

    def expel(
        self,
        pupil_id: str,
        programme_id: str,
        effective_date: date,
        order_date: date | None = None,
        ground: str = "completed",
    ) -> Json:
        """Expel a pupil from a programme."""
        body = {
            "programme_id": programme_id,
            "effective_date": effective_date.isoformat(),
            "ground": ground,
            "order": order("30-о", order_date or effective_date),
        }
        response = self.post(f"/api/v1/pupils/{pupil_id}/expulsions", body, "registrar")
        return expect(response, 201)

    def attest(
        self,
        pupil_id: str,
        programme_id: str,
        points: Json | None = None,
        on: date = date(2024, 12, 20),
        kind: str = "intermediate",
    ) -> Json:
        """Record an attestation as methodist."""
        body = {
            "programme_id": programme_id,
            "kind": kind,
            "date": on.isoformat(),
            "scores": points if points is not None else scores(),
            "protocol": order("3", on),
        }
        response = self.post(
            f"/api/v1/pupils/{pupil_id}/attestations", body, "methodist"
        )
        return expect(response, 201)

    def open_journal(self, programme_id: str, **changes: Any) -> Json:
        """Open a journal as specialist."""
        response = self.post(
            "/api/v1/journals", journal_body(programme_id, **changes), "specialist"
        )
        return expect(response, 201)

    def record_session(
        self, journal_id: str, attendance: Mapping[str, str], **changes: Any
    ) -> Json:
        """Record a session as specialist."""
        response = self.post(
            f"/api/v1/journals/{journal_id}/sessions",
            session_body(attendance, **changes),
            "specialist",
        )
        return expect(response, 201)

    def personal_file(self, pupil_id: str) -> Json:
        """Read a personal file as methodist."""
        return expect(self.get(f"/api/v1/pupils/{pupil_id}", "methodist"), 200)

    def close(self) -> None:
        """Release the app's database connections."""
        get_runtime(self.app).close()


def expect(response: TestResponse, status: int) -> Json:
    """Return the JSON body of `response`, or raise if its status is not `status`."""
    if response.status_code != status:
        raise UnexpectedStatusError(
            f"expected {status}, got {response.status_code}: "
            f"{response.get_data(as_text=True)}"
        )
    body = response.get_json(force=True)
    return dict(body) if isinstance(body, dict) else {"body": body}


def expect_problem(response: TestResponse, status: int) -> Json:
    """Return the problem+json body of `response`, or raise if it is not one."""
    body = expect(response, status)
    if response.mimetype != "application/problem+json":
        raise UnexpectedStatusError(f"expected problem+json, got {response.mimetype}")
    for member in ("type", "title", "detail"):
        if not isinstance(body.get(member), str):
            raise UnexpectedStatusError(f"problem member {member!r} missing: {body}")
    if body.get("status") != status:
        raise UnexpectedStatusError(f"problem status is not {status}: {body}")
    return body


def make_client(data_dir: Path, database_url: str, **env: str) -> RecordsWebClient:
    """Build a records app on `database_url` with its token file in `data_dir`.

    `env` adds environment variables of the settings, e.g.
    `PUPIL_RECORDS_MIN_POSITION_TIMEOUT="0.2"`. Close it with `close()`.
    """
    settings = Settings.from_env(
        {"RECORDS_DATABASE_URL": database_url, **env}, data_dir=data_dir
    )
    app = create_app(settings)
    return RecordsWebClient(app, TokenStore(settings.tokens_file))
