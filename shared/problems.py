"""Errors as `application/problem+json` (RFC 9457), one shape for every status.

Views and helpers raise `Problem` or one of the constructors below.
`install_error_handlers` renders it, werkzeug's HTTP errors, webargs' 422 and
any unexpected exception in the same JSON shape. That shape has `type`,
`title`, `status` and `detail`, plus `errors` (field path to messages) and any
extra members.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, cast

from flask import Flask, Response, current_app, g, has_request_context, request
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
DEFAULT_TYPE = "about:blank"
REQUEST_ID_HEADER = "X-Request-Id"

FieldErrors = dict[str, list[str]]


class Problem(Exception):
    """An HTTP error rendered as problem+json; raise it from views or helpers."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str = DEFAULT_TYPE,
        errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _phrase(status)
        self.type = type
        self.errors: FieldErrors | None = dict(errors) if errors else None
        self.headers = dict(headers or {})
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """Return the problem document as a JSON-ready dict."""
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["errors"] = self.errors
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return body

    def __repr__(self) -> str:
        return f"Problem({self.status}, {self.detail!r})"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def retry_after_seconds(seconds: float) -> str:
    """Format a delay for `Retry-After`: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def bad_request(detail: str, errors: Mapping[str, list[str]] | None = None) -> Problem:
    """Return a 400 problem: the body is missing or is not acceptable JSON."""
    return Problem(400, detail, errors=errors)


def unauthorized(detail: str) -> Problem:
    """Return a 401 problem with a `WWW-Authenticate: Bearer` challenge."""
    return Problem(401, detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> Problem:
    """Return a 403 problem: the caller's role may not do this."""
    return Problem(403, detail)


def not_found(detail: str) -> Problem:
    """Return a 404 problem for an unknown path or unknown id in the path."""
    return Problem(404, detail)


def conflict(detail: str, **extra: Any) -> Problem:
    """Return a 409 problem; `extra` members such as `existing_id` go in the body."""
    return Problem(409, detail, **extra)


def gone(detail: str, **extra: Any) -> Problem:
    """Return a 410 problem, e.g. for destroyed personal data."""
    return Problem(410, detail, **extra)


def payload_too_large(limit: int) -> Problem:
    """Return a 413 problem naming the body size limit in bytes."""
    return Problem(413, f"The request body is larger than the limit of {limit} bytes.")


def unsupported_media_type(detail: str) -> Problem:
    """Return a 415 problem for a body that is not `application/json`."""
    return Problem(415, detail)


def unsupported_content_coding(codings: str) -> Problem:
    """Return a 415 problem for a body sent with a content coding such as gzip.

    The `Accept-Encoding: identity` header lists the only coding that
    requests may use (RFC 7694, section 3).
    """
    return Problem(
        415,
        f"Content codings are not accepted (Content-Encoding: {codings[:100]}); "
        "send the JSON body uncompressed, without Content-Encoding.",
        headers={"Accept-Encoding": "identity"},
    )


def validation(
    errors: Mapping[str, list[str]],
    detail: str = "The request failed validation; see errors for each field.",
) -> Problem:
    """Return a 422 problem with messages keyed by field path."""
    return Problem(422, detail, errors=errors)


def validation_error(path: str, message: str) -> Problem:
    """Return a 422 problem with a single message at `path`."""
    return validation({path: [message]})


def too_many_requests(retry_after: float, detail: str) -> Problem:
    """Return a 429 problem with `Retry-After`."""
    return Problem(
        429, detail, headers={"Retry-After": retry_after_seconds(retry_after)}
    )


def unavailable(detail: str, retry_after: float = 1) -> Problem:
    """Return a 503 problem with `Retry-After`."""
    return Problem(
        503, detail, headers={"Retry-After": retry_after_seconds(retry_after)}
    )


def request_id() -> str:
    """Return the id of the current request, creating it on first use."""
    if not has_request_context():
        return uuid.uuid4().hex
    rid = g.get("request_id")
    if rid is None:
        rid = uuid.uuid4().hex
        g.request_id = rid
    return str(rid)


def problem_response(problem: Problem) -> Response:
    """Render `problem` as an `application/problem+json` response."""
    # A lone surrogate from the request (say, in a field name) cannot be
    # encoded as UTF-8; written as a JSON escape it stays valid JSON.
    body = current_app.json.dumps(problem.to_dict()).encode("utf-8", "backslashreplace")
    response = current_app.response_class(
        body,
        status=problem.status,
        mimetype=PROBLEM_CONTENT_TYPE,
    )
    for name, value in problem.headers.items():
        response.headers[name] = value
    return response


def install_error_handlers(app: Flask) -> None:
    """Render every error of `app` as problem+json, replacing earlier handlers."""
    app.register_error_handler(Problem, problem_response)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)


def _handle_http_exception(error: HTTPException) -> Response:
    if error.response is not None:
        return cast(Response, error.response)
    if error.code is not None and error.code < 400:
        # Routing redirects (e.g. a missing trailing slash) keep their Location.
        return cast(Response, error.get_response())
    return problem_response(problem_from_http_exception(error))


def problem_from_http_exception(error: HTTPException) -> Problem:
    """Translate a werkzeug or webargs HTTP error into a `Problem`."""
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = data.get("errors") or data.get("messages")
    detail = data.get("message") or _http_detail(status, error)
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() != "content-type"
    }
    headers.update(data.get("headers") or {})
    flat = _flatten_simple(errors) if isinstance(errors, Mapping) else None
    return Problem(
        status,
        detail,
        title=_phrase(status) if status else None,
        errors=flat,
        headers=headers,
    )


def _http_detail(status: int, error: HTTPException) -> str:
    if not has_request_context():
        return error.description or _phrase(status)
    if status == 404:
        return f"There is no resource at {request.path}."
    if status == 405:
        allowed = ", ".join(sorted(getattr(error, "valid_methods", None) or []))
        return f"{request.method} is not allowed on {request.path}; allowed: {allowed}."
    if status == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if limit:
            return f"The request body is larger than the limit of {limit} bytes."
    if status == 500:
        return _internal_detail()
    return error.description or _phrase(status)


def _internal_detail() -> str:
    return (
        "An unexpected error occurred and nothing was changed; it was logged "
        f"with request id {request_id()}."
    )


def _handle_unexpected(error: Exception) -> Response:
    rid = request_id()
    where = f"{request.method} {request.path}" if has_request_context() else "-"
    logger.error("unexpected error in %s (request id %s)", where, rid, exc_info=error)
    return problem_response(Problem(500, _internal_detail(), request_id=rid))


def _flatten_simple(messages: Mapping[Any, Any], prefix: str = "") -> FieldErrors:
    """Flatten nested error messages into dotted paths (no schema knowledge)."""
    flat: FieldErrors = {}
    for key, value in messages.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten_simple(value, path))
        elif isinstance(value, list | tuple):
            flat.setdefault(path, []).extend(str(item) for item in value)
        else:
            flat.setdefault(path, []).append(str(value))
    return flat
