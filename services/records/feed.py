"""The public event feed: internal events as versioned CloudEvents, by position.

Public events carry no names, birth dates or results; subscribers learn ids,
dates, grounds and orders only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from eventsourcing.persistence import Notification

from services.records.application import RecordsApplication
from services.records.domain.journals import Journal
from services.records.domain.pupils import Pupil
from shared.clock import iso_utc
from shared.jsonable import to_jsonable

SOURCE = "/pupil-records/records"
SPEC_VERSION = "1.0"


def _order(event: Any) -> dict[str, Any]:
    return {"number": event.order["number"], "date": event.order["date"]}


def _registered(e: Any) -> dict[str, Any]:
    return {"pupil_id": e.originator_id, "opened_on": e.opened_on}


def _enrolled(e: Any) -> dict[str, Any]:
    return {
        "pupil_id": e.originator_id,
        "programme_id": e.programme_id,
        "enrolment_id": e.enrolment_id,
        "effective_date": e.effective_date,
        "order": _order(e),
        "reopened_file": e.reopened_file,
    }


def _enrolment_cancelled(e: Any) -> dict[str, Any]:
    data = {
        "pupil_id": e.originator_id,
        "enrolment_id": e.enrolment_id,
        "order": _order(e),
        "left_centre": e.left_centre,
    }
    if e.left_centre:
        data.update(file_closed_on=e.file_closed_on, expelled_on=e.expelled_on)
    return data


def _transferred(e: Any) -> dict[str, Any]:
    return {
        "pupil_id": e.originator_id,
        "from_programme_id": e.from_programme_id,
        "from_enrolment_id": e.from_enrolment_id,
        "to_programme_id": e.to_programme_id,
        "enrolment_id": e.enrolment_id,
        "effective_date": e.effective_date,
        "order": _order(e),
    }


def _expelled(e: Any) -> dict[str, Any]:
    return {
        "pupil_id": e.originator_id,
        "programme_id": e.programme_id,
        "expulsion_id": e.expulsion_id,
        "effective_date": e.effective_date,
        "ground": e.ground,
        "order": _order(e),
        "left_centre": e.left_centre,
        "file_closed_on": e.file_closed_on,
        "expelled_on": e.expelled_on,
    }


def _expulsion_cancelled(e: Any) -> dict[str, Any]:
    return {
        "pupil_id": e.originator_id,
        "expulsion_id": e.expulsion_id,
        "order": _order(e),
        "reopened_file": e.reopened_file,
    }


def _personal_data_destroyed(e: Any) -> dict[str, Any]:
    return {
        "pupil_id": e.originator_id,
        "act": {"number": e.act["number"], "date": e.act["date"]},
        "destroyed_at": e.destroyed_at,
    }


def _journal_opened(e: Any) -> dict[str, Any]:
    return {
        "journal_id": e.originator_id,
        "programme_id": e.programme_id,
        "academic_year": dict(e.academic_year),
    }


def _journal_closed(e: Any) -> dict[str, Any]:
    return {"journal_id": e.originator_id, "closed_on": e.closed_on}


Mapping = tuple[type, str, str, Callable[[Any], dict[str, Any]]]

MAPPINGS: tuple[Mapping, ...] = (
    (Pupil.Registered, "pupil.registered", "pupils", _registered),
    (Pupil.Enrolled, "pupil.enrolled", "pupils", _enrolled),
    (
        Pupil.EnrolmentCancelled,
        "pupil.enrolment_cancelled",
        "pupils",
        _enrolment_cancelled,
    ),
    (Pupil.Transferred, "pupil.transferred", "pupils", _transferred),
    (Pupil.Expelled, "pupil.expelled", "pupils", _expelled),
    (
        Pupil.ExpulsionCancelled,
        "pupil.expulsion_cancelled",
        "pupils",
        _expulsion_cancelled,
    ),
    (Journal.Opened, "journal.opened", "journals", _journal_opened),
    (Journal.Closed, "journal.closed", "journals", _journal_closed),
    (
        Pupil.PersonalDataDestroyed,
        "pupil.personal_data_destroyed",
        "pupils",
        _personal_data_destroyed,
    ),
)
BY_TOPIC = {mapping[0].TOPIC: mapping for mapping in MAPPINGS}
TOPICS_BY_TYPE = {mapping[1]: mapping[0].TOPIC for mapping in MAPPINGS}
PUBLIC_TYPES: tuple[str, ...] = tuple(TOPICS_BY_TYPE)


def public_event(app: RecordsApplication, notification: Notification) -> dict[str, Any]:
    """Return one notification as a CloudEvents 1.0 JSON object."""
    _, public_type, collection, build = BY_TOPIC[notification.topic]
    event = app.mapper.to_domain_event(notification)
    return {
        "specversion": SPEC_VERSION,
        "id": f"records-{notification.id}",
        "source": SOURCE,
        "type": public_type,
        "subject": f"{collection}/{event.originator_id}",
        "time": iso_utc(event.timestamp),
        "datacontenttype": "application/json",
        "sequence": str(notification.id),
        "position": notification.id,
        "data": to_jsonable(build(event)),
    }


def topics_for(types: Sequence[str]) -> list[str]:
    """Return the stored topics of the public `types` (all when empty)."""
    chosen = types or list(TOPICS_BY_TYPE)
    return [TOPICS_BY_TYPE[t] for t in chosen if t in TOPICS_BY_TYPE]


def read_feed(
    app: RecordsApplication, after: int, limit: int, types: Sequence[str] = ()
) -> dict[str, Any]:
    """Return a page of public events after position `after`, oldest first."""
    head = app.head_position()
    topics = topics_for(types)
    notifications: Sequence[Notification] = []
    if topics and head > after:
        notifications = app.recorder.select_notifications(
            start=after,
            limit=limit,
            stop=head,
            topics=topics,
            inclusive_of_start=False,
        )
    events = [public_event(app, n) for n in notifications]
    if len(events) == limit:
        last = events[-1]["position"]
    else:
        last = max(after, head)
    return {"events": events, "last_position": last, "head_position": head}


def has_public_event_after(
    app: RecordsApplication, after: int, types: Sequence[str] = ()
) -> bool:
    """Tell whether a matching public event exists after position `after`."""
    topics = topics_for(types)
    if not topics or app.head_position() <= after:
        return False
    found = app.recorder.select_notifications(
        start=after, limit=1, topics=topics, inclusive_of_start=False
    )
    return bool(found)
