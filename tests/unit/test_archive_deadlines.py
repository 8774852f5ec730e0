"""Retention deadlines: the archival counting rule and the literal period."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.archive.domain.deadlines import (
    RetentionStatus,
    add_years,
    compute_deadline,
    status_on,
)
from services.archive.domain.retention import personal_file_closure
from services.archive.domain.schedule import load_schedule

RULE = "from_january_after_closure"


def personal_file_deadline(order_date: date, effective_date: date, period: int = 5):
    closed_on = personal_file_closure(order_date, effective_date)
    return compute_deadline(
        closed_on=closed_on,
        period_years=period,
        counting_rule=RULE,
        literal_start=effective_date,
    )


def test_expelled_31_may_2025_destroyable_2031():
    deadline = personal_file_deadline(date(2025, 5, 31), date(2025, 5, 31))

    assert deadline.closed_on == date(2025, 5, 31)
    assert deadline.closure_year == 2025
    assert deadline.kept_at_least_until == date(2030, 5, 31)
    assert deadline.destroyable_from == date(2031, 1, 1)


def test_order_signed_after_effective_date_closes_later_year():
    deadline = personal_file_deadline(date(2026, 1, 12), date(2025, 12, 31))

    assert deadline.closed_on == date(2026, 1, 12)
    assert deadline.closure_year == 2026
    assert deadline.kept_at_least_until == date(2030, 12, 31)
    assert deadline.destroyable_from == date(2032, 1, 1)


def test_effective_date_after_order_closes_on_effective_date():
    deadline = personal_file_deadline(date(2025, 12, 20), date(2026, 1, 9))

    assert deadline.closed_on == date(2026, 1, 9)
    assert deadline.destroyable_from == date(2032, 1, 1)


def test_expelled_29_february_literal_date_28_february():
    deadline = personal_file_deadline(date(2024, 2, 29), date(2024, 2, 29))

    assert deadline.kept_at_least_until == date(2029, 2, 28)
    assert deadline.destroyable_from == date(2030, 1, 1)


def test_journal_closed_29_may_2026_destroyable_2032():
    deadline = compute_deadline(
        closed_on=date(2026, 5, 29), period_years=5, counting_rule=RULE
    )

    assert deadline.closure_year == 2026
    assert deadline.kept_at_least_until == date(2031, 5, 29)
    assert deadline.destroyable_from == date(2032, 1, 1)


def test_packaged_schedule_gives_worked_examples():
    schedule = load_schedule()
    personal = schedule.item("personal_file").deadline(
        date(2025, 5, 31), literal_start=date(2025, 5, 31)
    )
    journal = schedule.item("journal").deadline(date(2026, 5, 29))

    assert personal.destroyable_from == date(2031, 1, 1)
    assert personal.kept_at_least_until == date(2030, 5, 31)
    assert journal.destroyable_from == date(2032, 1, 1)


def test_unknown_counting_rule_rejected():
    with pytest.raises(ValueError, match="unknown counting rule 'from_closure'"):
        compute_deadline(
            closed_on=date(2025, 1, 1), period_years=5, counting_rule="from_closure"
        )


@pytest.mark.parametrize(
    ("start", "years", "expected"),
    [
        (date(2024, 2, 29), 1, date(2025, 2, 28)),
        (date(2024, 2, 29), 4, date(2028, 2, 29)),
        (date(2023, 12, 31), 5, date(2028, 12, 31)),
        (date(2025, 1, 1), 0, date(2025, 1, 1)),
    ],
)
def test_add_years_cases(start, years, expected):
    assert add_years(start, years) == expected


def test_status_open_without_deadline():
    status = status_on(date(2099, 1, 1), closed_on=None, destroyable_from=None)

    assert status is RetentionStatus.OPEN


CLOSED = date(2024, 12, 31)
DESTROYABLE_FROM = date(2031, 1, 1)


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (date(2024, 10, 1), RetentionStatus.OPEN),
        (date(2024, 12, 30), RetentionStatus.OPEN),
        (date(2024, 12, 31), RetentionStatus.RETAINED),
        (date(2030, 12, 31), RetentionStatus.RETAINED),
        (date(2031, 1, 1), RetentionStatus.DESTROYABLE),
    ],
)
def test_status_on_dates(on, expected):
    status = status_on(on, closed_on=CLOSED, destroyable_from=DESTROYABLE_FROM)

    assert status is expected


def test_status_destroyed_wins():
    status = status_on(
        date(2020, 1, 1),
        closed_on=date(2025, 5, 31),
        destroyable_from=date(2031, 1, 1),
        destroyed=True,
    )

    assert status is RetentionStatus.DESTROYED


dates = st.dates(min_value=date(1990, 1, 1), max_value=date(2200, 12, 31))
periods = st.integers(min_value=1, max_value=75)


@given(order_date=dates, delay=st.integers(-400, 400), period=periods)
def test_destroyable_from_is_january_after_literal(order_date, delay, period):
    effective_date = order_date + timedelta(days=delay)
    deadline = personal_file_deadline(order_date, effective_date, period)

    assert deadline.destroyable_from.month == 1
    assert deadline.destroyable_from.day == 1
    assert deadline.destroyable_from > deadline.kept_at_least_until
    assert deadline.destroyable_from > deadline.closed_on
    assert deadline.closed_on >= effective_date
    assert deadline.closed_on >= order_date


@given(closed_on=dates, period=periods)
def test_destroyable_from_counts_full_years(closed_on, period):
    deadline = compute_deadline(
        closed_on=closed_on, period_years=period, counting_rule=RULE
    )

    assert deadline.closure_year == closed_on.year
    assert deadline.destroyable_from.year == closed_on.year + period + 1
    # The count starts on 1 January after closure and runs `period` whole years.
    count_start = date(closed_on.year + 1, 1, 1)
    assert deadline.destroyable_from == add_years(count_start, period)


@given(closed_on=dates, period=periods)
def test_longer_period_never_earlier(closed_on, period):
    shorter = compute_deadline(
        closed_on=closed_on, period_years=period, counting_rule=RULE
    )
    longer = compute_deadline(
        closed_on=closed_on, period_years=period + 1, counting_rule=RULE
    )

    assert longer.destroyable_from > shorter.destroyable_from
    assert longer.kept_at_least_until > shorter.kept_at_least_until


@given(start=dates, years=st.integers(min_value=0, max_value=75))
def test_add_years_keeps_month_and_caps_day(start, years):
    result = add_years(start, years)

    assert result.year == start.year + years
    assert result.month == start.month
    assert result.day <= start.day
    assert start.day - result.day <= 1


@given(closed_on=dates, period=periods, on=dates)
def test_status_matches_deadline(closed_on, period, on):
    deadline = compute_deadline(
        closed_on=closed_on, period_years=period, counting_rule=RULE
    )
    status = status_on(
        on, closed_on=closed_on, destroyable_from=deadline.destroyable_from
    )

    if on < closed_on:
        assert status is RetentionStatus.OPEN
    elif on < deadline.destroyable_from:
        assert status is RetentionStatus.RETAINED
    else:
        assert status is RetentionStatus.DESTROYABLE
