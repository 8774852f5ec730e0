"""The records service's HTTP interface: `create_app()` for gunicorn.

gunicorn runs `services.records.web:create_app()` in each worker. The app
builds its records application, SQLAlchemy engine and read models on first
use (see `runtime`), never at import time and never in the gunicorn master.
"""

from __future__ import annotations

from flask import Flask

from services.records.web import (
    access,
    destruction,
    events,
    journals,
    programmes,
    pupils,
)
from services.records.web.common import IdConverter, id_parameter_schema
from services.records.web.errors import install_records_error_handlers
from services.records.web.metrics import EventsAppendedCollector
from services.records.web.runtime import RecordsRuntime, get_runtime, install_runtime
from services.records.web.schemas import register_response_fields
from shared.access import AccessTable
from shared.auth import FailedAuthThrottle, TokenStore
from shared.config import Settings
from shared.heartbeats import FollowerCollector
from shared.web import add_metrics_collector, create_base_app

__all__ = ["create_app", "get_runtime"]


def create_app(
    settings: Settings | None = None,
    *,
    token_store: TokenStore | None = None,
    throttle: FailedAuthThrottle | None = None,
) -> Flask:
    """Build the records web app; settings come from the environment by default."""
    settings = settings if settings is not None else Settings.from_env()
    runtime = RecordsRuntime(settings)
    app, api = create_base_app(
        name=__name__,
        title="pupil-records: records service",
        settings=settings,
        readiness=runtime.readiness,
        access=AccessTable.for_service("records"),
        token_store=token_store,
        throttle=throttle,
    )
    install_runtime(app, runtime)
    add_metrics_collector(app, FollowerCollector(runtime.follower_states))
    add_metrics_collector(app, EventsAppendedCollector(runtime.events_appended))
    install_records_error_handlers(app)
    register_response_fields(api)
    app.url_map.converters["id"] = IdConverter
    api.register_converter(IdConverter, id_parameter_schema)
    for blueprint in (programmes.blp, pupils.blp, journals.blp, events.blp):
        api.register_blueprint(blueprint)
    api.register_blueprint(destruction.blp)
    api.register_blueprint(access.blp)
    access.install_access_log(app, settings)
    return app
