"""Removal of a pupil's personal data from the read models after a destruction.

The projector calls `purge_pupil` when it applies `Pupil.PersonalDataDestroyed`,
in the batch's transaction. A replay of the log gives the same rows: the
sealed fields of the pupil's earlier events then decode as None, and the
projector skips attendance lines whose status is None.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select, update

from services.records.domain.pupils import Pupil
from services.records.readmodels import (
    DESTROYED_STATUS,
    attendance,
    history,
    pupil_programmes,
    pupils,
    sessions,
)
from shared.jsonable import to_jsonable

# The read-model tables a purge rewrites; their old row versions are cleared
# from the database files once the purge commits.
PURGED_TABLES = (
    pupils.name,
    pupil_programmes.name,
    attendance.name,
    sessions.name,
    history.name,
)


def purge_pupil(
    connection: Connection, event: Pupil.PersonalDataDestroyed, position: int
) -> None:
    """Replace the pupil's rows with a tombstone that names the destruction act."""
    pupil_id = str(event.originator_id)
    _purge_session_lines(connection, pupil_id)
    connection.execute(delete(attendance).where(attendance.c.pupil_id == pupil_id))
    connection.execute(
        delete(pupil_programmes).where(pupil_programmes.c.pupil_id == pupil_id)
    )
    connection.execute(
        update(history)
        .where(history.c.pupil_id == pupil_id, history.c.position < position)
        .values(data=None, reason=None)
    )
    connection.execute(
        update(pupils)
        .where(pupils.c.id == pupil_id)
        .values(
            sort_key="",
            status=DESTROYED_STATUS,
            document=tombstone_document(event),
            position=position,
        )
    )


def tombstone_document(event: Pupil.PersonalDataDestroyed) -> dict[str, Any]:
    """Return what stays of a personal file after its data were destroyed."""
    return dict(
        to_jsonable(
            {
                "id": event.originator_id,
                "status": DESTROYED_STATUS,
                "act": event.act,
                "destroyed_at": event.destroyed_at,
                "version": event.originator_version,
            }
        )
    )


def _purge_session_lines(connection: Connection, pupil_id: str) -> None:
    """Drop the pupil's attendance lines from the sessions of their journals."""
    journal_ids = select(attendance.c.journal_id).where(
        attendance.c.pupil_id == pupil_id
    )
    rows = connection.execute(
        select(sessions.c.id, sessions.c.document).where(
            sessions.c.journal_id.in_(journal_ids)
        )
    ).all()
    for row in rows:
        lines = row.document["attendance"]
        remaining = [line for line in lines if line["pupil_id"] != pupil_id]
        if len(remaining) != len(lines):
            connection.execute(
                update(sessions)
                .where(sessions.c.id == row.id)
                .values(document={**row.document, "attendance": remaining})
            )
