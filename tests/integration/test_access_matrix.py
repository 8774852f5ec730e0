"""The role matrix against both running apps: every route, every role, no token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services.archive.web import create_app as create_archive_app
from services.archive.web.runtime import EXTENSION_KEY as ARCHIVE_RUNTIME
from services.records.web import create_app as create_records_app
from services.records.web.access import get_access_log_runtime
from services.records.web.runtime import get_runtime
from shared.access import ROLES, AccessTable, template_from_rule, template_shape
from shared.auth import TokenStore
from shared.config import Settings
from tests.sql_backends import SQL_BACKEND_PARAMS, fresh_url

CALLERS: tuple[str | None, ...] = (*ROLES, None)
PURPOSE = quote("плановая проверка")
AUTOMATIC_METHODS = {"HEAD", "OPTIONS"}


@dataclass
class Service:
    name: str
    app: Flask
    client: FlaskClient
    table: AccessTable


@dataclass
class Services:
    records: Service
    archive: Service
    tokens: dict[str, str]

    def each(self) -> tuple[Service, Service]:
        return (self.records, self.archive)


@pytest.fixture(scope="module", params=SQL_BACKEND_PARAMS)
def services(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Services]:
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"matrix-{backend}")
    records_url = fresh_url(request, backend, folder, "records")
    archive_url = fresh_url(request, backend, folder, "archive")
    settings = Settings.from_env(
        {
            "RECORDS_DATABASE_URL": records_url,
            "ARCHIVE_DATABASE_URL": archive_url,
            "PUPIL_RECORDS_MIN_POSITION_TIMEOUT": "0.2",
        },
        data_dir=folder,
    )
    store = TokenStore(settings.tokens_file)
    tokens = {role: store.issue(role, f"Сотрудник ({role})") for role in ROLES}
    records_app = create_records_app(settings)
    archive_app = create_archive_app(settings)
    yield Services(
        records=_service("records", records_app),
        archive=_service("archive", archive_app),
        tokens=tokens,
    )
    get_runtime(records_app).close()
    get_access_log_runtime(records_app).close()
    archive_app.extensions[ARCHIVE_RUNTIME].close()


def _service(name: str, app: Flask) -> Service:
    return Service(name, app, app.test_client(), AccessTable.for_service(name))


def headers(services: Services, role: str | None, purpose: str | None) -> dict:
    sent = {}
    if role is not None:
        sent["Authorization"] = f"Bearer {services.tokens[role]}"
    if purpose is not None:
        sent["X-Purpose"] = purpose
    return sent


def concrete(path: str) -> str:
    """Fill every `{parameter}` of an OpenAPI path with a fresh UUID."""
    parts = [
        str(uuid.uuid4()) if part.startswith("{") else part for part in path.split("/")
    ]
    return "/".join(parts)


def call(service: Service, method: str, path: str, sent: dict) -> Any:
    if method == "post":
        return service.client.post(path, json={}, headers=sent)
    return service.client.open(path, method=method.upper(), headers=sent)


def operations(service: Service) -> list[tuple[str, str, dict[str, Any]]]:
    spec = service.client.get("/api/v1/openapi.json").get_json()
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def route_keys(app: Flask) -> set[tuple[str, str]]:
    """Return every method and path template the app routes, as the table has them."""
    return {
        (method, template_from_rule(rule.rule))
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
        if method not in AUTOMATIC_METHODS
    }


def missing_from_table(app: Flask, table: AccessTable) -> list[str]:
    """Return the routes of `app` that the role matrix does not list."""
    return sorted(
        f"{method} {path}"
        for method, path in route_keys(app)
        if table.find(method, path) is None
    )


# Every route with every caller


@pytest.mark.parametrize("name", ["records", "archive"])
def test_every_route_allows_exactly_table_roles(services: Services, name: str):
    service = getattr(services, name)
    mismatches = []
    for path, method, _operation in operations(service):
        route = service.table.find(method, path)
        assert route is not None, f"{method.upper()} {path} is not in the matrix"
        for role in CALLERS:
            response = call(
                service, method, concrete(path), headers(services, role, PURPOSE)
            )
            denied = response.status_code in (401, 403)
            if denied == route.allows(role):
                mismatches.append(
                    f"{method.upper()} {path} as {role or 'no token'}: "
                    f"{response.status_code}"
                )
    assert mismatches == []


@pytest.mark.parametrize("name", ["records", "archive"])
def test_denials_are_401_without_token_and_403_with_role(services: Services, name):
    service = getattr(services, name)
    for path, method, _operation in operations(service):
        route = service.table.find(method, path)
        assert route is not None
        no_token = call(service, method, concrete(path), {})
        assert no_token.status_code == 401, f"{method} {path}"
        for role in ROLES:
            if not route.allows(role):
                response = call(
                    service, method, concrete(path), headers(services, role, None)
                )
                assert response.status_code == 403, f"{method} {path} as {role}"


def test_inspector_needs_purpose_on_personal_data(services: Services):
    table = services.records.table
    reads = [
        path
        for path, method, _operation in operations(services.records)
        if (route := table.find(method, path)) is not None and route.personal_data
    ]
    assert len(reads) >= 5, reads
    client = services.records.client
    for read in reads:
        path = concrete(read)
        without = client.get(path, headers=headers(services, "inspector", None))
        blank = client.get(path, headers=headers(services, "inspector", "%20%20"))
        given = client.get(path, headers=headers(services, "inspector", PURPOSE))

        assert without.status_code == 403, read
        assert "X-Purpose" in without.get_json()["detail"]
        assert blank.status_code == 403, read
        assert given.status_code not in (401, 403), read


def test_purpose_optional_for_staff_on_personal_data(services: Services):
    response = services.records.client.get(
        "/api/v1/pupils", headers=headers(services, "methodist", None)
    )

    assert response.status_code == 200


def test_options_answers_without_token(services: Services):
    response = services.records.client.options("/api/v1/pupils")

    assert response.status_code == 200
    assert "GET" in response.headers["Allow"]


# The table, the apps and the documents agree


@pytest.mark.parametrize("name", ["records", "archive"])
def test_every_app_route_is_in_table(services: Services, name: str):
    service = getattr(services, name)

    assert missing_from_table(service.app, service.table) == []


@pytest.mark.parametrize("name", ["records", "archive"])
def test_every_table_route_exists_in_app(services: Services, name: str):
    service = getattr(services, name)
    routed = {
        (method, template_shape(path)) for method, path in route_keys(service.app)
    }
    unrouted = [
        f"{route.method} {route.path}"
        for route in service.table.routes
        if (route.method, template_shape(route.path)) not in routed
    ]

    assert unrouted == []


@pytest.mark.parametrize("name", ["records", "archive"])
def test_openapi_roles_come_from_table(services: Services, name: str):
    service = getattr(services, name)
    for path, method, operation in operations(service):
        route = service.table.find(method, path)
        assert route is not None
        assert operation["x-roles"] == sorted(route.roles), f"{method} {path}"
        assert operation.get("x-personal-data", False) == route.personal_data
        purpose_documented = any(
            parameter.get("name") == "X-Purpose"
            for parameter in operation.get("parameters", [])
        )
        assert purpose_documented == route.personal_data, f"{method} {path}"


def test_route_missing_from_table_is_refused(tmp_path: Path):
    settings = Settings.from_env(
        {"RECORDS_DATABASE_URL": "memory://"}, data_dir=tmp_path
    )
    app = create_records_app(settings)
    app.add_url_rule("/api/v1/unlisted", "unlisted", lambda: {"reached": True})
    admin = TokenStore(settings.tokens_file).issue("admin", "Администратор")
    client = app.test_client()

    assert missing_from_table(app, AccessTable.for_service("records")) == [
        "GET /api/v1/unlisted"
    ]
    assert client.get("/api/v1/unlisted").status_code == 401
    response = client.get(
        "/api/v1/unlisted", headers={"Authorization": f"Bearer {admin}"}
    )
    assert response.status_code == 403
    assert "reached" not in response.get_data(as_text=True)
