"""Strict JSON request bodies and query strings for flask-smorest views.

`read_json_body()` applies the body checks in the order of the API contract.
It checks the content type and content coding (415) and the size (413)
first. Then it checks the JSON itself (400): missing, not UTF-8, malformed,
duplicate keys, not an object, or nested deeper than 32 levels. Last come
`NaN`, `Infinity` and numbers out of range (422). `StrictParser` is a webargs
parser that uses it for `location="json"`, rejects unknown and repeated query
parameters, and raises every validation error as a 422 problem whose
`errors` are keyed by dotted field paths (`order.date`,
`attendance.2.pupil_id`, `query.limit`).

Use it through `shared.web.Blueprint`, whose `arguments` decorator is wired to
this parser. Put a body's `@blp.arguments(...)` above a query's, so that a bad
body (400) is reported before a bad query (422).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, NoReturn

import flask
import marshmallow as ma
from webargs.flaskparser import FlaskParser

from shared.problems import (
    FieldErrors,
    Problem,
    bad_request,
    payload_too_large,
    unsupported_content_coding,
    unsupported_media_type,
    validation,
)

MAX_DEPTH = 32
MAX_INTEGER_DIGITS = 1000
JSON_MIMETYPE = "application/json"
UTF8_BOM = b"\xef\xbb\xbf"
_LOCATION_PREFIX = {
    "json": "",
    "query": "query",
    "querystring": "query",
    "view_args": "path",
    "path": "path",
    "headers": "header",
    "cookies": "cookie",
    "form": "form",
    "files": "files",
}


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _Rejected:
    """Stands in for a JSON number the API rejects, to report it by path."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason


def read_json_body(req: flask.Request | None = None) -> dict[str, Any]:
    """Return the request body as a dict or raise the matching `Problem`."""
    req = req if req is not None else flask.request
    _check_content_type(req)
    _check_size(req)
    data = _read_body(req)
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    if not data.strip():
        raise bad_request("The request body is missing; send a JSON object.")
    document = _parse(data)
    if not isinstance(document, dict):
        raise bad_request(
            f"The request body must be a JSON object, not {_json_kind(document)}."
        )
    _check_depth_and_numbers(document)
    return document


def _check_content_type(req: flask.Request) -> None:
    mimetype = req.mimetype
    if not mimetype:
        if _has_no_body(req):
            raise bad_request("The request body is missing; send a JSON object.")
        raise unsupported_media_type(
            "The request has a body but no Content-Type; send application/json."
        )
    if mimetype != JSON_MIMETYPE:
        raise unsupported_media_type(
            f"The request body must be application/json, not {mimetype}."
        )
    charset = req.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise unsupported_media_type(f"The request body must be UTF-8, not {charset}.")
    _check_content_encoding(req)


def _check_content_encoding(req: flask.Request) -> None:
    # Bodies are read as sent, so a compressed one would fail as invalid UTF-8
    # or JSON. "identity" means no coding and is accepted (RFC 9110, 8.4.1).
    codings = [
        coding.strip().lower()
        for header in req.headers.getlist("Content-Encoding")
        for coding in header.split(",")
    ]
    applied = [coding for coding in codings if coding and coding != "identity"]
    if applied:
        raise unsupported_content_coding(", ".join(applied))


def _has_no_body(req: flask.Request) -> bool:
    if req.content_length is not None:
        return req.content_length == 0
    return "chunked" not in req.headers.get("Transfer-Encoding", "").lower()


def _check_size(req: flask.Request) -> None:
    # Refuse before reading; werkzeug also stops a chunked body at the limit.
    limit = req.max_content_length
    if limit is not None and req.content_length is not None:
        if req.content_length > limit:
            raise payload_too_large(limit)


def _read_body(req: flask.Request) -> bytes:
    data = req.get_data(cache=True)
    limit = req.max_content_length
    if req.content_length is None and limit is not None and len(data) >= limit:
        # werkzeug stops a body of unknown length (chunked) at the limit
        # without an error, so reaching the limit means the body was cut.
        # NOTE: a chunked body of exactly the limit is refused as well.
        raise payload_too_large(limit)
    return data


def _parse(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise bad_request(
            f"The request body is not valid UTF-8 (byte {error.start})."
        ) from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
            parse_int=_parse_int,
        )
    except _DuplicateKeyError as error:
        raise bad_request(
            f"The request body has the key {error.key!r} more than once in one object."
        ) from None
    except json.JSONDecodeError as error:
        raise bad_request(
            f"The request body is not valid JSON: {error.msg} at line "
            f"{error.lineno} column {error.colno}."
        ) from None
    except RecursionError:
        raise _too_deep() from None


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _DuplicateKeyError(key)
        document[key] = value
    return document


def _reject_constant(text: str) -> _Rejected:
    return _Rejected(text, f"{text} is not a valid JSON number.")


def _parse_float(text: str) -> float | _Rejected:
    value = float(text)
    if not math.isfinite(value):
        return _Rejected(text, "The number is out of range.")
    return value


def _parse_int(text: str) -> int | _Rejected:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        return _Rejected(text, "The number is out of range.")
    return int(text)


def _too_deep() -> Problem:
    return bad_request(f"The request body is nested deeper than {MAX_DEPTH} levels.")


def _check_depth_and_numbers(document: dict[str, Any]) -> None:
    # Depth counts objects and arrays: the body itself is level 1.
    rejected: FieldErrors = {}
    stack: list[tuple[Any, str, int]] = [(document, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            raise _too_deep()
        if isinstance(value, dict):
            children = [(v, _join(path, k), depth + 1) for k, v in value.items()]
            stack.extend(children)
        elif isinstance(value, list):
            children = [(v, _join(path, i), depth + 1) for i, v in enumerate(value)]
            stack.extend(children)
        elif isinstance(value, _Rejected):
            rejected.setdefault(path, []).append(value.reason)
    if rejected:
        raise validation(rejected)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def flatten_errors(
    messages: Mapping[Any, Any], schema: ma.Schema | None, prefix: str = ""
) -> FieldErrors:
    """Flatten marshmallow error messages into dotted field paths."""
    flat: FieldErrors = {}
    _flatten_schema(messages, schema, prefix, flat)
    return flat


def _flatten_schema(
    messages: Mapping[Any, Any],
    schema: ma.Schema | None,
    path: str,
    out: FieldErrors,
) -> None:
    by_key: dict[str, ma.fields.Field[Any]] = {}
    if schema is not None:
        by_key = {
            field.data_key or name: field for name, field in schema.fields.items()
        }
    for key, value in messages.items():
        if key == ma.exceptions.SCHEMA:
            _add(out, path or "body", value)
            continue
        _flatten_value(value, by_key.get(str(key)), _join(path, key), out)


def _flatten_value(
    value: Any, field: ma.fields.Field[Any] | None, path: str, out: FieldErrors
) -> None:
    if not isinstance(value, Mapping):
        _add(out, path, value)
    elif isinstance(field, ma.fields.Nested):
        _flatten_nested(value, field, path, out)
    elif isinstance(field, ma.fields.List):
        for index, item in value.items():
            _flatten_value(item, field.inner, _join(path, index), out)
    elif isinstance(field, ma.fields.Mapping):
        _flatten_mapping(value, field, path, out)
    else:
        for key, item in value.items():
            _flatten_value(item, None, _join(path, key), out)


def _flatten_nested(
    value: Mapping[Any, Any], field: ma.fields.Nested, path: str, out: FieldErrors
) -> None:
    schema = field.schema
    if not field.many:
        _flatten_schema(value, schema, path, out)
        return
    for index, item in value.items():
        if index == ma.exceptions.SCHEMA:
            _add(out, path, item)
        elif isinstance(item, Mapping):
            _flatten_schema(item, schema, _join(path, index), out)
        else:
            _add(out, _join(path, index), item)


def _flatten_mapping(
    value: Mapping[Any, Any], field: ma.fields.Mapping[Any], path: str, out: FieldErrors
) -> None:
    for key, item in value.items():
        item_path = _join(path, key)
        if isinstance(item, Mapping) and set(item) <= {"key", "value"}:
            if "key" in item:
                _flatten_value(item["key"], field.key_field, item_path, out)
            if "value" in item:
                _flatten_value(item["value"], field.value_field, item_path, out)
        else:
            _flatten_value(item, None, item_path, out)


def _add(out: FieldErrors, path: str, value: Any) -> None:
    messages = out.setdefault(path, [])
    if isinstance(value, list | tuple):
        messages.extend(str(item) for item in value)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _add(out, _join(path, key), item)
    else:
        messages.append(str(value))


class StrictParser(FlaskParser):
    """A webargs parser for the API's body and query rules; errors are 422."""

    DEFAULT_UNKNOWN_BY_LOCATION: dict[str, str | None] = {
        **FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION,
        "json": ma.RAISE,
        "query": ma.RAISE,
        "querystring": ma.RAISE,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._schemas: dict[type[ma.Schema], ma.Schema] = {}

    def _get_schema(self, argmap: Any, req: flask.Request) -> ma.Schema:
        """Build each schema class once and load every request with it.

        webargs would build a new instance, nested schemas and all, for every
        request. A marshmallow schema keeps no state between loads, so
        threads may share one.
        """
        if isinstance(argmap, type) and issubclass(argmap, ma.Schema):
            schema = self._schemas.get(argmap)
            if schema is None:
                schema = self._schemas.setdefault(argmap, argmap())
            return schema
        return super()._get_schema(argmap, req)

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        """Return the body as a dict, raising a problem for 415, 413 or 400."""
        return read_json_body(req)

    def load_querystring(self, req: flask.Request, schema: ma.Schema) -> Any:
        """Return the query parameters, rejecting repeats of single-valued ones."""
        proxy = self._makeproxy(req.args, schema)
        repeated = {
            key: ["Give this parameter at most once."]
            for key in req.args
            if len(req.args.getlist(key)) > 1 and key not in proxy.multiple_keys
        }
        if repeated:
            raise ma.ValidationError(repeated)
        return proxy

    def handle_error(
        self,
        error: ma.ValidationError,
        req: flask.Request,
        schema: ma.Schema,
        *,
        error_status_code: int | None,
        error_headers: Mapping[str, str] | None,
    ) -> NoReturn:
        """Raise the validation error as a problem with dotted field paths."""
        messages = error.messages
        flat: FieldErrors = {}
        if isinstance(messages, Mapping):
            for location, location_messages in messages.items():
                prefix = _LOCATION_PREFIX.get(str(location), str(location))
                if isinstance(location_messages, Mapping):
                    flat.update(flatten_errors(location_messages, schema, prefix))
                else:
                    _add(flat, prefix or "body", location_messages)
        else:
            _add(flat, "body", messages)
        problem = validation(flat)
        problem.status = error_status_code or self.DEFAULT_VALIDATION_STATUS
        problem.headers.update(error_headers or {})
        raise problem


parser = StrictParser()
