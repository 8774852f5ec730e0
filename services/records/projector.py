"""The records projector: follows the log into the read models, exactly once.

Each batch of events is applied in one transaction together with the new
position in `rm_positions`; a batch that fails rolls back whole, so after a
crash the projector resumes from the last committed position and no event is
applied twice.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEvent
from sqlalchemy import Connection, Engine, delete, insert, select, update
from tqdm import tqdm

from services.records.application import RecordsApplication
from services.records.domain.journals import Journal
from services.records.domain.names import normalised_full_name
from services.records.domain.programmes import Programme
from services.records.domain.pupils import Pupil
from services.records.domain.serialise import (
    attestation_view,
    enrolment_view,
    journal_view,
    programme_view,
)
from services.records.keys import (
    enable_secure_delete,
    load_master_key,
    purge_free_space,
)
from services.records.purge import PURGED_TABLES, purge_pupil
from services.records.readmodels import (
    PROJECTOR_NAME,
    RecordsReadModels,
    attendance,
    history,
    journals,
    metadata,
    positions,
    programmes,
    pupil_programmes,
    pupils,
    sessions,
)
from shared.clock import iso_utc
from shared.config import Settings
from shared.heartbeats import IdleBeats, create_heartbeat_table, write_heartbeat
from shared.jsonable import to_jsonable
from shared.storage import create_sql_engine
from shared.wakeups import ChangeSignal, open_change_signal

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
CACHE_SIZE = 5000
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
HEARTBEAT_NAME = "records_projector"

HISTORY_TYPES = {
    Pupil.Registered: "pupil.registered",
    Pupil.Enrolled: "pupil.enrolled",
    Pupil.EnrolmentCancelled: "pupil.enrolment_cancelled",
    Pupil.Transferred: "pupil.transferred",
    Pupil.Expelled: "pupil.expelled",
    Pupil.ExpulsionCancelled: "pupil.expulsion_cancelled",
    Pupil.AttestationRecorded: "attestation.recorded",
    Pupil.AttestationCorrected: "attestation.corrected",
    Pupil.AttendanceBegan: "attendance.began",
    Pupil.PersonalDataDestroyed: "pupil.personal_data_destroyed",
}
ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "actor", "reason"}


class PositionMovedError(Exception):
    """Another projector advanced the position first; this batch was rolled back."""


class RecordsProjector:
    """Applies records events to the read models in batched transactions."""

    def __init__(
        self,
        app: RecordsApplication,
        engine: Engine,
        *,
        heartbeat_name: str | None = None,
    ) -> None:
        self.app = app
        self.engine = engine
        self.read_models = RecordsReadModels(engine)
        # With a name, each batch also writes the follower's heartbeat row.
        self.heartbeat_name = heartbeat_name
        self._aggregates: OrderedDict[UUID, Any] = OrderedDict()
        # Set when a batch purged a pupil: old row versions remain in the
        # database files until `finish_destructions` clears them.
        self._purged = False

    def catch_up(self, batch_size: int = BATCH_SIZE, progress: tqdm | None = None) -> int:
        """Apply every event after the stored position; return how many."""
        applied = 0
        while True:
            count = self.process_batch(batch_size)
            if progress is not None:
                progress.update(count)
            applied += count
            if count < batch_size:
                return applied

    def process_batch(self, batch_size: int = BATCH_SIZE) -> int:
        """Apply the next batch of events in one transaction; return how many."""
        try:
            with self.engine.begin() as connection:
                count = self._process(connection, batch_size)
        except BaseException:
            # Aggregates mutated by the rolled-back batch are stale now.
            self._aggregates.clear()
            raise
        self.finish_destructions()
        return count

    def finish_destructions(self) -> None:
        """Clear the old row versions of purged pupils once their batch committed."""
        if not self._purged:
            return
        purge_free_space(self.engine, PURGED_TABLES)
        self.app.key_ring.scrub()
        self._purged = False

    def catch_up_in(self, connection: Connection, batch_size: int = BATCH_SIZE) -> int:
        """Apply every pending event inside the caller's transaction; return how many.

        The caller must call `forget_aggregates()` if it rolls the transaction back.
        """
        applied = 0
        while True:
            count = self._process(connection, batch_size)
            applied += count
            if count < batch_size:
                return applied

    def forget_aggregates(self) -> None:
        """Drop the cached aggregates after a rollback of the caller's transaction."""
        self._aggregates.clear()

    def beat(self) -> None:
        """Write the heartbeat row with the stored position and the current head."""
        if self.heartbeat_name is None:
            return
        with self.engine.begin() as connection:
            write_heartbeat(
                connection,
                self.heartbeat_name,
                position=_stored_position(connection),
                head=self.app.head_position(),
            )

    def _process(self, connection: Connection, batch_size: int) -> int:
        # Old versions of updated rows must not linger in SQLite's free space.
        enable_secure_delete(connection)
        start = _stored_position(connection)
        notifications = self.app.recorder.select_notifications(
            start=start, limit=batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            self._apply(connection, event, notification.id)
        moved = connection.execute(
            update(positions)
            .where(positions.c.name == PROJECTOR_NAME, positions.c.position == start)
            .values(position=notifications[-1].id)
        )
        if moved.rowcount != 1:
            raise PositionMovedError(
                f"position {start} of {PROJECTOR_NAME} moved during the batch"
            )
        if self.heartbeat_name is not None:
            write_heartbeat(
                connection,
                self.heartbeat_name,
                position=notifications[-1].id,
                head=self.app.head_position(),
                last_event_at=getattr(event, "timestamp", None),
            )
        return len(notifications)

    def _apply(self, connection: Connection, event: DomainEvent, position: int) -> None:
        if isinstance(event, Pupil.Event):
            self._apply_pupil(connection, event, position)
        elif isinstance(event, Journal.Event):
            self._apply_journal(connection, event, position)
        elif isinstance(event, Programme.Approved):
            programme = event.mutate(None)
            connection.execute(
                insert(programmes).values(
                    id=str(programme.id),
                    code=programme.code,
                    document=programme_document(programme),
                    position=position,
                )
            )

    def _aggregate(self, event: Any) -> Any:
        """Return the aggregate after `event`, mutating a cached copy when possible."""
        aggregate_id = event.originator_id
        cached = self._aggregates.pop(aggregate_id, None)
        if cached is not None and cached.version == event.originator_version - 1:
            event.mutate(cached)
            aggregate = cached
        elif event.originator_version == 1:
            aggregate = event.mutate(None)
        else:
            aggregate = self.app.repository.get(
                aggregate_id, version=event.originator_version
            )
        self._aggregates[aggregate_id] = aggregate
        if len(self._aggregates) > CACHE_SIZE:
            self._aggregates.popitem(last=False)
        return aggregate

    def _apply_pupil(self, connection: Connection, event: Any, position: int) -> None:
        pupil: Pupil = self._aggregate(event)
        if isinstance(event, Pupil.PersonalDataDestroyed):
            self._destroy(connection, event, position)
            return
        pupil_id = str(pupil.id)
        values = {
            "sort_key": normalised_full_name(
                pupil.surname or "", pupil.name or "", pupil.patronymic
            ),
            "status": pupil.status,
            "document": personal_file_document(pupil),
            "position": position,
        }
        if isinstance(event, Pupil.Registered):
            connection.execute(insert(pupils).values(id=pupil_id, **values))
        else:
            connection.execute(
                update(pupils).where(pupils.c.id == pupil_id).values(**values)
            )
        if isinstance(event, Pupil.Enrolled | Pupil.Transferred | Pupil.EnrolmentCancelled):
            self._write_pupil_programmes(connection, pupil)
        connection.execute(insert(history).values(**history_row(event, position)))

    def _destroy(
        self, connection: Connection, event: Pupil.PersonalDataDestroyed, position: int
    ) -> None:
        # The key is destroyed in this transaction as well, which finishes a
        # destruction whose process stopped between the event and the key.
        self.app.key_ring.destroy(event.originator_id, connection=connection)
        # Cached journals hold the pupil's decrypted attendance lines.
        self._aggregates.clear()
        purge_pupil(connection, event, position)
        connection.execute(insert(history).values(**history_row(event, position)))
        self._purged = True

    def _write_pupil_programmes(self, connection: Connection, pupil: Pupil) -> None:
        pupil_id = str(pupil.id)
        connection.execute(
            delete(pupil_programmes).where(pupil_programmes.c.pupil_id == pupil_id)
        )
        programme_ids = {
            str(e.programme_id)
            for e in pupil.enrolments.values()
            if e.status != "cancelled"
        }
        if programme_ids:
            connection.execute(
                insert(pupil_programmes),
                [{"pupil_id": pupil_id, "programme_id": p} for p in sorted(programme_ids)],
            )

    def _apply_journal(self, connection: Connection, event: Any, position: int) -> None:
        journal: Journal = self._aggregate(event)
        journal_id = str(journal.id)
        document = to_jsonable(journal_view(journal))
        if isinstance(event, Journal.Opened):
            connection.execute(
                insert(journals).values(
                    id=journal_id,
                    programme_id=str(journal.programme_id),
                    document=document,
                    closed=False,
                    position=position,
                )
            )
            return
        connection.execute(
            update(journals)
            .where(journals.c.id == journal_id)
            .values(document=document, closed=journal.is_closed, position=position)
        )
        if isinstance(event, Journal.SessionRecorded):
            self._record_session(connection, journal, event, position)

    def _record_session(
        self, connection: Connection, journal: Journal, event: Any, position: int
    ) -> None:
        journal_id = str(journal.id)
        # A line whose status is None belongs to a pupil whose key was destroyed.
        lines = [line for line in event.attendance if line["status"] is not None]
        connection.execute(
            insert(sessions).values(
                id=str(event.session_id),
                journal_id=journal_id,
                date=event.date,
                start_time=event.start_time,
                document=to_jsonable(
                    {
                        "id": event.session_id,
                        "date": event.date,
                        "start_time": event.start_time,
                        "duration_minutes": event.duration_minutes,
                        "topic": event.topic,
                        "attendance": lines,
                        "recorded_at": event.timestamp,
                    }
                ),
                position=position,
            )
        )
        for line in lines:
            _count_attendance(
                connection,
                pupil_id=str(line["pupil_id"]),
                journal_id=journal_id,
                programme_id=str(journal.programme_id),
                status=line["status"],
            )


def _count_attendance(
    connection: Connection,
    *,
    pupil_id: str,
    journal_id: str,
    programme_id: str,
    status: str,
) -> None:
    key = (attendance.c.pupil_id == pupil_id) & (attendance.c.journal_id == journal_id)
    column = attendance.c[status]
    changed = connection.execute(
        update(attendance)
        .where(key)
        .values({attendance.c.sessions: attendance.c.sessions + 1, column: column + 1})
    )
    if changed.rowcount == 0:
        row = {"present": 0, "absent": 0, "ill": 0, "excused": 0}
        row[status] = 1
        connection.execute(
            insert(attendance).values(
                pupil_id=pupil_id,
                journal_id=journal_id,
                programme_id=programme_id,
                sessions=1,
                **row,
            )
        )


def _stored_position(connection: Connection) -> int:
    value = connection.execute(
        select(positions.c.position).where(positions.c.name == PROJECTOR_NAME)
    ).scalar()
    if value is None:
        connection.execute(insert(positions).values(name=PROJECTOR_NAME, position=0))
        return 0
    return int(value)


def programme_document(programme: Programme) -> dict[str, Any]:
    return to_jsonable(programme_view(programme))


def personal_file_document(pupil: Pupil) -> dict[str, Any]:
    """Return the personal file without attendance, which journals add."""
    return to_jsonable(
        {
            "id": pupil.id,
            "surname": pupil.surname,
            "name": pupil.name,
            "patronymic": pupil.patronymic,
            "birth_date": pupil.birth_date,
            "status": pupil.status,
            "file_opened_on": pupil.opened_on,
            "file_closed_on": pupil.file_closed_on,
            "enrolments": [enrolment_view(e) for e in pupil.enrolments.values()],
            "attestations": [attestation_view(a) for a in pupil.attestations.values()],
            "version": pupil.version,
        }
    )


def history_row(event: Any, position: int) -> dict[str, Any]:
    """Return the history entry of a pupil event: envelope, actor, reason, data."""
    data = {
        key: value for key, value in vars(event).items() if key not in ENVELOPE_FIELDS
    }
    data.pop("originator_topic", None)
    return {
        "position": position,
        "pupil_id": str(event.originator_id),
        "type": HISTORY_TYPES[type(event)],
        "recorded_at": iso_utc(event.timestamp),
        "actor": {"name": event.actor["name"], "role": event.actor["role"]},
        "reason": getattr(event, "reason", None),
        "data": to_jsonable(data),
    }


def open_components(settings: Settings) -> tuple[RecordsApplication, Engine]:
    """Build the application and the read models' engine for this process."""
    app = RecordsApplication(
        settings.records_database_url, master_key=load_master_key(settings)
    )
    engine = create_sql_engine(settings.records_database_url, writer=True)
    metadata.create_all(engine)
    create_heartbeat_table(engine)
    return app, engine


def run(settings: Settings, stop: threading.Event) -> None:
    """Follow the log until `stop` is set, waking on new events.

    On PostgreSQL a notification of the log's channel wakes the projector at
    once; otherwise, and as a fallback, it polls.
    """
    app, engine = open_components(settings)
    signal = open_change_signal(
        settings.records_database_url, app.recorder, "pupil-records records projector"
    )
    projector = RecordsProjector(app, engine, heartbeat_name=HEARTBEAT_NAME)
    logger.info(
        "records projector started at position %s", projector.read_models.position()
    )
    try:
        follow(projector, signal, stop)
    finally:
        signal.close()
        engine.dispose()
        app.close()


def follow(
    projector: RecordsProjector, signal: ChangeSignal, stop: threading.Event
) -> None:
    """Apply batches until `stop` is set; wait on `signal` while caught up.

    A failed batch, for instance after a lost database connection, is retried
    with an exponential backoff from the stored position.
    """
    idle_beats = IdleBeats()
    delay = FIRST_RETRY_SECONDS
    failures = 0
    while not stop.is_set():
        mark = signal.mark()
        try:
            applied = projector.process_batch()
            if applied:
                idle_beats.reset()
            elif idle_beats.due():
                projector.beat()
        except Exception as error:
            failures += 1
            _log_failure(error, failures, delay)
            stop.wait(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
            continue
        if failures:
            logger.info("records projector recovered after %d failures", failures)
            failures = 0
            delay = FIRST_RETRY_SECONDS
        if applied < BATCH_SIZE:
            signal.wait(mark, signal.poll_interval, stop)
    logger.info(
        "records projector stopped at position %s", projector.read_models.position()
    )


def _log_failure(error: Exception, failures: int, delay: float) -> None:
    # The first failure gets its traceback; repeats of an outage get one line.
    if failures == 1:
        logger.exception("records projector batch failed; retrying in %.1f s", delay)
    else:
        logger.warning(
            "records projector batch failed again (attempt %d): %s; retrying in %.1f s",
            failures,
            error,
            delay,
        )


def rebuild(settings: Settings, progress: bool = True) -> int:
    """Drop the read models and replay the whole log into them; return the count."""
    app, engine = open_components(settings)
    try:
        with engine.begin() as connection:
            # Dropped pages are zeroed, so no purged row survives in them.
            enable_secure_delete(connection)
            metadata.drop_all(connection)
            metadata.create_all(connection)
        projector = RecordsProjector(app, engine)
        with tqdm(
            total=app.head_position(),
            unit="event",
            desc="records rebuild",
            disable=not progress,
        ) as bar:
            return projector.catch_up(batch_size=2000, progress=bar)
    finally:
        engine.dispose()
        app.close()
