"""The archive follower against a real records service that goes down and restarts."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from services.archive import follower
from services.archive.application import ArchiveApplication
from services.archive.domain.schedule import load_schedule
from services.archive.projection import FOLLOWER_NAME, PROJECTOR_NAME
from services.archive.readmodels import RetentionProjector, get_entry
from services.records.application import RecordsApplication
from services.records.keys import load_master_key
from services.records.web import create_app, get_runtime
from shared.actor import acting_as
from shared.auth import TokenStore
from shared.config import Settings
from shared.heartbeats import read_heartbeats
from shared.storage import create_sql_engine, eventsourcing_env
from tests.conftest import REGISTRAR


class RecordsServer:
    """The records web app served over HTTP on 127.0.0.1 from a thread."""

    def __init__(self, settings: Settings, port: int) -> None:
        self.app: Flask = create_app(settings)
        self._serving = 0
        self._idle = threading.Condition()
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", port, self._counted, threaded=True
        )
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}
        )
        self.thread.daemon = True
        self.thread.start()

    def _counted(self, environ: Any, start_response: Any) -> Any:
        # Counts the requests in flight, so that `crash` closes the database
        # only after them: closing a SQLite connection that another thread
        # is using can crash the interpreter.
        with self._idle:
            self._serving += 1
        try:
            return list(self.app(environ, start_response))
        finally:
            with self._idle:
                self._serving -= 1
                self._idle.notify_all()

    def crash(self) -> None:
        """Stop serving and close the database, as a process that dies would."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        with self._idle:
            self._idle.wait_for(lambda: self._serving == 0, timeout=30)
        get_runtime(self.app).close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def register(app: RecordsApplication, surname: str) -> UUID:
    with acting_as(REGISTRAR):
        result = app.register_pupil(
            surname=surname,
            name="Анна",
            patronymic=None,
            birth_date=date(2015, 6, 7),
            opened_on=date(2024, 9, 2),
        )
    return UUID(str(result.resource["id"]))


def test_follower_survives_records_restart(tmp_path: Path) -> None:
    port = free_port()
    records_settings = Settings.from_env(environ={}, data_dir=tmp_path)
    token = TokenStore(records_settings.tokens_file).issue("subscriber", "Архив")
    archive_url = f"sqlite:///{tmp_path / 'archive.sqlite'}"
    archive_settings = Settings.from_env(
        {
            "ARCHIVE_DATABASE_URL": archive_url,
            "ARCHIVE_RECORDS_URL": f"http://127.0.0.1:{port}",
            "ARCHIVE_FEED_TOKEN": token,
        },
        data_dir=tmp_path,
    )
    records = RecordsApplication(
        records_settings.records_database_url,
        master_key=load_master_key(records_settings),
    )
    server = RecordsServer(records_settings, port)
    stop = threading.Event()
    worker = threading.Thread(target=follower.run, args=(archive_settings, stop))
    worker.start()
    engine = create_sql_engine(archive_url)

    def entry(pupil_id: UUID) -> object:
        try:
            return get_entry(engine, "personal_file", pupil_id)
        except Exception:  # the follower may not have created its tables yet
            return None

    try:
        before = register(records, "Доперезапускова")
        wait_for(lambda: entry(before), 30, "the pupil registered before the crash")

        server.crash()
        during = register(records, "Впростоева")
        time.sleep(1.0)
        assert entry(during) is None

        server = RecordsServer(records_settings, port)
        wait_for(lambda: entry(during), 60, "the pupil registered while down")
        head = records.head_position()
        wait_for(
            lambda: (
                read_heartbeats(engine, [FOLLOWER_NAME])[FOLLOWER_NAME].position == head
            ),
            30,
            "the follower's heartbeat at the head",
        )
        beats = read_heartbeats(engine, [FOLLOWER_NAME, PROJECTOR_NAME])
    finally:
        stop.set()
        worker.join(timeout=30)
        server.crash()
        engine.dispose()
        records.close()

    assert not worker.is_alive()
    assert beats[FOLLOWER_NAME].head == head
    assert beats[PROJECTOR_NAME].position == beats[PROJECTOR_NAME].head


def test_follower_reports_replaced_records_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.archive.follower")
    port = free_port()
    first = Settings.from_env(environ={}, data_dir=tmp_path / "first")
    token = TokenStore(first.tokens_file).issue("subscriber", "Архив")
    # A fresh records store that accepts the same token, as after a restore
    # of an empty or older database.
    replacement = Settings.from_env(
        {"PUPIL_RECORDS_TOKENS_FILE": str(first.tokens_file)},
        data_dir=tmp_path / "replacement",
    )
    records = RecordsApplication(
        first.records_database_url, master_key=load_master_key(first)
    )
    register(records, "Допереставкина")
    head = records.head_position()
    archive_url = f"sqlite:///{tmp_path / 'archive.sqlite'}"
    archive = ArchiveApplication(env=eventsourcing_env(archive_url))
    engine = create_sql_engine(archive_url, writer=True)
    worker = follower.Follower(
        archive,
        RetentionProjector(archive, engine, load_schedule()),
        follower.FeedClient(f"http://127.0.0.1:{port}", token),
        long_poll_seconds=1,
        slow_retry_seconds=0.5,
    )
    server = RecordsServer(first, port)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: archive.processed_position() == head, 30, "the head")
        server.crash()
        server = RecordsServer(replacement, port)
        time.sleep(3.0)
        processed = archive.processed_position()
    finally:
        stop.set()
        thread.join(timeout=30)
        server.crash()
        engine.dispose()
        archive.close()
        records.close()

    assert not thread.is_alive()
    assert processed == head
    # The first server's crash may also log the long-poll it cut short.
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR and r.name == "services.archive.follower"
    ]
    assert errors
    assert "HTTP 422" in errors[0]
    assert f"after={head} is beyond the head of the records log" in errors[0]
    # One attempt per slow retry, not a tight loop.
    assert len(errors) <= 10
