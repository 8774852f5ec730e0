"""SQLite files of the data dir are private to their owner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sqlalchemy import text

from shared.storage import create_sql_engine, eventsourcing_env


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_sqlite_engine_creates_private_files(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = tmp_path / "data" / "records.sqlite"
        engine = create_sql_engine(f"sqlite:///{path}", writer=True)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE t (x INTEGER)"))
            connection.execute(text("INSERT INTO t VALUES (1)"))
        wal = path.with_name("records.sqlite-wal")
        wal_mode = mode_of(wal) if wal.exists() else None
        engine.dispose()
    finally:
        os.umask(previous)

    assert mode_of(path.parent) == 0o700
    assert mode_of(path) == 0o600
    assert wal_mode in (None, 0o600)


def test_event_store_file_is_private(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = tmp_path / "archive.sqlite"
        env = eventsourcing_env(f"sqlite:///{path}")
    finally:
        os.umask(previous)

    assert env["SQLITE_DBNAME"] == str(path)
    assert mode_of(path) == 0o600


def test_existing_sqlite_file_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    engine = create_sql_engine(f"sqlite:///{path}", writer=True)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
        connection.execute(text("INSERT INTO t VALUES (7)"))
    engine.dispose()

    again = create_sql_engine(f"sqlite:///{path}")
    with again.connect() as connection:
        value = connection.execute(text("SELECT x FROM t")).scalar_one()
    again.dispose()

    assert value == 7
