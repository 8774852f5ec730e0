"""Fixtures that start the real processes and stop them, whatever the outcome."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import ProcessStack, RunningServices, process_stack, start_run


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServices]:
    """One `pupil-records run` shared by the tests of a module."""
    folder = tmp_path_factory.mktemp("run")
    running = start_run(folder / "data", folder / "run.out")
    try:
        yield running
    finally:
        running.kill()
        running.records.close()
        running.archive.close()


@pytest.fixture
def start_services(tmp_path: Path) -> Iterator[Callable[..., RunningServices]]:
    """Start `pupil-records run` on demand; every run is killed at teardown."""
    started: list[RunningServices] = []

    def start(*args: str, data_dir: Path | None = None) -> RunningServices:
        output = tmp_path / f"run-{len(started)}.out"
        running = start_run(data_dir or tmp_path / "data", output, *args)
        started.append(running)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.kill()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ProcessStack]:
    """The four processes started one by one, for tests that kill one of them."""
    with process_stack(tmp_path / "data", tmp_path / "stack.out") as started:
        yield started
