"""Session journals: opening, sessions with attendance, closure, reads."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.records.domain.dates import EARLIEST_DOCUMENT_DATE
from services.records.domain.journals import (
    ATTENDANCE_STATUSES,
    JOURNAL_KINDS,
)
from services.records.web.common import (
    LOCATION_HEADER_DOC,
    Body,
    command_body,
    created,
    journal_url,
    path_id,
    read_models,
    records,
    unknown,
)
from services.records.web.schemas import (
    DateString,
    IdString,
    NotBefore,
    ReadQueryArgsSchema,
    TimestampString,
)
from shared.fields import (
    Name,
    PastOrToday,
    StrictDate,
    StrictInteger,
    Text,
    UUIDField,
)
from shared.web import Blueprint

START_TIME_PATTERN = r"([01][0-9]|2[0-3]):[0-5][0-9]"
MAX_DURATION_MINUTES = 600
MAX_ATTENDANCE_LINES = 1000

blp = Blueprint(
    "journals",
    __name__,
    url_prefix="/api/v1/journals",
    description="Journals of correctional-developmental sessions.",
)


# Requests


class SpecialistSchema(ma.Schema):
    """The specialist who keeps the journal."""

    name = Name(required=True)
    position = Name(required=True, metadata={"description": "Job title"})


class AcademicYearSchema(ma.Schema):
    """The academic year by the centre's calendar: first and last day."""

    start = StrictDate(required=True, validate=NotBefore(EARLIEST_DOCUMENT_DATE))
    end = StrictDate(required=True)


class JournalRequestSchema(ma.Schema):
    """A journal to open."""

    programme_id = UUIDField(required=True)
    specialist = ma.fields.Nested(SpecialistSchema, required=True)
    academic_year = ma.fields.Nested(AcademicYearSchema, required=True)
    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(JOURNAL_KINDS))
    group = Name(load_default=None, allow_none=True)


class AttendanceLineSchema(ma.Schema):
    """One pupil's attendance at a session."""

    pupil_id = UUIDField(required=True)
    status = ma.fields.String(
        required=True, validate=ma.validate.OneOf(ATTENDANCE_STATUSES)
    )


class SessionRequestSchema(ma.Schema):
    """A session entry: when, how long, the topic and who attended."""

    date = StrictDate(
        required=True, validate=[PastOrToday(), NotBefore(EARLIEST_DOCUMENT_DATE)]
    )
    start_time = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(
            # \Z, unlike $, does not let a trailing newline through.
            rf"\A{START_TIME_PATTERN}\Z",
            error="Not a valid time; expected HH:MM.",
        ),
    )
    duration_minutes = StrictInteger(
        required=True, validate=ma.validate.Range(min=1, max=MAX_DURATION_MINUTES)
    )
    topic = Text(required=True)
    attendance = ma.fields.List(
        ma.fields.Nested(AttendanceLineSchema),
        required=True,
        validate=ma.validate.Length(max=MAX_ATTENDANCE_LINES),
    )

    @ma.validates_schema
    def check_pupils_once(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject a pupil listed twice, naming the repeated line."""
        seen: set[Any] = set()
        errors: dict[int, dict[str, list[str]]] = {}
        for index, line in enumerate(data["attendance"]):
            if line["pupil_id"] in seen:
                errors[index] = {"pupil_id": ["This pupil is already listed."]}
            seen.add(line["pupil_id"])
        if errors:
            raise ma.ValidationError({"attendance": errors})


class ClosureRequestSchema(ma.Schema):
    """The day the journal is closed: not before its last session."""

    closed_on = StrictDate(
        required=True, validate=[PastOrToday(), NotBefore(EARLIEST_DOCUMENT_DATE)]
    )


# Responses


class SpecialistOutSchema(ma.Schema):
    name = ma.fields.String()
    position = ma.fields.String()


class AcademicYearOutSchema(ma.Schema):
    start = DateString()
    end = DateString()


class JournalSchema(ma.Schema):
    """A journal without its sessions."""

    id = IdString()
    programme_id = IdString()
    specialist = ma.fields.Nested(SpecialistOutSchema)
    academic_year = ma.fields.Nested(AcademicYearOutSchema)
    kind = ma.fields.String(metadata={"enum": list(JOURNAL_KINDS)})
    group = ma.fields.String(allow_none=True)
    closed_on = DateString(allow_none=True)
    session_count = ma.fields.Integer()


class JournalResultSchema(JournalSchema):
    """The journal a command opened or closed, with the log position."""

    position = ma.fields.Integer()


class AttendanceLineOutSchema(ma.Schema):
    pupil_id = IdString()
    status = ma.fields.String(metadata={"enum": list(ATTENDANCE_STATUSES)})


class SessionSchema(ma.Schema):
    """A session entry."""

    id = IdString()
    date = DateString()
    start_time = ma.fields.String()
    duration_minutes = ma.fields.Integer()
    topic = ma.fields.String()
    attendance = ma.fields.List(ma.fields.Nested(AttendanceLineOutSchema))
    recorded_at = TimestampString()


class SessionResultSchema(SessionSchema):
    """The session a command recorded, with the log position."""

    journal_id = IdString()
    position = ma.fields.Integer()


class JournalWithSessionsSchema(JournalSchema):
    """A journal with its sessions and attendance, by date and start time."""

    sessions = ma.fields.List(ma.fields.Nested(SessionSchema))


# Views


@blp.route("", methods=["POST"])
@blp.arguments(JournalRequestSchema)
@blp.response(201, JournalResultSchema, headers=LOCATION_HEADER_DOC)
def open_journal(body: Body) -> Any:
    """Open a journal for a programme and academic year."""
    year = body.pop("academic_year")
    result = records().open_journal(
        year_start=year["start"], year_end=year["end"], **body
    )
    return created(command_body(result), journal_url(result.resource["id"]))


@blp.route("/<id:journal_id>")
class JournalById(MethodView):
    @blp.arguments(ReadQueryArgsSchema, location="query")
    @blp.response(200, JournalWithSessionsSchema)
    def get(self, query: Body, journal_id: str) -> Body:
        """Return a journal with its sessions and attendance."""
        journal_uuid = path_id(journal_id, "journal")
        document = read_models(query["min_position"]).journal(journal_uuid)
        if document is None:
            raise unknown("journal", journal_uuid)
        return document


@blp.route("/<id:journal_id>/sessions", methods=["POST"])
@blp.arguments(SessionRequestSchema)
@blp.response(201, SessionResultSchema, headers=LOCATION_HEADER_DOC)
def record_session(body: Body, journal_id: str) -> Any:
    """Record a session; every listed pupil must be enrolled that day."""
    journal_uuid = path_id(journal_id, "journal")
    on = body.pop("date")
    result = records().record_session(journal_uuid, on=on, **body)
    return created(command_body(result), journal_url(journal_uuid))


@blp.route("/<id:journal_id>/closure", methods=["POST"])
@blp.arguments(ClosureRequestSchema)
@blp.response(200, JournalResultSchema)
def close_journal(body: Body, journal_id: str) -> Body:
    """Close the journal: no more sessions may be recorded."""
    journal_uuid = path_id(journal_id, "journal")
    result = records().close_journal(journal_uuid, **body)
    return command_body(result)
