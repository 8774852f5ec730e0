"""No surname, birth date or token reaches any log of `pupil-records run`.

A scenario with pupils of made-up, unique surnames runs through both services
under gunicorn, including refused and malformed requests that carry those
names in the path, the query, the body and the headers. Then the run is
stopped and every line that its processes wrote (the terminal output and the
files in `<data dir>/logs/`) is searched for the names, the birth dates and
every token.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import requests

from services.records.accesslog import record_hash
from shared.clock import today_in
from shared.config import DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEZONE
from tests.e2e.helpers import (
    RecordsClient,
    RunningServices,
    cyrillic_word,
    expect,
    order,
    requires_services,
    wait_until,
)

pytestmark = [pytest.mark.e2e, requires_services]

BIRTH_DATES = (date(2012, 7, 19), date(2013, 11, 23), date(2014, 2, 27))


class Secrets:
    """Everything that must never be logged, collected while the scenario runs."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def add(self, *values: str) -> None:
        self.values.update(value for value in values if value)

    def add_date(self, day: date) -> None:
        self.add(day.isoformat(), day.strftime("%d.%m.%Y"), day.strftime("%Y%m%d"))

    def found_in(self, text: str) -> list[str]:
        return sorted(value for value in self.values if value in text)


def log_texts(services: RunningServices) -> dict[str, str]:
    """Return the output of the run and of each file in its logs folder."""
    texts = {"run output": services.output()}
    for path in sorted((services.data_dir / "logs").rglob("*")):
        if path.is_file():
            texts[str(path)] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def register(records: RecordsClient, found: Secrets, birth_date: date) -> str:
    names = {
        "surname": f"{cyrillic_word(10)}-{cyrillic_word(6)}",
        "name": cyrillic_word(7),
        "patronymic": cyrillic_word(11),
    }
    found.add(*names.values())
    found.add_date(birth_date)
    pupil = records.post_json(
        "/api/v1/pupils",
        {**names, "birth_date": birth_date.isoformat()},
        role="registrar",
    )
    return str(pupil["id"])


def chunks(size: int) -> Iterator[bytes]:
    yield b'{"surname": "'
    sent = 0
    while sent < size:
        yield b"x" * 65536
        sent += 65536
    yield b'"}'


def run_scenario(services: RunningServices, found: Secrets) -> None:
    """Drive both services through the domain and through refusals."""
    records = services.records
    today = today_in_centre()
    programme_id = records.create_programme()["id"]
    pupil_ids = [register(records, found, day) for day in BIRTH_DATES]
    first, second, third = pupil_ids
    for pupil_id in pupil_ids:
        records.enrol(pupil_id, programme_id, today - timedelta(days=30))

    journal_id = record_results(records, programme_id, first, second, today)

    expelled = records.expel(third, programme_id, today)
    destruction = records.post_json(
        f"/api/v1/pupils/{third}/personal-data-destruction",
        {"act": order("9-У", today), "reason": "Истёк срок хранения"},
        role="archivist",
    )
    assert destruction["position"] > expelled["position"]

    reads(records, found, pupil_ids, journal_id, destruction["position"])
    refusals(records, found, first)
    oversized_requests(records)
    wait_for_archive(services, destruction["position"])


def record_results(
    records: RecordsClient, programme_id: str, first: str, second: str, today: date
) -> str:
    """Record an attestation and a session; return the journal's id."""
    records.post_json(
        f"/api/v1/pupils/{first}/attestations",
        {
            "programme_id": programme_id,
            "kind": "intermediate",
            "date": today.isoformat(),
            "scores": {"speech": 7, "contact": 11},
            "protocol": order("4", today),
        },
        role="methodist",
    )
    journal = records.post_json(
        "/api/v1/journals",
        {
            "programme_id": programme_id,
            "specialist": {"name": "Смирнова Ольга", "position": "педагог-психолог"},
            "academic_year": {
                "start": (today - timedelta(days=60)).isoformat(),
                "end": (today + timedelta(days=200)).isoformat(),
            },
            "kind": "group",
        },
        role="specialist",
    )
    records.post_json(
        f"/api/v1/journals/{journal['id']}/sessions",
        {
            "date": today.isoformat(),
            "start_time": "10:00",
            "duration_minutes": 40,
            "topic": "Развитие речи",
            "attendance": [
                {"pupil_id": first, "status": "present"},
                {"pupil_id": second, "status": "ill"},
            ],
        },
        role="specialist",
    )
    return str(journal["id"])


def today_in_centre() -> date:
    return today_in(ZoneInfo(DEFAULT_TIMEZONE))


def reads(
    records: RecordsClient,
    found: Secrets,
    pupil_ids: list[str],
    journal_id: str,
    position: int,
) -> None:
    first = pupil_ids[0]
    purpose = f"проверка по жалобе {cyrillic_word(9)}"
    found.add(purpose)
    inspector = {"X-Purpose": quote(purpose)}
    caught_up = {"min_position": position}
    reads_as = [
        (f"/api/v1/pupils/{first}", "methodist", {}),
        (f"/api/v1/pupils/{first}", "inspector", inspector),
        (f"/api/v1/pupils/{first}/history", "inspector", inspector),
        ("/api/v1/pupils", "registrar", {}),
        (f"/api/v1/journals/{journal_id}", "methodist", {}),
        (f"/api/v1/pupils/{pupil_ids[2]}/destruction-record", "inspector", inspector),
        ("/api/v1/access-log", "admin", {}),
        ("/api/v1/events", "subscriber", {}),
    ]
    for path, role, headers in reads_as:
        answer = records.request(
            "GET", path, role=role, headers=headers, params=caught_up
        )
        expect(answer, 200)


def refusals(records: RecordsClient, found: Secrets, pupil_id: str) -> None:
    """Send the names where clients misplace them: path, query, body, headers."""
    surname = cyrillic_word(12)
    wrong_token = secrets.token_urlsafe(32)
    basic_user = cyrillic_word(8)
    found.add(surname, wrong_token, basic_user)
    basic = base64.b64encode(f"{basic_user}:{surname}".encode()).decode()
    found.add(basic)
    birth = date(2011, 5, 6)
    found.add_date(birth)
    cases: list[tuple[requests.Response, int]] = [
        (records.request("GET", f"/api/v1/pupils/{surname}", role="methodist"), 404),
        (
            records.request(
                "GET", "/api/v1/pupils", role="methodist", params={"surname": surname}
            ),
            422,
        ),
        (records.request("GET", "/api/v1/pupils", token=wrong_token), 401),
        (
            records.request(
                "GET", "/api/v1/pupils", headers={"Authorization": f"Basic {basic}"}
            ),
            401,
        ),
        (
            records.request(
                "POST",
                "/api/v1/pupils",
                role="registrar",
                json={"surname": surname, "name": "\u0000", "birth_date": "2011-05-06"},
            ),
            422,
        ),
        (
            records.request(
                "POST",
                "/api/v1/pupils",
                role="registrar",
                json={"surname": surname, "name": "Ян", "birth_date": "2011-02-30"},
            ),
            422,
        ),
        (
            records.request(
                "POST",
                f"/api/v1/pupils/{pupil_id}/enrolments",
                role="methodist",
                json={"surname": surname},
            ),
            403,
        ),
        (
            records.request(
                "GET",
                f"/api/v1/pupils/{pupil_id}",
                role="inspector",
                headers={"X-Purpose": "%FF" + quote(surname)},
            ),
            400,
        ),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.url, response.text[:500])


def oversized_requests(records: RecordsClient) -> None:
    """Check the body limits as gunicorn serves them, not only the test client."""
    url = records.base_url + "/api/v1/pupils"
    auth = {"Authorization": f"Bearer {records.tokens['registrar']}"}
    json_headers = {**auth, "Content-Type": "application/json"}
    too_long = requests.post(
        url, data=b"{" + b" " * DEFAULT_MAX_BODY_BYTES + b"}", headers=json_headers
    )
    chunked = requests.post(
        url, data=chunks(DEFAULT_MAX_BODY_BYTES), headers=json_headers
    )
    deep = requests.post(
        url, data=b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", headers=json_headers
    )
    answers = [(too_long, 413), (chunked, 413), (deep, 400)]
    for response, status in answers:
        assert response.status_code == status, response.text[:500]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"
    assert chunked.request.headers.get("Transfer-Encoding") == "chunked"


def read_concurrently(records: RecordsClient, pupil_id: str, count: int) -> None:
    """Read a personal file `count` times from 8 threads, across the workers."""

    def read(_number: int) -> int:
        response = requests.get(
            f"{records.base_url}/api/v1/pupils/{pupil_id}",
            headers={"Authorization": f"Bearer {records.tokens['methodist']}"},
            timeout=30,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(read, range(count)))
    assert statuses == [200] * count


def access_chain(records: RecordsClient) -> list[dict[str, Any]]:
    """Return every access record, page by page, in the order of the list."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = records.get_json("/api/v1/access-log", role="admin", **params)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def assert_one_chain(items: list[dict[str, Any]]) -> None:
    previous_hash = None
    for number, item in enumerate(items, start=1):
        fields = {key: value for key, value in item.items() if key != "hash"}
        assert item["sequence"] == number
        assert item["previous_hash"] == previous_hash
        assert item["hash"] == record_hash(fields)
        previous_hash = item["hash"]


def wait_for_archive(services: RunningServices, position: int) -> None:
    def caught_up() -> dict[str, Any] | None:
        status = services.archive.get_json("/api/v1/status", role="archivist")
        return status if status["processed_position"] >= position else None

    wait_until(caught_up, 60, "the archive to process the scenario")


def test_run_logs_hold_no_personal_data_or_tokens(
    start_services: Callable[..., RunningServices],
):
    services = start_services()
    found = Secrets()
    found.add(*services.tokens.values())
    run_scenario(services, found)
    first_pupil = services.records.get_json(
        "/api/v1/pupils", role="registrar", limit=1
    )["items"][0]["id"]
    read_concurrently(services.records, first_pupil, 40)
    chain = access_chain(services.records)
    assert services.stop() == 0

    texts = log_texts(services)
    leaks = {
        where: found.found_in(text)
        for where, text in texts.items()
        if found.found_in(text)
    }
    web_log = texts[str(services.data_dir / "logs" / "records-web.log")]

    assert leaks == {}
    assert len(found.values) > 20
    # Reads served by several gunicorn workers at once extend one chain.
    assert len(chain) > 40
    assert_one_chain(chain)
    # The access log is on and prints route templates, not paths or queries.
    assert '"GET /api/v1/pupils/<id:pupil_id>" 200' in web_log
    assert '"POST /api/v1/pupils" 201' in web_log
    assert "Bearer" not in web_log
    assert "min_position" not in web_log
