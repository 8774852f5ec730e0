"""Online rebuild: new read-model tables built and switched in while readers read."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from sqlalchemy import Engine, select, text, update

from services.records.application import RecordsApplication
from services.records.keys import load_master_key
from services.records.projector import RecordsProjector, follow
from services.records.readmodels import RecordsReadModels, pupils
from services.records.rebuild import (
    LOCK_FILE_NAME,
    RebuildError,
    rebuild_online,
)
from shared.actor import acting_as
from shared.config import Settings
from shared.locks import LockHeldError, ProcessLock
from shared.wakeups import ChangeSignal
from tests.conftest import REGISTRAR, read_models_engine
from tests.records_helpers import dump_read_models

STARTING_PUPILS = 60


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh records database on SQLite and on PostgreSQL, whatever the env says."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.sqlite'}"
    server = request.getfixturevalue("postgres_server")
    return str(server.create_database(prefix="online"))


@pytest.fixture
def settings(store_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {"RECORDS_DATABASE_URL": store_url}, data_dir=tmp_path / "data"
    )


def open_app(settings: Settings) -> RecordsApplication:
    """Open the records store with the master key the rebuild uses."""
    return RecordsApplication(
        settings.records_database_url, master_key=load_master_key(settings)
    )


@pytest.fixture
def records_app(settings: Settings) -> Iterator[RecordsApplication]:
    app = open_app(settings)
    yield app
    app.close()


@pytest.fixture
def live_engine(store_url: str) -> Iterator[Engine]:
    engine = read_models_engine(store_url)
    yield engine
    engine.dispose()


def make_stale(engine: Engine, pupil_id: str) -> None:
    """Change a pupil's row as an older version of the read model would have it."""
    with engine.begin() as connection:
        document = connection.execute(
            select(pupils.c.document).where(pupils.c.id == pupil_id)
        ).scalar_one()
        connection.execute(
            update(pupils)
            .where(pupils.c.id == pupil_id)
            .values(status="stale", document={**document, "status": "stale"})
        )


def register(app: RecordsApplication, number: int) -> tuple[UUID, int]:
    """Register pupil number `number`; return its id and the log position."""
    with acting_as(REGISTRAR):
        result = app.register_pupil(
            surname=f"Онлайнов-{number}",
            name="Пётр",
            patronymic=None,
            birth_date=date(2015, 4, 3),
            opened_on=date(2024, 8, 26),
        )
    return UUID(str(result.resource["id"])), result.position


@dataclass
class Registered:
    """Pupils stored so far with the log position of each registration."""

    positions: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, pupil_id: UUID, position: int) -> None:
        with self.lock:
            self.positions[str(pupil_id)] = position

    def up_to(self, position: int) -> set[str]:
        """Return the pupils registered at or before `position`."""
        with self.lock:
            return {p for p, at in self.positions.items() if at <= position}


class Background:
    """Loops in threads until `halt`; errors and failed checks are kept."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def start(self, target, *args) -> None:
        def run() -> None:
            try:
                target(*args)
            except BaseException as error:
                self.errors.append(error)
                self.stop.set()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)

    def halt(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
            assert not thread.is_alive()


def read_continuously(
    read_models: RecordsReadModels,
    registered: Registered,
    stop: threading.Event,
    reads: list[int],
    missing: list[str],
) -> None:
    """Check that every pupil up to the read models' position is listed and found."""
    last = 0
    while not stop.is_set():
        position = read_models.position()
        if position < last:
            missing.append(f"the position went back from {last} to {position}")
        last = position
        expected = registered.up_to(position)
        listed, _cursor = read_models.pupils(limit=1000)
        absent = expected - {item["id"] for item in listed}
        if absent:
            missing.append(f"{len(absent)} pupils absent from the list at {position}")
        for pupil_id in sorted(expected)[:5]:
            if read_models.personal_file(pupil_id) is None:
                missing.append(f"personal file {pupil_id} absent at {position}")
        reads.append(position)


def register_slowly(
    app: RecordsApplication, registered: Registered, stop: threading.Event
) -> None:
    number = STARTING_PUPILS
    while not stop.is_set():
        registered.add(*register(app, number))
        number += 1
        time.sleep(0.01)


def test_readers_never_miss_a_pupil(settings, records_app, live_engine, store_url):
    registered = Registered()
    for number in range(STARTING_PUPILS):
        registered.add(*register(records_app, number))
    # The projector has an application of its own, as in its own process.
    projector_app = open_app(settings)
    live = RecordsProjector(projector_app, live_engine)
    live.catch_up()
    first = sorted(registered.positions)[0]
    make_stale(live_engine, first)
    reader_engine = read_models_engine(store_url)
    read_models = RecordsReadModels(reader_engine)
    reads: list[int] = []
    missing: list[str] = []
    background = Background()
    background.start(follow, live, ChangeSignal(0.01), background.stop)
    background.start(register_slowly, records_app, registered, background.stop)
    background.start(
        read_continuously, read_models, registered, background.stop, reads, missing
    )
    try:
        time.sleep(0.2)
        reads_before = len(reads)
        replayed = rebuild_online(settings, progress=False)
        reads_during = len(reads) - reads_before
        time.sleep(0.2)
        after_switch = register(records_app, 10_000)
        registered.add(*after_switch)
        deadline = time.monotonic() + 10
        while read_models.personal_file(after_switch[0]) is None:
            assert background.errors == []
            assert time.monotonic() < deadline, "the projector stopped after the switch"
            time.sleep(0.02)
    finally:
        background.halt()
        reader_engine.dispose()
        projector_app.close()

    assert background.errors == []
    assert missing == []
    assert reads_during > 0
    assert replayed >= 2 * STARTING_PUPILS
    assert read_models.personal_file(first)["status"] == "registered"
    assert first in {
        item["id"] for item in read_models.pupils(1000, None, "registered")[0]
    }
    final = read_models.position()
    listed = {item["id"] for item in read_models.pupils(limit=10_000)[0]}
    assert registered.up_to(final) <= listed


def test_rebuilt_models_equal_replay(settings, records_app, live_engine, tmp_path):
    ids = [register(records_app, number)[0] for number in range(20)]
    RecordsProjector(records_app, live_engine).catch_up(batch_size=7)
    incremental = dump_read_models(live_engine)
    make_stale(live_engine, str(ids[3]))

    replayed = rebuild_online(settings, progress=False)

    assert replayed == records_app.head_position()
    assert dump_read_models(live_engine) == incremental
    assert RecordsReadModels(live_engine).position() == records_app.head_position()


def test_leaves_no_new_tables_behind(settings, records_app, live_engine, store_url):
    register(records_app, 1)

    rebuild_online(settings, progress=False)

    if store_url.startswith("sqlite"):
        leftovers = list(settings.data_dir.parent.glob("*-rebuild.sqlite*"))
        assert leftovers == []
    else:
        with psycopg.connect(store_url) as connection:
            schemas = connection.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rm_%'"
            ).fetchall()
        assert schemas == []


def test_rebuild_into_empty_store(settings, live_engine):
    replayed = rebuild_online(settings, progress=False)

    assert replayed == 0
    assert RecordsReadModels(live_engine).counts()["rm_pupils"] == 0


def test_second_online_rebuild_refused(settings, live_engine):
    lock = ProcessLock(settings.data_dir / LOCK_FILE_NAME, owner="first rebuild")
    with lock, pytest.raises(LockHeldError, match="first rebuild"):
        rebuild_online(settings, progress=False)


def test_memory_store_refused(tmp_path):
    settings = Settings.from_env(
        {"RECORDS_DATABASE_URL": "memory://"}, data_dir=tmp_path
    )

    with pytest.raises(RebuildError, match="in-memory"):
        rebuild_online(settings, progress=False)


def test_failed_switch_keeps_old_tables(
    settings, records_app, live_engine, monkeypatch
):
    register(records_app, 1)
    RecordsProjector(records_app, live_engine).catch_up()
    before = dump_read_models(live_engine)

    def fail(self, connection):
        connection.execute(text("SELECT 1"))
        raise RuntimeError("simulated failure in the switch")

    from services.records import rebuild as rebuild_module

    monkeypatch.setattr(rebuild_module.SqliteTarget, "replace_tables", fail)
    monkeypatch.setattr(rebuild_module.PostgresTarget, "replace_tables", fail)
    register(records_app, 2)

    with pytest.raises(RuntimeError, match="simulated"):
        rebuild_online(settings, progress=False)

    assert dump_read_models(live_engine) == before
