"""The records application, engine and read models of one web process.

They are built on first use, inside a worker: gunicorn calls `create_app()` in
each worker after fork, and nothing here runs before a request needs it, so no
database connection is ever opened in the master or at import time.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

from eventsourcing.persistence import PersistenceError
from flask import Flask, current_app
from sqlalchemy import Engine, column, func, select, table
from sqlalchemy.exc import SQLAlchemyError

from services.records.application import RecordsApplication
from services.records.keys import MasterKey, MasterKeyError, load_master_key
from services.records.projector import HEARTBEAT_NAME, RecordsProjector
from services.records.readmodels import RecordsReadModels
from shared.config import Settings
from shared.heartbeats import (
    FollowerState,
    create_heartbeat_table,
    read_heartbeats,
    stall_reason,
)
from shared.storage import create_sql_engine, is_memory, is_postgres
from shared.wakeups import ChangeSignal, open_change_signal

logger = logging.getLogger(__name__)

EXTENSION_KEY = "pupil_records.records_runtime"


@dataclass(frozen=True)
class Components:
    """The objects one process serves the records API with."""

    application: RecordsApplication
    engine: Engine
    read_models: RecordsReadModels
    # Only with memory://: the store lives in this process, so no projector
    # process can follow it and the web process projects before each read.
    inline_projector: RecordsProjector | None


class RecordsRuntime:
    """Builds the process's components on first use and hands them to views."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Read now, so that a missing key in production mode stops the worker.
        # The in-memory store dies with the process, and so may its key.
        self.master_key = (
            MasterKey.generate()
            if is_memory(settings.records_database_url)
            else load_master_key(settings)
        )
        self._components: Components | None = None
        self._signal: ChangeSignal | None = None
        self._build_lock = threading.Lock()
        self._projection_lock = threading.Lock()
        # Events counted so far and the position the count covers, so that
        # each scrape counts only the events stored since the last one.
        self._count_lock = threading.Lock()
        self._event_count = 0
        self._counted_up_to = 0

    @property
    def started(self) -> bool:
        """Tell whether the components were built (by a request needing them)."""
        return self._components is not None

    @property
    def components(self) -> Components:
        """Return the components, building them on the first call."""
        components = self._components
        if components is None:
            with self._build_lock:
                if self._components is None:
                    self._components = _build(self.settings, self.master_key)
                components = self._components
        return components

    @property
    def application(self) -> RecordsApplication:
        return self.components.application

    @property
    def engine(self) -> Engine:
        return self.components.engine

    def read_models(self) -> RecordsReadModels:
        """Return the read models, brought up to date first when projected inline."""
        components = self.components
        if components.inline_projector is not None:
            with self._projection_lock:
                components.inline_projector.catch_up()
        return components.read_models

    def read_position(self) -> int:
        """Return the records position the read models have processed."""
        return self.read_models().position()

    def change_signal(self) -> ChangeSignal:
        """Return the signal of new events in the log, listening from the first call.

        On PostgreSQL one listening connection per process wakes every
        long-poll of the feed; elsewhere the signal only sets the poll interval.
        """
        signal = self._signal
        if signal is None:
            application = self.application
            with self._build_lock:
                if self._signal is None:
                    self._signal = open_change_signal(
                        self.settings.records_database_url,
                        application.recorder,
                        f"pupil-records records web {os.getpid()}",
                    )
                signal = self._signal
        return signal

    def follower_states(self) -> list[FollowerState]:
        """Return the records projector's position, the log head and its heartbeat."""
        read_models = self.read_models()
        heartbeat = read_heartbeats(self.engine, [HEARTBEAT_NAME]).get(HEARTBEAT_NAME)
        return [
            FollowerState(
                name=HEARTBEAT_NAME,
                label="records projector",
                position=read_models.position(),
                head=self.application.head_position(),
                heartbeat=heartbeat,
            )
        ]

    def events_appended(self) -> int:
        """Count the events stored in the records log."""
        components = self.components
        if is_memory(self.settings.records_database_url):
            # The in-memory store numbers its events without gaps.
            return components.application.head_position()
        with self._count_lock:
            head = components.application.head_position()
            if head > self._counted_up_to:
                self._event_count += _count_events(
                    components.engine,
                    self.settings.records_database_url,
                    after=self._counted_up_to,
                    up_to=head,
                )
                self._counted_up_to = head
            return self._event_count

    def readiness(self) -> str | None:
        """Return why the service is not ready, or None when it is."""
        try:
            states = self.follower_states()
        except (PersistenceError, SQLAlchemyError, OSError) as error:
            logger.warning("records database unreachable: %s", error)
            return f"the records database is unreachable ({type(error).__name__})"
        except MasterKeyError as error:
            logger.error("records key ring unusable: %s", error)
            return f"the records key ring cannot be opened: {error}"
        projector = states[0]
        if projector.lag > self.settings.follower_max_lag:
            return (
                f"the records projector is {projector.lag} events behind the log "
                f"(allowed: {self.settings.follower_max_lag})"
            )
        return stall_reason(projector, self.settings.follower_stall_seconds)

    def close(self) -> None:
        """Release the database connections, if they were opened."""
        with self._build_lock:
            components, self._components = self._components, None
            signal, self._signal = self._signal, None
        if signal is not None:
            signal.close()
        if components is not None:
            components.engine.dispose()
            components.application.close()


def _count_events(engine: Engine, url: str, *, after: int, up_to: int) -> int:
    """Count the stored events with positions in (`after`, `up_to`].

    Positions may have gaps, so the rows are counted. eventsourcing commits
    events in position order, so no event at or below `up_to` commits later.
    """
    if is_postgres(url):
        events = table("records_events", column("notification_id"))
        position = events.c.notification_id
    else:
        # SQLite's fixed table name; the position is the row id.
        events = table("stored_events", column("rowid"))
        position = events.c.rowid
    query = (
        select(func.count())
        .select_from(events)
        .where(position > after, position <= up_to)
    )
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def _build(settings: Settings, master_key: MasterKey) -> Components:
    url = settings.records_database_url
    application = RecordsApplication(url, master_key=master_key)
    try:
        engine = create_sql_engine(url)
        read_models = RecordsReadModels(engine)
        _create_tables(read_models)
    except BaseException:
        application.close()
        raise
    inline = RecordsProjector(application, engine) if is_memory(url) else None
    logger.info("records web process %s opened its database", os.getpid())
    return Components(application, engine, read_models, inline)


def _create_tables(read_models: RecordsReadModels) -> None:
    # The projector process creates the same tables; when both start at once,
    # one of them may fail on a table the other has just created.
    try:
        read_models.create_tables()
        create_heartbeat_table(read_models.engine)
    except SQLAlchemyError:
        logger.info("read-model tables appeared concurrently; checking again")
        read_models.create_tables()
        create_heartbeat_table(read_models.engine)


def install_runtime(app: Flask, runtime: RecordsRuntime) -> None:
    """Attach `runtime` to `app`, so that views find it through `get_runtime`."""
    app.extensions[EXTENSION_KEY] = runtime


def get_runtime(app: Flask | None = None) -> RecordsRuntime:
    """Return the runtime of `app` (default: the app of the current request)."""
    target = app if app is not None else current_app
    runtime: RecordsRuntime = target.extensions[EXTENSION_KEY]
    return runtime
