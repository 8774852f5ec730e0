"""Civil dates and "today" in the centre's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def utc_now() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def today_in(zone: ZoneInfo, now: datetime | None = None) -> date:
    """Return the civil date in `zone` at `now` (default: the current time)."""
    moment = now if now is not None else utc_now()
    return moment.astimezone(zone).date()


def iso_utc(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 in UTC with a `Z` suffix."""
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")
