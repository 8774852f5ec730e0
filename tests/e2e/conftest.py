"""Fixtures that start the real processes and stop them, whatever the outcome.

Each fixture runs its tests once per database engine of
`PUPIL_RECORDS_TEST_BACKENDS` that separate processes can share: on the data
dir's SQLite files, and with `RECORDS_DATABASE_URL` and `ARCHIVE_DATABASE_URL`
pointing at two fresh databases of the session's PostgreSQL server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKEND_MARKS, shared_backends
from tests.e2e.helpers import (
    ProcessStack,
    RunningServices,
    database_env,
    process_stack,
    start_run,
)


def _engine_params() -> list[object]:
    return [
        pytest.param(name, marks=BACKEND_MARKS.get(name, ()))
        for name in shared_backends()
    ]


@pytest.fixture(scope="module", params=_engine_params())
def e2e_backend(request: pytest.FixtureRequest) -> str:
    """The database engine the services of this module's tests run on."""
    return str(request.param)


def fresh_database_env(request: pytest.FixtureRequest, backend: str) -> dict[str, str]:
    """Return the database URLs of fresh stores for the services on `backend`."""
    server = (
        request.getfixturevalue("postgres_server") if backend == "postgres" else None
    )
    return database_env(backend, server)


@pytest.fixture(scope="module")
def services(
    tmp_path_factory: pytest.TempPathFactory,
    e2e_backend: str,
    request: pytest.FixtureRequest,
) -> Iterator[RunningServices]:
    """Start one `pupil-records run` shared by the tests of a module.

    A module may set `SERVICES_ENV`, a dict of further environment variables.
    """
    folder = tmp_path_factory.mktemp(f"run-{e2e_backend}")
    env = {
        **fresh_database_env(request, e2e_backend),
        **getattr(request.module, "SERVICES_ENV", {}),
    }
    running = start_run(folder / "data", folder / "run.out", database_env=env)
    try:
        yield running
    finally:
        running.kill()
        running.records.close()
        running.archive.close()


@pytest.fixture
def start_services(
    tmp_path: Path, e2e_backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., RunningServices]]:
    """Start `pupil-records run` on demand; every run is killed at teardown.

    Runs on one data dir share its databases, so a restart finds its data.
    """
    started: list[RunningServices] = []
    databases: dict[Path, dict[str, str]] = {}

    def start(*args: str, data_dir: Path | None = None) -> RunningServices:
        folder = data_dir or tmp_path / "data"
        if folder not in databases:
            databases[folder] = fresh_database_env(request, e2e_backend)
        output = tmp_path / f"run-{len(started)}.out"
        running = start_run(folder, output, *args, database_env=databases[folder])
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.kill()


@pytest.fixture
def stack(
    tmp_path: Path, e2e_backend: str, request: pytest.FixtureRequest
) -> Iterator[ProcessStack]:
    """The four processes started one by one, for tests that kill one of them."""
    databases = fresh_database_env(request, e2e_backend)
    with process_stack(tmp_path / "data", tmp_path / "stack.out", databases) as started:
        yield started
