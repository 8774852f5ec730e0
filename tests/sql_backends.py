"""SQLite and PostgreSQL for tests that must run on both whatever is chosen.

Access records, audited reads and the role matrix are checked on both SQL
engines in every run, because their locking and their SQL differ per engine.
A module parametrises its fixture with `SQL_BACKEND_PARAMS` and gets a fresh
database from `fresh_url`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import pg_server

SQL_BACKEND_PARAMS = [
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


def fresh_url(
    request: pytest.FixtureRequest, backend: str, folder: Path, name: str = "records"
) -> str:
    """Return the URL of a fresh, empty database called `name` on `backend`."""
    if backend == "postgres":
        server: pg_server.PostgresServer = request.getfixturevalue("postgres_server")
        return server.create_database(prefix=name)
    return f"sqlite:///{folder / f'{name}.sqlite'}"
