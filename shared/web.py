"""The Flask base of both services: errors, auth, OpenAPI, health and headers.

A service builds its app with `create_base_app(...)`, passing the rules of
its routes from the role matrix, and registers blueprints made with this
module's `Blueprint` on the returned `Api`::

    app, api = create_base_app(
        name=__name__,
        title="pupil-records: records service",
        settings=settings,
        readiness=runtime.readiness,
        access=AccessTable.for_service("records"),
    )
    api.register_blueprint(pupils.blp)

Who may call each route comes from `shared.access.ROUTES`, never from the
views.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Flask, Response, current_app, g, request
from flask.json.provider import DefaultJSONProvider
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector

from shared.access import AccessDocsPlugin, AccessTable
from shared.auth import (
    BEARER_SCHEME_NAME,
    PURPOSE_HEADER,
    FailedAuthThrottle,
    TokenStore,
    access_route,
    init_auth,
    view_for_request,
)
from shared.clock import iso_utc
from shared.config import Settings
from shared.fields import (
    SETTINGS_CONFIG_KEY,
    Cursor,
    SealedCursor,
    StrictDate,
    Text,
    UtcTimestamp,
    UUIDField,
)
from shared.jsonbody import parser
from shared.problems import (
    REQUEST_ID_HEADER,
    Problem,
    install_error_handlers,
    request_id,
    retry_after_seconds,
    unavailable,
    validation,
)
from shared.security import add_security_headers, check_production, docs_policy
from shared.wakeups import WaitingLimiter

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
METRICS_KEY = "pupil_records.metrics"
METRICS_COLLECTORS_KEY = "pupil_records.metrics_collectors"
WAITING_LIMITER_KEY = "pupil_records.waiting_limiter"
# prometheus-client's multiprocess mode stores metric values in this folder.
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
OPENAPI_VERSION = "3.0.3"
READINESS_RETRY_AFTER = 5
# Retry-After of a `min_position` read that found every waiting slot taken.
WAITING_FULL_RETRY_AFTER = 1
POLL_FIRST_SECONDS = 0.02
POLL_MAX_SECONDS = 0.05
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The WSGI environ key that carries the matched route template to the server.
ROUTE_ENVIRON_KEY = "pupil_records.route"


# flask-smorest ships no type hints, so mypy types its classes as Any.
class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]
    """A flask-smorest blueprint whose `arguments` apply the API's strict rules."""

    ARGUMENTS_PARSER = parser


class ProblemSchema(ma.Schema):
    """An error response (RFC 9457 problem details), used only in the docs."""

    type = ma.fields.String()
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        metadata={"description": "Messages by field path, e.g. order.date"},
    )


class Api(flask_smorest.Api):  # type: ignore[misc]
    """A flask-smorest Api that renders every error as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self) -> None:
        install_error_handlers(self._app)


class ApiJSONProvider(DefaultJSONProvider):
    """JSON with Cyrillic as is, keys in their given order, ISO dates."""

    ensure_ascii = False
    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        """Encode dates, timestamps, UUIDs and decimals that `json` cannot."""
        if isinstance(o, datetime):
            return iso_utc(o)
        if isinstance(o, date):
            return o.isoformat()
        if isinstance(o, uuid.UUID):
            return str(o)
        if isinstance(o, Decimal):
            return str(o)
        return DefaultJSONProvider.default(o)


def create_base_app(
    *,
    name: str,
    title: str,
    settings: Settings,
    readiness: Callable[[], str | None],
    access: AccessTable,
    token_store: TokenStore | None = None,
    throttle: FailedAuthThrottle | None = None,
) -> tuple[Flask, Api]:
    """Build a Flask app and its Api with the rules both services share.

    Raises `ConfigurationError` in production mode when a secret is missing
    or left at a default.
    """
    if settings.production:
        check_production(settings, access.service)
    app = Flask(name, static_folder=None)
    app.json = ApiJSONProvider(app)
    app.config.update(
        {
            SETTINGS_CONFIG_KEY: settings,
            "MAX_CONTENT_LENGTH": settings.max_body_bytes,
            "API_TITLE": title,
            "API_VERSION": "v1",
            "OPENAPI_VERSION": OPENAPI_VERSION,
            "OPENAPI_URL_PREFIX": API_PREFIX,
            "OPENAPI_JSON_PATH": "openapi.json",
            "API_SPEC_OPTIONS": {"security": [{BEARER_SCHEME_NAME: []}]},
        }
    )
    app.extensions[WAITING_LIMITER_KEY] = WaitingLimiter(
        settings.max_waiting_requests, settings.max_waiting_per_token
    )
    api = Api(app)
    _register_field_types(api)
    api.spec.components.security_scheme(
        BEARER_SCHEME_NAME, {"type": "http", "scheme": "bearer"}
    )
    _add_spec_plugin(api, AccessDocsPlugin(access, PURPOSE_HEADER))
    _install_request_hooks(app, settings)
    init_auth(
        app,
        token_store if token_store is not None else TokenStore(settings.tokens_file),
        rules=access,
        throttle=throttle,
    )
    app.before_request(_reject_undeclared_query)
    _register_service_routes(app, api, readiness)
    return app, api


def _add_spec_plugin(api: Api, plugin: Any) -> None:
    # Plugins run in order, so this one gets the paths flask-smorest built.
    plugin.init_spec(api.spec)
    api.spec.plugins.append(plugin)


def _register_field_types(api: Api) -> None:
    api.register_field(Text, "string", None)
    api.register_field(StrictDate, "string", "date")
    api.register_field(UtcTimestamp, "string", "date-time")
    api.register_field(UUIDField, "string", "uuid")
    api.register_field(Cursor, "string", None)
    api.register_field(SealedCursor, "string", None)


def _reject_undeclared_query() -> None:
    # A GET without a query schema would silently ignore unknown parameters
    # and `min_position`, which every GET must honour; reject them instead.
    if request.method not in ("GET", "HEAD") or not request.args:
        return
    route = access_route()
    if request.routing_exception is not None or route is None or route.public:
        return
    view = view_for_request()
    if view is None or _declares_query(view):
        return
    raise validation(
        {f"query.{name}": ["Unknown field."] for name in request.args},
        "This endpoint takes no query parameters.",
    )


def _declares_query(view: Any) -> bool:
    arguments = getattr(view, "_apidoc", {}).get("arguments", {})
    return any(
        parameter.get("in") in ("query", "querystring")
        for parameter in arguments.get("parameters", [])
    )


def add_metrics_collector(app: Flask, collector: Collector) -> None:
    """Export the metrics of `collector` at `/metrics` beside the request metrics.

    Use it for values every worker reads alike, such as rows in the database.
    """
    app.extensions[METRICS_COLLECTORS_KEY].append(collector)
    app.extensions[METRICS_KEY].register(collector)


def _scrape_registry(app: Flask) -> CollectorRegistry:
    registry: CollectorRegistry = app.extensions[METRICS_KEY]
    if not os.environ.get(MULTIPROCESS_DIR_VARIABLE):
        return registry
    # Each gunicorn worker writes its request metrics to files in this
    # folder, and a scrape adds up the files of every worker.
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    for collector in app.extensions[METRICS_COLLECTORS_KEY]:
        merged.register(collector)
    return merged


def _install_request_hooks(app: Flask, settings: Settings) -> None:
    registry = CollectorRegistry(auto_describe=True)
    requests_total = Counter(
        "http_requests_total",
        "HTTP requests answered",
        ["method", "route", "status"],
        registry=registry,
    )
    duration = Histogram(
        "http_request_duration_seconds",
        "Time to answer an HTTP request",
        ["method", "route"],
        registry=registry,
    )
    app.extensions[METRICS_KEY] = registry
    app.extensions[METRICS_COLLECTORS_KEY] = []

    @app.before_request
    def _start_request() -> None:
        g.started_at = time.perf_counter()
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        if _CLIENT_REQUEST_ID.fullmatch(supplied):
            g.request_id = supplied

    @app.after_request
    def _finish_request(response: Response) -> Response:
        add_security_headers(request, response, settings.cors_origins)
        response.headers[REQUEST_ID_HEADER] = request_id()
        # Label by route template, never by path: paths hold pupil ids.
        route = request.url_rule.rule if request.url_rule else "unmatched"
        # gunicorn's access log prints this in place of the path and query.
        request.environ[ROUTE_ENVIRON_KEY] = route
        requests_total.labels(request.method, route, str(response.status_code)).inc()
        started = g.get("started_at")
        if started is not None:
            duration.labels(request.method, route).observe(
                time.perf_counter() - started
            )
        return response


def _register_service_routes(
    app: Flask, api: Api, readiness: Callable[[], str | None]
) -> None:
    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        reason = _readiness_reason(readiness)
        if reason is not None:
            raise unavailable(f"Not ready: {reason}", READINESS_RETRY_AFTER)
        return {"status": "ready"}

    @app.get("/metrics")
    def metrics() -> Response:
        # NOTE: without PROMETHEUS_MULTIPROC_DIR each gunicorn worker counts
        # its own requests, so a scrape returns the counts of whichever
        # worker served it. `pupil-records run` sets the variable.
        registry = _scrape_registry(current_app)
        # CONTENT_TYPE_LATEST names its charset already, and `mimetype` would
        # append a second one.
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    @app.get(f"{API_PREFIX}/docs")
    def docs() -> Response:
        page = render_docs_page(api.spec.to_dict())
        response = Response(page, mimetype="text/html")
        response.headers["Content-Security-Policy"] = docs_policy(DOCS_STYLE_HASH)
        return response


def _readiness_reason(readiness: Callable[[], str | None]) -> str | None:
    try:
        return readiness()
    except Exception:
        logger.exception("readiness check failed (request id %s)", request_id())
        return "the readiness check failed; see the service log"


def waiting_limiter(app: Flask | None = None) -> WaitingLimiter:
    """Return the cap on waiting requests of `app` (default: the current app)."""
    target = app if app is not None else current_app
    limiter: WaitingLimiter = target.extensions[WAITING_LIMITER_KEY]
    return limiter


@contextmanager
def waiting_slot() -> Iterator[bool]:
    """Hold a waiting slot for the current request; yield whether one was granted.

    Slots are counted per token, or per remote address for a request
    without a principal.
    """
    principal = g.get("principal")
    if principal is not None:
        client = f"token:{principal.token_id}"
    else:
        client = f"address:{request.remote_addr}"
    with waiting_limiter().slot(client) as granted:
        yield granted


def wait_for_position(
    read_position: Callable[[], int],
    target: int,
    timeout: float,
    slot: AbstractContextManager[bool] | None = None,
) -> int:
    """Poll `read_position` until it reaches `target`; 503 after `timeout` s.

    A position not reached at the first read is waited for only inside
    `slot` (such as `waiting_slot()`), and a slot that is not granted gives
    503 at once. Without `slot` the wait is not limited.
    """
    position = read_position()
    if position >= target:
        return position
    with slot if slot is not None else nullcontext(True) as granted:
        if not granted:
            raise unavailable(
                f"The read model has not reached position {target} (it is at "
                f"{position}), and too many requests are waiting already; "
                "retry later.",
                retry_after=WAITING_FULL_RETRY_AFTER,
            )
        return _poll_position(read_position, target, timeout)


def _poll_position(
    read_position: Callable[[], int], target: int, timeout: float
) -> int:
    deadline = time.monotonic() + timeout
    interval = POLL_FIRST_SECONDS
    while True:
        position = read_position()
        if position >= target:
            return position
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise unavailable(
                f"The read model has not reached position {target} within "
                f"{timeout:g} s (it is at {position}); retry later.",
                retry_after=1,
            )
        time.sleep(min(interval, remaining))
        interval = POLL_MAX_SECONDS


def ensure_min_position(
    read_position: Callable[[], int],
    min_position: int | None,
    *,
    head_position: Callable[[], int] | None = None,
) -> None:
    """Wait for `min_position` (if given) within the configured timeout.

    `head_position` returns the head of the log that positions come from. A
    `min_position` beyond it gets a 503 at once, because every
    position a client holds was returned for an event already in that log.
    The wait takes a waiting slot of the request's token (see `waiting_slot`).
    """
    if min_position is None:
        return
    if head_position is not None:
        reject_position_beyond_head(min_position, head_position())
    settings: Settings = current_app.config[SETTINGS_CONFIG_KEY]
    wait_for_position(
        read_position, min_position, settings.min_position_timeout, waiting_slot()
    )


def reject_position_beyond_head(min_position: int, head: int) -> None:
    """Raise a 503 problem at once when `min_position` is beyond the log head.

    No read model can reach a position the log does not contain, so waiting
    the full timeout would only delay the same 503.
    """
    if min_position <= head:
        return
    raise Problem(
        503,
        f"min_position={min_position} is beyond the head of the records log, "
        f"position {head}, so no read model has reached it. Pass a position "
        "returned by the records service.",
        headers={"Retry-After": retry_after_seconds(1)},
        head_position=head,
    )


_DOCS_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:70rem;
padding:0 1rem;color:#1d1d1f}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ccc;margin-top:2rem}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.method{display:inline-block;min-width:4.5rem;font-weight:bold;color:#fff;
text-align:center;border-radius:4px;padding:.1rem .3rem;margin-right:.5rem}
.get{background:#2b7bb9}.post{background:#2f9e44}.put,.patch{background:#e67700}
.delete{background:#c92a2a}.head,.options{background:#666}
code,pre{background:#f4f4f4;border-radius:3px;padding:.1rem .3rem}
pre{padding:.6rem;overflow:auto}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}
.roles{color:#555}
"""
# The page's content security policy allows exactly this inline style.
DOCS_STYLE_HASH = "sha256-" + base64.b64encode(
    hashlib.sha256(_DOCS_STYLE.encode("utf-8")).digest()
).decode("ascii")


def render_docs_page(spec: dict[str, Any]) -> str:
    """Render an OpenAPI document as one self-contained HTML page."""
    info = spec.get("info", {})
    title = html.escape(str(info.get("title", "API")))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{title}</title><style>{_DOCS_STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
        f"<p>Version {html.escape(str(info.get('version', '')))}. Machine-readable "
        f"document: <a href='{API_PREFIX}/openapi.json'>openapi.json</a>. "
        "Send <code>Authorization: Bearer &lt;token&gt;</code> with every "
        "request to the API. Errors are <code>application/problem+json</code>.</p>",
        "<h2>Operations</h2>",
    ]
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            if isinstance(operation, dict) and method != "parameters":
                parts.append(_render_operation(path, method, operation))
    parts.append("<h2>Schemas</h2>")
    schemas = spec.get("components", {}).get("schemas", {})
    for schema_name, schema in schemas.items():
        parts.append(_render_schema(schema_name, schema))
    parts.append("</body></html>")
    return "\n".join(parts)


def _render_operation(path: str, method: str, operation: dict[str, Any]) -> str:
    rows = [
        f"<div class='op' id='{html.escape(operation.get('operationId', ''))}'>",
        f"<span class='method {html.escape(method)}'>{html.escape(method.upper())}"
        f"</span><code>{html.escape(path)}</code>",
    ]
    summary = operation.get("summary") or operation.get("description")
    if summary:
        rows.append(f"<p>{html.escape(str(summary))}</p>")
    roles = operation.get("x-roles")
    if roles:
        rows.append(f"<p class='roles'>Roles: {html.escape(', '.join(roles))}</p>")
    if operation.get("x-personal-data"):
        rows.append(
            "<p class='roles'>Reads personal data: an inspector must send "
            "<code>X-Purpose</code> (percent-encoded UTF-8).</p>"
        )

    rows.extend(_render_parameters(operation.get("parameters") or []))
    body = operation.get("requestBody", {}).get("content", {})
    for content_type, content in body.items():
        rows.append(
            f"<p>Body ({html.escape(content_type)}): "
            f"{_schema_text(content.get('schema', {}))}</p>"
        )

    responses = operation.get("responses", {})
    if responses:
        codes = ", ".join(html.escape(str(code)) for code in responses)
        rows.append(f"<p>Responses: {codes}</p>")
    rows.append("</div>")
    return "\n".join(rows)


def _render_parameters(parameters: list[dict[str, Any]]) -> list[str]:
    if not parameters:
        return []
    rows = ["<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>"]
    for parameter in parameters:
        rows.append(
            f"<tr><td>{html.escape(str(parameter.get('name', '')))}</td>"
            f"<td>{html.escape(str(parameter.get('in', '')))}</td>"
            f"<td>{_schema_text(parameter.get('schema', {}))}</td></tr>"
        )
    rows.append("</table>")
    return rows


def _render_schema(name: str, schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = [
        f"<h3 id='schema-{html.escape(name)}'>{html.escape(name)}</h3>",
        "<table><tr><th>field</th><th>type</th><th>required</th></tr>",
    ]
    for field_name, field in schema.get("properties", {}).items():
        mark = "yes" if field_name in required else ""
        rows.append(
            f"<tr><td>{html.escape(field_name)}</td><td>{_schema_text(field)}</td>"
            f"<td>{mark}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _schema_text(schema: dict[str, Any]) -> str:
    reference = schema.get("$ref")
    if isinstance(reference, str):
        target = reference.rsplit("/", 1)[-1]
        return f"<a href='#schema-{html.escape(target)}'>{html.escape(target)}</a>"
    kind = schema.get("type", "")
    if kind == "array":
        return f"array of {_schema_text(schema.get('items', {}))}"
    details = [str(kind)] if kind else []
    for key in ("format", "enum", "minimum", "maximum", "maxLength", "default"):
        if schema.get(key) is not None:
            details.append(f"{key}={schema[key]}")
    return html.escape(" ".join(details)) or "any"
