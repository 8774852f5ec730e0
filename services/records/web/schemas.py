"""Schemas and fields that several records endpoints share."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, Literal
from uuid import UUID

import marshmallow as ma

from services.records.domain.dates import EARLIEST_DOCUMENT_DATE, earliest_date_error
from shared.fields import Cursor, PageQuerySchema, min_position_field


class NotBefore(ma.validate.Validator):
    """Rejects a date earlier than a fixed bound."""

    def __init__(self, earliest: date) -> None:
        self.earliest = earliest

    def __call__(self, value: date) -> date:
        message = earliest_date_error(value, self.earliest)
        if message is not None:
            raise ma.ValidationError(_sentence(message))
        return value


def check_document_date(data: Mapping[str, Any], document: str) -> None:
    """Reject a nested `order` or `protocol` dated before the centre's documents.

    The nested schemas are shared with the archive service, which sets no
    such bound, so the check runs on the request that contains them.
    """
    nested = data.get(document)
    if not isinstance(nested, Mapping) or not isinstance(nested.get("date"), date):
        return
    message = earliest_date_error(nested["date"], EARLIEST_DOCUMENT_DATE)
    if message is not None:
        raise ma.ValidationError({document: {"date": [_sentence(message)]}})


def _sentence(message: str) -> str:
    return message[0].upper() + message[1:] + "."


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
