"""Plain-data views of aggregates, as commands return them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

from services.records.domain.journals import Journal
from services.records.domain.programmes import Programme
from services.records.domain.pupils import Attestation, Enrolment, Expulsion, Pupil


def programme_view(programme: Programme) -> dict[str, Any]:
    return {
        "id": programme.id,
        "code": programme.code,
        "title": programme.title,
        "orientation": programme.orientation,
        "approved_order": dict(programme.approved_order),
        "criteria": [dict(criterion) for criterion in programme.criteria],
        "levels": {key: Decimal(value) for key, value in programme.levels.items()},
        "max_total": programme.max_total,
    }


def pupil_summary(pupil: Pupil) -> dict[str, Any]:
    return {
        "id": pupil.id,
        "surname": pupil.surname,
        "name": pupil.name,
        "patronymic": pupil.patronymic,
        "birth_date": pupil.birth_date,
        "status": pupil.status,
        "file_opened_on": pupil.opened_on,
        "file_closed_on": pupil.file_closed_on,
        "version": pupil.version,
    }


def expulsion_data(expulsion: Expulsion) -> dict[str, Any]:
    return {
        "id": expulsion.id,
        "effective_date": expulsion.effective_date,
        "ground": expulsion.ground,
        "ground_detail": expulsion.ground_detail,
        "order": dict(expulsion.order),
        "cancelled": expulsion.cancelled,
    }


def enrolment_view(enrolment: Enrolment) -> dict[str, Any]:
    expulsion = enrolment.expulsion
    return {
        "id": enrolment.id,
        "programme_id": enrolment.programme_id,
        "effective_date": enrolment.effective_date,
        "order": dict(enrolment.order),
        "status": enrolment.status,
        "expulsion": expulsion_data(expulsion) if expulsion else None,
    }


def expulsion_view(pupil: Pupil, expulsion_id: UUID) -> dict[str, Any]:
    enrolment, expulsion = pupil.find_expulsion(expulsion_id)
    view = expulsion_data(expulsion)
    view.update(
        pupil_id=pupil.id,
        enrolment_id=enrolment.id,
        programme_id=enrolment.programme_id,
        left_centre=pupil.status == "left",
        file_closed_on=pupil.file_closed_on,
    )
    return view


def attestation_view(attestation: Attestation) -> dict[str, Any]:
    return {
        "id": attestation.id,
        "programme_id": attestation.programme_id,
        "kind": attestation.kind,
        "date": attestation.date,
        "scores": None if attestation.scores is None else dict(attestation.scores),
        "total": attestation.total,
        "max_total": attestation.max_total,
        "level": attestation.level,
        "protocol": dict(attestation.protocol),
        "corrected": attestation.corrected,
    }


DESTRUCTION_SYSTEM = "pupil-records"
DESTRUCTION_METHOD = (
    "crypto-shredding: the pupil's data key that encrypted their personal data "
    "in the records log was overwritten and deleted, and the read models were "
    "purged of their copies"
)


def destruction_record(pupil_id: UUID, destruction: dict[str, Any]) -> dict[str, Any]:
    """Return the record of a destruction of a pupil's personal data."""
    return {
        "id": destruction["id"],
        "pupil_id": pupil_id,
        "subject": str(pupil_id),
        "categories": list(destruction["categories"]),
        "system": DESTRUCTION_SYSTEM,
        "method": DESTRUCTION_METHOD,
        "reason": destruction["reason"],
        "destroyed_at": destruction["destroyed_at"],
        "act": dict(destruction["act"]),
        "actor": dict(destruction["actor"]),
    }


def journal_view(journal: Journal) -> dict[str, Any]:
    return {
        "id": journal.id,
        "programme_id": journal.programme_id,
        "specialist": dict(journal.specialist),
        "academic_year": {"start": journal.year_start, "end": journal.year_end},
        "kind": journal.kind,
        "group": journal.group,
        "closed_on": journal.closed_on,
        "session_count": journal.session_count,
    }


def session_view(
    journal_id: UUID, session_id: UUID, session: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": session_id,
        "journal_id": journal_id,
        "date": session["date"],
        "start_time": session["start_time"],
        "attendance": [dict(line) for line in session["attendance"]],
    }
