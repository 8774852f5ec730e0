"""Fixtures shared by the whole suite: the acting principal and databases.

`database_url` runs a test once per backend named in the environment variable
`PUPIL_RECORDS_TEST_BACKENDS`, comma-separated, default `memory,sqlite,postgres`.
The `postgres` backend uses one throwaway PostgreSQL server per test session,
started from the local binaries on 127.0.0.1 (`tests/pg_server.py`), with a
fresh database per test. A backend is a function of the pytest request and a
database name that returns the URL of a fresh, empty database, so adding one
is one function and one entry in `BACKENDS`.

A test marked `one_backend` checks something the engine does not change, such
as input validation, so it runs on the first backend of the list only.

When a selected test needs PostgreSQL and its server binaries are missing, the
run stops before the first test with what to install, instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine

from services.records.application import RecordsApplication
from services.records.readmodels import metadata
from shared.actor import Principal, acting_as
from shared.storage import MEMORY_URL, create_sql_engine
from tests import pg_server

REGISTRAR = Principal(token_id="token-registrar", name="Орлова Анна", role="registrar")

DatabaseFactory = Callable[[str], str]


def _memory_url(request: pytest.FixtureRequest, name: str) -> str:
    # Every application and engine built on this URL gets a store of its own.
    return MEMORY_URL


def _sqlite_url(request: pytest.FixtureRequest, name: str) -> str:
    folder = request.getfixturevalue("tmp_path")
    return f"sqlite:///{folder / f'{name}.sqlite'}"


def _postgres_url(request: pytest.FixtureRequest, name: str) -> str:
    server: pg_server.PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(prefix=name)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, str], str]] = {
    "memory": _memory_url,
    "sqlite": _sqlite_url,
    "postgres": _postgres_url,
}
BACKEND_MARKS = {"postgres": pytest.mark.postgres}
DEFAULT_BACKENDS = "memory,sqlite,postgres"


def chosen_backends() -> list[str]:
    """Return the backends named in PUPIL_RECORDS_TEST_BACKENDS, in order."""
    raw = os.environ.get("PUPIL_RECORDS_TEST_BACKENDS") or DEFAULT_BACKENDS
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise pytest.UsageError(
            f"PUPIL_RECORDS_TEST_BACKENDS names unknown backends {unknown}, "
            f"choose from {sorted(BACKENDS)}"
        )
    return names


def shared_backends() -> list[str]:
    """Return the chosen backends that several processes or applications can share.

    The in-memory store lives inside one application object, so it is left out.
    """
    return [name for name in chosen_backends() if name != "memory"]


def pytest_configure(config: pytest.Config) -> None:
    """Register the `one_backend` marker."""
    config.addinivalue_line(
        "markers",
        "one_backend: engine-independent test, run on the first chosen backend only",
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Deselect the runs of `one_backend` tests on every backend but the first."""
    kept, dropped = [], []
    for item in items:
        if item.get_closest_marker("one_backend") and not _on_first_backend(item):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _on_first_backend(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    params = callspec.params if callspec is not None else {}
    if "backend" in params:
        return bool(params["backend"] == chosen_backends()[0])
    if "e2e_backend" in params:
        return bool(params["e2e_backend"] == shared_backends()[0])
    return True


def pytest_collection_finish(session: pytest.Session) -> None:
    """Stop the run when a selected test needs PostgreSQL and it is not installed."""
    if not any(item.get_closest_marker("postgres") for item in session.items):
        return
    try:
        pg_server.find_binaries()
    except pg_server.PostgresUnavailableError as error:
        pytest.exit(
            f"{error}. To run only the tests that need no PostgreSQL, "
            "add -m 'not postgres'",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[pg_server.PostgresServer]:
    """A throwaway PostgreSQL server for the whole test session."""
    server = pg_server.start_server()
    yield server
    pg_server.remove_server(server)


@pytest.fixture(
    params=[
        pytest.param(name, marks=BACKEND_MARKS.get(name, ()))
        for name in chosen_backends()
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the database backend the test runs on."""
    return str(request.param)


@pytest.fixture
def database_factory(backend: str, request: pytest.FixtureRequest) -> DatabaseFactory:
    """A function that returns a fresh database URL of this backend for a name."""
    return lambda name: BACKENDS[backend](request, name)


@pytest.fixture
def database_url(database_factory: DatabaseFactory) -> str:
    """A fresh, empty database URL, once per backend."""
    return database_factory("records")


@pytest.fixture
def principal() -> Iterator[Principal]:
    """Run the test as a registrar, the actor recorded in every event."""
    with acting_as(REGISTRAR) as current:
        yield current


@pytest.fixture
def records_app(database_url: str) -> Iterator[RecordsApplication]:
    """A records application on an empty store."""
    app = RecordsApplication(database_url)
    yield app
    app.close()


def read_models_engine(url: str) -> Engine:
    """Create the read models' tables at `url` and return the projector's engine."""
    engine = create_sql_engine(url, writer=True)
    metadata.create_all(engine)
    return engine


@pytest.fixture
def records_engine(database_url: str) -> Iterator[Engine]:
    """The engine of the read models kept beside the records store."""
    engine = read_models_engine(database_url)
    yield engine
    engine.dispose()
