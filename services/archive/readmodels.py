"""Retention entries: SQL read models projected from the archive's own log."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification
from sqlalchemy import (
    BigInteger,
    Date,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    and_,
    literal,
    or_,
    select,
    tuple_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.elements import ColumnElement
from tqdm import tqdm

from services.archive.application import ArchiveApplication
from services.archive.domain.deadlines import RetentionStatus, status_on
from services.archive.domain.retention import JournalRetention, PersonalFileRetention
from services.archive.domain.schedule import (
    RetentionSchedule,
    ScheduleItem,
    load_schedule,
)
from shared.clock import iso_utc
from shared.config import Settings
from shared.heartbeats import create_heartbeat_table
from shared.locks import ProcessLock
from shared.storage import create_sql_engine

logger = logging.getLogger(__name__)

PROJECTION_NAME = "retention_entries"
PERSONAL_FILE = "personal_file"
JOURNAL = "journal"
RECORDS_SOURCE = "records"
# Sort key of open entries, which have no destroyable_from and come last.
OPEN_SORT_DATE = date(9999, 12, 31)
DEFAULT_BATCH_SIZE = 500
WRITER_LOCK_FILE_NAME = "archive-writer.lock"


class Base(DeclarativeBase):
    """Tables of the archive's read models."""

    metadata = MetaData()


class RetentionEntryRow(Base):
    """One personal file or journal with its retention dates."""

    __tablename__ = "archive_retention_entries"

    aggregate_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    record_class: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[str] = mapped_column(String(36))
    closed_on: Mapped[date | None] = mapped_column(Date)
    closure_year: Mapped[int | None] = mapped_column(Integer)
    expelled_on: Mapped[date | None] = mapped_column(Date)
    period_years: Mapped[int] = mapped_column(Integer)
    kept_at_least_until: Mapped[date | None] = mapped_column(Date)
    destroyable_from: Mapped[date | None] = mapped_column(Date)
    sort_date: Mapped[date] = mapped_column(Date)
    basis: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(BigInteger)
    destroyed_at: Mapped[str | None] = mapped_column(String(40))
    act_number: Mapped[str | None] = mapped_column(Text)
    act_date: Mapped[date | None] = mapped_column(Date)

    __table_args__ = (
        Index(
            "ix_archive_retention_entries_subject",
            "record_class",
            "subject_id",
            unique=True,
        ),
        Index(
            "ix_archive_retention_entries_order",
            "sort_date",
            "subject_id",
            "record_class",
        ),
    )


class ProjectionPositionRow(Base):
    """The last archive log position a projection applied, and its schedule."""

    __tablename__ = "archive_projection_positions"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    schedule_fingerprint: Mapped[str | None] = mapped_column(String(64))


class FeedStatusRow(Base):
    """The records head position last seen in the feed."""

    __tablename__ = "archive_feed_status"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    head_position: Mapped[int] = mapped_column(BigInteger)
    seen_at: Mapped[str] = mapped_column(String(40))


RETENTION_EVENTS = (PersonalFileRetention.Event, JournalRetention.Event)
# The tables that `rebuild` drops. The feed status is not derived from the
# archive log, so it is kept.
PROJECTED_TABLES = (
    RetentionEntryRow.__tablename__,
    ProjectionPositionRow.__tablename__,
)


@dataclass(frozen=True)
class DestructionRecord:
    """When and under which act the pupil's personal data were destroyed."""

    destroyed_at: str
    act_number: str
    act_date: date


@dataclass(frozen=True)
class RetentionEntry:
    """A retention entry as queries return it, whose status depends on a date."""

    record_class: str
    subject_id: UUID
    closed_on: date | None
    closure_year: int | None
    expelled_on: date | None
    period_years: int
    kept_at_least_until: date | None
    destroyable_from: date | None
    basis: str
    position: int
    destruction: DestructionRecord | None

    def status(self, on: date) -> RetentionStatus:
        """Return the status of the entry on date `on`."""
        return status_on(
            on,
            closed_on=self.closed_on,
            destroyable_from=self.destroyable_from,
            destroyed=self.destruction is not None,
        )


@dataclass(frozen=True)
class ListCursor:
    """The position after which the next page of the retention list starts."""

    sort_date: date
    subject_id: UUID
    record_class: str


def create_tables(engine: Engine) -> None:
    """Create the read-model and heartbeat tables that do not exist yet."""
    Base.metadata.create_all(engine)
    create_heartbeat_table(engine)


class RetentionProjector:
    """Keeps the retention entries in step with the archive's event log.

    Each batch of log notifications is applied in one transaction together
    with the projection's position, so a crash never leaves half a batch.
    """

    def __init__(
        self,
        app: ArchiveApplication,
        engine: Engine,
        schedule: RetentionSchedule,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        self.app = app
        self.engine = engine
        self.schedule = schedule
        self.batch_size = batch_size

    def prepare(self) -> None:
        """Create the tables, and recompute deadlines if the schedule changed."""
        create_tables(self.engine)
        with self._transaction() as session:
            marker = self._marker(session)
            if marker.schedule_fingerprint == self.schedule.fingerprint:
                return
            changed = recompute_deadlines(session, self.schedule)
            marker.schedule_fingerprint = self.schedule.fingerprint
        logger.info("retention schedule changed: recomputed %d entries", changed)

    def catch_up(self, progress: tqdm[Any] | None = None) -> int:
        """Apply every archive event not applied yet and return their count.

        `progress` advances by log positions covered, not by events, because
        positions on PostgreSQL have gaps and its total is a head position.
        """
        applied = 0
        covered = projected_position(self.engine) if progress is not None else 0
        while True:
            count = self.apply_batch()
            if progress is not None:
                position = projected_position(self.engine)
                progress.update(position - covered)
                covered = position
            applied += count
            if count < self.batch_size:
                return applied

    def apply_batch(self) -> int:
        """Apply the next batch of archive events in one transaction."""
        with self._transaction() as session:
            marker = self._marker(session)
            notifications = self.app.recorder.select_notifications(
                start=marker.position,
                limit=self.batch_size,
                inclusive_of_start=False,
            )
            self._apply_notifications(session, notifications)
            if notifications:
                marker.position = notifications[-1].id
            return len(notifications)

    def _apply_notifications(
        self, session: Session, notifications: Sequence[Notification]
    ) -> None:
        for notification in notifications:
            domain_event = self.app.mapper.to_domain_event(notification)
            apply_event(session, domain_event, self.schedule)

    def _marker(self, session: Session) -> ProjectionPositionRow:
        row = session.get(ProjectionPositionRow, PROJECTION_NAME)
        if row is None:
            row = ProjectionPositionRow(
                name=PROJECTION_NAME,
                position=0,
                schedule_fingerprint=self.schedule.fingerprint,
            )
            session.add(row)
        return row

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session


def apply_event(
    session: Session,
    domain_event: DomainEventProtocol[Any],
    schedule: RetentionSchedule,
) -> None:
    """Apply one archive event to the retention entries in `session`."""
    if isinstance(domain_event, PersonalFileRetention.Opened):
        _insert_entry(
            session,
            domain_event,
            PERSONAL_FILE,
            domain_event.pupil_id,
            schedule,
        )
    elif isinstance(domain_event, JournalRetention.Opened):
        _insert_entry(
            session,
            domain_event,
            JOURNAL,
            domain_event.journal_id,
            schedule,
        )
    elif isinstance(domain_event, PersonalFileRetention.Closed):
        row = _entry(session, domain_event)
        row.closed_on = domain_event.closed_on
        row.expelled_on = domain_event.expelled_on
        _touch(row, domain_event, schedule)
    elif isinstance(domain_event, PersonalFileRetention.Reopened):
        row = _entry(session, domain_event)
        row.closed_on = None
        row.expelled_on = None
        _touch(row, domain_event, schedule)
    elif isinstance(domain_event, PersonalFileRetention.PersonalDataDestroyed):
        row = _entry(session, domain_event)
        row.destroyed_at = iso_utc(domain_event.destroyed_at)
        row.act_number = domain_event.act_number
        row.act_date = domain_event.act_date
        _touch(row, domain_event, schedule)
    elif isinstance(domain_event, JournalRetention.Closed):
        row = _entry(session, domain_event)
        row.closed_on = domain_event.closed_on
        _touch(row, domain_event, schedule)
    else:
        logger.debug("read model ignores %s", type(domain_event).__name__)


def _insert_entry(
    session: Session,
    domain_event: Any,
    record_class: str,
    subject_id: UUID,
    schedule: RetentionSchedule,
) -> None:
    item = schedule.item(record_class)
    row = RetentionEntryRow(
        aggregate_id=str(domain_event.originator_id),
        record_class=record_class,
        subject_id=str(subject_id),
        closed_on=None,
        expelled_on=None,
        basis=item.basis,
        position=domain_event.position,
    )
    fill_deadline(row, item)
    session.merge(row)


def _entry(session: Session, domain_event: Any) -> RetentionEntryRow:
    row = session.get(RetentionEntryRow, str(domain_event.originator_id))
    if row is None:
        raise LookupError(
            f"no retention entry for aggregate {domain_event.originator_id}, "
            "so the read model does not match the archive log; run "
            "`pupil-records archive rebuild`"
        )
    return row


def _touch(
    row: RetentionEntryRow, domain_event: Any, schedule: RetentionSchedule
) -> None:
    row.position = domain_event.position
    fill_deadline(row, schedule.item(row.record_class))


def fill_deadline(row: RetentionEntryRow, item: ScheduleItem) -> None:
    """Set the period, basis and computed dates of `row` from `item`."""
    row.period_years = item.period_years
    row.basis = item.basis
    if row.closed_on is None:
        row.closure_year = None
        row.kept_at_least_until = None
        row.destroyable_from = None
        row.sort_date = OPEN_SORT_DATE
        return
    literal_start = row.expelled_on if row.record_class == PERSONAL_FILE else None
    deadline = item.deadline(row.closed_on, literal_start=literal_start)
    row.closure_year = deadline.closure_year
    row.kept_at_least_until = deadline.kept_at_least_until
    row.destroyable_from = deadline.destroyable_from
    row.sort_date = deadline.destroyable_from


def recompute_deadlines(session: Session, schedule: RetentionSchedule) -> int:
    """Recompute the deadline of every entry from `schedule` and count them."""
    count = 0
    for row in session.scalars(select(RetentionEntryRow)):
        fill_deadline(row, schedule.item(row.record_class))
        count += 1
    return count


def rebuild_read_models(
    app: ArchiveApplication,
    engine: Engine,
    schedule: RetentionSchedule,
    *,
    progress: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """Drop the projected tables and replay the archive log into new ones."""
    tables = [Base.metadata.tables[name] for name in PROJECTED_TABLES]
    Base.metadata.drop_all(engine, tables=tables)
    projector = RetentionProjector(app, engine, schedule, batch_size=batch_size)
    projector.prepare()
    total = app.recorder.max_notification_id() or 0
    with tqdm(
        total=total,
        unit="position",
        desc="archive read models",
        disable=not progress,
    ) as bar:
        return projector.catch_up(progress=bar)


def writer_lock(settings: Settings, owner: str) -> ProcessLock:
    """Return the lock that the follower and `rebuild` hold while they write.

    The follower keeps it for as long as it runs, so a rebuild started beside
    a running follower is rejected instead of racing it.
    """
    return ProcessLock(settings.data_dir / WRITER_LOCK_FILE_NAME, owner=owner)


def rebuild(
    settings: Settings,
    progress: bool = True,
    *,
    schedule: RetentionSchedule | None = None,
) -> int:
    """Rebuild the archive read models of `settings` and count the events replayed.

    Raises `shared.locks.LockHeldError` while the archive follower runs.
    """
    with writer_lock(settings, "pupil-records archive rebuild"):
        app = ArchiveApplication.from_settings(settings)
        engine = create_sql_engine(settings.archive_database_url, writer=True)
        try:
            return rebuild_read_models(
                app, engine, schedule or load_schedule(), progress=progress
            )
        finally:
            engine.dispose()
            app.close()


# Queries used by the web layer.


def get_entry(
    engine: Engine, record_class: str, subject_id: UUID
) -> RetentionEntry | None:
    """Return the retention entry of one record, or None if there is none."""
    with Session(engine) as session:
        row = session.scalars(
            select(RetentionEntryRow).where(
                RetentionEntryRow.record_class == record_class,
                RetentionEntryRow.subject_id == str(subject_id),
            )
        ).one_or_none()
        return _to_entry(row) if row is not None else None


def list_entries(
    engine: Engine,
    *,
    on: date,
    record_class: str | None = None,
    status: RetentionStatus | None = None,
    limit: int = 100,
    cursor: ListCursor | None = None,
) -> tuple[list[RetentionEntry], ListCursor | None]:
    """Return a page of entries in the list order and the cursor of the next page.

    The order does not depend on `on`: an entry that closes after `on` has the
    status `open` but keeps its place by `destroyable_from`.
    """
    table = RetentionEntryRow
    query = select(table).order_by(
        table.sort_date, table.subject_id, table.record_class
    )
    if record_class is not None:
        query = query.where(table.record_class == record_class)
    if status is not None:
        query = query.where(_status_condition(status, on))
    if cursor is not None:
        query = query.where(
            tuple_(table.sort_date, table.subject_id, table.record_class)
            > tuple_(
                literal(cursor.sort_date),
                literal(str(cursor.subject_id)),
                literal(cursor.record_class),
            )
        )

    with Session(engine) as session:
        rows = list(session.scalars(query.limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = ListCursor(
            last.sort_date, UUID(last.subject_id), last.record_class
        )
    return [_to_entry(row) for row in rows], next_cursor


def _status_condition(status: RetentionStatus, on: date) -> ColumnElement[bool]:
    # The same rules as `status_on`, as an SQL condition.
    table = RetentionEntryRow
    alive = table.destroyed_at.is_(None)
    if status is RetentionStatus.DESTROYED:
        return table.destroyed_at.is_not(None)
    if status is RetentionStatus.OPEN:
        return and_(
            alive,
            or_(
                table.closed_on.is_(None),
                table.destroyable_from.is_(None),
                table.closed_on > on,
            ),
        )
    closed = and_(alive, table.closed_on <= on)
    if status is RetentionStatus.RETAINED:
        return and_(closed, table.destroyable_from > on)
    return and_(closed, table.destroyable_from <= on)


def _to_entry(row: RetentionEntryRow) -> RetentionEntry:
    destruction = None
    if row.destroyed_at is not None and row.act_number is not None:
        assert row.act_date is not None
        destruction = DestructionRecord(
            destroyed_at=row.destroyed_at,
            act_number=row.act_number,
            act_date=row.act_date,
        )
    return RetentionEntry(
        record_class=row.record_class,
        subject_id=UUID(row.subject_id),
        closed_on=row.closed_on,
        closure_year=row.closure_year,
        expelled_on=row.expelled_on,
        period_years=row.period_years,
        kept_at_least_until=row.kept_at_least_until,
        destroyable_from=row.destroyable_from,
        basis=row.basis,
        position=row.position,
        destruction=destruction,
    )


def covered_records_position(app: ArchiveApplication, engine: Engine) -> int:
    """Return the records position up to which the read model is complete.

    That is the processed position once the read model has applied the whole
    archive log. Otherwise it is the position just before the records event
    behind the first archive event the read model has not applied.
    """
    processed = app.processed_position()
    projected = projected_position(engine)
    pending = app.recorder.select_notifications(
        start=projected, limit=1, inclusive_of_start=False
    )
    if not pending:
        return processed
    first_pending = app.mapper.to_domain_event(pending[0])
    if not isinstance(first_pending, RETENTION_EVENTS):
        raise TypeError(f"unexpected event {type(first_pending).__name__} in the log")
    return min(processed, first_pending.position - 1)


def projected_position(engine: Engine) -> int:
    """Return the last archive log position the read model applied."""
    with Session(engine) as session:
        row = session.get(ProjectionPositionRow, PROJECTION_NAME)
        return row.position if row is not None else 0


def store_records_head(engine: Engine, head_position: int, seen_at: datetime) -> None:
    """Remember the records head position last seen in the feed."""
    with Session(engine) as session, session.begin():
        row = session.get(FeedStatusRow, RECORDS_SOURCE)
        if row is None:
            row = FeedStatusRow(source=RECORDS_SOURCE)
            session.add(row)
        row.head_position = head_position
        row.seen_at = iso_utc(seen_at)


def records_head(engine: Engine) -> int:
    """Return the records head position last seen in the feed, 0 if none."""
    with Session(engine) as session:
        row = session.get(FeedStatusRow, RECORDS_SOURCE)
        return row.head_position if row is not None else 0
