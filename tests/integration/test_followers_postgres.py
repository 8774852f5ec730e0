"""Followers on PostgreSQL: LISTEN/NOTIFY wake-ups and lost connections.

Each test makes polling too slow to pass (a fallback interval of minutes), so
an answer well before the deadline proves that a notification woke it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from sqlalchemy.exc import ProgrammingError

from services.archive.application import ArchiveApplication
from services.archive.domain.schedule import load_schedule
from services.archive.projection import PROJECTOR_NAME, ProjectionLoop
from services.archive.readmodels import RetentionProjector, get_entry
from services.archive.testing import FeedScript
from services.records import projector as projector_module
from services.records.application import RecordsApplication
from services.records.keys import load_master_key
from services.records.readmodels import RecordsReadModels
from services.records.web.testing import RecordsWebClient, make_client
from shared.actor import acting_as
from shared.config import Settings
from shared.heartbeats import read_heartbeats
from shared.storage import create_sql_engine, eventsourcing_env
from shared.wakeups import PostgresListener, open_change_signal
from tests.conftest import REGISTRAR

pytestmark = pytest.mark.postgres

SLOW_POLL_SECONDS = 600.0
EVENTS = "/api/v1/events"


@pytest.fixture
def records_url(postgres_server) -> str:
    return str(postgres_server.create_database(prefix="wake"))


@pytest.fixture
def settings(records_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env({"RECORDS_DATABASE_URL": records_url}, data_dir=tmp_path)


@pytest.fixture
def records_app(settings: Settings) -> Iterator[RecordsApplication]:
    app = RecordsApplication(
        settings.records_database_url, master_key=load_master_key(settings)
    )
    yield app
    app.close()


def register(app: RecordsApplication) -> tuple[str, int]:
    """Register a new pupil; return its id and the log position."""
    with acting_as(REGISTRAR):
        result = app.register_pupil(
            surname=f"Слушатель-{uuid4().hex[:8]}",
            name="Олег",
            patronymic=None,
            birth_date=date(2016, 3, 4),
            opened_on=date(2024, 9, 2),
        )
    return str(result.resource["id"]), result.position


def terminate_backends(url: str, only_pid: int | None = None) -> int:
    """End the server processes of other connections to the database of `url`."""
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND (%s::int IS NULL OR pid = %s::int)",
            (only_pid, only_pid),
        ).fetchall()
    return len(rows)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until `condition` holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def listener_for(url: str, app: Any) -> PostgresListener:
    signal = open_change_signal(url, app.recorder, "test listener")
    assert isinstance(signal, PostgresListener)
    assert signal.wait_connected(10)
    return signal


def test_listener_wakes_on_commit(records_url, records_app):
    listener = listener_for(records_url, records_app)
    try:
        mark = listener.mark()
        writer = threading.Timer(0.2, register, args=(records_app,))
        writer.start()

        woken = listener.wait(mark, timeout=30)
        writer.join()
    finally:
        listener.close()

    assert woken


def test_listener_reconnects_after_terminate(records_url, records_app):
    listener = listener_for(records_url, records_app)
    try:
        first_pid = listener.backend_pid
        assert terminate_backends(records_url, only_pid=first_pid) == 1
        wait_for(
            lambda: listener.backend_pid not in (None, first_pid), 30, "a reconnect"
        )
        mark = listener.mark()
        register(records_app)

        woken = listener.wait(mark, timeout=30)
    finally:
        listener.close()

    assert woken


@pytest.fixture
def web(tmp_path: Path, records_url: str) -> Iterator[RecordsWebClient]:
    client = make_client(tmp_path, records_url)
    yield client
    client.close()


class LongPoll:
    """A feed request with `wait` in a thread, timed from its start."""

    def __init__(self, web: RecordsWebClient, query: str) -> None:
        self.web = web
        self.query = query
        self.body: dict | None = None
        self.answered_at = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        client = self.web.app.test_client()
        response = client.get(
            f"{EVENTS}?{self.query}", headers=self.web.headers("subscriber")
        )
        self.answered_at = time.monotonic()
        self.body = response.get_json()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the long-poll did not answer"


def slow_signal(web: RecordsWebClient) -> PostgresListener:
    """Return the web process's listener with polling made too slow to matter."""
    runtime = web.app.extensions["pupil_records.records_runtime"]
    signal = runtime.change_signal()
    assert isinstance(signal, PostgresListener)
    assert signal.wait_connected(10)
    signal.poll_interval = SLOW_POLL_SECONDS
    return signal


def test_long_poll_answers_on_commit(web, records_app):
    slow_signal(web)
    head = records_app.head_position()
    poll = LongPoll(web, f"after={head}&wait=30")
    time.sleep(0.3)

    pupil_id, _position = register(records_app)
    committed_at = time.monotonic()
    poll.join(timeout=40)

    assert poll.body is not None
    assert [event["data"]["pupil_id"] for event in poll.body["events"]] == [pupil_id]
    # Far below the 30 s deadline: a notification woke the request.
    assert poll.answered_at - committed_at < 10


def test_long_poll_ignores_other_types(web, records_app):
    slow_signal(web)
    head = records_app.head_position()
    started = time.monotonic()
    poll = LongPoll(web, f"after={head}&wait=1.5&type=journal.opened")
    time.sleep(0.3)

    register(records_app)
    poll.join(timeout=20)

    assert poll.body is not None
    assert poll.body["events"] == []
    assert poll.answered_at - started >= 1.4


def test_long_poll_after_lost_listener(web, records_app, records_url):
    signal = slow_signal(web)
    first_pid = signal.backend_pid
    terminate_backends(records_url)
    wait_for(lambda: signal.backend_pid not in (None, first_pid), 30, "a reconnect")
    head = records_app.head_position()
    poll = LongPoll(web, f"after={head}&wait=30")
    time.sleep(0.3)

    register(records_app)
    committed_at = time.monotonic()
    poll.join(timeout=40)

    assert poll.body is not None
    assert len(poll.body["events"]) == 1
    assert poll.answered_at - committed_at < 10


def test_projector_carries_on_after_lost_connections(
    settings, records_app, records_url, monkeypatch
):
    monkeypatch.setattr(projector_module, "MAX_RETRY_SECONDS", 0.5)
    stop = threading.Event()
    worker = threading.Thread(target=projector_module.run, args=(settings, stop))
    worker.start()
    engine = create_sql_engine(records_url)
    read_models = RecordsReadModels(engine)

    def projected(pupil_id: str) -> bool:
        try:
            return read_models.personal_file(pupil_id) is not None
        except ProgrammingError:  # the projector has not created its tables yet
            return False

    try:
        before, _ = register(records_app)
        wait_for(lambda: projected(before), 30, "the first pupil")

        assert terminate_backends(records_url) >= 2
        after, position = register(records_app)
        wait_for(lambda: projected(after), 60, "the second pupil")
        beats = read_heartbeats(engine, [projector_module.HEARTBEAT_NAME])
    finally:
        stop.set()
        worker.join(timeout=30)
        engine.dispose()

    assert not worker.is_alive()
    assert beats[projector_module.HEARTBEAT_NAME].position >= position


def test_archive_projector_wakes_on_notify(postgres_server):
    url = postgres_server.create_database(prefix="archive")
    writer = ArchiveApplication(env=eventsourcing_env(url))
    follower_app = ArchiveApplication(env=eventsourcing_env(url))
    engine = create_sql_engine(url, writer=True)
    projector = RetentionProjector(follower_app, engine, load_schedule())
    projector.prepare()
    signal = listener_for(url, follower_app)
    signal.poll_interval = SLOW_POLL_SECONDS
    loop = ProjectionLoop(projector, signal)
    loop.start()
    script = FeedScript()
    try:
        # Another application writes, so only the database can wake the loop.
        first = uuid4()
        script.pupil_registered(first, date(2024, 9, 2))
        writer.apply_page(script.parsed_page(after=0))
        wait_for(lambda: get_entry(engine, "personal_file", first), 30, "the first")

        first_pid = signal.backend_pid
        terminate_backends(url)
        wait_for(lambda: signal.backend_pid not in (None, first_pid), 30, "reconnect")
        second = uuid4()
        script.pupil_registered(second, date(2024, 9, 2))
        writer.apply_page(script.parsed_page(after=1))
        wait_for(lambda: get_entry(engine, "personal_file", second), 30, "the second")
        head = writer.recorder.max_notification_id()
    finally:
        loop.stop()
        beats = read_heartbeats(engine, [PROJECTOR_NAME])
        engine.dispose()
        writer.close()
        follower_app.close()

    assert beats[PROJECTOR_NAME].position == head
    assert beats[PROJECTOR_NAME].head == head


def test_commands_carry_on_after_connections_are_dropped(records_url, records_app):
    # Neither the event store's pool nor the key ring's pings a connection
    # before use. Once the server ends their sessions, the next reads and
    # writes meet dead connections, so they must replace them.
    first_id, _ = register(records_app)
    first = UUID(first_id)
    assert records_app.pupil(first).name == "Олег"

    assert terminate_backends(records_url) >= 2

    second_id, position = register(records_app)
    assert records_app.key_ring.is_destroyed(first) is False
    assert records_app.pupil(UUID(second_id)).name == "Олег"
    assert records_app.pupil(first).name == "Олег"
    assert position == records_app.head_position()
