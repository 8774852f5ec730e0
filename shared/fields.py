"""Marshmallow fields and schemas that both services' APIs share."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import unicodedata
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import marshmallow as ma
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app, has_app_context
from marshmallow import validate

from shared.clock import iso_utc, today_in
from shared.config import DEFAULT_TIMEZONE

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
NAME_MAX_LENGTH = 200
TEXT_MAX_LENGTH = 2000
DOCUMENT_NUMBER_MAX_LENGTH = 50
MAX_CURSOR_LENGTH = 1024
SETTINGS_CONFIG_KEY = "SETTINGS"
# Civil dates the API accepts. A centre's records start after 1900, and with
# 2999 as the last year, a deadline thousands of years later still fits in
# `datetime.date` (year 9999 at most).
MIN_DATE = date(1900, 1, 1)
MAX_DATE = date(2999, 12, 31)

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_ISO_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_QUERY_INTEGER = re.compile(r"-?[0-9]{1,18}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


def centre_zone() -> ZoneInfo:
    """Return the centre's time zone from the app's settings."""
    if has_app_context():
        settings = current_app.config.get(SETTINGS_CONFIG_KEY)
        if settings is not None:
            return settings.timezone  # type: ignore[no-any-return]
    # NOTE: outside a Flask app (unit tests of schemas) the default zone is
    # used; services always validate inside a request of their app.
    return ZoneInfo(DEFAULT_TIMEZONE)


def centre_today() -> date:
    """Return today's civil date in the centre's time zone."""
    return today_in(centre_zone())


class StrictDate(ma.fields.Field[date]):
    """A civil date written exactly as `YYYY-MM-DD`, from `MIN_DATE` to `MAX_DATE`.

    The range keeps date arithmetic inside `datetime.date`: a day before an
    effective date, or a retention deadline some years after a closure.
    """

    default_error_messages = {
        "invalid": "Not a valid date; expected a string YYYY-MM-DD.",
        "format": "Not a valid date: expected YYYY-MM-DD, got {input!r}.",
        "impossible": "{input} is not a valid calendar date: {reason}.",
        "out_of_range": "{input} is out of range; expected a date from {min} to {max}.",
    }

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return value.isoformat()

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> date:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if not _ISO_DATE.fullmatch(value):
            raise self.make_error("format", input=value[:40])
        try:
            parsed = date.fromisoformat(value)
        except ValueError as error:
            raise self.make_error("impossible", input=value, reason=error) from None
        if not MIN_DATE <= parsed <= MAX_DATE:
            raise self.make_error(
                "out_of_range",
                input=value,
                min=MIN_DATE.isoformat(),
                max=MAX_DATE.isoformat(),
            )
        return parsed


class PastOrToday(validate.Validator):
    """Rejects a date later than today in the centre's time zone."""

    error = "Must not be later than today ({today} in {zone})."

    def __init__(self, today: Callable[[], date] | None = None) -> None:
        self._today = today

    def __call__(self, value: date) -> date:
        zone = centre_zone()
        today = self._today() if self._today else today_in(zone)
        if value > today:
            raise ma.ValidationError(
                self.error.format(today=today.isoformat(), zone=zone.key)
            )
        return value


class UtcTimestamp(ma.fields.Field[datetime]):
    """An ISO 8601 timestamp with `Z` or an offset, loaded as aware UTC."""

    default_error_messages = {
        "invalid": (
            "Not a valid timestamp; expected ISO 8601 with a time zone, "
            "e.g. 2024-05-01T09:30:00Z."
        ),
        "out_of_range": (
            "{input} is out of range: in UTC it falls outside the years 1 to 9999."
        ),
    }

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return iso_utc(value)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> datetime:
        if not isinstance(value, str) or not _ISO_TIMESTAMP.fullmatch(value):
            raise self.make_error("invalid")
        try:
            local = datetime.fromisoformat(value)
        except ValueError:
            raise self.make_error("invalid") from None
        try:
            # An offset can push 0001-01-01 or 9999-12-31 past datetime's range.
            return local.astimezone(UTC)
        except OverflowError:
            raise self.make_error("out_of_range", input=value) from None


def _is_blank_char(char: str) -> bool:
    return char.isspace() or unicodedata.category(char) == "Cf"


def _trim(text: str) -> str:
    start, end = 0, len(text)
    while start < end and _is_blank_char(text[start]):
        start += 1
    while end > start and _is_blank_char(text[end - 1]):
        end -= 1
    return text[start:end]


class Text(ma.fields.Field[str]):
    """A string stored in NFC with white space and invisible format characters
    (Unicode category Cf) trimmed from both ends; blank text is invalid."""

    default_error_messages = {
        "invalid": "Not a valid string.",
        "surrogate": "Contains a lone surrogate, which is not a Unicode character.",
        "control": "Contains a control character.",
        "blank": "Must not be blank.",
        "too_long": "Longer than the maximum of {max} characters.",
    }

    def __init__(
        self,
        *,
        max_length: int = TEXT_MAX_LENGTH,
        multiline: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_length = max_length
        self.multiline = multiline
        self.metadata = {"maxLength": max_length, **self.metadata}

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if any("\ud800" <= char <= "\udfff" for char in value):
            raise self.make_error("surrogate")
        text = _trim(unicodedata.normalize("NFC", value))
        if not text:
            raise self.make_error("blank")
        if any(self._is_forbidden_control(char) for char in text):
            raise self.make_error("control")
        if len(text) > self.max_length:
            raise self.make_error("too_long", max=self.max_length)
        return text

    def _is_forbidden_control(self, char: str) -> bool:
        if unicodedata.category(char) != "Cc":
            return False
        return not (self.multiline and char in "\n\t")


class Name(Text):
    """A person's name or another one-line label: no line breaks or tabs."""

    def __init__(self, *, max_length: int = NAME_MAX_LENGTH, **kwargs: Any) -> None:
        super().__init__(max_length=max_length, multiline=False, **kwargs)


# Scripts whose letters look alike (Cyrillic "а", Latin "a", Greek "α"). A
# word that mixes them reads like a word of one script but compares
# unequal to it, so it would slip past duplicate detection.
CONFUSABLE_SCRIPTS = ("CYRILLIC", "LATIN", "GREEK")
# Characters that separate the words of a name, besides white space and dash
# punctuation (Unicode category Pd) with U+2212 minus sign.
_WORD_SEPARATORS = "'\u2019.\u2212"


def _is_word_separator(char: str) -> bool:
    return (
        char.isspace() or char in _WORD_SEPARATORS or unicodedata.category(char) == "Pd"
    )


def _script_of(char: str) -> str | None:
    if not unicodedata.category(char).startswith("L"):
        return None
    char_name = unicodedata.name(char, "")
    for script in CONFUSABLE_SCRIPTS:
        if char_name.startswith(script + " "):
            return script
    return None


def mixed_scripts(text: str) -> list[str]:
    """Return the look-alike scripts of the first word of `text` that mixes them.

    Words are separated by white space, hyphens and dashes of any kind,
    apostrophes and full stops, so "Иванова-Smith" and "Иванова\u2013Smith" are
    two words of one script each. The list is empty when no word mixes scripts.
    """
    words = "".join(" " if _is_word_separator(char) else char for char in text)
    for word in words.split():
        scripts = {_script_of(char) for char in word} - {None}
        if len(scripts) > 1:
            return [script for script in CONFUSABLE_SCRIPTS if script in scripts]
    return []


class PersonName(Name):
    """A surname, first name or patronymic.

    On top of `Name`, it rejects format characters left inside the name after
    trimming (zero-width spaces, joiners, bidi marks and overrides) and a word
    that mixes Cyrillic, Latin or Greek letters. Both would let a name that
    looks like a registered one pass the duplicate check. Dashes of any kind
    and stress marks (U+0301 after a vowel) are valid spelling and are stored
    as given, because duplicate detection folds them.
    """

    default_error_messages = {
        "format_character": (
            "Contains the invisible format character U+{code:04X} inside the "
            "name; remove it."
        ),
        "mixed_scripts": (
            "Mixes {scripts} letters in one word; type each word in one alphabet."
        ),
    }

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        for char in text:
            if unicodedata.category(char) == "Cf":
                raise self.make_error("format_character", code=ord(char))
        scripts = mixed_scripts(text)
        if scripts:
            names = " and ".join(script.capitalize() for script in scripts)
            raise self.make_error("mixed_scripts", scripts=names)
        return text


class StrictInteger(ma.fields.Integer):
    """A JSON integer: booleans, floats and numeric strings are invalid."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)


class UUIDField(ma.fields.Field[uuid.UUID]):
    """An id in canonical UUID form, loaded as `uuid.UUID`."""

    default_error_messages = {
        "invalid": (
            "Not a valid id; expected a UUID such as "
            "3fa85f64-5717-4562-b3fc-2c963f66afa6."
        ),
    }

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return str(value)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> uuid.UUID:
        if isinstance(value, uuid.UUID):
            return value
        if not isinstance(value, str) or not _UUID.fullmatch(value):
            raise self.make_error("invalid")
        return uuid.UUID(value)


class QueryInteger(ma.fields.Integer):
    """An integer query parameter written in decimal digits, e.g. `limit=10`."""

    default_error_messages = {"invalid": "Not a valid integer."}

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> Any:
        if isinstance(value, str):
            if not _QUERY_INTEGER.fullmatch(value):
                raise self.make_error("invalid")
            value = int(value)
        elif isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class InvalidCursorError(ValueError):
    """A page cursor that this service did not issue."""


CursorValue = int | bool | str | uuid.UUID | date | datetime | None


def encode_cursor(values: Mapping[str, CursorValue]) -> str:
    """Encode a page position as an opaque base64url string.

    Only ids, positions, dates and timestamps are accepted, so that a cursor
    never carries a name or other personal data.
    """
    return _b64encode(
        json.dumps(
            {key: _cursor_value(key, value) for key, value in values.items()},
            separators=(",", ":"),
            sort_keys=True,
        ).encode("utf-8")
    )


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _cursor_value(key: str, value: CursorValue) -> int | bool | str | None:
    if value is None or isinstance(value, int | bool):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _is_opaque_token(value):
        return value
    raise TypeError(
        f"cursor value {key!r} must be an int, UUID, date or timestamp; "
        "names and free text are personal data and must not go in a cursor"
    )


def _is_opaque_token(text: str) -> bool:
    return any(
        pattern.fullmatch(text) for pattern in (_UUID, _ISO_DATE, _ISO_TIMESTAMP)
    )


def decode_cursor(
    text: str, keys: Collection[str] | None = None
) -> dict[str, int | bool | str | None]:
    """Decode a cursor from `encode_cursor`; raise `InvalidCursorError` if bad."""
    if not text or len(text) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(text):
        raise InvalidCursorError("the cursor is not base64url text")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        document = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError("the cursor does not decode") from None
    if not isinstance(document, dict):
        raise InvalidCursorError("the cursor is not an object")
    for key, value in document.items():
        if isinstance(value, float | list | dict):
            raise InvalidCursorError(f"the cursor value {key!r} is not a scalar")
        if isinstance(value, str) and not _is_opaque_token(value):
            raise InvalidCursorError(f"the cursor value {key!r} is not an id")
    if keys is not None and set(document) != set(keys):
        raise InvalidCursorError("the cursor has other keys than expected")
    return document


class Cursor(ma.fields.Field[dict[str, Any]]):
    """A page cursor query parameter, loaded as the dict it encodes."""

    default_error_messages = {
        "invalid": "Invalid cursor; pass next_cursor from the previous page unchanged.",
    }

    def __init__(self, *, keys: Collection[str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keys = tuple(keys) if keys is not None else None

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return encode_cursor(value)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, Any]:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return decode_cursor(value, self.keys)
        except InvalidCursorError:
            raise self.make_error("invalid") from None


SEALED_CURSOR_MAX_LENGTH = 8192
_NONCE_BYTES = 12


def seal_cursor(values: Mapping[str, str], key: bytes, purpose: str) -> str:
    """Encrypt a page position with AES-GCM under `key` into base64url text.

    Use it for an order by a value that may be personal data, such as a
    normalised full name: the client cannot read it, and the next page still
    starts after that value when its row is gone. `purpose` is bound to the
    cursor, so the cursor of one list is invalid for another.
    """
    nonce = os.urandom(_NONCE_BYTES)
    plain = json.dumps(dict(values), separators=(",", ":"), sort_keys=True)
    sealed = AESGCM(key).encrypt(nonce, plain.encode("utf-8"), purpose.encode())
    return _b64encode(nonce + sealed)


def open_cursor(
    text: str, key: bytes, purpose: str, keys: Collection[str]
) -> dict[str, str]:
    """Decrypt a cursor from `seal_cursor`; raise `InvalidCursorError` if bad."""
    if (
        not text
        or len(text) > SEALED_CURSOR_MAX_LENGTH
        or not _BASE64URL.fullmatch(text)
    ):
        raise InvalidCursorError("the cursor is not base64url text")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        plain = AESGCM(key).decrypt(
            raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode()
        )
        document = json.loads(plain.decode("utf-8"))
    except (binascii.Error, InvalidTag, ValueError):
        raise InvalidCursorError("the cursor was not issued for this list") from None
    if not isinstance(document, dict) or set(document) != set(keys):
        raise InvalidCursorError("the cursor has other keys than expected")
    if not all(isinstance(value, str) for value in document.values()):
        raise InvalidCursorError("the cursor values are not strings")
    return document


class SealedCursor(ma.fields.Field[dict[str, str]]):
    """A page cursor query parameter from `seal_cursor`, loaded as its dict.

    `key` returns the encryption key when a request is validated, because
    the key belongs to the running service and not to the schema.
    """

    default_error_messages = {
        "invalid": "Invalid cursor; pass next_cursor from the previous page unchanged.",
    }

    def __init__(
        self,
        *,
        key: Callable[[], bytes],
        purpose: str,
        keys: Collection[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.purpose = purpose
        self.keys = tuple(keys)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        if value is None:
            return None
        return seal_cursor(value, self.key(), self.purpose)

    def _deserialize(
        self, value: Any, attr: str | None, data: Any, **kwargs: Any
    ) -> dict[str, str]:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            return open_cursor(value, self.key(), self.purpose, self.keys)
        except InvalidCursorError:
            raise self.make_error("invalid") from None


def limit_field() -> QueryInteger:
    """Return the `limit` query field: 1 to 1000, default 100."""
    return QueryInteger(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1, max=MAX_LIMIT),
        metadata={"description": "Page size, 1 to 1000."},
    )


def min_position_field() -> QueryInteger:
    """Return the `min_position` query field: a records log position, or None."""
    return QueryInteger(
        load_default=None,
        validate=validate.Range(min=0),
        metadata={
            "description": "Answer once the read model has processed this position."
        },
    )


class _NumberedDocumentSchema(ma.Schema):
    number = Name(required=True, max_length=DOCUMENT_NUMBER_MAX_LENGTH)
    date = StrictDate(required=True, validate=PastOrToday())


class OrderSchema(_NumberedDocumentSchema):
    """An order of the centre: its number and date (not later than today)."""


class ProtocolSchema(_NumberedDocumentSchema):
    """A protocol of an attestation: its number and date (not later than today)."""


class ActSchema(_NumberedDocumentSchema):
    """An act (e.g. of destruction): its number and date (not later than today)."""


class MinPositionQuerySchema(ma.Schema):
    """Query of a single-resource GET: `min_position`."""

    min_position = min_position_field()


class PageQuerySchema(ma.Schema):
    """Query of a list GET: `limit`, `cursor` and `min_position`."""

    min_position = min_position_field()
    limit = limit_field()
    cursor = Cursor(load_default=None)
