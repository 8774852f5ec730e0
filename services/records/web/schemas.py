"""Schemas and fields that several records endpoints share."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from uuid import UUID

import marshmallow as ma

from shared.fields import Cursor, PageQuerySchema, min_position_field


class IdString(ma.fields.String):
    """An id in a response: a UUID written as text."""


class DateString(ma.fields.String):
    """A civil date in a response, written `YYYY-MM-DD`."""


class TimestampString(ma.fields.String):
    """A UTC timestamp in a response, written ISO 8601 with `Z`."""


class AfterCursor(Cursor):
    """A page cursor holding `after`: the last id or log position of a page."""

    def __init__(self, *, after: Literal["id", "position"], **kwargs: Any) -> None:
        super().__init__(keys=("after",), **kwargs)
        self.after = after

    def _deserialize(
        self,
        value: Any,
        attr: str | None,
        data: Mapping[str, Any] | None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        decoded = super()._deserialize(value, attr, data, **kwargs)
        if not self._valid_after(decoded["after"]):
            raise self.make_error("invalid")
        return decoded

    def _valid_after(self, after: Any) -> bool:
        if self.after == "position":
            # bool is an int subclass, but no cursor of this service contains one.
            return isinstance(after, int) and not isinstance(after, bool) and after >= 0
        if not isinstance(after, str):
            return False
        try:
            return str(UUID(after)) == after.lower()
        except ValueError:
            return False


class OrderOutSchema(ma.Schema):
    """An order of the centre as stored: its number and signature date."""

    number = ma.fields.String()
    date = DateString()


class ProtocolOutSchema(ma.Schema):
    """An attestation protocol as stored: its number and date."""

    number = ma.fields.String()
    date = DateString()


class ReadQueryArgsSchema(ma.Schema):
    """Query of a GET of one resource: `min_position`."""

    min_position = min_position_field()


class PageQueryArgsSchema(PageQuerySchema):
    """Query of a list ordered by id: `limit`, `cursor`, `min_position`."""

    cursor = AfterCursor(after="id", load_default=None)
    min_position = min_position_field()


def register_response_fields(api: Any) -> None:
    """Document the response-only fields of this module in the OpenAPI schema."""
    api.register_field(IdString, "string", "uuid")
    api.register_field(DateString, "string", "date")
    api.register_field(TimestampString, "string", "date-time")
    api.register_field(AfterCursor, "string", None)
