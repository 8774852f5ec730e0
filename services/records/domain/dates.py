"""Bounds of the dates the records accept, shared by the domain and the API schemas."""

from __future__ import annotations

from datetime import date

from services.records.domain.errors import InvalidFieldError

# No one alive and registered as a child was born before this day; earlier
# birth dates are typing errors such as 0001-01-01.
EARLIEST_BIRTH_DATE = date(1900, 1, 1)
# The earliest date of the centre's own documents: personal files, orders,
# protocols and journals. A child's file stays open for at most 18 years, and
# the file plan keeps it about 6 years more. This bound lies well before any
# document the records hold, so an earlier date is a typing error.
EARLIEST_DOCUMENT_DATE = date(1990, 1, 1)
# The centre's pupils are children: a person is a child until the 18th
# birthday. A pupil may turn 18 while enrolled, but no file is opened for an
# adult.
ADULT_AGE_YEARS = 18


def birthday(birth_date: date, age_years: int) -> date:
    """Return the day a person born on `birth_date` turns `age_years`.

    For a birth on 29 February, the birthday in a common year is 1 March.
    """
    year = birth_date.year + age_years
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 3, 1)


def earliest_date_error(value: date, earliest: date) -> str | None:
    """Return the message for a date before `earliest`, or None if it is not."""
    if value < earliest:
        return f"must not be earlier than {earliest.isoformat()}"
    return None


def adult_at_opening_error(birth_date: date, opened_on: date) -> str | None:
    """Return the message for a file opened on or after the 18th birthday."""
    adult_on = birthday(birth_date, ADULT_AGE_YEARS)
    if opened_on >= adult_on:
        return (
            f"the pupil turns {ADULT_AGE_YEARS} on {adult_on.isoformat()}, "
            f"before the file is opened on {opened_on.isoformat()}; the centre "
            "opens files for children only"
        )
    return None


def check_dates(checks: dict[str, tuple[date, date]]) -> None:
    """Raise `InvalidFieldError` for each field path whose date is before its bound.

    `checks` maps a field path such as `order.date` to the value and the
    earliest date allowed.
    """
    errors: dict[str, list[str]] = {}
    for path, (value, earliest) in checks.items():
        message = earliest_date_error(value, earliest)
        if message is not None:
            errors[path] = [message]
    if errors:
        raise InvalidFieldError.many(errors)
