"""Concurrent commands on one pupil from many threads, on SQLite and PostgreSQL.

The in-memory store is left out: a second application, as the replay needs,
cannot open it.
"""

from __future__ import annotations

import sys
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
from tests.conftest import BACKEND_MARKS, BACKENDS, REGISTRAR, shared_backends
from tests.records_helpers import create_programme, enrol, order, register_pupil

THREADS = 20


@pytest.fixture(
    params=[
        pytest.param(name, marks=BACKEND_MARKS.get(name, ()))
        for name in shared_backends()
    ]
)
def shared_url(request: pytest.FixtureRequest) -> str:
    """A fresh database that several applications can open at once."""
    return BACKENDS[request.param](request, "records")


@pytest.fixture
def app(shared_url):
    application = RecordsApplication(shared_url)
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


def test_concurrent_enrolments_match_replay(app, shared_url):
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

    replayed = RecordsApplication(shared_url)
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
    # PostgreSQL positions have gaps where a rejected insert took a number, so
    # the events after the head are counted, not the distance to the new head.
    written = app.recorder.select_notifications(
        start=head, limit=1000, inclusive_of_start=False
    )
    assert len(written) == succeeded


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


def test_cached_pupil_copied_whole_while_other_writers_append(app, shared_url):
    # Readers in this process load the pupil from the aggregate cache while a
    # second application appends to the same stream: each load brings the
    # cached pupil forward in place, and no reader may copy it half-way.
    with acting_as(REGISTRAR):
        programme_id = create_programme(app)
        pupil_id = register_pupil(app)
    other = RecordsApplication(shared_url)
    failures: list[BaseException] = []
    torn: list[tuple[int, int]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                pupil = app.repository.get(pupil_id)
            except BaseException as error:  # noqa: BLE001 - reported below
                failures.append(error)
                return
            # Registration is version 1; an enrolment and its cancellation
            # add one event each.
            cancelled = [
                e for e in pupil.enrolments.values() if e.status == "cancelled"
            ]
            if pupil.version != 1 + len(pupil.enrolments) + len(cancelled):
                torn.append((pupil.version, len(pupil.enrolments)))

    # Switching threads often makes a copy meet a change in the middle.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    readers = [threading.Thread(target=read) for _ in range(6)]
    for reader in readers:
        reader.start()
    try:
        with acting_as(REGISTRAR):
            for _ in range(60):
                enrolment_id = enrol(other, pupil_id, programme_id)
                other.cancel_enrolment(
                    pupil_id,
                    enrolment_id,
                    order=order("13-у", date(2024, 9, 3)),
                    reason="приказ издан по ошибке",
                )
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        sys.setswitchinterval(interval)
        other.close()

    assert failures == []
    assert torn == []
