"""Audited reads of personal data and the tamper-evident access log."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from services.records.accesslog import (
    AccessLog,
    AccessRead,
    AccessRecord,
    record_hash,
    verify_chain,
)
from services.records.web.access import get_access_log_runtime
from services.records.web.testing import (
    RecordsWebClient,
    expect,
    expect_problem,
    make_client,
)
from shared.actor import Principal
from shared.clock import iso_utc
from shared.storage import create_sql_engine
from tests.chain_writer import append_records
from tests.sql_backends import SQL_BACKEND_PARAMS, fresh_url

ACCESS_LOG = "/api/v1/access-log"
UNKNOWN_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
READER = Principal(token_id="t-1", name="Зайцев Олег", role="inspector")
WORKERS = 4
APPENDS_PER_WORKER = 25


@pytest.fixture(params=SQL_BACKEND_PARAMS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return fresh_url(request, str(request.param), tmp_path)


@pytest.fixture
def web(tmp_path: Path, sql_url: str) -> Iterator[RecordsWebClient]:
    client = make_client(tmp_path, sql_url)
    yield client
    get_access_log_runtime(client.app).close()
    client.close()


@pytest.fixture
def log(sql_url: str) -> Iterator[AccessLog]:
    opened = open_log(sql_url)
    yield opened
    opened.reader.dispose()
    opened.writer.dispose()


def open_log(url: str, clock: Any = None) -> AccessLog:
    reader = create_sql_engine(url)
    writer = create_sql_engine(url, writer=True)
    opened = (
        AccessLog(reader, writer) if clock is None else AccessLog(reader, writer, clock)
    )
    opened.create_tables()
    return opened


def records_of(web: RecordsWebClient) -> list[AccessRecord]:
    log = get_access_log_runtime(web.app).log
    return [record for batch in log.chain() for record in batch]


def token_id(web: RecordsWebClient, role: str) -> str:
    principal = web.store.authenticate(web.token(role))
    assert principal is not None
    return principal.token_id


def purpose(text_value: str) -> dict[str, str]:
    return {"X-Purpose": quote(text_value)}


def register(web: RecordsWebClient, surname: str) -> str:
    return str(web.register_pupil(surname=surname)["id"])


# Reads are recorded


def test_personal_file_read_recorded(web: RecordsWebClient):
    pupil_id = register(web, "Ёлкина")

    expect(
        web.get(f"/api/v1/pupils/{pupil_id}", "inspector", **purpose("проверка № 5")),
        200,
    )

    [record] = records_of(web)
    assert record.sequence == 1
    assert record.actor.name == "Зайцев Олег Николаевич"
    assert record.actor.role == "inspector"
    assert record.actor.token_id == token_id(web, "inspector")
    assert record.endpoint == f"GET /api/v1/pupils/{pupil_id}"
    assert record.pupil_ids == (pupil_id,)
    assert record.purpose == "проверка № 5"
    assert record.previous_hash is None
    assert record.hash == record_hash(record.hashed_fields())
    assert record.at.endswith("Z")


def test_list_read_records_pupils_in_answer(web: RecordsWebClient):
    first = register(web, "Антонова")
    second = register(web, "Борисова")

    page = expect(web.get("/api/v1/pupils", "methodist", {"limit": 1}), 200)
    expect(web.get("/api/v1/pupils", "registrar"), 200)

    listed, full = records_of(web)
    assert [item["id"] for item in page["items"]] == [first]
    assert listed.pupil_ids == (first,)
    assert listed.purpose is None
    assert set(full.pupil_ids) == {first, second}
    assert full.previous_hash == listed.hash


def test_history_read_recorded(web: RecordsWebClient):
    pupil_id = register(web, "Власова")

    expect(web.get(f"/api/v1/pupils/{pupil_id}/history", "methodist"), 200)

    [record] = records_of(web)
    assert record.endpoint == f"GET /api/v1/pupils/{pupil_id}/history"
    assert record.pupil_ids == (pupil_id,)


def test_journal_read_records_attending_pupils(web: RecordsWebClient):
    programme = web.create_programme()
    present = register(web, "Гусева")
    absent = register(web, "Дроздова")
    for pupil_id in (present, absent):
        web.enrol(pupil_id, programme["id"])
    journal = web.open_journal(programme["id"])
    web.record_session(journal["id"], {present: "present", absent: "ill"})

    expect(web.get(f"/api/v1/journals/{journal['id']}", "specialist"), 200)

    [record] = records_of(web)
    assert record.endpoint == f"GET /api/v1/journals/{journal['id']}"
    assert record.pupil_ids == (present, absent)


def test_access_log_read_is_recorded(web: RecordsWebClient):
    pupil_id = register(web, "Егорова")
    expect(web.get(f"/api/v1/pupils/{pupil_id}", "registrar"), 200)

    page = expect(web.get(ACCESS_LOG, "inspector", **purpose("аудит")), 200)

    assert [item["sequence"] for item in page["items"]] == [1]
    file_read, log_read = records_of(web)
    assert log_read.endpoint == f"GET {ACCESS_LOG}"
    assert log_read.pupil_ids == (pupil_id,)
    assert log_read.purpose == "аудит"
    assert log_read.previous_hash == file_read.hash


def test_destruction_record_read_recorded(web: RecordsWebClient):
    programme = web.create_programme()
    pupil_id = register(web, "Зайцева")
    web.enrol(pupil_id, programme["id"])
    web.expel(pupil_id, programme["id"], web.today())
    destruction = {"act": {"number": "7-У", "date": web.today().isoformat()}}
    destruction["reason"] = "Истёк срок хранения"
    expect(
        web.post(
            f"/api/v1/pupils/{pupil_id}/personal-data-destruction",
            destruction,
            "archivist",
        ),
        201,
    )

    expect_problem(web.get(f"/api/v1/pupils/{pupil_id}", "methodist"), 410)
    expect(
        web.get(
            f"/api/v1/pupils/{pupil_id}/destruction-record",
            "inspector",
            **purpose("проверка уничтожения"),
        ),
        200,
    )

    [record] = records_of(web)
    assert record.endpoint == f"GET /api/v1/pupils/{pupil_id}/destruction-record"
    assert record.pupil_ids == (pupil_id,)
    assert record.purpose == "проверка уничтожения"


def test_head_of_personal_file_recorded(web: RecordsWebClient):
    pupil_id = register(web, "Жукова")
    web.project()

    response = web.client.head(
        f"/api/v1/pupils/{pupil_id}", headers=web.headers("methodist")
    )

    assert response.status_code == 200
    [record] = records_of(web)
    assert record.endpoint == f"HEAD /api/v1/pupils/{pupil_id}"


def test_refused_or_failed_reads_not_recorded(web: RecordsWebClient):
    pupil_id = register(web, "Зуева")

    expect_problem(web.get(f"/api/v1/pupils/{UNKNOWN_ID}", "methodist"), 404)
    expect_problem(web.get(f"/api/v1/pupils/{pupil_id}", "specialist"), 403)
    expect_problem(web.get(f"/api/v1/pupils/{pupil_id}", None), 401)
    expect_problem(web.get(f"/api/v1/pupils/{pupil_id}", "inspector"), 403)
    expect_problem(web.get("/api/v1/pupils", "methodist", {"limit": 0}), 422)

    assert records_of(web) == []


def test_commands_and_other_reads_not_recorded(web: RecordsWebClient):
    programme = web.create_programme()
    register(web, "Ильина")

    expect(web.get("/api/v1/programmes", "admin"), 200)
    expect(web.get(f"/api/v1/programmes/{programme['id']}", "methodist"), 200)
    expect(web.get("/api/v1/events", "subscriber"), 200)

    assert records_of(web) == []


def test_unwritable_log_withholds_data(web: RecordsWebClient):
    pupil_id = register(web, "Ковалевская")
    log = get_access_log_runtime(web.app).log
    with log.writer.begin() as connection:
        connection.execute(text("DROP TABLE access_log"))

    response = web.get(f"/api/v1/pupils/{pupil_id}", "methodist")

    expect_problem(response, 503)
    assert response.headers["Retry-After"] == "5"
    assert "Ковалевская" not in response.get_data(as_text=True)


# The list


def test_access_log_filters_by_pupil(web: RecordsWebClient):
    first = register(web, "Лебедева")
    second = register(web, "Морозова")
    expect(web.get(f"/api/v1/pupils/{first}", "methodist"), 200)
    expect(web.get(f"/api/v1/pupils/{second}", "methodist"), 200)
    expect(web.get("/api/v1/pupils", "methodist"), 200)

    page = expect(web.get(ACCESS_LOG, "admin", {"pupil_id": second}), 200)

    endpoints = [item["endpoint"] for item in page["items"]]
    assert endpoints == [f"GET /api/v1/pupils/{second}", "GET /api/v1/pupils"]
    assert all(second in item["pupil_ids"] for item in page["items"])


def test_access_log_fields(web: RecordsWebClient):
    pupil_id = register(web, "Никитина")
    expect(web.get(f"/api/v1/pupils/{pupil_id}", "methodist"), 200)

    [item] = expect(web.get(ACCESS_LOG, "admin"), 200)["items"]

    assert set(item) >= {
        "at",
        "actor",
        "endpoint",
        "pupil_ids",
        "purpose",
        "hash",
        "previous_hash",
    }
    assert item["actor"] == {
        "name": "Кузнецова Мария Игоревна",
        "role": "methodist",
        "token_id": token_id(web, "methodist"),
    }
    fields = {key: value for key, value in item.items() if key != "hash"}
    assert item["hash"] == record_hash(fields)


def test_access_log_pages_in_time_order(web: RecordsWebClient):
    pupil_id = register(web, "Орлова")
    for _ in range(5):
        expect(web.get(f"/api/v1/pupils/{pupil_id}", "methodist"), 200)

    seen: list[int] = []
    cursor = None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = expect(web.get(ACCESS_LOG, "admin", query), 200)
        seen += [item["sequence"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # Every page read is recorded too, after the records it listed.
    assert seen[:5] == [1, 2, 3, 4, 5]
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen))


def test_access_log_time_range(web: RecordsWebClient):
    pupil_id = register(web, "Павлова")
    expect(web.get(f"/api/v1/pupils/{pupil_id}", "methodist"), 200)
    [first] = records_of(web)
    at = datetime.fromisoformat(first.at)

    inside = web.get(ACCESS_LOG, "admin", {"from": first.at, "to": _later(at, 1)})
    before = web.get(ACCESS_LOG, "admin", {"to": first.at})
    after = web.get(ACCESS_LOG, "admin", {"from": _later(at, 1)})

    assert [item["sequence"] for item in expect(inside, 200)["items"]] == [1]
    assert expect(before, 200)["items"] == []
    assert [item["sequence"] for item in expect(after, 200)["items"]] == []


BAD_QUERIES = [
    ({"cursor": "bm90LWEtY3Vyc29y"}, "query.cursor"),
    ({"pupil_id": "Иванов"}, "query.pupil_id"),
    ({"from": "2024-13-01T00:00:00Z"}, "query.from"),
    ({"from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, "query.to"),
    ({"from": "0001-01-01T00:00:00+01:00"}, "query.from"),
    ({"to": "9999-12-31T23:59:59-14:00"}, "query.to"),
    ({"limit": 1001}, "query.limit"),
    ({"surname": "Иванов"}, "query.surname"),
]


def test_access_log_rejects_bad_query(web: RecordsWebClient):
    for query, path in BAD_QUERIES:
        body = expect_problem(web.get(ACCESS_LOG, "admin", query), 422)
        assert path in body["errors"], query

    assert records_of(web) == []


def test_access_log_refused_to_other_roles(web: RecordsWebClient):
    for role in ("registrar", "specialist", "methodist", "archivist", "subscriber"):
        expect_problem(web.get(ACCESS_LOG, role), 403)

    assert records_of(web) == []


def _later(moment: datetime, seconds: int) -> str:
    return iso_utc(moment.astimezone(UTC) + timedelta(seconds=seconds))


# The chain


def read_of(number: int) -> AccessRead:
    return AccessRead(
        actor=READER,
        endpoint=f"GET /api/v1/pupils/{UNKNOWN_ID}",
        pupil_ids=[UNKNOWN_ID] if number % 2 else [],
        purpose=f"проверка {number}",
    )


def fill(log: AccessLog, count: int) -> list[AccessRecord]:
    return [log.append(read_of(number)) for number in range(1, count + 1)]


def tamper(engine: Engine, statement: str) -> None:
    """Run `statement` as someone who first switches the triggers off."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for table in ("access_log", "access_log_pupils"):
                connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            for table in ("access_log", "access_log_pupils"):
                for action in ("update", "delete"):
                    connection.execute(text(f"DROP TRIGGER {table}_no_{action}"))
        connection.execute(text(statement))


def test_intact_chain_verifies(log: AccessLog):
    records = fill(log, 5)

    report = verify_chain(log, batch_size=2)

    assert report.intact
    assert report.checked == 5
    assert [record.sequence for record in records] == [1, 2, 3, 4, 5]
    assert all(
        later.previous_hash == earlier.hash
        for earlier, later in zip(records, records[1:], strict=False)
    )


def test_empty_chain_verifies(log: AccessLog):
    assert verify_chain(log).intact
    assert verify_chain(log).checked == 0


@pytest.mark.parametrize(
    ("statement", "broken_at", "words"),
    [
        (
            "UPDATE access_log SET purpose = 'другое' WHERE sequence = 3",
            3,
            "does not match its hash",
        ),
        (
            "UPDATE access_log SET actor_name = 'Никто' WHERE sequence = 1",
            1,
            "does not match its hash",
        ),
        ("DELETE FROM access_log WHERE sequence = 2", 3, "record 2 is missing"),
        (
            "UPDATE access_log SET previous_hash = NULL WHERE sequence = 4",
            4,
            "does not link",
        ),
        (
            "DELETE FROM access_log_pupils WHERE sequence = 3",
            3,
            "pupil index",
        ),
    ],
)
def test_tampering_is_detected(log: AccessLog, statement, broken_at, words):
    fill(log, 5)

    tamper(log.writer, statement)
    report = verify_chain(log, batch_size=2)

    assert not report.intact
    assert report.broken_at == broken_at
    assert words in (report.reason or "")


def test_rehashed_forgery_breaks_next_link(log: AccessLog):
    records = fill(log, 4)
    forged_fields = {**records[1].hashed_fields(), "purpose": "подделка"}
    forged_hash = record_hash(forged_fields)

    tamper(
        log.writer,
        f"UPDATE access_log SET purpose = 'подделка', hash = '{forged_hash}' "
        "WHERE sequence = 2",
    )
    report = verify_chain(log)

    assert report.broken_at == 3
    assert "does not link" in (report.reason or "")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE access_log SET purpose = 'другое'",
        "DELETE FROM access_log",
        "DELETE FROM access_log_pupils",
    ],
)
def test_database_rejects_changes(log: AccessLog, statement):
    fill(log, 2)

    with pytest.raises(DBAPIError) as raised:
        with log.writer.begin() as connection:
            connection.execute(text(statement))

    assert "append-only" in str(raised.value)
    assert verify_chain(log).checked == 2


def test_clock_set_back_keeps_time_order(sql_url: str):
    moments = iter(
        [
            datetime(2025, 3, 1, 10, 0, tzinfo=UTC),
            datetime(2025, 3, 1, 9, 0, tzinfo=UTC),
        ]
    )
    log = open_log(sql_url, clock=lambda: next(moments))
    try:
        first, second = fill(log, 2)
    finally:
        log.reader.dispose()
        log.writer.dispose()

    assert second.at == first.at == "2025-03-01T10:00:00.000000Z"
    assert second.sequence == 2


def test_threads_keep_one_chain(log: AccessLog):
    def append_many() -> None:
        for number in range(APPENDS_PER_WORKER):
            log.append(read_of(number))

    threads = [threading.Thread(target=append_many) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    report = verify_chain(log)
    assert report.intact, report.reason
    assert report.checked == WORKERS * APPENDS_PER_WORKER


def test_processes_keep_one_chain(sql_url: str, log: AccessLog):
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(
            target=append_records,
            args=(sql_url, worker, APPENDS_PER_WORKER, start),
        )
        for worker in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)

    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    report = verify_chain(log)
    assert report.intact, report.reason
    assert report.checked == WORKERS * APPENDS_PER_WORKER
