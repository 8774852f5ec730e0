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


def earliest_date_error(value: date, earliest: date) -> str | None:
    """Return the message for a date before `earliest`, or None if it is not."""
    if value < earliest:
        return f"must not be earlier than {earliest.isoformat()}"
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
