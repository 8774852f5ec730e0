"""Pages of the records service's public event feed, parsed and checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID


class FeedFormatError(ValueError):
    """A feed page or event does not follow the published format."""


@dataclass(frozen=True)
class FeedEvent:
    """One public records event: its type, log position and data."""

    id: str
    type: str
    position: int
    data: Mapping[str, Any]
    # When the records service recorded the event (`time`), or None without one.
    recorded_at: datetime | None = None

    def read_uuid(self, name: str) -> UUID:
        """Return the data field `name` as a UUID."""
        raw = self._field(name)
        try:
            return UUID(str(raw))
        except ValueError:
            raise self._invalid(name, "a UUID", raw) from None

    def read_date(self, name: str, inside: str | None = None) -> date:
        """Return the data field `name` (or `inside.name`) as a civil date."""
        raw = self._field(name, inside)
        try:
            return date.fromisoformat(raw)
        except (TypeError, ValueError):
            raise self._invalid(_path(name, inside), "a YYYY-MM-DD date", raw) from None

    def read_optional_date(self, name: str) -> date | None:
        """Return the data field `name` as a date, or None when absent or null."""
        if self.data.get(name) is None:
            return None
        return self.read_date(name)

    def read_timestamp(self, name: str) -> datetime:
        """Return the data field `name` as an aware UTC timestamp."""
        raw = self._field(name)
        try:
            moment = datetime.fromisoformat(raw)
        except (TypeError, ValueError):
            raise self._invalid(name, "an ISO 8601 timestamp", raw) from None
        if moment.tzinfo is None:
            raise self._invalid(name, "a timestamp with a time zone", raw)
        return moment

    def read_flag(self, name: str) -> bool:
        """Return the data field `name` as a boolean, false when absent."""
        raw = self.data.get(name, False)
        if not isinstance(raw, bool):
            raise self._invalid(name, "true or false", raw)
        return raw

    def read_text(self, name: str, inside: str | None = None) -> str:
        """Return the data field `name` (or `inside.name`) as a string."""
        raw = self._field(name, inside)
        if not isinstance(raw, str):
            raise self._invalid(_path(name, inside), "a string", raw)
        return raw

    def _field(self, name: str, inside: str | None = None) -> Any:
        container: Any = self.data
        if inside is not None:
            container = self.data.get(inside)
            if not isinstance(container, Mapping):
                raise FeedFormatError(
                    f"event at position {self.position} ({self.type}): "
                    f"data.{inside} is missing or not an object"
                )
        if name not in container or container[name] is None:
            raise FeedFormatError(
                f"event at position {self.position} ({self.type}): "
                f"data.{_path(name, inside)} is missing"
            )
        return container[name]

    def _invalid(self, path: str, expected: str, raw: Any) -> FeedFormatError:
        # Only the kind of value is reported, because feed data may be personal.
        return FeedFormatError(
            f"event at position {self.position} ({self.type}): data.{path} "
            f"must be {expected}, got a {type(raw).__name__}"
        )


def _path(name: str, inside: str | None) -> str:
    return name if inside is None else f"{inside}.{name}"


@dataclass(frozen=True)
class FeedPage:
    """One feed response: events in position order and the positions covered."""

    events: tuple[FeedEvent, ...]
    last_position: int
    head_position: int


def parse_page(body: Any, *, after: int) -> FeedPage:
    """Check a decoded feed response to a request with `after`; build the page."""
    if not isinstance(body, Mapping):
        raise FeedFormatError("the feed response is not a JSON object")
    last_position = _position(body, "last_position")
    head_position = _position(body, "head_position")
    raw_events = body.get("events")
    if not isinstance(raw_events, list):
        raise FeedFormatError('the feed response has no list "events"')
    events = tuple(_parse_event(index, raw) for index, raw in enumerate(raw_events))

    previous = after
    for item in events:
        if item.position <= previous:
            raise FeedFormatError(
                f"event positions must increase after {after}: "
                f"{item.position} follows {previous}"
            )
        previous = item.position
    if last_position < previous:
        raise FeedFormatError(
            f"last_position {last_position} is before the last event's "
            f"position {previous}"
        )
    return FeedPage(
        events=events, last_position=last_position, head_position=head_position
    )


def _position(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FeedFormatError(f"{name} must be a non-negative integer")
    return value


def _parse_event(index: int, raw: Any) -> FeedEvent:
    if not isinstance(raw, Mapping):
        raise FeedFormatError(f"events[{index}] is not an object")
    position = raw.get("position")
    if isinstance(position, bool) or not isinstance(position, int) or position < 1:
        raise FeedFormatError(f"events[{index}].position must be a positive integer")
    event_type = raw.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise FeedFormatError(f"events[{index}].type must be a non-empty string")
    data = raw.get("data")
    if not isinstance(data, Mapping):
        raise FeedFormatError(f"events[{index}].data must be an object")
    return FeedEvent(
        id=str(raw.get("id", "")),
        type=event_type,
        position=position,
        data=data,
        recorded_at=_recorded_at(index, raw.get("time")),
    )


def _recorded_at(index: int, raw: Any) -> datetime | None:
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except (TypeError, ValueError):
        raise FeedFormatError(
            f"events[{index}].time must be an ISO 8601 timestamp"
        ) from None
    if moment.tzinfo is None:
        raise FeedFormatError(f"events[{index}].time must have a time zone")
    return moment
