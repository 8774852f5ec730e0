"""Retention aggregates of personal files and journals."""

from __future__ import annotations

from datetime import UTC, date, datetime
from uuid import uuid4

import pytest

from services.archive.domain.retention import (
    DestructionAct,
    JournalRetention,
    PersonalFileRetention,
    personal_file_closure,
)
from services.archive.domain.schedule import load_schedule

SCHEDULE = load_schedule()
PERSONAL = SCHEDULE.item("personal_file")
JOURNAL = SCHEDULE.item("journal")


def new_file(position: int = 1) -> PersonalFileRetention:
    return PersonalFileRetention(
        pupil_id=uuid4(), opened_on=date(2024, 9, 2), position=position
    )


def close_file(
    file: PersonalFileRetention, order: date, effective: date, position: int
):
    file.close(
        closed_on=personal_file_closure(order, effective),
        expelled_on=effective,
        expulsion_id=uuid4(),
        position=position,
    )


def test_new_file_is_open_without_deadline():
    file = new_file()

    assert not file.is_closed
    assert file.deadline(PERSONAL) is None
    assert file.position == 1


def test_ids_derive_from_subject_and_class():
    subject = uuid4()

    assert PersonalFileRetention.create_id(subject) == (
        PersonalFileRetention.create_id(subject)
    )
    assert PersonalFileRetention.create_id(subject) != JournalRetention.create_id(
        subject
    )
    assert PersonalFileRetention.create_id(subject) != subject


def test_leaving_closes_file_with_deadline():
    file = new_file()
    close_file(file, date(2025, 5, 31), date(2025, 5, 31), position=7)
    deadline = file.deadline(PERSONAL)

    assert file.is_closed
    assert file.position == 7
    assert deadline is not None
    assert deadline.destroyable_from == date(2031, 1, 1)
    assert deadline.kept_at_least_until == date(2030, 5, 31)


def test_closure_after_new_year_order():
    file = new_file()
    close_file(file, date(2026, 1, 12), date(2025, 12, 31), position=3)
    deadline = file.deadline(PERSONAL)

    assert file.closed_on == date(2026, 1, 12)
    assert file.expelled_on == date(2025, 12, 31)
    assert deadline is not None
    assert deadline.destroyable_from == date(2032, 1, 1)
    assert deadline.kept_at_least_until == date(2030, 12, 31)


def test_readmission_voids_then_new_leaving_counts():
    file = new_file()
    close_file(file, date(2025, 5, 31), date(2025, 5, 31), position=3)
    file.reopen(position=9)

    assert not file.is_closed
    assert file.deadline(PERSONAL) is None
    assert file.position == 9

    close_file(file, date(2028, 6, 1), date(2028, 5, 31), position=15)
    deadline = file.deadline(PERSONAL)

    assert deadline is not None
    assert deadline.destroyable_from == date(2034, 1, 1)
    assert file.position == 15


def test_reopen_of_open_file_changes_nothing():
    file = new_file()
    file.collect_events()
    file.reopen(position=5)

    assert file.collect_events() == []
    assert file.position == 1


def test_repeated_closure_changes_nothing():
    file = new_file()
    file.close(
        closed_on=date(2025, 5, 31),
        expelled_on=date(2025, 5, 31),
        expulsion_id=None,
        position=4,
    )
    file.collect_events()
    file.close(
        closed_on=date(2025, 5, 31),
        expelled_on=date(2025, 5, 31),
        expulsion_id=None,
        position=8,
    )

    assert file.collect_events() == []
    assert file.position == 4


def test_closure_before_expulsion_rejected():
    file = new_file()

    with pytest.raises(ValueError, match="before the expulsion"):
        file.close(
            closed_on=date(2025, 5, 30),
            expelled_on=date(2025, 5, 31),
            expulsion_id=None,
            position=4,
        )
    assert not file.is_closed


def test_destruction_recorded_with_act():
    file = new_file()
    close_file(file, date(2025, 5, 31), date(2025, 5, 31), position=3)
    moment = datetime(2031, 2, 3, 9, 30, tzinfo=UTC)
    act = DestructionAct(number="ЭК-7", date=date(2031, 2, 1))
    file.record_destruction(destroyed_at=moment, act=act, position=11)

    assert file.destroyed_at == moment
    assert file.act == act
    assert file.position == 11


def test_events_carry_explicit_topics():
    file = new_file()
    close_file(file, date(2025, 5, 31), date(2025, 5, 31), position=3)
    file.reopen(position=4)
    topics = [type(event).TOPIC for event in file.collect_events()]

    assert topics == [
        "archive:PersonalFileRetention.Opened",
        "archive:PersonalFileRetention.Closed",
        "archive:PersonalFileRetention.Reopened",
    ]


def test_journal_closure_deadline():
    journal = JournalRetention(journal_id=uuid4(), position=2)
    journal.close(closed_on=date(2026, 5, 29), position=30)
    deadline = journal.deadline(JOURNAL)

    assert deadline is not None
    assert deadline.destroyable_from == date(2032, 1, 1)
    assert deadline.kept_at_least_until == date(2031, 5, 29)
    assert journal.position == 30


def test_journal_open_has_no_deadline():
    journal = JournalRetention(journal_id=uuid4(), position=2)

    assert journal.deadline(JOURNAL) is None
    assert not journal.is_closed


def test_journal_repeated_closure_changes_nothing():
    journal = JournalRetention(journal_id=uuid4(), position=2)
    journal.close(closed_on=date(2026, 5, 29), position=30)
    journal.collect_events()
    journal.close(closed_on=date(2026, 5, 29), position=31)

    assert journal.collect_events() == []
    assert journal.position == 30
