"""Session journals: academic year, time slots, closure."""

from __future__ import annotations

from datetime import date, timedelta
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.records.domain.errors import InvalidFieldError, RuleViolationError
from services.records.domain.journals import Journal
from tests.records_helpers import SPECIALIST

pytestmark = pytest.mark.usefixtures("principal")

# A centre calendar that does not run from 1 September to 31 August.
YEAR_START = date(2025, 1, 13)
YEAR_END = date(2025, 12, 19)


def new_journal(start=YEAR_START, end=YEAR_END, kind="group") -> Journal:
    return Journal.open(
        programme_id=uuid4(),
        specialist=SPECIALIST,
        year_start=start,
        year_end=end,
        kind=kind,
        group="Группа 2",
    )


def record(journal, on, start_time="10:00", attendance=None):
    return journal.record_session(
        on=on,
        start_time=start_time,
        duration_minutes=40,
        topic="Развитие речи",
        attendance=attendance if attendance is not None else [],
    )


def test_journal_opens_for_centre_calendar_year():
    journal = new_journal()

    assert journal.year_start == YEAR_START
    assert journal.year_end == YEAR_END
    assert journal.closed_on is None
    assert journal.session_count == 0


def test_journal_year_ending_before_start_rejected():
    with pytest.raises(InvalidFieldError) as raised:
        new_journal(start=YEAR_START, end=YEAR_START)

    assert set(raised.value.errors) == {"academic_year.end"}


def test_journal_year_longer_than_year_rejected():
    with pytest.raises(InvalidFieldError):
        new_journal(start=date(2024, 9, 1), end=date(2025, 9, 3))


def test_journal_with_unknown_kind_rejected():
    with pytest.raises(ValueError):
        new_journal(kind="club")


# Sessions


def test_sessions_on_first_and_last_day_recorded():
    journal = new_journal()

    record(journal, YEAR_START)
    record(journal, YEAR_END)

    assert journal.session_count == 2
    assert journal.last_session_date == YEAR_END


def test_session_before_year_rejected():
    journal = new_journal()

    with pytest.raises(InvalidFieldError) as raised:
        record(journal, YEAR_START - timedelta(days=1))

    assert set(raised.value.errors) == {"date"}
    assert journal.pending_events[-1].__class__ is Journal.Opened


def test_session_after_year_rejected():
    journal = new_journal()

    with pytest.raises(InvalidFieldError):
        record(journal, YEAR_END + timedelta(days=1))


@given(st.dates(min_value=date(2024, 1, 1), max_value=date(2026, 12, 31)))
def test_session_accepted_only_inside_year(day):
    journal = new_journal()

    if YEAR_START <= day <= YEAR_END:
        record(journal, day)
        assert journal.session_count == 1
    else:
        with pytest.raises(InvalidFieldError):
            record(journal, day)
        assert journal.session_count == 0


def test_session_at_same_date_and_time_rejected():
    journal = new_journal()
    record(journal, date(2025, 2, 3), "10:00")

    with pytest.raises(RuleViolationError):
        record(journal, date(2025, 2, 3), "10:00")
    assert journal.session_count == 1


def test_sessions_at_other_time_or_date_recorded():
    journal = new_journal()
    record(journal, date(2025, 2, 3), "10:00")

    record(journal, date(2025, 2, 3), "11:00")
    record(journal, date(2025, 2, 4), "10:00")

    assert journal.session_count == 3


def test_pupil_listed_twice_rejected():
    journal = new_journal()
    pupil_id = uuid4()
    attendance = [
        {"pupil_id": pupil_id, "status": "present"},
        {"pupil_id": pupil_id, "status": "absent"},
    ]

    with pytest.raises(InvalidFieldError):
        record(journal, date(2025, 2, 3), attendance=attendance)


def test_session_keeps_attendance_lines():
    journal = new_journal()
    first, second = uuid4(), uuid4()
    attendance = [
        {"pupil_id": first, "status": "present"},
        {"pupil_id": second, "status": "ill"},
    ]

    session_id = record(journal, date(2025, 2, 3), attendance=attendance)

    event = journal.pending_events[-1]
    assert event.session_id == session_id
    assert event.attendance == attendance


def test_session_in_closed_journal_rejected():
    journal = new_journal()
    record(journal, date(2025, 5, 20))
    journal.close(closed_on=date(2025, 5, 30))

    with pytest.raises(RuleViolationError):
        record(journal, date(2025, 5, 21))


# Closure


def test_closure_on_last_session_day_allowed():
    journal = new_journal()
    record(journal, date(2025, 5, 20))

    journal.close(closed_on=date(2025, 5, 20))

    assert journal.is_closed
    assert journal.closed_on == date(2025, 5, 20)


def test_closure_before_last_session_rejected():
    journal = new_journal()
    record(journal, date(2025, 5, 20))
    record(journal, date(2025, 3, 3))

    with pytest.raises(InvalidFieldError) as raised:
        journal.close(closed_on=date(2025, 5, 19))

    assert set(raised.value.errors) == {"closed_on"}
    assert not journal.is_closed


def test_closure_of_empty_journal_allowed():
    journal = new_journal()

    journal.close(closed_on=YEAR_START)

    assert journal.closed_on == YEAR_START


def test_second_closure_rejected():
    journal = new_journal()
    journal.close(closed_on=date(2025, 5, 30))

    with pytest.raises(RuleViolationError):
        journal.close(closed_on=date(2025, 5, 31))
    assert journal.closed_on == date(2025, 5, 30)


def test_closure_before_year_start_rejected():
    journal = new_journal()

    with pytest.raises(InvalidFieldError) as raised:
        journal.close(closed_on=YEAR_START - timedelta(days=1))

    assert "closed_on" in raised.value.errors
    assert journal.closed_on is None


# Academic year


def test_journal_year_before_records_rejected():
    with pytest.raises(InvalidFieldError) as raised:
        new_journal(start=date(1, 1, 1), end=date(1, 5, 31))

    assert set(raised.value.errors) == {"academic_year.start"}


# Latest session per pupil


def test_latest_session_with_pupil_is_latest_date():
    journal = new_journal()
    listed, absent_once, never = uuid4(), uuid4(), uuid4()
    line = {"pupil_id": listed, "status": "present"}

    record(journal, date(2025, 3, 3), attendance=[line])
    record(
        journal,
        date(2025, 2, 3),
        attendance=[line, {"pupil_id": absent_once, "status": "absent"}],
    )

    assert journal.latest_session_with(listed) == date(2025, 3, 3)
    assert journal.latest_session_with(absent_once) == date(2025, 2, 3)
    assert journal.latest_session_with(never) is None
