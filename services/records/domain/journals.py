"""Session journals: one per specialist, programme, group and academic year."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from services.records.domain.base import RecordsAggregate
from services.records.domain.dates import EARLIEST_DOCUMENT_DATE, check_dates
from services.records.domain.errors import InvalidFieldError, RuleViolationError

ATTENDANCE_STATUSES = ("present", "absent", "ill", "excused")
JOURNAL_KINDS = ("group", "individual")


class Journal(RecordsAggregate):
    """A journal of correctional-developmental sessions."""

    TOPIC = "records:Journal"

    programme_id: UUID
    specialist: dict[str, str]
    year_start: date
    year_end: date
    kind: str
    group: str | None
    session_count: int
    slots: set[str]
    last_session_date: date | None
    # The latest session date listing each pupil, under any status.
    latest_sessions: dict[UUID, date]
    closed_on: date | None

    class Event(RecordsAggregate.Event):
        TOPIC = "records:Journal.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "records:Journal.Created"

    class Opened(Created):
        TOPIC = "records:Journal.Opened"
        programme_id: UUID
        specialist: dict[str, str]
        academic_year: dict[str, date]
        kind: str
        group: str | None

        def apply(self, aggregate: Journal) -> None:
            aggregate.programme_id = self.programme_id
            aggregate.specialist = dict(self.specialist)
            aggregate.year_start = self.academic_year["start"]
            aggregate.year_end = self.academic_year["end"]
            aggregate.kind = self.kind
            aggregate.group = self.group
            aggregate.session_count = 0
            aggregate.slots = set()
            aggregate.last_session_date = None
            aggregate.latest_sessions = {}
            aggregate.closed_on = None

    class SessionRecorded(Event):
        TOPIC = "records:Journal.SessionRecorded"
        session_id: UUID
        date: date
        start_time: str
        duration_minutes: int
        topic: str
        attendance: list[dict[str, Any]]

        def apply(self, aggregate: Journal) -> None:
            # The aggregate keeps only what its rules need; the sessions with
            # their attendance live in the read model.
            aggregate.session_count += 1
            aggregate.slots.add(_slot(self.date, self.start_time))
            last = aggregate.last_session_date
            if last is None or self.date > last:
                aggregate.last_session_date = self.date
            latest = aggregate.latest_sessions
            for line in self.attendance:
                pupil_id = line["pupil_id"]
                if not isinstance(pupil_id, UUID):
                    pupil_id = UUID(str(pupil_id))
                known = latest.get(pupil_id)
                if known is None or self.date > known:
                    latest[pupil_id] = self.date

    class Closed(Event):
        TOPIC = "records:Journal.Closed"
        closed_on: date

        def apply(self, aggregate: Journal) -> None:
            aggregate.closed_on = self.closed_on

    def __init__(self) -> None:
        pass

    @classmethod
    def open(
        cls,
        *,
        programme_id: UUID,
        specialist: dict[str, str],
        year_start: date,
        year_end: date,
        kind: str,
        group: str | None,
    ) -> Journal:
        """Open a journal for one academic year set by the centre's calendar."""
        check_dates({"academic_year.start": (year_start, EARLIEST_DOCUMENT_DATE)})
        if year_end <= year_start:
            raise InvalidFieldError(
                "academic_year.end", "must be later than academic_year.start"
            )
        if (year_end - year_start).days > 366:
            raise InvalidFieldError(
                "academic_year.end", "an academic year cannot last over a year"
            )
        if kind not in JOURNAL_KINDS:
            raise ValueError(f"unknown journal kind {kind!r}")
        return cls._create(
            cls.Opened,
            programme_id=programme_id,
            specialist=dict(specialist),
            academic_year={"start": year_start, "end": year_end},
            kind=kind,
            group=group,
        )

    @property
    def is_closed(self) -> bool:
        return self.closed_on is not None

    def latest_session_with(self, pupil_id: UUID) -> date | None:
        """Return the latest session date listing `pupil_id`, if any."""
        return self.latest_sessions.get(pupil_id)

    def check_session_date(self, day: date) -> None:
        """Raise unless `day` lies inside the journal's academic year."""
        if not self.year_start <= day <= self.year_end:
            raise InvalidFieldError(
                "date",
                f"must lie inside the academic year {self.year_start.isoformat()}"
                f"..{self.year_end.isoformat()}",
            )

    def record_session(
        self,
        *,
        on: date,
        start_time: str,
        duration_minutes: int,
        topic: str,
        attendance: list[dict[str, Any]],
    ) -> UUID:
        """Record a session entry with the attendance of each listed pupil."""
        self.check_session_date(on)
        if self.is_closed:
            raise RuleViolationError("the journal is closed")
        if _slot(on, start_time) in self.slots:
            raise RuleViolationError(
                f"a session is already recorded on {on.isoformat()} at {start_time}"
            )
        pupils = [line["pupil_id"] for line in attendance]
        if len(set(pupils)) != len(pupils):
            raise InvalidFieldError("attendance", "a pupil is listed twice")
        session_id = uuid4()
        self.trigger_event(
            self.SessionRecorded,
            session_id=session_id,
            date=on,
            start_time=start_time,
            duration_minutes=duration_minutes,
            topic=topic,
            attendance=[
                {"pupil_id": line["pupil_id"], "status": line["status"]}
                for line in attendance
            ],
        )
        return session_id

    def close(self, *, closed_on: date) -> None:
        """Close the journal: no more sessions may be recorded."""
        if closed_on < self.year_start:
            raise InvalidFieldError(
                "closed_on",
                f"must not be before the academic year starts "
                f"({self.year_start.isoformat()})",
            )
        last = self.last_session_date
        if last is not None and closed_on < last:
            raise InvalidFieldError(
                "closed_on", f"must not be before the last session ({last.isoformat()})"
            )
        if self.is_closed:
            raise RuleViolationError("the journal is already closed")
        self.trigger_event(self.Closed, closed_on=closed_on)


def _slot(day: date, start_time: str) -> str:
    # Plain strings keep the per-command copy of a cached journal cheap.
    return f"{day.isoformat()}T{start_time}"
