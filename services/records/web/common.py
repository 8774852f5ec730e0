"""Helpers the records views share: path ids, command results, reads, pages."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from werkzeug.routing import BaseConverter

from services.records.application import CommandResult, RecordsApplication
from services.records.readmodels import PageKey, RecordsReadModels
from services.records.web.runtime import get_runtime
from shared.fields import SealedCursor, encode_cursor, seal_cursor
from shared.jsonable import to_jsonable
from shared.problems import Problem, not_found
from shared.web import API_PREFIX, ensure_min_position

LOCATION_HEADER_DOC = {
    "Location": {
        "description": "URL of the created resource, or of the pupil or journal "
        "it was recorded in",
        "schema": {"type": "string"},
    }
}

Body = dict[str, Any]


def records() -> RecordsApplication:
    """Return this process's records application."""
    return get_runtime().application


def read_models(min_position: int | None) -> RecordsReadModels:
    """Return the read models once they have processed `min_position` (if given).

    Raises a 422 problem when `min_position` is beyond the head of the log,
    and a 503 problem when they do not get there within the configured time.
    """
    runtime = get_runtime()
    ensure_min_position(
        runtime.read_position,
        min_position,
        head_position=runtime.application.head_position,
    )
    return runtime.read_models()


class IdConverter(BaseConverter):
    """Routes `<id:name>` like a plain segment; the view parses the UUID.

    A malformed id then gets 404 after authentication and validation, like
    any other unknown id in the path, and not at routing time.
    """


def id_parameter_schema(_converter: BaseConverter) -> dict[str, str]:
    """Return the OpenAPI schema of an `<id:...>` path parameter."""
    return {"type": "string", "format": "uuid"}


def path_id(text: str, kind: str) -> UUID:
    """Parse an id taken from the path; anything but a UUID is an unknown id."""
    try:
        value = UUID(text)
    except ValueError:
        raise unknown(kind, text) from None
    if str(value) != text.lower():
        # Forms such as '{...}' or hex without dashes name no resource either.
        raise unknown(kind, text)
    return value


def unknown(kind: str, resource_id: UUID | str) -> Problem:
    """Return the 404 problem for an unknown id in the path."""
    printable_id = str(resource_id)[:64]
    return not_found(f"There is no {kind} with id {printable_id}.")


def command_body(result: CommandResult, **extra: Any) -> Body:
    """Return a command's response body: the resource, `extra` and `position`."""
    body = dict(result.resource)
    body.update(extra)
    body["position"] = result.position
    return dict(to_jsonable(body))


def created(body: Body, location: str) -> tuple[Body, int, dict[str, str]]:
    """Return a 201 response with `Location`, for a flask-smorest view."""
    return body, 201, {"Location": location}


def pupil_url(pupil_id: Any) -> str:
    return f"{API_PREFIX}/pupils/{pupil_id}"


def journal_url(journal_id: Any) -> str:
    return f"{API_PREFIX}/journals/{journal_id}"


def programme_url(programme_id: Any) -> str:
    return f"{API_PREFIX}/programmes/{programme_id}"


def page(items: list[Any], next_after: Any) -> Body:
    """Return a list page; `next_after` is the last key of a full page, or None."""
    cursor = None if next_after is None else encode_cursor({"after": next_after})
    return {"items": items, "next_cursor": cursor}


def after_of(cursor: dict[str, Any] | None) -> Any:
    """Return the `after` key of a decoded cursor, or None for the first page."""
    return None if cursor is None else cursor["after"]


PUPIL_CURSOR = "pupils"
# Keys of a sealed list cursor: the sort value and the id of a page's last row.
SEALED_CURSOR_KEYS = ("sort", "id")


def cursor_key() -> bytes:
    """Return the key that seals list cursors, derived from the master key."""
    return get_runtime().master_key.derive("page-cursor")


def sealed_cursor_field(purpose: str) -> SealedCursor:
    """Return the `cursor` query field of a list whose cursors are sealed."""
    return SealedCursor(
        key=cursor_key, purpose=purpose, keys=SEALED_CURSOR_KEYS, load_default=None
    )


def sealed_page(items: list[Any], last: PageKey | None, purpose: str) -> Body:
    """Return a list page whose `next_cursor` seals the last row's key."""
    cursor = None
    if last is not None:
        sort_value, last_id = last
        cursor = seal_cursor({"sort": sort_value, "id": last_id}, cursor_key(), purpose)
    return {"items": items, "next_cursor": cursor}


def page_key_of(cursor: dict[str, str] | None) -> PageKey | None:
    """Return the page key of a sealed cursor, or None for the first page."""
    return None if cursor is None else (cursor["sort"], cursor["id"])
