"""The role matrix: who may call each route of both services.

`ROUTES` is the one table of access rules. Each entry names the service, the
HTTP method and the path template (OpenAPI style, `{name}` for a path
parameter), the roles that may call it, and whether its response contains
pupils' personal data. `shared.auth` enforces the table before any view runs, the
OpenAPI documents show it as `x-roles`, and `docs/roles.md` is rendered from
it (`python -m shared.access > docs/roles.md`).

A route that is not in the table is refused (403) for every caller. `OPTIONS`
needs no token on any route: it returns only the `Allow` header, which a 405
reveals before authentication anyway. `HEAD` follows the rule of `GET`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from apispec import BasePlugin

ROLES: tuple[str, ...] = (
    "registrar",
    "specialist",
    "methodist",
    "archivist",
    "inspector",
    "subscriber",
    "admin",
)
STAFF: tuple[str, ...] = tuple(role for role in ROLES if role != "subscriber")
SERVICES: tuple[str, ...] = ("records", "archive")

# Where a personal-data response lists its pupils: `path.NAME` is a path
# parameter. Anything else is a dotted path into the JSON body, and lists on
# that path are walked element by element.
PATH_PREFIX = "path."

_FLASK_PARAMETER = re.compile(r"<(?:[^<>:]+:)?([^<>:]+)>")
_TEMPLATE_PARAMETER = re.compile(r"\{[^{}]+\}")


class AccessTableError(ValueError):
    """An entry of the role matrix is invalid."""


@dataclass(frozen=True)
class Route:
    """One row of the role matrix.

    `roles` is empty for a public route. `pupils` locates the pupil ids in a
    personal-data response (see `PATH_PREFIX`), and it is set exactly when
    `personal_data` is.
    """

    service: str
    method: str
    path: str
    roles: frozenset[str] = field(default_factory=frozenset)
    public: bool = False
    personal_data: bool = False
    pupils: str | None = None

    def __post_init__(self) -> None:
        if self.service not in SERVICES:
            raise AccessTableError(f"unknown service {self.service!r}")
        unknown = sorted(set(self.roles) - set(ROLES))
        if unknown:
            raise AccessTableError(
                f"{self.method} {self.path}: unknown roles {unknown}"
            )
        if self.public == bool(self.roles):
            raise AccessTableError(
                f"{self.method} {self.path}: a route is either public or has roles"
            )
        if self.public and self.personal_data:
            raise AccessTableError(
                f"{self.method} {self.path}: personal data are never public"
            )
        if self.personal_data != (self.pupils is not None):
            raise AccessTableError(
                f"{self.method} {self.path}: a personal-data read must say where "
                "its answer names the pupils, and only such a read may"
            )

    @property
    def key(self) -> tuple[str, str, str]:
        """The lookup key: service, method and the path with unnamed parameters."""
        return (self.service, self.method, template_shape(self.path))

    def allows(self, role: str | None) -> bool:
        """Tell whether a caller with `role` (None: no token) may call the route."""
        if self.public:
            return True
        return role is not None and role in self.roles

    def pupil_ids(self, path_values: Mapping[str, Any], body: Any) -> list[str]:
        """Return the ids of the pupils in a response of this route, in order."""
        if self.pupils is None:
            return []
        if self.pupils.startswith(PATH_PREFIX):
            value = path_values.get(self.pupils.removeprefix(PATH_PREFIX))
            values: Iterable[Any] = [] if value is None else [value]
        else:
            values = _walk(body, self.pupils.split("."))
        return _unique_ids(values)


def _walk(document: Any, keys: list[str]) -> Iterator[Any]:
    if isinstance(document, list):
        for element in document:
            yield from _walk(element, keys)
        return
    if not keys:
        yield document
        return
    if isinstance(document, dict) and keys[0] in document:
        yield from _walk(document[keys[0]], keys[1:])


def _unique_ids(values: Iterable[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and value:
            seen.setdefault(value.lower(), None)
    return list(seen)


def template_from_rule(rule: str) -> str:
    """Return a Flask rule as an OpenAPI path template: `<id:x>` becomes `{x}`."""
    return _FLASK_PARAMETER.sub(r"{\1}", rule)


def template_shape(path: str) -> str:
    """Return a path template with its parameter names removed, for matching."""
    return _TEMPLATE_PARAMETER.sub("{}", template_from_rule(path))


def _route(
    service: str,
    method: str,
    path: str,
    roles: Iterable[str],
    *,
    pupils: str | None = None,
) -> Route:
    return Route(
        service,
        method,
        path,
        roles=frozenset(roles),
        personal_data=pupils is not None,
        pupils=pupils,
    )


def _public(service: str, path: str) -> Route:
    return Route(service, "GET", path, public=True)


PUBLIC_PATHS: tuple[str, ...] = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/v1/openapi.json",
    "/api/v1/docs",
)
FILE_READERS = ("methodist", "registrar", "inspector")
HISTORY_READERS = ("methodist", "inspector")
JOURNAL_READERS = ("specialist", "methodist", "inspector")
FEED_READERS = ("subscriber", "archivist", "admin")
ACCESS_LOG_READERS = ("admin", "inspector")
DESTRUCTION_RECORD_READERS = ("archivist", "inspector")
RETENTION_READERS = ("archivist", "inspector")
STATUS_READERS = ("archivist", "admin")

_PUPIL = "/api/v1/pupils/{pupil_id}"

ROUTES: tuple[Route, ...] = (
    *(_public(service, path) for service in SERVICES for path in PUBLIC_PATHS),
    # Records service
    _route("records", "POST", "/api/v1/programmes", ["admin"]),
    _route("records", "GET", "/api/v1/programmes", STAFF),
    _route("records", "GET", "/api/v1/programmes/{programme_id}", STAFF),
    _route("records", "POST", "/api/v1/pupils", ["registrar"]),
    _route("records", "GET", "/api/v1/pupils", FILE_READERS, pupils="items.id"),
    _route("records", "GET", _PUPIL, FILE_READERS, pupils="path.pupil_id"),
    _route(
        "records", "GET", f"{_PUPIL}/history", HISTORY_READERS, pupils="path.pupil_id"
    ),
    _route("records", "POST", f"{_PUPIL}/enrolments", ["registrar"]),
    _route(
        "records",
        "POST",
        f"{_PUPIL}/enrolments/{{enrolment_id}}/cancellation",
        ["registrar"],
    ),
    _route("records", "POST", f"{_PUPIL}/transfers", ["registrar"]),
    _route("records", "POST", f"{_PUPIL}/expulsions", ["registrar"]),
    _route(
        "records",
        "POST",
        f"{_PUPIL}/expulsions/{{expulsion_id}}/cancellation",
        ["registrar"],
    ),
    _route("records", "POST", f"{_PUPIL}/attestations", ["methodist"]),
    _route(
        "records",
        "POST",
        f"{_PUPIL}/attestations/{{attestation_id}}/corrections",
        ["methodist"],
    ),
    _route("records", "POST", f"{_PUPIL}/personal-data-destruction", ["archivist"]),
    _route(
        "records",
        "GET",
        f"{_PUPIL}/destruction-record",
        DESTRUCTION_RECORD_READERS,
        pupils="path.pupil_id",
    ),
    _route("records", "POST", "/api/v1/journals", ["specialist"]),
    _route(
        "records",
        "GET",
        "/api/v1/journals/{journal_id}",
        JOURNAL_READERS,
        pupils="sessions.attendance.pupil_id",
    ),
    _route("records", "POST", "/api/v1/journals/{journal_id}/sessions", ["specialist"]),
    _route("records", "POST", "/api/v1/journals/{journal_id}/closure", ["specialist"]),
    _route("records", "GET", "/api/v1/events", FEED_READERS),
    _route(
        "records",
        "GET",
        "/api/v1/access-log",
        ACCESS_LOG_READERS,
        pupils="items.pupil_ids",
    ),
    # Archive service
    _route(
        "archive",
        "GET",
        "/api/v1/retention/personal-files/{pupil_id}",
        RETENTION_READERS,
    ),
    _route(
        "archive", "GET", "/api/v1/retention/journals/{journal_id}", RETENTION_READERS
    ),
    _route("archive", "GET", "/api/v1/retention", RETENTION_READERS),
    _route("archive", "GET", "/api/v1/schedule", RETENTION_READERS),
    _route("archive", "GET", "/api/v1/status", STATUS_READERS),
)


class AccessTable:
    """The rules of one service, looked up by method and route."""

    def __init__(self, routes: Iterable[Route], service: str | None = None) -> None:
        self.routes = tuple(routes)
        self.service = service
        self._by_key: dict[tuple[str, str], Route] = {}
        for route in self.routes:
            service, method, shape = route.key
            if (method, shape) in self._by_key:
                raise AccessTableError(
                    f"{service}: {method} {route.path} is listed twice"
                )
            self._by_key[(method, shape)] = route

    @classmethod
    def for_service(cls, service: str) -> AccessTable:
        """Return the rules of `service` from `ROUTES`."""
        if service not in SERVICES:
            raise AccessTableError(
                f"unknown service {service!r}; expected one of {', '.join(SERVICES)}"
            )
        return cls((route for route in ROUTES if route.service == service), service)

    def find(self, method: str, rule: str) -> Route | None:
        """Return the rule for `method` on the Flask or OpenAPI route `rule`."""
        lookup = "GET" if method.upper() == "HEAD" else method.upper()
        return self._by_key.get((lookup, template_shape(rule)))


def render_markdown(routes: Iterable[Route] = ROUTES) -> str:
    """Render the role matrix as the Markdown page `docs/roles.md`."""
    lines = [
        "# Roles",
        "",
        "Generated from `shared/access.py` by `python -m shared.access`; edit the",
        "table there, not this page. A test fails when the page is out of date.",
        "",
        "`yes` marks who may call a route; `no token` means a request without a",
        "bearer token. A personal-data read is recorded in the access log, and an",
        "`inspector` must give its purpose in the `X-Purpose` header. `HEAD`",
        "follows `GET`, and `OPTIONS` needs no token. Any route missing from the",
        "table is refused for everyone.",
    ]
    for service in SERVICES:
        lines += ["", f"## {service.capitalize()} service", ""]
        header = ["method", "path", *ROLES, "no token", "personal data"]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for route in routes:
            if route.service == service:
                lines.append(_markdown_row(route))
    return "\n".join(lines) + "\n"


def _markdown_row(route: Route) -> str:
    cells = [route.method, f"`{route.path}`"]
    cells += ["yes" if route.allows(role) else "" for role in ROLES]
    cells.append("yes" if route.public else "")
    cells.append("yes" if route.personal_data else "")
    return "| " + " | ".join(cells) + " |"


class AccessDocsPlugin(BasePlugin):  # type: ignore[misc]
    """Writes each operation's roles from the table into the OpenAPI document.

    Adds `x-roles`, and for personal-data reads `x-personal-data` and the
    `X-Purpose` header parameter. Register it after flask-smorest's own
    plugin, which turns Flask rules into paths.
    """

    def __init__(self, table: AccessTable, purpose_header: str) -> None:
        self.table = table
        self.purpose_header = purpose_header

    def operation_helper(
        self,
        path: str | None = None,
        operations: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Annotate the operations of one path with their access rules."""
        rule = kwargs.get("rule")
        template = rule.rule if rule is not None else path or ""
        for method, operation in (operations or {}).items():
            if isinstance(operation, dict):
                route = self.table.find(method, template)
                self._annotate(operation, route)

    def _annotate(self, operation: dict[str, Any], route: Route | None) -> None:
        if route is None:
            operation["x-roles"] = []
            operation["description"] = "Not in the role matrix: refused for everyone."
            return
        if route.public:
            operation["security"] = []
            operation["x-roles"] = []
            return
        operation["x-roles"] = sorted(route.roles)
        if route.personal_data:
            operation["x-personal-data"] = True
            operation.setdefault("parameters", []).append(self._purpose_parameter())

    def _purpose_parameter(self) -> dict[str, Any]:
        return {
            "name": self.purpose_header,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Purpose of this read of personal data, percent-encoded "
            "UTF-8; required for the inspector role.",
        }


if __name__ == "__main__":
    print(render_markdown(), end="")
