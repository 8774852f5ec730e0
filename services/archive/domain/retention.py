"""Event-sourced retention state of personal files and session journals.

The aggregates store the dates and facts reported by the records service, and
the records position of the event behind each change. Deadlines are not stored:
they follow from these dates and the current schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

from services.archive.domain.deadlines import Deadline
from services.archive.domain.schedule import ScheduleItem

# Namespace of the archive's aggregate ids, derived from the records ids, so
# that a personal file and a journal never share an id.
ARCHIVE_NAMESPACE = UUID("0b8f3c1e-5a2d-4f7b-9c61-3e2a7d9f4b10")


@dataclass(frozen=True)
class DestructionAct:
    """The act under which the records service destroyed a pupil's data."""

    number: str
    date: date


def personal_file_closure(order_date: date, effective_date: date) -> date:
    """Return the closing date of a personal file left by this expulsion.

    The file closes with its last document, which is the later of the order's
    signature date and the expulsion's effective date.
    """
    return max(order_date, effective_date)


class PersonalFileRetention(Aggregate):
    """Retention state of one pupil's personal file."""

    TOPIC = "archive:PersonalFileRetention"

    class Event(Aggregate.Event):
        """An event of the aggregate, caused by the records event at `position`."""

        TOPIC = "archive:PersonalFileRetention.Event"
        position: int

    class Created(Event, Aggregate.Created):
        TOPIC = "archive:PersonalFileRetention.Created"

    class Opened(Created):
        """The archive heard of the pupil's file for the first time."""

        TOPIC = "archive:PersonalFileRetention.Opened"
        pupil_id: UUID
        opened_on: date | None

    class Closed(Event):
        """The pupil left the centre, which closed the file."""

        TOPIC = "archive:PersonalFileRetention.Closed"
        closed_on: date
        expelled_on: date
        expulsion_id: UUID | None

    class Reopened(Event):
        """The file was opened again, which voids its deadline."""

        TOPIC = "archive:PersonalFileRetention.Reopened"

    class PersonalDataDestroyed(Event):
        """The records service destroyed the pupil's personal data."""

        TOPIC = "archive:PersonalFileRetention.PersonalDataDestroyed"
        destroyed_at: datetime
        act_number: str
        act_date: date

    @staticmethod
    def create_id(pupil_id: UUID) -> UUID:
        """Derive the aggregate id from the pupil id."""
        return uuid5(ARCHIVE_NAMESPACE, f"personal_file:{pupil_id}")

    @event(Opened)
    def __init__(self, pupil_id: UUID, opened_on: date | None, position: int) -> None:
        self.pupil_id = pupil_id
        self.opened_on = opened_on
        self.closed_on: date | None = None
        self.expelled_on: date | None = None
        self.closing_expulsion_id: UUID | None = None
        self.destroyed_at: datetime | None = None
        self.act_number: str | None = None
        self.act_date: date | None = None
        self.position = position

    @property
    def is_closed(self) -> bool:
        """Whether the pupil has left the centre, which closes the file."""
        return self.closed_on is not None

    @property
    def act(self) -> DestructionAct | None:
        """The destruction act, once the pupil's personal data were destroyed."""
        if self.act_number is None or self.act_date is None:
            return None
        return DestructionAct(number=self.act_number, date=self.act_date)

    def close(
        self,
        *,
        closed_on: date,
        expelled_on: date,
        expulsion_id: UUID | None,
        position: int,
    ) -> None:
        """Close the file because the pupil left the centre, unless already so."""
        if self.closed_on == closed_on and self.expelled_on == expelled_on:
            return
        if closed_on < expelled_on:
            raise ValueError(
                f"a file cannot close ({closed_on}) before the expulsion "
                f"takes effect ({expelled_on})"
            )
        self._closed(
            closed_on=closed_on,
            expelled_on=expelled_on,
            expulsion_id=expulsion_id,
            position=position,
        )

    @event(Closed)
    def _closed(
        self,
        closed_on: date,
        expelled_on: date,
        expulsion_id: UUID | None,
        position: int,
    ) -> None:
        self.closed_on = closed_on
        self.expelled_on = expelled_on
        if expulsion_id is not None:
            self.closing_expulsion_id = expulsion_id
        self.position = position

    def reopen(self, *, position: int) -> None:
        """Reopen a closed file, which voids its deadline. An open file stays open."""
        if self.is_closed:
            self._reopened(position=position)

    @event(Reopened)
    def _reopened(self, position: int) -> None:
        self.closed_on = None
        self.expelled_on = None
        self.position = position

    def record_destruction(
        self, *, destroyed_at: datetime, act: DestructionAct, position: int
    ) -> None:
        """Record that the pupil's personal data were destroyed under `act`."""
        if self.destroyed_at == destroyed_at and self.act == act:
            return
        self._personal_data_destroyed(
            destroyed_at=destroyed_at,
            act_number=act.number,
            act_date=act.date,
            position=position,
        )

    @event(PersonalDataDestroyed)
    def _personal_data_destroyed(
        self, destroyed_at: datetime, act_number: str, act_date: date, position: int
    ) -> None:
        self.destroyed_at = destroyed_at
        self.act_number = act_number
        self.act_date = act_date
        self.position = position

    def deadline(self, item: ScheduleItem) -> Deadline | None:
        """Compute the deadline under `item`, or None while the file is open."""
        if self.closed_on is None:
            return None
        return item.deadline(self.closed_on, literal_start=self.expelled_on)


class JournalRetention(Aggregate):
    """Retention state of one session journal."""

    TOPIC = "archive:JournalRetention"

    class Event(Aggregate.Event):
        """An event of the aggregate, caused by the records event at `position`."""

        TOPIC = "archive:JournalRetention.Event"
        position: int

    class Created(Event, Aggregate.Created):
        TOPIC = "archive:JournalRetention.Created"

    class Opened(Created):
        """The archive heard of the journal for the first time."""

        TOPIC = "archive:JournalRetention.Opened"
        journal_id: UUID

    class Closed(Event):
        """The journal was closed on a date."""

        TOPIC = "archive:JournalRetention.Closed"
        closed_on: date

    @staticmethod
    def create_id(journal_id: UUID) -> UUID:
        """Derive the aggregate id from the journal id."""
        return uuid5(ARCHIVE_NAMESPACE, f"journal:{journal_id}")

    @event(Opened)
    def __init__(self, journal_id: UUID, position: int) -> None:
        self.journal_id = journal_id
        self.closed_on: date | None = None
        self.position = position

    @property
    def is_closed(self) -> bool:
        """Whether the journal was closed."""
        return self.closed_on is not None

    def close(self, *, closed_on: date, position: int) -> None:
        """Close the journal on `closed_on`. Closing again on that date is a no-op."""
        if self.closed_on != closed_on:
            self._closed(closed_on=closed_on, position=position)

    @event(Closed)
    def _closed(self, closed_on: date, position: int) -> None:
        self.closed_on = closed_on
        self.position = position

    def deadline(self, item: ScheduleItem) -> Deadline | None:
        """Compute the deadline under `item`, or None while the journal is open."""
        if self.closed_on is None:
            return None
        return item.deadline(self.closed_on)
