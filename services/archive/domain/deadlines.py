"""Retention deadlines: the counting rules and the status of an entry on a date."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class RetentionStatus(StrEnum):
    """The retention status of a record on a given date."""

    OPEN = "open"
    RETAINED = "retained"
    DESTROYABLE = "destroyable"
    DESTROYED = "destroyed"


def add_years(start: date, years: int) -> date:
    """Add calendar years, so that a period from 29 February ends on 28 February."""
    target_year = start.year + years
    last_day = calendar.monthrange(target_year, start.month)[1]
    return start.replace(year=target_year, day=min(start.day, last_day))


def _from_january_after_closure(closure_year: int, period_years: int) -> date:
    # The count starts on 1 January of the year after closure and ends on
    # 31 December of closure_year + period, so the record may be destroyed
    # from the next day.
    return date(closure_year + period_years + 1, 1, 1)


# Each counting rule turns a closure year and a period into the first day on
# which the record may enter a destruction act.
COUNTING_RULES: dict[str, Callable[[int, int], date]] = {
    "from_january_after_closure": _from_january_after_closure,
}


@dataclass(frozen=True)
class Deadline:
    """The computed retention dates of a closed record."""

    closed_on: date
    closure_year: int
    kept_at_least_until: date
    destroyable_from: date


def compute_deadline(
    *,
    closed_on: date,
    period_years: int,
    counting_rule: str,
    literal_start: date | None = None,
) -> Deadline:
    """Compute the retention dates of a record closed on `closed_on`.

    `literal_start` is the date that the literal "N years after" period runs
    from, which is the expulsion date for a personal file. It defaults to
    `closed_on`.
    """
    try:
        rule = COUNTING_RULES[counting_rule]
    except KeyError:
        raise ValueError(f"unknown counting rule {counting_rule!r}") from None
    start = literal_start if literal_start is not None else closed_on
    return Deadline(
        closed_on=closed_on,
        closure_year=closed_on.year,
        kept_at_least_until=add_years(start, period_years),
        destroyable_from=rule(closed_on.year, period_years),
    )


def status_on(
    on: date,
    *,
    closed_on: date | None,
    destroyable_from: date | None,
    destroyed: bool = False,
) -> RetentionStatus:
    """Return the status on date `on` of a record with these retention dates.

    A record is closed on `on` from its closing date onwards, so a record with
    no closing date, or one that closes after `on`, is open. A closing date
    may lie in the future because an expulsion may take effect later.
    """
    if destroyed:
        return RetentionStatus.DESTROYED
    if closed_on is None or destroyable_from is None or on < closed_on:
        return RetentionStatus.OPEN
    if on < destroyable_from:
        return RetentionStatus.RETAINED
    return RetentionStatus.DESTROYABLE
