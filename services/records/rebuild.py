"""Online rebuild of the records read models, while the old ones keep serving.

The rebuild replays the log into a second set of tables (a PostgreSQL schema,
or a SQLite database attached under the same name), through the projector's
own code with SQLAlchemy's `schema_translate_map`. Once the new set is close
to the head, one transaction blocks the live projector, replays the last
events into the new set and puts it in place of the old one:

- PostgreSQL moves the old tables out of the live schema and the new ones in
  (`ALTER TABLE ... SET SCHEMA`), so the switch costs no copying. A reader
  waits for the moves and then finds the new tables by name.
- SQLite cannot move tables between database files, so the transaction
  replaces each live table with a copy of the new one. Readers keep their
  snapshot (WAL) until the commit, so they see either set, never a mix.

The live projector continues on the new tables from their stored position,
which the switch guarantees is not behind the old one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Table, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tqdm import tqdm

from services.records.application import RecordsApplication
from services.records.keys import load_master_key
from services.records.projector import RecordsProjector
from services.records.readmodels import PROJECTOR_NAME, metadata, positions
from shared.config import Settings
from shared.locks import ProcessLock
from shared.storage import create_sql_engine, is_memory, is_postgres

logger = logging.getLogger(__name__)

# The PostgreSQL schema, or the name of the attached SQLite database, that
# contains the new tables until the switch.
SHADOW = "rm_rebuild"
# The PostgreSQL schema that takes the old tables during the switch.
RETIRED = "rm_retired"
BATCH_SIZE = 500
# The switch starts once fewer events than this are left to replay, so that
# the live projector is blocked only for a short final replay.
SWITCH_MARGIN = 500
# PostgreSQL: how long the switch waits for a table lock before it rolls back
# and tries again. Readers queue behind the waiting switch, so it is short.
SWITCH_LOCK_TIMEOUT_MS = 500
SWITCH_ATTEMPTS = 20
LOCK_FILE_NAME = "records-rebuild.lock"
ADVISORY_LOCK_KEY = 0x7072_7265_6275  # an arbitrary key that only this lock uses


class RebuildError(RuntimeError):
    """The online rebuild cannot run, or could not switch to the new tables."""


def rebuild_online(settings: Settings, progress: bool = True) -> int:
    """Rebuild the read models into new tables, then switch; return the events replayed.

    Raises `shared.locks.LockHeldError` while another online rebuild runs, and
    `RebuildError` for the in-memory store or a switch that kept failing.
    """
    url = settings.records_database_url
    if is_memory(url):
        raise RebuildError(
            "the in-memory store lives inside one process; rebuild a SQLite or "
            "PostgreSQL store online"
        )
    owner = "pupil-records records rebuild --online"
    with ProcessLock(settings.data_dir / LOCK_FILE_NAME, owner=owner):
        app = RecordsApplication(url, master_key=load_master_key(settings))
        try:
            target = PostgresTarget(url) if is_postgres(url) else SqliteTarget(url)
            with target.prepared():
                return _rebuild(app, target, progress)
        finally:
            app.close()


def _rebuild(app: RecordsApplication, target: ShadowTarget, progress: bool) -> int:
    metadata.create_all(target.live)
    metadata.create_all(target.shadow)
    projector = RecordsProjector(app, target.shadow)
    replayed = _fill(app, projector, progress)
    replayed += _switch(target, projector)
    logger.info("records read models rebuilt online: %d events replayed", replayed)
    return replayed


def _fill(app: RecordsApplication, projector: RecordsProjector, progress: bool) -> int:
    """Replay the log into the new tables until the head is near, with progress."""
    replayed = 0
    with tqdm(
        total=app.head_position(),
        unit="position",
        desc="records rebuild (online)",
        disable=not progress,
    ) as bar:
        while True:
            replayed += projector.catch_up(batch_size=BATCH_SIZE, progress=bar)
            head = app.head_position()
            bar.total = max(bar.total or 0, head)
            bar.refresh()
            if head - projector.read_models.position() < SWITCH_MARGIN:
                return replayed


def _switch(target: ShadowTarget, projector: RecordsProjector) -> int:
    """Replay the last events and put the new tables in place, in one transaction."""
    retrying = Retrying(
        retry=retry_if_exception_type(OperationalError),
        stop=stop_after_attempt(SWITCH_ATTEMPTS),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        before_sleep=lambda state: logger.info(
            "switch to the rebuilt read models failed (attempt %d): %s; retrying",
            state.attempt_number,
            state.outcome.exception() if state.outcome else None,
        ),
        reraise=True,
    )
    try:
        return int(retrying(_switch_once, target, projector))
    except OperationalError as error:
        raise RebuildError(
            f"could not switch to the rebuilt read models after {SWITCH_ATTEMPTS} "
            f"attempts ({type(error.orig).__name__}); the old ones still serve, "
            "run the rebuild again"
        ) from error


def _switch_once(target: ShadowTarget, projector: RecordsProjector) -> int:
    started = time.monotonic()
    try:
        with target.switch_transaction() as connection:
            live_position = _position(connection)
            # A connection's execution options change in place, so the names
            # point at the new tables only until the options are reset.
            connection.execution_options(schema_translate_map={None: SHADOW})
            applied = projector.catch_up_in(connection, BATCH_SIZE)
            new_position = _position(connection)
            connection.execution_options(schema_translate_map=None)
            if new_position < live_position:
                raise RebuildError(
                    f"the rebuilt read models reached position {new_position}, "
                    f"behind the live ones at {live_position}"
                )
            target.replace_tables(connection)
    except BaseException:
        projector.forget_aggregates()
        raise
    logger.info(
        "switched to the rebuilt read models at position %d in %.2f s "
        "(the old ones were at %d)",
        new_position,
        time.monotonic() - started,
        live_position,
    )
    return applied


def _position(connection: Connection) -> int:
    value = connection.execute(
        select(positions.c.position).where(positions.c.name == PROJECTOR_NAME)
    ).scalar()
    return int(value or 0)


def _live_tables() -> list[Table]:
    # Definition order: the readers that touch two tables take them in this
    # order too (pupils then attendance, journals then sessions), so they do
    # not deadlock with the switch. A reader taking another order makes the
    # switch reach its lock timeout and try again.
    return list(metadata.tables.values())


class ShadowTarget(Protocol):
    """The place of the new tables and the way they replace the live ones."""

    live: Engine
    shadow: Engine

    def prepared(self) -> AbstractContextManager[None]:
        """Create an empty place for the new tables; remove what is left at the end."""

    def switch_transaction(self) -> AbstractContextManager[Connection]:
        """Open the transaction of the switch, with the live projector blocked."""

    def replace_tables(self, connection: Connection) -> None:
        """Put the new tables in place of the live ones inside `connection`."""


class PostgresTarget:
    """New tables in a schema of their own, moved into the live schema."""

    def __init__(self, url: str) -> None:
        self.live = create_sql_engine(url)
        self.shadow: Engine = self.live.execution_options(
            schema_translate_map={None: SHADOW}
        )

    @contextmanager
    def prepared(self) -> Iterator[None]:
        try:
            with self.live.connect() as guard:
                # A session lock, so that rebuilds from other hosts are kept
                # out too; it ends with the connection.
                acquired = guard.exec_driver_sql(
                    f"SELECT pg_try_advisory_lock({ADVISORY_LOCK_KEY})"
                ).scalar()
                guard.commit()
                if not acquired:
                    raise RebuildError(
                        "another online rebuild of the records read models is "
                        "running on this database"
                    )
                self._drop_schemas()
                with self.live.begin() as connection:
                    connection.exec_driver_sql(f'CREATE SCHEMA "{SHADOW}"')
                try:
                    yield
                finally:
                    self._drop_schemas()
        finally:
            self.live.dispose()

    def _drop_schemas(self) -> None:
        with self.live.begin() as connection:
            for schema in (SHADOW, RETIRED):
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    @contextmanager
    def switch_transaction(self) -> Iterator[Connection]:
        with self.live.begin() as connection:
            connection.exec_driver_sql(
                f"SET LOCAL lock_timeout = '{SWITCH_LOCK_TIMEOUT_MS}ms'"
            )
            # The projector reads its position first in every batch, so this
            # lock stops it before it touches any other table.
            connection.exec_driver_sql(
                f'LOCK TABLE "{positions.name}" IN ACCESS EXCLUSIVE MODE'
            )
            yield connection

    def replace_tables(self, connection: Connection) -> None:
        live_schema = connection.exec_driver_sql("SELECT current_schema()").scalar()
        if not live_schema:
            raise RebuildError("the database connection has no current schema")
        tables = _live_tables()
        names = ", ".join(f'"{live_schema}"."{table.name}"' for table in tables)
        connection.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
        connection.exec_driver_sql(f'CREATE SCHEMA "{RETIRED}"')
        for table in tables:
            connection.exec_driver_sql(
                f'ALTER TABLE "{live_schema}"."{table.name}" SET SCHEMA "{RETIRED}"'
            )
            connection.exec_driver_sql(
                f'ALTER TABLE "{SHADOW}"."{table.name}" SET SCHEMA "{live_schema}"'
            )
        connection.exec_driver_sql(f'DROP SCHEMA "{RETIRED}" CASCADE')


class SqliteTarget:
    """New tables in an attached database file, copied over the live ones."""

    def __init__(self, url: str) -> None:
        database = make_url(url).database
        if not database:
            raise RebuildError(f"the SQLite URL {url!r} names no file")
        self.path = Path(database).expanduser().absolute()
        self.shadow_path = self.path.with_name(f"{self.path.stem}-rebuild.sqlite")
        # The switch takes the write lock of the live file, which blocks the
        # live projector; the new tables are written without it.
        self.live = self._attaching(create_sql_engine(url, writer=True))
        base = self._attaching(create_sql_engine(url))
        self.shadow: Engine = base.execution_options(
            schema_translate_map={None: SHADOW}
        )
        self._shadow_base = base

    def _attaching(self, engine: Engine) -> Engine:
        path = str(self.shadow_path)

        @event.listens_for(engine, "connect")
        def _attach(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute(f"ATTACH DATABASE ? AS {SHADOW}", (path,))

        return engine

    @contextmanager
    def prepared(self) -> Iterator[None]:
        self._remove_files()
        try:
            yield
        finally:
            self.live.dispose()
            self._shadow_base.dispose()
            self._remove_files()

    def _remove_files(self) -> None:
        for suffix in ("", "-journal", "-wal", "-shm"):
            try:
                os.unlink(f"{self.shadow_path}{suffix}")
            except FileNotFoundError:
                pass

    @contextmanager
    def switch_transaction(self) -> Iterator[Connection]:
        with self.live.begin() as connection:
            yield connection

    def replace_tables(self, connection: Connection) -> None:
        for table in _live_tables():
            table.drop(connection, checkfirst=True)
            table.create(connection)
            columns = ", ".join(f'"{column.name}"' for column in table.columns)
            connection.exec_driver_sql(
                f'INSERT INTO main."{table.name}" ({columns}) '
                f'SELECT {columns} FROM {SHADOW}."{table.name}"'
            )
