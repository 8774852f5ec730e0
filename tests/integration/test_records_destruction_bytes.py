"""No personal data in the records databases' bytes: sealed, then destroyed.

Pupils with rare names are recorded. Then the raw files of SQLite (with its
write-ahead log) or a `pg_dump` of PostgreSQL are searched for those names, in
every form the stores write them: UTF-8, JSON escapes and the normalised sort
key. The event store alone must never show them; once the pupils' personal
data are destroyed and the projector has purged the read models, nothing may.
The log records of the whole run are searched as well.
"""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy.engine import make_url

from services.records.application import RecordsApplication
from services.records.domain.names import normalise_name
from services.records.keys import MasterKey
from services.records.projector import RecordsProjector, rebuild
from shared.actor import Principal, acting_as
from shared.config import Settings
from tests import pg_server
from tests.conftest import BACKENDS, REGISTRAR, read_models_engine
from tests.records_helpers import (
    create_programme,
    enrol,
    expel,
    open_journal,
    order,
    record_session,
    register_pupil,
    scores,
)

ARCHIVIST = Principal(token_id="token-archivist", name="Белова Нина", role="archivist")
# Rare names, and free text that only these pupils' records contain.
PEOPLE = [
    ("Цвиркунова", "Евпраксия", "Ферапонтовна", date(2014, 7, 19)),
    ("Зюзиков", "Мокий", "Евстигнеевич", date(2015, 2, 28)),
]
REMARKS = ["переехали в Нарьян-Мар", "пересчёт баллов Зюзикова"]
STAYING = ("Иванов", "Пётр", None, date(2015, 4, 3))


@dataclass
class Store:
    """A records store on one backend, and how to read all its bytes."""

    backend: str
    url: str
    folder: Path
    server: pg_server.PostgresServer | None

    def raw_bytes(self) -> bytes:
        """Return the database files (SQLite) or a plain-text dump (PostgreSQL)."""
        if self.server is None:
            files = sorted(self.folder.glob("records.sqlite*"))
            assert files, "no SQLite files found"
            return b"".join(path.read_bytes() for path in files)
        return self.dump()

    def dump(self, *tables: str) -> bytes:
        assert self.server is not None
        database = make_url(self.url).database
        # pg_dump of the same release lies next to the real initdb binary.
        binaries = (self.server.bin_dir / "initdb").resolve().parent
        command = [
            str(binaries / "pg_dump"),
            "--host=127.0.0.1",
            f"--port={self.server.port}",
            f"--username={pg_server.SUPERUSER}",
            "--no-password",
            *(f"--table={table}" for table in tables),
            str(database),
        ]
        done = subprocess.run(command, capture_output=True, check=True, timeout=60)
        assert b"CREATE TABLE" in done.stdout
        return done.stdout

    def event_table_bytes(self) -> bytes:
        """Return the bytes of the event and key tables only."""
        if self.server is None:
            return self.raw_bytes()
        return self.dump("records_events", "pupil_data_keys")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    url = BACKENDS[request.param](request, "records")
    server = (
        request.getfixturevalue("postgres_server")
        if request.param == "postgres"
        else None
    )
    return Store(request.param, url, tmp_path, server)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Every log record of the test, at every level, in one file."""
    path = tmp_path / "run.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


def forms(text: str) -> list[bytes]:
    """Return the byte forms in which a stored copy of `text` would appear."""
    variants = {text, normalise_name(text)}
    encoded = set()
    for variant in variants:
        escaped = json.dumps(variant)[1:-1]
        encoded.add(variant.encode())
        encoded.add(escaped.encode())
        # pg_dump writes table data as COPY text, which doubles backslashes.
        encoded.add(escaped.replace("\\", "\\\\").encode())
    return sorted(encoded)


def secrets() -> list[str]:
    words = [part for person in PEOPLE for part in person[:3]]
    return words + REMARKS


def found(word: str, data: bytes) -> bool:
    """Tell whether `data` contain `word` in any of its stored forms."""
    return any(form in data for form in forms(word))


def hits(data: bytes) -> list[str]:
    """Return the secrets found in `data`."""
    return [word for word in secrets() if found(word, data)]


def record_everything(app: RecordsApplication) -> dict[str, Any]:
    """Record the rare pupils' names, results, attendance and remarks."""
    with acting_as(REGISTRAR):
        programme_id = create_programme(app)
        journal_id = open_journal(app, programme_id)
        pupil_ids = [register_pupil(app, *person) for person in PEOPLE]
        staying_id = register_pupil(app, *STAYING)
        for pupil_id in [*pupil_ids, staying_id]:
            enrol(app, pupil_id, programme_id)
        attendance = dict.fromkeys(pupil_ids, "ill") | {staying_id: "present"}
        record_session(app, journal_id, date(2024, 9, 9), attendance)
        for pupil_id in pupil_ids:
            attestation = app.record_attestation(
                pupil_id,
                programme_id=programme_id,
                kind="intermediate",
                on=date(2024, 12, 20),
                scores=scores(9, 8, 4),
                protocol=order("3-п", date(2024, 12, 20)),
            )
            app.correct_attestation(
                pupil_id,
                attestation.resource["id"],
                scores=scores(9, 7, 4),
                reason=REMARKS[1],
            )
            expel(app, pupil_id, programme_id, date(2025, 3, 31), "other", REMARKS[0])
    return {"pupils": pupil_ids, "staying": staying_id, "journal": journal_id}


def wrapped_keys(app: RecordsApplication) -> list[bytes]:
    """Return the wrapped data keys stored in the key table."""
    with app.key_ring.reader.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT wrapped_key FROM pupil_data_keys WHERE wrapped_key IS NOT NULL"
        ).scalars()
        return [bytes(row) for row in rows]


def shows_key(key: bytes, data: bytes) -> bool:
    """Tell whether `data` contain a wrapped key, raw or as pg_dump hex."""
    return key in data or key.hex().encode() in data


def destroy_all(app: RecordsApplication, pupil_ids: list[UUID]) -> None:
    with acting_as(ARCHIVIST):
        for pupil_id in pupil_ids:
            app.destroy_personal_data(
                pupil_id,
                act=order("ЭК-3/2031", date(2031, 2, 1)),
                reason="истёк срок хранения",
            )


def test_event_store_never_shows_names(store, log_file):
    app = RecordsApplication(store.url, master_key=MasterKey.generate())
    try:
        record_everything(app)

        assert hits(store.event_table_bytes()) == []
        assert hits(store.raw_bytes()) == []
    finally:
        app.close()
    assert hits(log_file.read_bytes()) == []


def test_destruction_leaves_no_trace(store, log_file):
    app = RecordsApplication(store.url, master_key=MasterKey.generate())
    engine = read_models_engine(store.url)
    try:
        recorded = record_everything(app)
        projector = RecordsProjector(app, engine)
        projector.catch_up()
        # The read models contain the names now, so the search does find them.
        assert hits(store.raw_bytes()) == secrets()
        keys = wrapped_keys(app)
        assert len(keys) == len(PEOPLE) + 1

        destroy_all(app, recorded["pupils"])
        projector.catch_up()
        left = wrapped_keys(app)
        engine.dispose()
        app.close()

        data = store.raw_bytes()
        assert hits(data) == []
        assert found(STAYING[0], data)
        assert len(left) == 1
        assert [shows_key(key, data) for key in keys if key not in left] == [
            False
        ] * len(PEOPLE)
        assert shows_key(left[0], data)
    finally:
        engine.dispose()
        app.close()
    log = log_file.read_bytes()
    assert b"destroyed the data key of pupil" in log
    assert hits(log) == []


def test_rebuild_after_destruction_leaves_no_trace(store, tmp_path):
    master_key = MasterKey.generate()
    settings = Settings.from_env(
        environ={
            "RECORDS_DATABASE_URL": store.url,
            "PUPIL_RECORDS_MASTER_KEY": master_key.to_base64(),
        },
        data_dir=tmp_path,
    )
    app = RecordsApplication(store.url, master_key=master_key)
    engine = read_models_engine(store.url)
    try:
        recorded = record_everything(app)
        RecordsProjector(app, engine).catch_up()
        # The projector is stopped when the pupils' data are destroyed.
        destroy_all(app, recorded["pupils"])
    finally:
        engine.dispose()
        app.close()
    assert hits(store.raw_bytes()) == secrets()

    replayed = rebuild(settings, progress=False)

    assert replayed > 0
    assert hits(store.raw_bytes()) == []
