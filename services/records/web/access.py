"""Audited reads: every served read of personal data is recorded first.

`install_access_log(app, settings)` adds an `after_request` hook. For a route
that the role matrix marks as a personal-data read, it appends an access
record (time, actor, endpoint, the pupils in the answer, purpose) before the
response leaves the process. If the record cannot be written, the data are
not returned: the client gets 503 with `Retry-After`.

`GET /api/v1/access-log` lists the records; reading it is recorded as well.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import marshmallow as ma
from flask import Flask, Response, current_app, g, request
from flask.views import MethodView
from sqlalchemy.exc import SQLAlchemyError

from services.records.accesslog import AccessLog, AccessRead, PageKey
from services.records.web.common import Body
from services.records.web.runtime import get_runtime
from services.records.web.schemas import IdString, TimestampString
from shared.auth import access_route
from shared.config import Settings
from shared.fields import (
    Cursor,
    UtcTimestamp,
    UUIDField,
    encode_cursor,
    limit_field,
    min_position_field,
)
from shared.problems import Problem, problem_response, request_id, unavailable
from shared.storage import create_sql_engine, is_memory
from shared.web import Blueprint, ensure_min_position

logger = logging.getLogger(__name__)

EXTENSION_KEY = "pupil_records.access_log"
ACCESS_LOG_RETRY_AFTER = 5
READ_METHODS = ("GET", "HEAD")
_CURSOR_AT = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
)

blp = Blueprint(
    "access_log",
    __name__,
    url_prefix="/api/v1/access-log",
    description="Records of every served read of pupils' personal data.",
)


class AccessLogRuntime:
    """Opens the access log of this process on first use, after fork."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._log: AccessLog | None = None
        self._lock = threading.Lock()

    @property
    def log(self) -> AccessLog:
        """Return the access log, creating its tables on the first call."""
        with self._lock:
            if self._log is None:
                self._log = _open(self.settings.records_database_url)
            return self._log

    def close(self) -> None:
        """Release the database connections, if they were opened."""
        with self._lock:
            log, self._log = self._log, None
        if log is not None:
            log.reader.dispose()
            log.writer.dispose()


def _open(url: str) -> AccessLog:
    # Parameters stay out of error messages: they hold names and purposes.
    writer = create_sql_engine(url, writer=True, hide_parameters=True)
    if is_memory(url):
        # The in-memory database exists once per engine.
        reader = writer
    else:
        reader = create_sql_engine(url, hide_parameters=True)
    log = AccessLog(reader, writer)
    log.create_tables()
    return log


def install_access_log(app: Flask, settings: Settings) -> AccessLogRuntime:
    """Record every served personal-data read of `app` in the access log."""
    runtime = AccessLogRuntime(settings)
    app.extensions[EXTENSION_KEY] = runtime
    app.after_request(_record_read)
    return runtime


def get_access_log_runtime(app: Flask | None = None) -> AccessLogRuntime:
    """Return the access log runtime of `app` (default: the current app)."""
    target = app if app is not None else current_app
    runtime: AccessLogRuntime = target.extensions[EXTENSION_KEY]
    return runtime


def _record_read(response: Response) -> Response:
    route = access_route()
    if route is None or not route.personal_data:
        return response
    if response.status_code != 200 or request.method not in READ_METHODS:
        return response
    read = AccessRead(
        actor=g.principal,
        endpoint=f"{request.method} {request.path}",
        pupil_ids=route.pupil_ids(request.view_args or {}, response.get_json()),
        purpose=g.get("purpose"),
    )
    try:
        get_access_log_runtime().log.append(read)
    except (SQLAlchemyError, OSError) as error:
        logger.error(
            "access record not written for %s %s (request id %s): %s",
            request.method,
            route.path,
            request_id(),
            type(error).__name__,
        )
        return problem_response(_not_recorded())
    return response


def _not_recorded() -> Problem:
    return unavailable(
        "The read could not be recorded in the access log, so its data are "
        "withheld; retry later.",
        retry_after=ACCESS_LOG_RETRY_AFTER,
    )


# GET /api/v1/access-log


class AccessLogCursor(Cursor):
    """A cursor of the access log: the time and sequence of a page's last record."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(keys=("at", "sequence"), **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        decoded = super()._deserialize(value, attr, data, **kwargs)
        at, sequence = decoded["at"], decoded["sequence"]
        valid_at = isinstance(at, str) and _CURSOR_AT.fullmatch(at)
        valid_sequence = (
            isinstance(sequence, int)
            and not isinstance(sequence, bool)
            and sequence >= 1
        )
        if not (valid_at and valid_sequence):
            raise self.make_error("invalid")
        return decoded


class AccessLogQueryArgsSchema(ma.Schema):
    """Query of the access log: a pupil, a time range and a page."""

    pupil_id = UUIDField(
        load_default=None,
        metadata={"description": "Only reads whose answer held this pupil"},
    )
    start = UtcTimestamp(
        data_key="from",
        load_default=None,
        metadata={"description": "Only records at or after this time (UTC)"},
    )
    end = UtcTimestamp(
        data_key="to",
        load_default=None,
        metadata={"description": "Only records before this time (UTC)"},
    )
    limit = limit_field()
    cursor = AccessLogCursor(load_default=None)
    min_position = min_position_field()

    @ma.validates_schema
    def check_range(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject a range that ends before it starts."""
        start, end = data.get("start"), data.get("end")
        if start is not None and end is not None and end < start:
            raise ma.ValidationError("Must not be earlier than from.", "to")


class AccessActorSchema(ma.Schema):
    """The reader: the token holder's name, role and token id."""

    name = ma.fields.String()
    role = ma.fields.String()
    token_id = ma.fields.String()


class AccessRecordSchema(ma.Schema):
    """One access record: a link of the tamper-evident chain."""

    id = IdString()
    sequence = ma.fields.Integer(metadata={"description": "Position in the chain"})
    at = TimestampString()
    actor = ma.fields.Nested(AccessActorSchema)
    endpoint = ma.fields.String(metadata={"description": "Method and path"})
    pupil_ids = ma.fields.List(IdString())
    purpose = ma.fields.String(allow_none=True)
    previous_hash = ma.fields.String(allow_none=True)
    hash = ma.fields.String(
        metadata={
            "description": "SHA-256 (hex) of the record's other fields as JSON "
            "with sorted keys, no white space and non-ASCII escaped"
        }
    )


class AccessLogPageSchema(ma.Schema):
    """A page of access records by time, then sequence."""

    items = ma.fields.List(ma.fields.Nested(AccessRecordSchema))
    next_cursor = ma.fields.String(allow_none=True)


@blp.route("")
class AccessLogView(MethodView):
    @blp.arguments(AccessLogQueryArgsSchema, location="query")
    @blp.response(200, AccessLogPageSchema)
    def get(self, query: Body) -> Body:
        """List access records by time, then sequence; this read is recorded too."""
        runtime = get_runtime()
        ensure_min_position(
            runtime.read_position,
            query["min_position"],
            head_position=runtime.application.head_position,
        )
        records, next_key = get_access_log_runtime().log.page(
            limit=query["limit"],
            pupil_id=None if query["pupil_id"] is None else str(query["pupil_id"]),
            start=query["start"],
            end=query["end"],
            after=_page_key(query["cursor"]),
        )
        return {
            "items": [record.as_json() for record in records],
            "next_cursor": _encode(next_key),
        }


def _page_key(cursor: dict[str, Any] | None) -> PageKey | None:
    if cursor is None:
        return None
    return (str(cursor["at"]), int(cursor["sequence"]))


def _encode(key: PageKey | None) -> str | None:
    if key is None:
        return None
    at, sequence = key
    return encode_cursor({"at": at, "sequence": sequence})
