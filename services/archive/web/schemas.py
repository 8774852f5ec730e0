"""Query and response schemas of the archive API."""

from __future__ import annotations

import marshmallow as ma

from services.archive.domain.deadlines import RetentionStatus
from services.archive.readmodels import JOURNAL, PERSONAL_FILE
from shared.fields import (
    Cursor,
    StrictDate,
    limit_field,
    min_position_field,
)

RECORD_CLASSES = (PERSONAL_FILE, JOURNAL)
STATUSES = tuple(status.value for status in RetentionStatus)
# Keys of the list cursor: the sort date, the subject id, and whether the
# entry is a journal. The record class is a flag because a cursor contains
# no free text.
CURSOR_KEYS = ("destroyable_from", "subject_id", "journal")


def on_field() -> StrictDate:
    """Return the `on` query field: the date the status is computed for."""
    return StrictDate(
        load_default=None,
        metadata={
            "description": "Date to compute the status for, YYYY-MM-DD; "
            "default: today in the centre's time zone."
        },
    )


class EntryQuerySchema(ma.Schema):
    """Query of one retention entry: `min_position` and `on`."""

    min_position = min_position_field()
    on = on_field()


class EntryListQuerySchema(ma.Schema):
    """Query of the retention list: filters, `on`, paging and `min_position`."""

    record_class = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(RECORD_CLASSES)
    )
    status = ma.fields.String(load_default=None, validate=ma.validate.OneOf(STATUSES))
    on = on_field()
    limit = limit_field()
    cursor = Cursor(keys=CURSOR_KEYS, load_default=None)
    min_position = min_position_field()


class ReadQuerySchema(ma.Schema):
    """Query of a GET that reads no retention entry: `min_position`."""

    min_position = min_position_field()


class ActOutSchema(ma.Schema):
    """The act under which a pupil's personal data were destroyed."""

    number = ma.fields.String()
    date = ma.fields.Date()


class RetentionEntryOutSchema(ma.Schema):
    """A personal file or journal with its retention dates and status."""

    record_class = ma.fields.String(metadata={"enum": list(RECORD_CLASSES)})
    subject_id = ma.fields.UUID()
    status = ma.fields.String(metadata={"enum": list(STATUSES)})
    closed_on = ma.fields.Date(allow_none=True)
    closure_year = ma.fields.Integer(allow_none=True)
    expelled_on = ma.fields.Date(allow_none=True)
    period_years = ma.fields.Integer()
    kept_at_least_until = ma.fields.Date(allow_none=True)
    destroyable_from = ma.fields.Date(allow_none=True)
    basis = ma.fields.String()
    position = ma.fields.Integer()
    destroyed_at = ma.fields.String(allow_none=True)
    act = ma.fields.Nested(ActOutSchema, allow_none=True)


class RetentionPageOutSchema(ma.Schema):
    """A page of retention entries."""

    items = ma.fields.List(ma.fields.Nested(RetentionEntryOutSchema))
    next_cursor = ma.fields.String(allow_none=True)


class ScheduleItemOutSchema(ma.Schema):
    """A record class of the retention schedule."""

    record_class = ma.fields.String()
    period_years = ma.fields.Integer()
    counting_rule = ma.fields.String()
    mark = ma.fields.String()
    basis = ma.fields.String()


class SchedulePageOutSchema(ma.Schema):
    """The retention schedule as one page."""

    items = ma.fields.List(ma.fields.Nested(ScheduleItemOutSchema))
    next_cursor = ma.fields.String(allow_none=True)


class StatusOutSchema(ma.Schema):
    """How far the archive has followed the records feed."""

    processed_position = ma.fields.Integer()
    records_head = ma.fields.Integer()
    lag = ma.fields.Integer()
