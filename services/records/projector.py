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
from collections.abc import Callable
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEvent
from sqlalchemy import (
    Connection,
    Engine,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
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
from services.records.sealing import PUPIL_SEALED_FIELDS
from shared.clock import iso_utc
from shared.config import Settings
from shared.heartbeats import IdleBeats, create_heartbeat_table, write_heartbeat
from shared.jsonable import to_jsonable
from shared.storage import create_sql_engine
from shared.wakeups import ChangeSignal, open_change_signal

logger = logging.getLogger(__name__)

SEALED_PUPIL_TOPICS = frozenset(
    topic for topic, fields in PUPIL_SEALED_FIELDS.items() if fields
)

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
ENVELOPE_FIELDS = {
    "originator_id",
    "originator_version",
    "timestamp",
    "actor",
    "reason",
}


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

    def catch_up(
        self, batch_size: int = BATCH_SIZE, progress: tqdm | None = None
    ) -> int:
        """Apply every event after the stored position; return how many.

        `progress` advances by log positions covered, not by events, because
        positions on PostgreSQL have gaps and its total is a head position.
        """
        applied = 0
        covered = self.read_models.position() if progress is not None else 0
        while True:
            count = self.process_batch(batch_size)
            if progress is not None:
                position = self.read_models.position()
                progress.update(position - covered)
                covered = position
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
        # One read brings in the keys of every pupil whose sealed data the
        # batch holds; attendance lines name pupils registered earlier.
        self.app.key_ring.load_keys(
            {n.originator_id for n in notifications if n.topic in SEALED_PUPIL_TOPICS}
        )
        writes = BatchWrites()
        for notification in notifications:
            event = self.app.mapper.to_domain_event(notification)
            self._apply(connection, writes, event, notification.id)
        writes.flush(connection)
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

    def _apply(
        self,
        connection: Connection,
        writes: BatchWrites,
        event: DomainEvent,
        position: int,
    ) -> None:
        if isinstance(event, Pupil.PersonalDataDestroyed):
            self._aggregate(event)
            # The purge edits rows in place, so everything before it is written first.
            writes.flush(connection)
            self._destroy(connection, event, position)
        elif isinstance(event, Pupil.Event):
            writes.pupil_changed(self._aggregate(event), event, position)
        elif isinstance(event, Journal.Event):
            writes.journal_changed(self._aggregate(event), event, position)
        elif isinstance(event, Programme.Approved):
            writes.programme_approved(event.mutate(None), position)

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

    def _destroy(
        self, connection: Connection, event: Pupil.PersonalDataDestroyed, position: int
    ) -> None:
        # The key is destroyed in this transaction as well, which finishes a
        # destruction whose process stopped between the event and the key.
        self.app.key_ring.destroy(event.originator_id, connection=connection)
        # Cached journals hold the pupil's decrypted attendance lines.
        self._aggregates.clear()
        purge_pupil(connection, event, position)
        connection.execute(insert(history), [history_row(event, position)])
        self._purged = True


class _Changed:
    """The last state of one aggregate in a batch, and whether its row is new."""

    __slots__ = ("aggregate", "position", "new")

    def __init__(self, aggregate: Any, position: int, new: bool) -> None:
        self.aggregate = aggregate
        self.position = position
        self.new = new


class BatchWrites:
    """The read-model rows of one batch, gathered in memory and written together.

    A pupil or journal changed several times in a batch is written once, in
    its last state. Attendance counts are summed per pupil and journal. Each
    table gets one multi-row statement.
    """

    def __init__(self) -> None:
        self.programmes: list[dict[str, Any]] = []
        self.pupils: dict[str, _Changed] = {}
        self.pupil_programmes: dict[str, Pupil] = {}
        self.history: list[dict[str, Any]] = []
        self.journals: dict[str, _Changed] = {}
        self.sessions: list[dict[str, Any]] = []
        # (pupil id, journal id) -> programme id and the counts to add.
        self.attendance: dict[tuple[str, str], dict[str, Any]] = {}

    def programme_approved(self, programme: Programme, position: int) -> None:
        self.programmes.append(
            {
                "id": str(programme.id),
                "code": programme.code,
                "document": programme_document(programme),
                "position": position,
            }
        )

    def pupil_changed(self, pupil: Pupil, event: Any, position: int) -> None:
        pupil_id = str(pupil.id)
        earlier = self.pupils.get(pupil_id)
        new = isinstance(event, Pupil.Registered) or (
            earlier is not None and earlier.new
        )
        self.pupils[pupil_id] = _Changed(pupil, position, new)
        if isinstance(
            event, Pupil.Enrolled | Pupil.Transferred | Pupil.EnrolmentCancelled
        ):
            self.pupil_programmes[pupil_id] = pupil
        self.history.append(history_row(event, position))

    def journal_changed(self, journal: Journal, event: Any, position: int) -> None:
        journal_id = str(journal.id)
        earlier = self.journals.get(journal_id)
        new = isinstance(event, Journal.Opened) or (earlier is not None and earlier.new)
        self.journals[journal_id] = _Changed(journal, position, new)
        if isinstance(event, Journal.SessionRecorded):
            self._session_recorded(journal, event, position)

    def _session_recorded(self, journal: Journal, event: Any, position: int) -> None:
        journal_id = str(journal.id)
        programme_id = str(journal.programme_id)
        # A line whose status is None belongs to a pupil whose key was destroyed.
        lines = [line for line in event.attendance if line["status"] is not None]
        self.sessions.append(
            {
                "id": str(event.session_id),
                "journal_id": journal_id,
                "date": event.date,
                "start_time": event.start_time,
                "document": to_jsonable(
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
                "position": position,
            }
        )
        for line in lines:
            key = (str(line["pupil_id"]), journal_id)
            counts = self.attendance.get(key)
            if counts is None:
                counts = self.attendance[key] = {
                    "programme_id": programme_id,
                    "sessions": 0,
                    **dict.fromkeys(ATTENDANCE_STATUSES, 0),
                }
            counts["sessions"] += 1
            counts[line["status"]] += 1

    def flush(self, connection: Connection) -> None:
        """Write everything gathered so far, then start empty."""
        if self.programmes:
            connection.execute(insert(programmes), self.programmes)
        self._write_changed(connection, pupils, self.pupils, _pupil_row)
        self._write_pupil_programmes(connection)
        if self.history:
            connection.execute(insert(history), self.history)
        self._write_changed(connection, journals, self.journals, _journal_row)
        if self.sessions:
            connection.execute(insert(sessions), self.sessions)
        self._write_attendance(connection)
        self.__init__()  # type: ignore[misc]

    @staticmethod
    def _write_changed(
        connection: Connection,
        table: Table,
        changed: dict[str, _Changed],
        row: Callable[[Any], dict[str, Any]],
    ) -> None:
        inserts = []
        updates = []
        for item_id, item in changed.items():
            values = row(item.aggregate)
            values["position"] = item.position
            if item.new:
                inserts.append({"id": item_id, **values})
            else:
                updates.append({"b_id": item_id, **values})
        if inserts:
            connection.execute(insert(table), inserts)
        if updates:
            connection.execute(
                update(table).where(table.c.id == bindparam("b_id")), updates
            )

    def _write_pupil_programmes(self, connection: Connection) -> None:
        if not self.pupil_programmes:
            return
        connection.execute(
            delete(pupil_programmes).where(
                pupil_programmes.c.pupil_id == bindparam("b_pupil_id")
            ),
            [{"b_pupil_id": pupil_id} for pupil_id in self.pupil_programmes],
        )
        rows = [
            {"pupil_id": pupil_id, "programme_id": programme_id}
            for pupil_id, pupil in self.pupil_programmes.items()
            for programme_id in sorted(
                {
                    str(e.programme_id)
                    for e in pupil.enrolments.values()
                    if e.status != "cancelled"
                }
            )
        ]
        if rows:
            connection.execute(insert(pupil_programmes), rows)

    def _write_attendance(self, connection: Connection) -> None:
        if not self.attendance:
            return
        journal_ids = sorted({journal_id for _, journal_id in self.attendance})
        existing = {
            (row.pupil_id, row.journal_id)
            for row in connection.execute(
                select(attendance.c.pupil_id, attendance.c.journal_id).where(
                    attendance.c.journal_id.in_(journal_ids)
                )
            )
        }
        inserts = []
        updates = []
        for (pupil_id, journal_id), counts in self.attendance.items():
            if (pupil_id, journal_id) in existing:
                updates.append(
                    {
                        "b_pupil_id": pupil_id,
                        "b_journal_id": journal_id,
                        **{f"b_{name}": counts[name] for name in COUNT_COLUMNS},
                    }
                )
            else:
                inserts.append(
                    {"pupil_id": pupil_id, "journal_id": journal_id, **counts}
                )
        if inserts:
            connection.execute(insert(attendance), inserts)
        if updates:
            connection.execute(
                update(attendance)
                .where(
                    attendance.c.pupil_id == bindparam("b_pupil_id"),
                    attendance.c.journal_id == bindparam("b_journal_id"),
                )
                .values(
                    {
                        attendance.c[name]: attendance.c[name] + bindparam(f"b_{name}")
                        for name in COUNT_COLUMNS
                    }
                ),
                updates,
            )


ATTENDANCE_STATUSES = ("present", "absent", "ill", "excused")
COUNT_COLUMNS = ("sessions", *ATTENDANCE_STATUSES)


def _pupil_row(pupil: Pupil) -> dict[str, Any]:
    return {
        # Case folding may lengthen a name (ß becomes ss); a prefix of the
        # column's length orders the list just as well.
        "sort_key": normalised_full_name(
            pupil.surname or "", pupil.name or "", pupil.patronymic
        )[: pupils.c.sort_key.type.length],
        "status": pupil.status,
        "document": personal_file_document(pupil),
    }


def _journal_row(journal: Journal) -> dict[str, Any]:
    return {
        "programme_id": str(journal.programme_id),
        "document": to_jsonable(journal_view(journal)),
        "closed": journal.is_closed,
    }


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
            unit="position",
            desc="records rebuild",
            disable=not progress,
        ) as bar:
            return projector.catch_up(batch_size=2000, progress=bar)
    finally:
        engine.dispose()
        app.close()
