"""Read models of the records service: SQL tables kept by the projector."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    func,
    or_,
    select,
)

metadata = MetaData()

# The position of a list page: the sort value and the id of its last row.
PageKey = tuple[str, str]

positions = Table(
    "rm_positions",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

programmes = Table(
    "rm_programmes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("code", String(200), nullable=False),
    Column("document", JSON, nullable=False),
    Column("position", BigInteger, nullable=False),
)

pupils = Table(
    "rm_pupils",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("sort_key", String(1000), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("document", JSON, nullable=False),
    Column("position", BigInteger, nullable=False),
)

pupil_programmes = Table(
    "rm_pupil_programmes",
    metadata,
    Column("pupil_id", String(36), primary_key=True),
    Column("programme_id", String(36), primary_key=True, index=True),
)

attendance = Table(
    "rm_attendance",
    metadata,
    Column("pupil_id", String(36), primary_key=True),
    Column("journal_id", String(36), primary_key=True),
    Column("programme_id", String(36), nullable=False),
    Column("sessions", Integer, nullable=False, default=0),
    Column("present", Integer, nullable=False, default=0),
    Column("absent", Integer, nullable=False, default=0),
    Column("ill", Integer, nullable=False, default=0),
    Column("excused", Integer, nullable=False, default=0),
)

history = Table(
    "rm_history",
    metadata,
    Column("position", BigInteger, primary_key=True),
    Column("pupil_id", String(36), nullable=False, index=True),
    Column("type", String(64), nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("actor", JSON, nullable=False),
    Column("reason", String(4000)),
    Column("data", JSON, nullable=False),
)

journals = Table(
    "rm_journals",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("programme_id", String(36), nullable=False, index=True),
    Column("document", JSON, nullable=False),
    Column("closed", Boolean, nullable=False, default=False),
    Column("position", BigInteger, nullable=False),
)

sessions = Table(
    "rm_sessions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("journal_id", String(36), nullable=False, index=True),
    Column("date", Date, nullable=False),
    Column("start_time", String(5), nullable=False),
    Column("document", JSON, nullable=False),
    Column("position", BigInteger, nullable=False),
)

PROJECTOR_NAME = "records_read_models"
# Status of a personal file whose personal data were destroyed: its row is a
# tombstone that names the act, and lists leave it out.
DESTROYED_STATUS = "destroyed"


class RecordsReadModels:
    """Queries over the read models; values are JSON-ready (ids, dates as text)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_tables(self) -> None:
        metadata.create_all(self.engine)

    def position(self) -> int:
        """Return the records position the read models have processed."""
        with self.engine.connect() as connection:
            value = connection.execute(
                select(positions.c.position).where(positions.c.name == PROJECTOR_NAME)
            ).scalar()
        return int(value or 0)

    def programme(self, programme_id: UUID | str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            return connection.execute(
                select(programmes.c.document).where(
                    programmes.c.id == str(programme_id)
                )
            ).scalar()

    def programmes(
        self, limit: int, after: PageKey | None = None
    ) -> tuple[list[dict[str, Any]], PageKey | None]:
        """Return a page of programmes ordered by code then id.

        `after` is the (code, id) of the previous page's last programme; the
        same pair of this page's last one is returned for a full page.
        """
        query = select(programmes.c.id, programmes.c.code, programmes.c.document)
        if after is not None:
            query = query.where(_after(programmes.c.code, programmes.c.id, after))
        with self.engine.connect() as connection:
            rows = connection.execute(
                query.order_by(programmes.c.code, programmes.c.id).limit(limit + 1)
            ).all()
        items, last = _page(rows, limit, lambda row: (row.code, row.id))
        return [row.document for row in items], last

    def pupil_exists(self, pupil_id: UUID | str) -> bool:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(pupils.c.id).where(pupils.c.id == str(pupil_id))
            ).first()
        return found is not None

    def personal_file(self, pupil_id: UUID | str) -> dict[str, Any] | None:
        """Return the personal file with attendance per journal, or None."""
        with self.engine.connect() as connection:
            document = connection.execute(
                select(pupils.c.document).where(pupils.c.id == str(pupil_id))
            ).scalar()
            if document is None:
                return None
            rows = connection.execute(
                select(attendance)
                .where(attendance.c.pupil_id == str(pupil_id))
                .order_by(attendance.c.journal_id)
            ).all()
        file = dict(document)
        file["attendance"] = [
            {
                "journal_id": row.journal_id,
                "programme_id": row.programme_id,
                "sessions": row.sessions,
                "present": row.present,
                "absent": row.absent + row.ill + row.excused,
                "ill": row.ill,
                "excused": row.excused,
            }
            for row in rows
        ]
        return file

    def pupils(
        self,
        limit: int,
        after: PageKey | None = None,
        status: str | None = None,
        programme_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], PageKey | None]:
        """Return personal-file summaries ordered by normalised full name, then id.

        `after` is the (sort key, id) of the previous page's last pupil, so the
        page continues from it even when that pupil's row was destroyed since.
        The same pair of this page's last pupil is returned for a full page.
        """
        query = select(pupils.c.id, pupils.c.sort_key, pupils.c.document).where(
            pupils.c.status != DESTROYED_STATUS
        )
        if status is not None:
            query = query.where(pupils.c.status == status)
        if programme_id is not None:
            query = query.where(
                pupils.c.id.in_(
                    select(pupil_programmes.c.pupil_id).where(
                        pupil_programmes.c.programme_id == programme_id
                    )
                )
            )
        if after is not None:
            query = query.where(_after(pupils.c.sort_key, pupils.c.id, after))
        with self.engine.connect() as connection:
            rows = connection.execute(
                query.order_by(pupils.c.sort_key, pupils.c.id).limit(limit + 1)
            ).all()
        items, last = _page(rows, limit, lambda row: (row.sort_key, row.id))
        return [_summary(row.document) for row in items], last

    def history(
        self, pupil_id: UUID | str, limit: int, after_position: int = 0
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Return the pupil's own events, oldest first, after a position."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(history)
                .where(
                    history.c.pupil_id == str(pupil_id),
                    history.c.position > after_position,
                )
                .order_by(history.c.position)
                .limit(limit + 1)
            ).all()
        items = [
            {
                "position": row.position,
                "type": row.type,
                "recorded_at": row.recorded_at,
                "actor": {"name": row.actor["name"], "role": row.actor["role"]},
                "reason": row.reason,
                "data": row.data,
            }
            for row in rows
        ]
        return _page(items, limit, lambda item: item["position"])

    def journal_exists(self, journal_id: UUID | str) -> bool:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(journals.c.id).where(journals.c.id == str(journal_id))
            ).first()
        return found is not None

    def journal(self, journal_id: UUID | str) -> dict[str, Any] | None:
        """Return the journal with its sessions and attendance, or None."""
        with self.engine.connect() as connection:
            document = connection.execute(
                select(journals.c.document).where(journals.c.id == str(journal_id))
            ).scalar()
            if document is None:
                return None
            rows = connection.execute(
                select(sessions.c.document)
                .where(sessions.c.journal_id == str(journal_id))
                .order_by(sessions.c.date, sessions.c.start_time)
            ).all()
        journal = dict(document)
        journal["sessions"] = [row.document for row in rows]
        return journal

    def counts(self) -> dict[str, int]:
        """Return row counts per table, for summaries and tests."""
        with self.engine.connect() as connection:
            return {
                table.name: connection.execute(
                    select(func.count()).select_from(table)
                ).scalar_one()
                for table in metadata.sorted_tables
            }


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "id",
        "surname",
        "name",
        "patronymic",
        "birth_date",
        "status",
        "file_opened_on",
        "file_closed_on",
    )
    return {key: document.get(key) for key in keys}


def _after(sort_column: Any, id_column: Any, after: PageKey) -> Any:
    """Return the condition for rows after `after` in (sort column, id) order."""
    sort_value, after_id = after
    return or_(
        sort_column > sort_value,
        and_(sort_column == sort_value, id_column > after_id),
    )


def _page(items: list[Any], limit: int, key: Any) -> tuple[list[Any], Any]:
    if len(items) > limit:
        items = items[:limit]
        return items, key(items[-1])
    return items, None
