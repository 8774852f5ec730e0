"""Translation of records domain errors and database outages into problems."""

from __future__ import annotations

import logging

from eventsourcing.persistence import (
    ConnectionUnavailableError,
    InterfaceError,
    OperationalError,
)
from flask import Flask, Response, request
from sqlalchemy.exc import InterfaceError as SQLInterfaceError
from sqlalchemy.exc import OperationalError as SQLOperationalError

from services.records.domain.errors import (
    DuplicatePupilError,
    InvalidFieldError,
    NotFoundError,
    RecordsError,
    RuleViolationError,
)
from services.records.keys import MasterKeyError
from shared.problems import (
    Problem,
    conflict,
    not_found,
    problem_response,
    request_id,
    unavailable,
    validation,
)

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER = 2
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionUnavailableError,
    SQLOperationalError,
    SQLInterfaceError,
)


def problem_for(error: RecordsError) -> Problem:
    """Return the problem response for a records domain error."""
    if isinstance(error, NotFoundError):
        return not_found(f"There is no {error.kind} with id {error.resource_id}.")
    if isinstance(error, InvalidFieldError):
        return validation(
            {
                path: [_sentence(message) for message in messages]
                for path, messages in error.errors.items()
            }
        )
    if isinstance(error, DuplicatePupilError):
        return conflict(
            _sentence(f"{error} (id {error.existing_id}); use that personal file"),
            existing_id=str(error.existing_id),
        )
    # Rule violations and concurrent changes: the command is refused as the
    # records stand now (a concurrent change may succeed when retried).
    if isinstance(error, RuleViolationError) and error.errors:
        errors = {
            path: [_sentence(message) for message in messages]
            for path, messages in error.errors.items()
        }
        return conflict(_sentence(str(error)), errors=errors)
    return conflict(_sentence(str(error)))


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return "A rule of the records forbids this request now."
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def install_records_error_handlers(app: Flask) -> None:
    """Render domain errors and database outages of `app` as problem+json."""
    app.register_error_handler(RecordsError, _handle_records_error)
    app.register_error_handler(MasterKeyError, _handle_master_key_error)
    for error_class in OUTAGE_ERRORS:
        app.register_error_handler(error_class, _handle_outage)


def _handle_records_error(error: RecordsError) -> Response:
    return problem_response(problem_for(error))


def _handle_master_key_error(error: MasterKeyError) -> Response:
    logger.error("records key ring unusable (request id %s): %s", request_id(), error)
    problem = unavailable(
        "The records service cannot open its key ring: its master key is missing "
        "or wrong. An administrator must restore the key; see the server log.",
        retry_after=DATABASE_RETRY_AFTER,
    )
    return problem_response(problem)


def _handle_outage(error: Exception) -> Response:
    logger.warning(
        "records database unavailable in %s %s (request id %s): %s",
        request.method,
        request.path,
        request_id(),
        error,
    )
    problem = unavailable(
        "The records database is unavailable; retry later.",
        retry_after=DATABASE_RETRY_AFTER,
    )
    return problem_response(problem)
