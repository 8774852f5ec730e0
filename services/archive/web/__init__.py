"""The archive service's Flask app factory."""

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

from services.archive.web.runtime import EXTENSION_KEY, ArchiveRuntime
from services.archive.web.views import blp
from shared.access import AccessTable
from shared.auth import FailedAuthThrottle, TokenStore
from shared.config import Settings
from shared.heartbeats import FollowerCollector
from shared.problems import problem_response, request_id, unavailable
from shared.web import add_metrics_collector, create_base_app

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER = 2
OUTAGE_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionUnavailableError,
    SQLOperationalError,
    SQLInterfaceError,
)


def create_app(
    settings: Settings | None = None,
    *,
    runtime: ArchiveRuntime | None = None,
    token_store: TokenStore | None = None,
    throttle: FailedAuthThrottle | None = None,
) -> Flask:
    """Build the archive web app, which opens its databases on the first request."""
    if settings is None:
        settings = runtime.settings if runtime is not None else Settings.from_env()
    runtime = runtime if runtime is not None else ArchiveRuntime(settings)
    app, api = create_base_app(
        name="services.archive",
        title="pupil-records archive",
        settings=settings,
        readiness=runtime.readiness,
        access=AccessTable.for_service("archive"),
        token_store=token_store,
        throttle=throttle,
    )
    app.extensions[EXTENSION_KEY] = runtime
    add_metrics_collector(app, FollowerCollector(runtime.follower_states))
    api.register_blueprint(blp)
    for error_class in OUTAGE_ERRORS:
        app.register_error_handler(error_class, _handle_outage)
    return app


def _handle_outage(error: Exception) -> Response:
    logger.warning(
        "archive database unavailable in %s %s (request id %s): %s",
        request.method,
        request.path,
        request_id(),
        error,
    )
    problem = unavailable(
        "The archive database is unavailable; retry later.",
        retry_after=DATABASE_RETRY_AFTER,
    )
    return problem_response(problem)
