"""Fresh, empty stores of both services on one database engine."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from bench.postgres import PostgresServer
from services.records.keys import MasterKey
from shared.config import Settings

ENGINES = ("sqlite", "postgres")


@dataclass
class Backend:
    """One database engine: SQLite files in a folder, or a PostgreSQL server."""

    engine: str
    root: Path
    server: PostgresServer | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose from {ENGINES}")
        if self.engine == "postgres" and self.server is None:
            raise ValueError("the postgres engine needs a server")

    def fresh(self, label: str) -> Settings:
        """Return settings of new, empty records and archive stores and data dir.

        The data dir contains the master key, the tokens and, on SQLite, the
        database files. The key is created here, so every process and the
        benchmark itself use the same one.
        """
        data_dir = self.root / self.engine / label
        data_dir.mkdir(parents=True)
        environ: dict[str, str] = {}
        if self.server is not None:
            environ["RECORDS_DATABASE_URL"] = self.server.create_database("records")
            environ["ARCHIVE_DATABASE_URL"] = self.server.create_database("archive")
        settings = Settings.from_env(environ=environ, data_dir=data_dir)
        _write_master_key(settings.key_file)
        return settings

    def database_pid(self) -> int | None:
        """Return the pid of the throwaway PostgreSQL server, else None."""
        return self.server.postmaster_pid() if self.server is not None else None

    def version(self) -> str:
        """Return the engine's name and version, e.g. `PostgreSQL 15.18`."""
        if self.server is not None:
            return f"PostgreSQL {self.server.version()}"
        return f"SQLite {sqlite3.sqlite_version}"


def _write_master_key(path: Path) -> None:
    """Write a new master key file readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(MasterKey.generate().to_base64() + "\n")
