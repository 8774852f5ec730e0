"""Concurrent commands on one pupil from many threads on a shared SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from services.records.application import RecordsApplication
from services.records.domain.errors import (
    ConcurrentChangeError,
    DuplicatePupilError,
)
from shared.actor import acting_as
from tests.conftest import REGISTRAR
from tests.records_helpers import create_programme, order, register_pupil

THREADS = 20


@pytest.fixture
def app(tmp_path):
    application = RecordsApplication(f"sqlite:///{tmp_path / 'records.sqlite'}")
    yield application
    application.close()


def run_together(command: Callable[[int], Any]) -> list[tuple[str, Any]]:
    """Run `command(i)` in THREADS threads released at once and return outcomes."""
    barrier = threading.Barrier(THREADS)
    outcomes: list[tuple[str, Any]] = [("not run", None)] * THREADS

    def worker(index: int) -> None:
        with acting_as(REGISTRAR):
            barrier.wait()
            try:
                outcomes[index] = ("ok", command(index))
            except Exception as error:  # every outcome is checked by the test
                outcomes[index] = (type(error).__name__, error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_concurrent_enrolments_match_replay(app, tmp_path):
    with acting_as(REGISTRAR):
        programme_ids = [create_programme(app, f"КРЗ-{i}") for i in range(THREADS)]
        pupil_id = register_pupil(app)

    def enrol(index: int) -> Any:
        return app.enrol(
            pupil_id,
            programme_id=programme_ids[index],
            effective_date=date(2024, 9, 2),
            order=order(f"{index}-у", date(2024, 9, 2)),
        )

    outcomes = run_together(enrol)

    kinds = {kind for kind, _ in outcomes}
    assert kinds <= {"ok", "ConcurrentChangeError"}
    succeeded = [result for kind, result in outcomes if kind == "ok"]
    assert succeeded
    positions = [result.position for result in succeeded]
    assert len(set(positions)) == len(positions)

    replayed = RecordsApplication(f"sqlite:///{tmp_path / 'records.sqlite'}")
    try:
        pupil = replayed.pupil(pupil_id)
        assert pupil.version == 1 + len(succeeded)
        assert {e.id for e in pupil.enrolments.values()} == {
            result.resource["id"] for result in succeeded
        }
        assert {e.programme_id for e in pupil.enrolments.values()} == {
            result.resource["programme_id"] for result in succeeded
        }
        assert {e.status for e in pupil.enrolments.values()} == {"active"}
        assert replayed.head_position() == max(positions)
    finally:
        replayed.close()


def test_concurrent_conflict_leaves_no_partial_write(app):
    with acting_as(REGISTRAR):
        programme_ids = [create_programme(app, f"ЛГ-{i}") for i in range(THREADS)]
        pupil_id = register_pupil(app)
    head = app.head_position()

    def enrol(index: int) -> Any:
        return app.enrol(
            pupil_id,
            programme_id=programme_ids[index],
            effective_date=date(2024, 9, 2),
            order=order(f"{index}-у", date(2024, 9, 2)),
        )

    outcomes = run_together(enrol)

    succeeded = sum(1 for kind, _ in outcomes if kind == "ok")
    assert app.head_position() - head == succeeded


def test_concurrent_registrations_keep_one_pupil(app):
    def register(index: int) -> Any:
        return app.register_pupil(
            surname="Сидорова",
            name="Алёна" if index % 2 else "АЛЕНА",
            patronymic=None,
            birth_date=date(2016, 2, 29),
            opened_on=date(2024, 8, 26),
        )

    outcomes = run_together(register)

    kinds = [kind for kind, _ in outcomes]
    assert kinds.count("ok") == 1
    assert set(kinds) <= {"ok", "DuplicatePupilError", "ConcurrentChangeError"}
    (created,) = [result for kind, result in outcomes if kind == "ok"]
    pupil_id = created.resource["id"]
    for kind, error in outcomes:
        if isinstance(error, DuplicatePupilError):
            assert error.existing_id == pupil_id
        elif kind != "ok":
            assert isinstance(error, ConcurrentChangeError)
    # One pupil and its identity claim: two events in the whole log.
    assert app.head_position() == created.position
    assert len(app.recorder.select_notifications(start=1, limit=100)) == 2
