"""Test doubles of the records feed, for tests of the archive.

`FeedScript` builds public events in the published CloudEvents shape with
increasing positions. `FakeRecordsFeed` serves them as `GET /api/v1/events`
on 127.0.0.1, with `after`, `limit`, `wait`, bearer tokens, and switches that
make it fail or go away.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from services.archive.feed import FeedPage, parse_page
from shared.clock import iso_utc

Json = dict[str, Any]


class FeedScript:
    """A records log: public events with positions, and unpublished gaps."""

    def __init__(self) -> None:
        self.events: list[Json] = []
        self.head = 0
        self._lock = threading.Condition()

    def append(self, event_type: str, subject: str, data: Mapping[str, Any]) -> Json:
        """Add a public event at the next position and return it."""
        with self._lock:
            self.head += 1
            event = {
                "specversion": "1.0",
                "id": str(uuid4()),
                "source": "/pupil-records/records",
                "type": event_type,
                "subject": subject,
                "time": iso_utc(datetime.now(UTC)),
                "sequence": str(self.head),
                "position": self.head,
                "datacontenttype": "application/json",
                "data": dict(data),
            }
            self.events.append(event)
            self._lock.notify_all()
            return event

    def skip(self, count: int = 1) -> int:
        """Advance the head past `count` events the feed does not publish."""
        with self._lock:
            self.head += count
            self._lock.notify_all()
            return self.head

    def page(self, *, after: int = 0, limit: int = 100, wait: float = 0) -> Json:
        """Return the feed response for these parameters, long-polling like the API."""
        with self._lock:
            if wait > 0:
                self._lock.wait_for(lambda: self._newer(after), timeout=wait)
            newer = [event for event in self.events if event["position"] > after]
            events = newer[:limit]
            if len(newer) > limit:
                last_position = events[-1]["position"]
            else:
                last_position = max(self.head, after)
            return {
                "events": events,
                "last_position": last_position,
                "head_position": self.head,
            }

    def parsed_page(self, *, after: int = 0, limit: int = 100) -> FeedPage:
        """Return `page` parsed as the follower parses it."""
        return parse_page(self.page(after=after, limit=limit), after=after)

    def _newer(self, after: int) -> bool:
        return any(event["position"] > after for event in self.events)

    # Builders of the public event types.

    def pupil_registered(self, pupil_id: UUID, opened_on: date) -> Json:
        """Append `pupil.registered`."""
        return self.append(
            "pupil.registered",
            f"pupils/{pupil_id}",
            {"pupil_id": str(pupil_id), "opened_on": opened_on.isoformat()},
        )

    def pupil_enrolled(
        self,
        pupil_id: UUID,
        effective_date: date,
        *,
        order_date: date | None = None,
        reopened_file: bool = False,
        programme_id: UUID | None = None,
        enrolment_id: UUID | None = None,
    ) -> Json:
        """Append `pupil.enrolled`."""
        return self.append(
            "pupil.enrolled",
            f"pupils/{pupil_id}",
            {
                "pupil_id": str(pupil_id),
                "programme_id": str(programme_id or uuid4()),
                "enrolment_id": str(enrolment_id or uuid4()),
                "effective_date": effective_date.isoformat(),
                "order": _order(order_date or effective_date),
                "reopened_file": reopened_file,
            },
        )

    def enrolment_cancelled(
        self,
        pupil_id: UUID,
        enrolment_id: UUID,
        order_date: date,
        *,
        file_closed_on: date | None = None,
        expelled_on: date | None = None,
    ) -> Json:
        """Append `pupil.enrolment_cancelled`; given dates, the file closes again."""
        left_centre = file_closed_on is not None
        data: Json = {
            "pupil_id": str(pupil_id),
            "enrolment_id": str(enrolment_id),
            "order": _order(order_date),
            "left_centre": left_centre,
        }
        if left_centre:
            data["file_closed_on"] = _iso(file_closed_on)
            data["expelled_on"] = _iso(expelled_on)
        return self.append("pupil.enrolment_cancelled", f"pupils/{pupil_id}", data)

    def pupil_transferred(self, pupil_id: UUID, effective_date: date) -> Json:
        """Append `pupil.transferred`."""
        return self.append(
            "pupil.transferred",
            f"pupils/{pupil_id}",
            {
                "pupil_id": str(pupil_id),
                "from_programme_id": str(uuid4()),
                "from_enrolment_id": str(uuid4()),
                "to_programme_id": str(uuid4()),
                "enrolment_id": str(uuid4()),
                "effective_date": effective_date.isoformat(),
                "order": _order(effective_date),
            },
        )

    def pupil_expelled(
        self,
        pupil_id: UUID,
        effective_date: date,
        *,
        order_date: date | None = None,
        left_centre: bool = True,
        expulsion_id: UUID | None = None,
        ground: str = "completed",
        closure_dates: bool = True,
    ) -> Json:
        """Append `pupil.expelled`, by default with the order signed that day.

        With `closure_dates` a leaving expulsion also carries `file_closed_on`
        and `expelled_on`, as the records service sends them.
        """
        signed_on = order_date or effective_date
        data: Json = {
            "pupil_id": str(pupil_id),
            "programme_id": str(uuid4()),
            "expulsion_id": str(expulsion_id or uuid4()),
            "effective_date": effective_date.isoformat(),
            "ground": ground,
            "order": _order(signed_on),
            "left_centre": left_centre,
        }
        if closure_dates:
            leaving = left_centre
            data["file_closed_on"] = _iso(
                max(signed_on, effective_date) if leaving else None
            )
            data["expelled_on"] = _iso(effective_date if leaving else None)
        return self.append("pupil.expelled", f"pupils/{pupil_id}", data)

    def expulsion_cancelled(
        self,
        pupil_id: UUID,
        expulsion_id: UUID,
        order_date: date,
        *,
        reopened_file: bool,
    ) -> Json:
        """Append `pupil.expulsion_cancelled`."""
        return self.append(
            "pupil.expulsion_cancelled",
            f"pupils/{pupil_id}",
            {
                "pupil_id": str(pupil_id),
                "expulsion_id": str(expulsion_id),
                "order": _order(order_date),
                "reopened_file": reopened_file,
            },
        )

    def personal_data_destroyed(
        self, pupil_id: UUID, act_number: str, act_date: date, destroyed_at: datetime
    ) -> Json:
        """Append `pupil.personal_data_destroyed`."""
        return self.append(
            "pupil.personal_data_destroyed",
            f"pupils/{pupil_id}",
            {
                "pupil_id": str(pupil_id),
                "act": {"number": act_number, "date": act_date.isoformat()},
                "destroyed_at": iso_utc(destroyed_at),
            },
        )

    def journal_opened(self, journal_id: UUID, start: date, end: date) -> Json:
        """Append `journal.opened`."""
        return self.append(
            "journal.opened",
            f"journals/{journal_id}",
            {
                "journal_id": str(journal_id),
                "programme_id": str(uuid4()),
                "academic_year": {"start": start.isoformat(), "end": end.isoformat()},
            },
        )

    def journal_closed(self, journal_id: UUID, closed_on: date) -> Json:
        """Append `journal.closed`."""
        return self.append(
            "journal.closed",
            f"journals/{journal_id}",
            {"journal_id": str(journal_id), "closed_on": closed_on.isoformat()},
        )


def _order(signed_on: date) -> Json:
    return {"number": f"{signed_on:%m%d}-у", "date": signed_on.isoformat()}


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


class FakeRecordsFeed:
    """Serves a `FeedScript` over HTTP on 127.0.0.1 from a background thread."""

    def __init__(self, script: FeedScript, tokens: Iterable[str] = ("feed-token",)):
        self.script = script
        self.tokens = set(tokens)
        # While set, every request fails with this status.
        self.failure_status: int | None = None
        self.requests: list[Json] = []
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL of the fake records service."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeRecordsFeed:
        """Start serving, on the same port as before after a `stop`."""
        self._server = make_server("127.0.0.1", self.port, self._wsgi, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-records-feed",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: connections are refused until `start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeRecordsFeed:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _wsgi(self, environ: Any, start_response: Any) -> Any:
        return self._respond(Request(environ))(environ, start_response)

    def _respond(self, request: Request) -> Response:
        if request.path != "/api/v1/events":
            return _problem(404, "unknown path")
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        self.requests.append(
            {"args": dict(request.args), "authorized": token in self.tokens}
        )
        if self.failure_status is not None:
            return _problem(self.failure_status, "failing on purpose")
        if token not in self.tokens:
            return _problem(401, "missing or unknown token")
        try:
            after = int(request.args.get("after", "0"))
            limit = int(request.args.get("limit", "100"))
            wait = float(request.args.get("wait", "0"))
        except ValueError:
            return _problem(422, "invalid query parameter")
        if after < 0 or not 1 <= limit <= 1000 or not 0 <= wait <= 30:
            return _problem(422, "query parameter out of range")
        body = self.script.page(after=after, limit=limit, wait=wait)
        return Response(json.dumps(body), status=200, mimetype="application/json")


def _problem(status: int, detail: str) -> Response:
    body = {"type": "about:blank", "title": detail, "status": status, "detail": detail}
    response = Response(
        json.dumps(body), status=status, mimetype="application/problem+json"
    )
    if status == 503:
        response.headers["Retry-After"] = "1"
    return response
