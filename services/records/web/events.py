"""The public event feed, `GET /api/v1/events`, with long-poll."""

from __future__ import annotations

import time
from collections.abc import Sequence

import marshmallow as ma
from flask.views import MethodView

from services.records.application import RecordsApplication
from services.records.feed import PUBLIC_TYPES, has_public_event_after, read_feed
from services.records.web.common import Body, records
from services.records.web.runtime import get_runtime
from services.records.web.schemas import TimestampString
from shared.fields import QueryInteger, limit_field, min_position_field
from shared.problems import Problem
from shared.wakeups import ChangeSignal
from shared.web import (
    Blueprint,
    reject_position_beyond_head,
    waiting_slot,
)

MAX_WAIT_SECONDS = 30

blp = Blueprint(
    "events",
    __name__,
    url_prefix="/api/v1/events",
    description="Public events of the records log as CloudEvents, by position.",
)


class EventFeedQueryArgsSchema(ma.Schema):
    """Query of the feed: where to start, how many, which types, how long to wait."""

    after = QueryInteger(
        load_default=0,
        validate=ma.validate.Range(min=0),
        metadata={
            "description": "Answer events after this records position; "
            "a position beyond the head of the log is invalid (422)"
        },
    )
    limit = limit_field()
    type = ma.fields.List(
        ma.fields.String(),
        load_default=list,
        validate=ma.validate.ContainsOnly(
            PUBLIC_TYPES, error="Unknown event type; expected some of: {choices}."
        ),
        metadata={"description": "Event types to answer (repeatable); default all"},
    )
    wait = ma.fields.Float(
        load_default=0.0,
        allow_nan=False,
        validate=ma.validate.Range(min=0, max=MAX_WAIT_SECONDS),
        metadata={"description": "Seconds to wait for a matching event (long-poll)"},
    )
    min_position = min_position_field()


class PublicEventSchema(ma.Schema):
    """A public event: a CloudEvents 1.0 JSON object."""

    specversion = ma.fields.String()
    id = ma.fields.String()
    source = ma.fields.String()
    type = ma.fields.String(metadata={"enum": list(PUBLIC_TYPES)})
    subject = ma.fields.String(metadata={"description": "pupils/{id} or journals/{id}"})
    time = TimestampString()
    datacontenttype = ma.fields.String()
    sequence = ma.fields.String(metadata={"description": "The position as text"})
    position = ma.fields.Integer()
    data = ma.fields.Dict()


class EventPageSchema(ma.Schema):
    """A page of the feed; pass `last_position` as the next `after`."""

    events = ma.fields.List(ma.fields.Nested(PublicEventSchema))
    last_position = ma.fields.Integer()
    head_position = ma.fields.Integer()


@blp.route("")
class Events(MethodView):
    @blp.arguments(EventFeedQueryArgsSchema, location="query")
    @blp.response(200, EventPageSchema)
    def get(self, query: Body) -> Body:
        """Return public events after `after`, oldest first, waiting up to `wait` s."""
        application = records()
        if query["min_position"] is not None:
            check_min_position(application, query["min_position"])
        check_after(application, query["after"])
        types: list[str] = query["type"]
        if query["wait"] > 0:
            # Without a free waiting slot the feed returns the events it has
            # now, as a long-poll whose time ran out would.
            with waiting_slot() as granted:
                if granted:
                    signal = get_runtime().change_signal()
                    wait_for_event(
                        application, signal, query["after"], types, query["wait"]
                    )
        return read_feed(application, query["after"], query["limit"], types)


def check_after(application: RecordsApplication, after: int) -> None:
    """Reject (422) an `after` beyond the head of the records log.

    A consumer whose stored position is ahead of the log (a corrupted
    position, or a records database that was replaced by an older one) would
    otherwise skip every event until the head passed that position.
    """
    head = application.head_position()
    if after <= head:
        return
    raise Problem(
        422,
        f"after={after} is beyond the head of the records log, position "
        f"{head}. A consumer's stored position must come from an earlier "
        "answer's last_position; if the records database was replaced or "
        "reset, reset the consumer as well.",
        errors={"query.after": [f"Must not be greater than {head}."]},
        head_position=head,
    )


def check_min_position(application: RecordsApplication, position: int) -> None:
    """Raise a 503 problem at once for a `min_position` beyond the log head.

    The feed reads the log itself, so a position the log contains needs no
    wait, and a client cannot hold a position beyond the head.
    """
    reject_position_beyond_head(position, application.head_position())


def wait_for_event(
    application: RecordsApplication,
    signal: ChangeSignal,
    after: int,
    types: Sequence[str],
    seconds: float,
) -> bool:
    """Wait until a matching public event follows `after`; False on timeout.

    The log is checked again whenever `signal` reports a change, and at the
    signal's poll interval in case a notification was lost.
    """
    deadline = time.monotonic() + seconds
    while True:
        mark = signal.mark()
        if has_public_event_after(application, after, types):
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        signal.wait(mark, min(signal.poll_interval, remaining))
