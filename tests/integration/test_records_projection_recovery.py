"""Exactly-once projection: failed batches, replays and full rebuilds."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy.exc import IntegrityError

from services.records import projector as projector_module
from services.records.application import RecordsApplication
from services.records.projector import (
    BatchWrites,
    PositionMovedError,
    RecordsProjector,
    rebuild,
)
from services.records.readmodels import RecordsReadModels
from shared.actor import acting_as
from shared.config import Settings
from shared.storage import create_sql_engine
from tests.conftest import REGISTRAR, read_models_engine
from tests.records_helpers import (
    create_programme,
    dump_read_models,
    enrol,
    expel,
    open_journal,
    populate,
    record_session,
    register_pupil,
)

pytestmark = pytest.mark.usefixtures("principal")


class SimulatedCrashError(Exception):
    """Raised by a patched projector in the middle of a batch."""


@pytest.fixture
def other_engine(database_factory):
    """An engine on a second, empty read-model database of the same backend."""
    engine = read_models_engine(database_factory("rebuilt"))
    yield engine
    engine.dispose()


def second_term(app, centre):
    """Store events after `populate`: a new pupil, attendance, an expulsion."""
    speech = centre.programmes["speech"]
    newcomer = register_pupil(app, "Дмитриева", "Ольга", None, date(2016, 5, 5))
    enrol(app, newcomer, speech, date(2025, 2, 3))
    record_session(
        app,
        centre.journals["speech"],
        date(2025, 2, 4),
        {newcomer: "present", centre.pupils["gleb"]: "excused"},
    )
    expel(app, centre.pupils["gleb"], speech, date(2025, 5, 30), "completed")
    return newcomer


def crash_on_call(monkeypatch, projector, failing_call):
    """Make `projector._apply` raise on call number `failing_call`.

    Returns the list of positions it was called with.
    """
    calls = []
    original = projector._apply

    def apply(connection, writes, event, position):
        calls.append(position)
        if len(calls) == failing_call:
            raise SimulatedCrashError(f"crash at position {position}")
        original(connection, writes, event, position)

    monkeypatch.setattr(projector, "_apply", apply)
    return calls


def test_failed_batch_writes_nothing(records_app, records_engine, monkeypatch):
    centre = populate(records_app)
    projector = RecordsProjector(records_app, records_engine)
    projector.catch_up()
    before = dump_read_models(records_engine)
    position = RecordsReadModels(records_engine).position()
    second_term(records_app, centre)
    calls = crash_on_call(monkeypatch, projector, failing_call=5)

    with pytest.raises(SimulatedCrashError):
        projector.process_batch()

    assert len(calls) == 5
    assert calls[0] == position + 1
    assert RecordsReadModels(records_engine).position() == position
    assert dump_read_models(records_engine) == before


def test_batch_failing_while_written_writes_nothing(
    records_app, records_engine, monkeypatch
):
    centre = populate(records_app)
    projector = RecordsProjector(records_app, records_engine)
    projector.catch_up()
    before = dump_read_models(records_engine)
    position = RecordsReadModels(records_engine).position()
    second_term(records_app, centre)

    def fail(writes, connection):
        # Pupils, history, journals and sessions are written by now.
        raise SimulatedCrashError("crash while writing attendance")

    monkeypatch.setattr(BatchWrites, "_write_attendance", fail)
    with pytest.raises(SimulatedCrashError):
        projector.process_batch()
    monkeypatch.undo()

    assert RecordsReadModels(records_engine).position() == position
    assert dump_read_models(records_engine) == before
    projector.catch_up()
    assert RecordsReadModels(records_engine).position() == records_app.head_position()


def test_resumed_projection_equals_rebuild(
    records_app, records_engine, other_engine, monkeypatch
):
    centre = populate(records_app)
    projector = RecordsProjector(records_app, records_engine)
    projector.process_batch(batch_size=10)
    second_term(records_app, centre)
    crash_on_call(monkeypatch, projector, failing_call=7)
    with pytest.raises(SimulatedCrashError):
        projector.catch_up(batch_size=1000)
    monkeypatch.undo()

    applied = projector.catch_up()
    RecordsProjector(records_app, other_engine).catch_up()

    assert applied == records_app.head_position() - 10
    assert RecordsReadModels(records_engine).position() == records_app.head_position()
    assert dump_read_models(records_engine) == dump_read_models(other_engine)


def test_restarted_projector_equals_rebuild(
    records_app, records_engine, other_engine, monkeypatch
):
    centre = populate(records_app)
    crashed = RecordsProjector(records_app, records_engine)
    crashed.catch_up(batch_size=4)
    second_term(records_app, centre)
    crash_on_call(monkeypatch, crashed, failing_call=3)
    with pytest.raises(SimulatedCrashError):
        crashed.catch_up(batch_size=1000)

    RecordsProjector(records_app, records_engine).catch_up(batch_size=3)
    RecordsProjector(records_app, other_engine).catch_up()

    assert dump_read_models(records_engine) == dump_read_models(other_engine)


def test_caught_up_projector_applies_nothing_again(records_app, records_engine):
    populate(records_app)
    RecordsProjector(records_app, records_engine).catch_up()
    before = dump_read_models(records_engine)

    again = RecordsProjector(records_app, records_engine).catch_up()

    assert again == 0
    assert dump_read_models(records_engine) == before


def test_replayed_events_rejected_whole(records_app, records_engine, monkeypatch):
    centre = populate(records_app)
    projector = RecordsProjector(records_app, records_engine)
    projector.catch_up()
    position = records_app.head_position()
    record_session(
        records_app,
        centre.journals["speech"],
        date(2025, 2, 4),
        {centre.pupils["gleb"]: "absent"},
    )
    projector.catch_up()
    before = dump_read_models(records_engine)
    # A projector that read its position before the last batch was committed.
    monkeypatch.setattr(projector_module, "_stored_position", lambda _: position)

    with pytest.raises((IntegrityError, PositionMovedError)):
        projector.process_batch()

    assert dump_read_models(records_engine) == before


def test_replayed_position_not_applied_twice(records_app, records_engine, monkeypatch):
    programme_id = create_programme(records_app)
    journal_id = open_journal(records_app, programme_id)
    projector = RecordsProjector(records_app, records_engine)
    projector.catch_up()
    stale = records_app.head_position()
    # A closure only updates rows, so no unique key stops a second application.
    records_app.close_journal(journal_id, closed_on=date(2024, 12, 27))
    projector.catch_up()
    before = dump_read_models(records_engine)
    monkeypatch.setattr(projector_module, "_stored_position", lambda _: stale)

    with pytest.raises(PositionMovedError):
        projector.process_batch()

    assert dump_read_models(records_engine) == before
    assert RecordsReadModels(records_engine).position() == stale + 1


def test_rebuild_equals_incremental_projection(tmp_path):
    settings = Settings.from_env(environ={}, data_dir=tmp_path)
    app = RecordsApplication(settings.records_database_url)
    engine = read_models_engine(settings.records_database_url)
    projector = RecordsProjector(app, engine)
    try:
        with acting_as(REGISTRAR):
            centre = populate(app)
            projector.process_batch(batch_size=7)
            second_term(app, centre)
        projector.catch_up(batch_size=5)
        incremental = dump_read_models(engine)

        replayed = rebuild(settings, progress=False)

        assert replayed == app.head_position()
        assert dump_read_models(engine) == incremental
    finally:
        engine.dispose()
        app.close()


def test_rebuild_into_empty_database(tmp_path):
    settings = Settings.from_env(environ={}, data_dir=tmp_path)
    app = RecordsApplication(settings.records_database_url)
    try:
        with acting_as(REGISTRAR):
            centre = populate(app)

        rebuild(settings, progress=False)

        engine = create_sql_engine(settings.records_database_url)
        read_models = RecordsReadModels(engine)
        assert read_models.position() == app.head_position()
        assert read_models.personal_file(centre.pupils["vera"])["status"] == "left"
        engine.dispose()
    finally:
        app.close()
