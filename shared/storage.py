"""Database URLs: the event store settings and SQLAlchemy engines they give."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from shared.config import ConfigurationError

MEMORY_URL = "memory://"
SQLITE_LOCK_TIMEOUT_SECONDS = 10
# How long a call of the event store waits for a pooled PostgreSQL connection.
# eventsourcing 9.5.6 retries a failed call ten times, 0.2 s apart. So while
# the server is down, a call fails after about ten times this value plus 2 s,
# and only then does its request get a 503. Measured on PostgreSQL 15: 12 s
# with a value of 1, 52 s with 5.
POSTGRES_POOL_TIMEOUT_SECONDS = 1

# Commands load an aggregate from a per-process cache and fetch only the events
# stored after the cached version ("fast-forward"), so a long journal is not
# replayed from its first session on every command, and another worker's
# writes are still seen.
AGGREGATE_CACHE = {
    "AGGREGATE_CACHE_MAXSIZE": "2000",
    "AGGREGATE_CACHE_FASTFORWARD": "y",
}


def is_memory(url: str) -> bool:
    """Tell whether `url` selects the in-process store used by tests."""
    return url.startswith("memory:")


def is_postgres(url: str) -> bool:
    return _parse(url).get_backend_name() == "postgresql"


def eventsourcing_env(url: str) -> dict[str, str]:
    """Translate a database URL into settings for an eventsourcing Application."""
    if is_memory(url):
        return {"PERSISTENCE_MODULE": "eventsourcing.popo", **AGGREGATE_CACHE}
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(parsed)
        return {
            **AGGREGATE_CACHE,
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": str(SQLITE_LOCK_TIMEOUT_SECONDS),
        }
    if backend == "postgresql":
        if not parsed.database:
            raise ConfigurationError(f"database URL {_safe(parsed)} names no database")
        env = {
            **AGGREGATE_CACHE,
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parsed.database,
            "POSTGRES_HOST": parsed.host or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": parsed.username or "postgres",
            "POSTGRES_PASSWORD": parsed.password or "",
            "POSTGRES_CONNECT_TIMEOUT": str(POSTGRES_POOL_TIMEOUT_SECONDS),
            "POSTGRES_LOCK_TIMEOUT": "10",
            # No ping before each use of a pooled connection: it would cost
            # every call a round trip, and the library retries a call whose
            # connection the server dropped.
            "POSTGRES_PRE_PING": "n",
        }
        schema = parsed.query.get("schema")
        if isinstance(schema, str) and schema:
            env["POSTGRES_SCHEMA"] = schema
        return env
    raise ConfigurationError(
        f"unsupported database URL {_safe(parsed)}: use sqlite:///PATH or "
        "postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
    )


def create_sql_engine(url: str, *, writer: bool = False, **options: Any) -> Engine:
    """Create a SQLAlchemy engine for the read models kept beside the event store.

    On SQLite a `writer` engine takes the write lock when a transaction begins.
    """
    if is_memory(url):
        engine = create_engine(
            "sqlite://",
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
        _configure_sqlite(engine, writer)
        return engine
    parsed = _parse(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_path(parsed)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            URL.create("sqlite", database=path),
            connect_args={"timeout": SQLITE_LOCK_TIMEOUT_SECONDS},
            **options,
        )
        _configure_sqlite(engine, writer)
        return engine
    if backend == "postgresql":
        query = {k: v for k, v in parsed.query.items() if k != "schema"}
        target = parsed.set(drivername="postgresql+psycopg", query=query)
        schema = parsed.query.get("schema")
        connect_args: dict[str, Any] = {"connect_timeout": 5}
        if isinstance(schema, str) and schema:
            connect_args["options"] = f"-csearch_path={schema}"
        options.setdefault("pool_pre_ping", True)
        return create_engine(target, connect_args=connect_args, **options)
    raise ConfigurationError(f"unsupported database URL {_safe(parsed)}")


def _configure_sqlite(engine: Engine, writer: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's explicit BEGIN decide transactions, as the
        # pysqlite driver's own implicit transactions skip SELECT statements.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock at once, so that two writers never
        # deadlock by both upgrading from a read lock; readers need no lock.
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


def _sqlite_path(parsed: URL) -> str:
    if not parsed.database or parsed.database == ":memory:":
        raise ConfigurationError(
            "an in-memory SQLite URL cannot be shared between processes; "
            "give a file path (sqlite:///PATH) or use memory:// in tests"
        )
    path = Path(parsed.database).expanduser().absolute()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # The read models contain decrypted names, so the file is created private.
    # SQLite gives its -wal and -shm files the database file's mode.
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass  # an existing file keeps its mode; anything else fails on open
    return str(path)


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except Exception as error:  # SQLAlchemy raises ArgumentError and ValueError
        raise ConfigurationError(f"invalid database URL: {error}") from None


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)
