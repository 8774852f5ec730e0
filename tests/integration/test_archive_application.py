"""The archive application and its read models on every storage backend."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from services.archive.application import ArchiveApplication
from services.archive.domain.deadlines import RetentionStatus
from services.archive.domain.schedule import (
    DEFAULT_SCHEDULE_PATH,
    RetentionSchedule,
    load_schedule,
    parse_schedule,
)
from services.archive.feed import FeedFormatError, parse_page
from services.archive.readmodels import (
    RetentionEntry,
    RetentionEntryRow,
    RetentionProjector,
    get_entry,
    projected_position,
    rebuild_read_models,
)
from services.archive.testing import FeedScript
from shared.storage import create_sql_engine, eventsourcing_env, is_memory


@dataclass
class Archive:
    app: ArchiveApplication
    engine: Engine
    projector: RetentionProjector
    feed: FeedScript

    def sync(self, limit: int = 100) -> None:
        """Apply every feed page not applied yet, then project."""
        while True:
            after = self.app.processed_position()
            page = self.feed.parsed_page(after=after, limit=limit)
            self.app.apply_page(page)
            if page.last_position >= self.feed.head:
                break
        self.projector.catch_up()

    def personal_file(self, pupil_id: UUID) -> RetentionEntry:
        entry = get_entry(self.engine, "personal_file", pupil_id)
        assert entry is not None
        return entry

    def journal(self, journal_id: UUID) -> RetentionEntry:
        entry = get_entry(self.engine, "journal", journal_id)
        assert entry is not None
        return entry


def open_archive(url: str, schedule: RetentionSchedule | None = None) -> Archive:
    app = ArchiveApplication(env=eventsourcing_env(url))
    engine = create_sql_engine(url, writer=True)
    projector = RetentionProjector(app, engine, schedule or load_schedule())
    projector.prepare()
    return Archive(app=app, engine=engine, projector=projector, feed=FeedScript())


@pytest.fixture
def archive(database_url):
    opened = open_archive(database_url)
    yield opened
    opened.engine.dispose()
    opened.app.close()


def register(archive: Archive, opened_on: date = date(2024, 9, 2)) -> UUID:
    pupil_id = uuid4()
    archive.feed.pupil_registered(pupil_id, opened_on)
    archive.feed.pupil_enrolled(pupil_id, opened_on)
    return pupil_id


def test_expelled_31_may_2025(archive):
    pupil_id = register(archive)
    expelled = archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.closed_on == date(2025, 5, 31)
    assert entry.closure_year == 2025
    assert entry.expelled_on == date(2025, 5, 31)
    assert entry.period_years == 5
    assert entry.kept_at_least_until == date(2030, 5, 31)
    assert entry.destroyable_from == date(2031, 1, 1)
    assert entry.position == expelled["position"]
    assert "3.1" in entry.basis
    assert entry.status(date(2030, 12, 31)) is RetentionStatus.RETAINED
    assert entry.status(date(2031, 1, 1)) is RetentionStatus.DESTROYABLE


@pytest.mark.parametrize("closure_dates", [True, False])
def test_order_in_january_closes_next_year(archive, closure_dates):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(
        pupil_id,
        date(2025, 12, 31),
        order_date=date(2026, 1, 12),
        closure_dates=closure_dates,
    )
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.closed_on == date(2026, 1, 12)
    assert entry.closure_year == 2026
    assert entry.expelled_on == date(2025, 12, 31)
    assert entry.kept_at_least_until == date(2030, 12, 31)
    assert entry.destroyable_from == date(2032, 1, 1)


def test_closure_before_expulsion_is_malformed(archive):
    pupil_id = register(archive)
    event = archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    event["data"]["file_closed_on"] = "2025-05-30"

    with pytest.raises(FeedFormatError, match="before the expulsion takes effect"):
        archive.app.apply_page(archive.feed.parsed_page(after=0))
    assert archive.app.processed_position() == 0


def test_expelled_29_february(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2024, 2, 29))
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.kept_at_least_until == date(2029, 2, 28)
    assert entry.destroyable_from == date(2030, 1, 1)


def test_journal_closed_29_may_2026(archive):
    journal_id = uuid4()
    opened = archive.feed.journal_opened(
        journal_id, date(2025, 9, 1), date(2026, 5, 31)
    )
    archive.sync()

    assert archive.journal(journal_id).status(date(2026, 1, 1)) is RetentionStatus.OPEN
    assert archive.journal(journal_id).position == opened["position"]

    closed = archive.feed.journal_closed(journal_id, date(2026, 5, 29))
    archive.sync()
    entry = archive.journal(journal_id)

    assert entry.closed_on == date(2026, 5, 29)
    assert entry.closure_year == 2026
    assert entry.expelled_on is None
    assert entry.kept_at_least_until == date(2031, 5, 29)
    assert entry.destroyable_from == date(2032, 1, 1)
    assert entry.position == closed["position"]
    assert "3.2" in entry.basis


def test_open_file_has_no_dates(archive):
    pupil_id = register(archive)
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.status(date(2040, 1, 1)) is RetentionStatus.OPEN
    assert entry.closed_on is None
    assert entry.closure_year is None
    assert entry.kept_at_least_until is None
    assert entry.destroyable_from is None
    assert entry.period_years == 5


def test_readmission_voids_deadline_then_recomputes(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    readmitted = archive.feed.pupil_enrolled(
        pupil_id, date(2027, 3, 1), reopened_file=True
    )
    archive.sync()
    reopened = archive.personal_file(pupil_id)

    assert reopened.status(date(2032, 1, 1)) is RetentionStatus.OPEN
    assert reopened.destroyable_from is None
    assert reopened.position == readmitted["position"]

    archive.feed.pupil_expelled(pupil_id, date(2028, 5, 31))
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.closed_on == date(2028, 5, 31)
    assert entry.destroyable_from == date(2034, 1, 1)


def test_expulsion_from_one_of_two_keeps_open(archive):
    pupil_id = uuid4()
    registered = archive.feed.pupil_registered(pupil_id, date(2024, 9, 2))
    archive.feed.pupil_enrolled(pupil_id, date(2024, 9, 2))
    archive.feed.pupil_enrolled(pupil_id, date(2024, 10, 1))
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31), left_centre=False)
    archive.feed.pupil_transferred(pupil_id, date(2025, 6, 1))
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.status(date(2035, 1, 1)) is RetentionStatus.OPEN
    assert entry.destroyable_from is None
    # Nothing of the entry changed after the registration.
    assert entry.position == registered["position"]


def test_cancelled_expulsion_voids_deadline(archive):
    pupil_id = register(archive)
    expulsion_id = uuid4()
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31), expulsion_id=expulsion_id)
    archive.sync()
    assert archive.personal_file(pupil_id).destroyable_from == date(2031, 1, 1)

    cancelled = archive.feed.expulsion_cancelled(
        pupil_id, expulsion_id, date(2025, 6, 10), reopened_file=True
    )
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.status(date(2031, 1, 1)) is RetentionStatus.OPEN
    assert entry.destroyable_from is None
    assert entry.position == cancelled["position"]


def test_cancelled_readmission_restores_closure(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    enrolment_id = uuid4()
    archive.feed.pupil_enrolled(
        pupil_id, date(2027, 3, 1), reopened_file=True, enrolment_id=enrolment_id
    )
    archive.sync()
    assert archive.personal_file(pupil_id).destroyable_from is None

    cancelled = archive.feed.enrolment_cancelled(
        pupil_id,
        enrolment_id,
        date(2027, 3, 5),
        file_closed_on=date(2025, 5, 31),
        expelled_on=date(2025, 5, 31),
    )
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.closed_on == date(2025, 5, 31)
    assert entry.expelled_on == date(2025, 5, 31)
    assert entry.destroyable_from == date(2031, 1, 1)
    assert entry.position == cancelled["position"]


def test_cancelled_first_enrolment_keeps_open(archive):
    pupil_id = uuid4()
    registered = archive.feed.pupil_registered(pupil_id, date(2024, 9, 2))
    enrolment_id = uuid4()
    archive.feed.pupil_enrolled(pupil_id, date(2024, 9, 2), enrolment_id=enrolment_id)
    archive.feed.enrolment_cancelled(pupil_id, enrolment_id, date(2024, 9, 5))
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.status(date(2030, 1, 1)) is RetentionStatus.OPEN
    assert entry.position == registered["position"]


def test_destruction_recorded(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    destroyed_at = datetime(2031, 2, 3, 9, 30, 15, tzinfo=UTC)
    destroyed = archive.feed.personal_data_destroyed(
        pupil_id, "ЭК-3/2031", date(2031, 2, 1), destroyed_at
    )
    archive.sync()
    entry = archive.personal_file(pupil_id)

    assert entry.status(date(2031, 3, 1)) is RetentionStatus.DESTROYED
    assert entry.destruction is not None
    assert entry.destruction.act_number == "ЭК-3/2031"
    assert entry.destruction.act_date == date(2031, 2, 1)
    assert entry.destruction.destroyed_at == "2031-02-03T09:30:15.000000Z"
    assert entry.position == destroyed["position"]
    assert entry.destroyable_from == date(2031, 1, 1)


def test_unknown_subject_has_no_entry(archive):
    register(archive)
    archive.sync()

    assert get_entry(archive.engine, "personal_file", uuid4()) is None
    assert archive.app.personal_file(uuid4()) is None
    assert archive.app.journal(uuid4()) is None


def test_aggregate_state_matches_entry(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    archive.sync()
    file = archive.app.personal_file(pupil_id)

    assert file is not None
    assert file.pupil_id == pupil_id
    assert file.opened_on == date(2024, 9, 2)
    assert file.closed_on == date(2025, 5, 31)


def test_processed_position_is_last_position(archive):
    register(archive)
    archive.feed.skip(3)
    page = archive.feed.parsed_page(after=0)

    assert archive.app.processed_position() == 0
    assert archive.app.apply_page(page)
    assert archive.app.processed_position() == archive.feed.head
    assert page.last_position == archive.feed.head


def test_replayed_page_changes_nothing(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    page = archive.feed.parsed_page(after=0)
    archive.app.apply_page(page)
    log_head = archive.app.recorder.max_notification_id()

    assert not archive.app.apply_page(page)
    assert archive.app.recorder.max_notification_id() == log_head
    assert archive.app.processed_position() == page.last_position


def test_overlapping_page_skips_processed_events(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    archive.app.apply_page(archive.feed.parsed_page(after=0))
    log_head = archive.app.recorder.max_notification_id()

    # Delivery is at least once: a later page may repeat processed events.
    readmitted = archive.feed.pupil_enrolled(
        pupil_id, date(2027, 3, 1), reopened_file=True
    )
    assert archive.app.apply_page(archive.feed.parsed_page(after=0))
    archive.projector.catch_up()
    notifications = archive.app.recorder.select_notifications(
        start=log_head, limit=10, inclusive_of_start=False
    )

    assert [n.topic for n in notifications] == [
        "archive:PersonalFileRetention.Reopened"
    ]
    assert archive.personal_file(pupil_id).position == readmitted["position"]


def test_page_without_events_stores_position(archive):
    archive.feed.skip(5)
    page = archive.feed.parsed_page(after=0)

    assert page.events == ()
    assert archive.app.apply_page(page)
    assert archive.app.processed_position() == 5
    assert archive.app.recorder.max_notification_id() in (None, 0)


def test_unknown_event_type_is_skipped(archive):
    archive.feed.append("pupil.consent_recorded", "pupils/x", {"pupil_id": "x"})
    archive.sync()

    assert archive.app.processed_position() == 1


def test_malformed_event_stores_nothing(archive):
    pupil_id = register(archive)
    archive.feed.append(
        "pupil.expelled",
        f"pupils/{pupil_id}",
        {"pupil_id": str(pupil_id), "left_centre": True, "effective_date": "31.05"},
    )
    page = archive.feed.parsed_page(after=0)

    with pytest.raises(FeedFormatError, match="data.effective_date"):
        archive.app.apply_page(page)
    assert archive.app.processed_position() == 0
    assert archive.app.personal_file(pupil_id) is None


def test_feed_page_positions_checked():
    body = {
        "events": [
            {"type": "pupil.registered", "position": 4, "data": {}},
            {"type": "pupil.registered", "position": 3, "data": {}},
        ],
        "last_position": 4,
        "head_position": 4,
    }

    with pytest.raises(FeedFormatError, match="positions must increase"):
        parse_page(body, after=0)
    with pytest.raises(FeedFormatError, match="last_position must be"):
        parse_page({"events": [], "head_position": 1}, after=0)


def fail_after_insert(app: ArchiveApplication, monkeypatch) -> None:
    """Make the next insert raise inside its transaction, after writing rows."""
    original = app.recorder._insert_events

    def insert_then_fail(*args, **kwargs):
        original(*args, **kwargs)
        raise RuntimeError("simulated crash inside the transaction")

    monkeypatch.setattr(app.recorder, "_insert_events", insert_then_fail)


def test_crash_inside_transaction_stores_nothing(archive, database_url, monkeypatch):
    if is_memory(database_url):
        pytest.skip("the in-memory event store has no transactions to roll back")
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    page = archive.feed.parsed_page(after=0)
    fail_after_insert(archive.app, monkeypatch)

    with pytest.raises(RuntimeError, match="simulated crash"):
        archive.app.apply_page(page)
    assert archive.app.processed_position() == 0
    assert archive.app.recorder.max_notification_id() in (None, 0)

    monkeypatch.undo()
    assert archive.app.apply_page(page)
    archive.projector.catch_up()
    assert archive.personal_file(pupil_id).destroyable_from == date(2031, 1, 1)


def test_projector_crash_rolls_back_batch(archive, monkeypatch):
    first = register(archive)
    second = register(archive)
    archive.feed.pupil_expelled(second, date(2025, 5, 31))
    archive.app.apply_page(archive.feed.parsed_page(after=0))

    import services.archive.readmodels as readmodels

    original = readmodels.apply_event
    calls = []

    def fail_on_third(session, domain_event, schedule):
        calls.append(domain_event)
        if len(calls) == 3:
            raise RuntimeError("simulated crash in the projector")
        original(session, domain_event, schedule)

    monkeypatch.setattr(readmodels, "apply_event", fail_on_third)
    with pytest.raises(RuntimeError, match="simulated crash"):
        archive.projector.catch_up()

    assert projected_position(archive.engine) == 0
    assert get_entry(archive.engine, "personal_file", first) is None

    monkeypatch.undo()
    archive.projector.catch_up()
    assert archive.personal_file(first).destroyable_from is None
    assert archive.personal_file(second).destroyable_from == date(2031, 1, 1)


def test_projector_resumes_after_restart(archive):
    pupil_id = register(archive)
    archive.sync()
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    # The page is saved, but the process stops before the projector runs.
    archive.app.apply_page(archive.feed.parsed_page(after=0))
    restarted = RetentionProjector(archive.app, archive.engine, load_schedule())
    restarted.prepare()
    restarted.catch_up()

    assert archive.personal_file(pupil_id).destroyable_from == date(2031, 1, 1)
    assert projected_position(archive.engine) == (
        archive.app.recorder.max_notification_id()
    )


def table_rows(engine: Engine) -> list[tuple]:
    with Session(engine) as session:
        rows = session.scalars(
            select(RetentionEntryRow).order_by(RetentionEntryRow.aggregate_id)
        )
        return [
            tuple(getattr(row, column.key) for column in RetentionEntryRow.__table__.c)
            for row in rows
        ]


def populate(archive: Archive) -> None:
    for year in range(2024, 2029):
        pupil_id = register(archive, date(year - 1, 9, 1))
        archive.feed.pupil_expelled(pupil_id, date(year, 5, 31))
        journal_id = uuid4()
        archive.feed.journal_opened(journal_id, date(year - 1, 9, 1), date(year, 5, 31))
        archive.feed.journal_closed(journal_id, date(year, 5, 29))
    register(archive)
    archive.feed.personal_data_destroyed(
        pupil_id, "7", date(2035, 1, 20), datetime(2035, 1, 21, tzinfo=UTC)
    )


def test_rebuild_gives_equal_read_model(archive):
    populate(archive)
    archive.sync(limit=7)
    before = table_rows(archive.engine)

    replayed = rebuild_read_models(
        archive.app, archive.engine, load_schedule(), batch_size=4
    )

    assert replayed == archive.app.recorder.max_notification_id()
    assert len(before) == 11
    assert table_rows(archive.engine) == before
    assert projected_position(archive.engine) == replayed


def longer_schedule(years: int) -> RetentionSchedule:
    data = json.loads(DEFAULT_SCHEDULE_PATH.read_text(encoding="utf-8"))
    for item in data["items"]:
        item["period_years"] = years
    return parse_schedule(data)


def test_changed_schedule_recomputes_at_start(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    open_id = register(archive)
    archive.sync()

    restarted = RetentionProjector(archive.app, archive.engine, longer_schedule(10))
    restarted.prepare()
    entry = archive.personal_file(pupil_id)

    assert entry.period_years == 10
    assert entry.kept_at_least_until == date(2035, 5, 31)
    assert entry.destroyable_from == date(2036, 1, 1)
    assert archive.personal_file(open_id).period_years == 10

    # Back to the packaged schedule: the deadlines follow again.
    archive.projector.prepare()
    assert archive.personal_file(pupil_id).destroyable_from == date(2031, 1, 1)


def test_rebuild_uses_current_schedule(archive):
    pupil_id = register(archive)
    archive.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    archive.sync()

    rebuild_read_models(archive.app, archive.engine, longer_schedule(7))

    assert archive.personal_file(pupil_id).destroyable_from == date(2033, 1, 1)


def test_state_survives_reopening_store(database_url):
    if is_memory(database_url):
        pytest.skip("the in-memory store lives only as long as its objects")
    first = open_archive(database_url)
    pupil_id = register(first)
    first.feed.pupil_expelled(pupil_id, date(2025, 5, 31))
    first.sync()
    position = first.app.processed_position()
    first.engine.dispose()
    first.app.close()

    second = open_archive(database_url)
    try:
        assert second.app.processed_position() == position
        assert second.personal_file(pupil_id).destroyable_from == date(2031, 1, 1)
    finally:
        second.engine.dispose()
        second.app.close()
