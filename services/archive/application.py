"""The archive's service layer: applies feed pages to the retention aggregates."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from typing import TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    ProcessingEvent,
)
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import JSONTranscoder, ProcessRecorder, Tracking

from services.archive.domain.retention import (
    DestructionAct,
    JournalRetention,
    PersonalFileRetention,
    personal_file_closure,
)
from services.archive.feed import FeedEvent, FeedFormatError, FeedPage
from shared.config import Settings
from shared.storage import eventsourcing_env
from shared.transcodings import register_civil_dates

logger = logging.getLogger(__name__)

# The upstream name under which the records positions are tracked.
RECORDS_SOURCE = "records"

TAggregate = TypeVar("TAggregate", bound=Aggregate)


class ArchiveApplication(Application[UUID]):
    """Retention state of records, fed by the records service's public events.

    Each feed page is saved in one transaction together with a tracking record
    of the records position it covers, so a page is applied exactly once.
    """

    name = "archive"

    def __init__(self, env: dict[str, str] | None = None) -> None:
        super().__init__(env)
        self.recorder: ProcessRecorder
        self._handlers: dict[str, Callable[[FeedEvent, _PageBuffer], None]] = {
            "pupil.registered": self._pupil_registered,
            "pupil.enrolled": self._pupil_enrolled,
            "pupil.enrolment_cancelled": self._enrolment_cancelled,
            "pupil.transferred": self._pupil_transferred,
            "pupil.expelled": self._pupil_expelled,
            "pupil.expulsion_cancelled": self._expulsion_cancelled,
            "pupil.personal_data_destroyed": self._personal_data_destroyed,
            "journal.opened": self._journal_opened,
            "journal.closed": self._journal_closed,
        }

    @classmethod
    def from_settings(cls, settings: Settings) -> ArchiveApplication:
        """Build the application on the archive database of `settings`."""
        return cls(env=eventsourcing_env(settings.archive_database_url))

    def construct_recorder(self) -> ProcessRecorder:
        """Use a process recorder, which stores tracking records with events."""
        return self.factory.process_recorder()

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """Register the default transcodings and civil dates."""
        super().register_transcodings(transcoder)
        register_civil_dates(transcoder)

    def processed_position(self) -> int:
        """Return the last records position applied, 0 before the first page."""
        return self.recorder.max_tracking_id(RECORDS_SOURCE) or 0

    def apply_page(self, page: FeedPage) -> bool:
        """Apply a feed page and track its `last_position`, all in one transaction.

        Events at or before the processed position are skipped, so a replayed
        page changes nothing. Returns whether anything was stored.
        """
        processed = self.processed_position()
        if page.last_position <= processed:
            return False

        buffer = _PageBuffer(self._find)
        for feed_event in page.events:
            if feed_event.position > processed:
                self._apply(feed_event, buffer)

        processing = ProcessingEvent[UUID](
            tracking=Tracking(RECORDS_SOURCE, page.last_position)
        )
        processing.collect_events(*buffer.aggregates.values())
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return True

    def personal_file(self, pupil_id: UUID) -> PersonalFileRetention | None:
        """Return the retention state of a pupil's file, or None if never heard of."""
        aggregate_id = PersonalFileRetention.create_id(pupil_id)
        return self._find(PersonalFileRetention, aggregate_id)

    def journal(self, journal_id: UUID) -> JournalRetention | None:
        """Return the retention state of a journal, or None if never heard of."""
        return self._find(JournalRetention, JournalRetention.create_id(journal_id))

    def _find(self, kind: type[TAggregate], aggregate_id: UUID) -> TAggregate | None:
        try:
            aggregate: Aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        if not isinstance(aggregate, kind):
            raise TypeError(f"aggregate {aggregate_id} is not a {kind.__name__}")
        return aggregate

    def _apply(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        handler = self._handlers.get(feed_event.type)
        if handler is None:
            # The feed may gain event types. An unknown type changes no entry,
            # but its position is still tracked with the page.
            logger.debug(
                "skipping event type %s at position %d",
                feed_event.type,
                feed_event.position,
            )
            return
        handler(feed_event, buffer)

    def _pupil_registered(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        buffer.personal_file(
            feed_event.read_uuid("pupil_id"),
            feed_event.position,
            opened_on=feed_event.read_optional_date("opened_on"),
        )

    def _pupil_enrolled(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        # An enrolment into a closed file is a re-admission: the old deadline
        # is void until the pupil leaves again.
        file = buffer.personal_file(
            feed_event.read_uuid("pupil_id"), feed_event.position
        )
        file.reopen(position=feed_event.position)

    def _enrolment_cancelled(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        # Cancelling a re-admission returns the file to its earlier closure,
        # whose dates the event carries.
        file = buffer.personal_file(
            feed_event.read_uuid("pupil_id"), feed_event.position
        )
        if not feed_event.read_flag("left_centre"):
            return
        file.close(
            **_closure_dates(
                feed_event,
                feed_event.read_date("file_closed_on"),
                feed_event.read_date("expelled_on"),
            ),
            expulsion_id=None,
            position=feed_event.position,
        )

    def _pupil_transferred(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        # A transfer inside the centre keeps the file open.
        buffer.personal_file(feed_event.read_uuid("pupil_id"), feed_event.position)

    def _pupil_expelled(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        file = buffer.personal_file(
            feed_event.read_uuid("pupil_id"), feed_event.position
        )
        if not feed_event.read_flag("left_centre"):
            return
        # The contract gives the order and effective dates. The records
        # service may also send the file's closure dates, which then decide.
        effective_date = feed_event.read_date("effective_date")
        order_date = feed_event.read_date("date", inside="order")
        closed_on = feed_event.read_optional_date("file_closed_on")
        expelled_on = feed_event.read_optional_date("expelled_on")
        file.close(
            **_closure_dates(
                feed_event,
                closed_on or personal_file_closure(order_date, effective_date),
                expelled_on or effective_date,
            ),
            expulsion_id=feed_event.read_uuid("expulsion_id"),
            position=feed_event.position,
        )

    def _expulsion_cancelled(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        file = buffer.personal_file(
            feed_event.read_uuid("pupil_id"), feed_event.position
        )
        cancels_leaving = (
            feed_event.read_uuid("expulsion_id") == file.closing_expulsion_id
        )
        if feed_event.read_flag("reopened_file") or (
            file.is_closed and cancels_leaving
        ):
            file.reopen(position=feed_event.position)

    def _personal_data_destroyed(
        self, feed_event: FeedEvent, buffer: _PageBuffer
    ) -> None:
        file = buffer.personal_file(
            feed_event.read_uuid("pupil_id"), feed_event.position
        )
        act = DestructionAct(
            number=feed_event.read_text("number", inside="act"),
            date=feed_event.read_date("date", inside="act"),
        )
        file.record_destruction(
            destroyed_at=feed_event.read_timestamp("destroyed_at"),
            act=act,
            position=feed_event.position,
        )

    def _journal_opened(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        buffer.journal(feed_event.read_uuid("journal_id"), feed_event.position)

    def _journal_closed(self, feed_event: FeedEvent, buffer: _PageBuffer) -> None:
        journal = buffer.journal(
            feed_event.read_uuid("journal_id"), feed_event.position
        )
        journal.close(
            closed_on=feed_event.read_date("closed_on"), position=feed_event.position
        )


def _closure_dates(
    feed_event: FeedEvent, closed_on: date, expelled_on: date
) -> dict[str, date]:
    if closed_on < expelled_on:
        raise FeedFormatError(
            f"event at position {feed_event.position} ({feed_event.type}): "
            f"the file closes on {closed_on}, before the expulsion takes effect "
            f"on {expelled_on}"
        )
    return {"closed_on": closed_on, "expelled_on": expelled_on}


_Finder = Callable[[type[Aggregate], UUID], Aggregate | None]


class _PageBuffer:
    """The aggregates a page touches, loaded once and saved together."""

    def __init__(self, find: _Finder) -> None:
        self._find = find
        self.aggregates: dict[UUID, Aggregate] = {}

    def personal_file(
        self, pupil_id: UUID, position: int, opened_on: date | None = None
    ) -> PersonalFileRetention:
        aggregate_id = PersonalFileRetention.create_id(pupil_id)
        found = self._get(PersonalFileRetention, aggregate_id)
        if found is None:
            found = PersonalFileRetention(
                pupil_id=pupil_id, opened_on=opened_on, position=position
            )
            self.aggregates[aggregate_id] = found
        return found

    def journal(self, journal_id: UUID, position: int) -> JournalRetention:
        aggregate_id = JournalRetention.create_id(journal_id)
        found = self._get(JournalRetention, aggregate_id)
        if found is None:
            found = JournalRetention(journal_id=journal_id, position=position)
            self.aggregates[aggregate_id] = found
        return found

    def _get(self, kind: type[TAggregate], aggregate_id: UUID) -> TAggregate | None:
        aggregate = self.aggregates.get(aggregate_id)
        if aggregate is None:
            aggregate = self._find(kind, aggregate_id)
            if aggregate is None:
                return None
            self.aggregates[aggregate_id] = aggregate
        if not isinstance(aggregate, kind):
            raise FeedFormatError(f"aggregate {aggregate_id} is not a {kind.__name__}")
        return aggregate
