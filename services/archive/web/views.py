"""The archive API: retention entries, the schedule and the follower status."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from flask import current_app
from flask.views import MethodView

from services.archive.domain.deadlines import RetentionStatus
from services.archive.readmodels import (
    JOURNAL,
    PERSONAL_FILE,
    ListCursor,
    RetentionEntry,
    get_entry,
    list_entries,
)
from services.archive.web.runtime import EXTENSION_KEY, ArchiveRuntime
from services.archive.web.schemas import (
    EntryListQuerySchema,
    EntryQuerySchema,
    ReadQuerySchema,
    RetentionEntryOutSchema,
    RetentionPageOutSchema,
    SchedulePageOutSchema,
    StatusOutSchema,
)
from shared.clock import today_in
from shared.fields import encode_cursor
from shared.problems import Problem, not_found, validation_error
from shared.web import Blueprint, ensure_min_position

blp = Blueprint(
    "archive",
    __name__,
    url_prefix="/api/v1",
    description="Retention of personal files and session journals.",
)


@blp.route("/retention/personal-files/<uuid:pupil_id>")
class PersonalFileRetentionView(MethodView):
    """Retention of one pupil's personal file."""

    @blp.arguments(EntryQuerySchema, location="query")
    @blp.response(200, RetentionEntryOutSchema)
    def get(self, query: dict[str, Any], pupil_id: UUID) -> dict[str, Any]:
        """Return the retention entry of a personal file."""
        return _single_entry(PERSONAL_FILE, pupil_id, query, "pupil")


@blp.route("/retention/journals/<uuid:journal_id>")
class JournalRetentionView(MethodView):
    """Retention of one session journal."""

    @blp.arguments(EntryQuerySchema, location="query")
    @blp.response(200, RetentionEntryOutSchema)
    def get(self, query: dict[str, Any], journal_id: UUID) -> dict[str, Any]:
        """Return the retention entry of a journal."""
        return _single_entry(JOURNAL, journal_id, query, "journal")


@blp.route("/retention")
class RetentionListView(MethodView):
    """Retention entries, soonest destroyable first and open ones last."""

    @blp.arguments(EntryListQuerySchema, location="query")
    @blp.response(200, RetentionPageOutSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Return a page of retention entries, filtered and ordered."""
        runtime = _runtime()
        ensure_min_position(runtime.read_position, query["min_position"])
        on = _on(runtime, query)
        status = query["status"]
        entries, next_cursor = list_entries(
            runtime.engine,
            on=on,
            record_class=query["record_class"],
            status=RetentionStatus(status) if status is not None else None,
            limit=query["limit"],
            cursor=_decode_cursor(query["cursor"]),
        )
        return {
            "items": [_entry_json(entry, on) for entry in entries],
            "next_cursor": _encode_cursor(next_cursor),
        }


@blp.route("/schedule")
class ScheduleView(MethodView):
    """The retention schedule: each record class with its period and basis."""

    @blp.arguments(ReadQuerySchema, location="query")
    @blp.response(200, SchedulePageOutSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Return the record classes of the schedule as one page."""
        runtime = _runtime()
        ensure_min_position(runtime.read_position, query["min_position"])
        items = [item.as_dict() for item in runtime.schedule.items]
        return {"items": items, "next_cursor": None}


@blp.route("/status")
class StatusView(MethodView):
    """How far the archive has followed the records feed."""

    @blp.arguments(ReadQuerySchema, location="query")
    @blp.response(200, StatusOutSchema)
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Return the processed records position, the records head and the lag."""
        runtime = _runtime()
        ensure_min_position(runtime.read_position, query["min_position"])
        status = runtime.status()
        return {
            "processed_position": status.processed_position,
            "records_head": status.records_head,
            "lag": status.lag,
        }


# NOTE: the archive passes no log head to `ensure_min_position`. The records
# head it stores is the one its follower last saw, and a client may hold a newer
# position from a records write, so a position beyond it waits (then 503)
# instead of being rejected with 422.


def _runtime() -> ArchiveRuntime:
    runtime: ArchiveRuntime = current_app.extensions[EXTENSION_KEY]
    return runtime


def _on(runtime: ArchiveRuntime, query: dict[str, Any]) -> date:
    on: date | None = query["on"]
    return on if on is not None else today_in(runtime.settings.timezone)


def _single_entry(
    record_class: str, subject_id: UUID, query: dict[str, Any], noun: str
) -> dict[str, Any]:
    runtime = _runtime()
    ensure_min_position(runtime.read_position, query["min_position"])
    entry = get_entry(runtime.engine, record_class, subject_id)
    if entry is None:
        raise not_found(f"The archive has not heard of a {noun} with id {subject_id}.")
    return _entry_json(entry, _on(runtime, query))


def _entry_json(entry: RetentionEntry, on: date) -> dict[str, Any]:
    destruction = entry.destruction
    act = None
    if destruction is not None:
        act = {"number": destruction.act_number, "date": destruction.act_date}
    return {
        "record_class": entry.record_class,
        "subject_id": entry.subject_id,
        "status": entry.status(on).value,
        "closed_on": entry.closed_on,
        "closure_year": entry.closure_year,
        "expelled_on": entry.expelled_on,
        "period_years": entry.period_years,
        "kept_at_least_until": entry.kept_at_least_until,
        "destroyable_from": entry.destroyable_from,
        "basis": entry.basis,
        "position": entry.position,
        "destroyed_at": destruction.destroyed_at if destruction else None,
        "act": act,
    }


def _encode_cursor(cursor: ListCursor | None) -> str | None:
    if cursor is None:
        return None
    return encode_cursor(
        {
            "destroyable_from": cursor.sort_date,
            "subject_id": cursor.subject_id,
            "journal": cursor.record_class == JOURNAL,
        }
    )


def _decode_cursor(values: dict[str, Any] | None) -> ListCursor | None:
    if values is None:
        return None
    # The shared field has checked the keys and that each value is an id, a
    # date or a flag. Which of them each key must be is checked here.
    sort_text = values["destroyable_from"]
    subject_text = values["subject_id"]
    journal = values["journal"]
    try:
        sort_date = date.fromisoformat(sort_text)
        subject_id = UUID(subject_text)
    except (TypeError, ValueError):
        raise _invalid_cursor() from None
    if not isinstance(journal, bool):
        raise _invalid_cursor()
    return ListCursor(sort_date, subject_id, JOURNAL if journal else PERSONAL_FILE)


def _invalid_cursor() -> Problem:
    return validation_error(
        "query.cursor",
        "Invalid cursor; pass next_cursor from the previous page unchanged.",
    )
