"""Security headers, CORS, body limits and production mode of both web apps."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services.archive.web import create_app as create_archive_app
from services.archive.web.runtime import EXTENSION_KEY as ARCHIVE_RUNTIME
from services.records.web import create_app as create_records_app
from services.records.web.access import get_access_log_runtime
from services.records.web.runtime import get_runtime
from shared.auth import TokenStore
from shared.config import ConfigurationError, Settings
from tests.sql_backends import SQL_BACKEND_PARAMS, fresh_url

MAX_BODY = 4096
ORIGIN = "https://portal.example.org"


@dataclass
class Apps:
    records: FlaskClient
    archive: FlaskClient
    tokens: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def build_settings(folder: Path, records_url: str, archive_url: str, **env) -> Settings:
    return Settings.from_env(
        {
            "RECORDS_DATABASE_URL": records_url,
            "ARCHIVE_DATABASE_URL": archive_url,
            "PUPIL_RECORDS_MAX_BODY_BYTES": str(MAX_BODY),
            **env,
        },
        data_dir=folder,
    )


def close(records_app: Flask, archive_app: Flask) -> None:
    get_runtime(records_app).close()
    get_access_log_runtime(records_app).close()
    archive_app.extensions[ARCHIVE_RUNTIME].close()


@pytest.fixture(scope="module", params=SQL_BACKEND_PARAMS)
def apps(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Apps]:
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"hardening-{backend}")
    settings = build_settings(
        folder,
        fresh_url(request, backend, folder, "records"),
        fresh_url(request, backend, folder, "archive"),
    )
    store = TokenStore(settings.tokens_file)
    tokens = {role: store.issue(role, "Сотрудник") for role in ("registrar", "admin")}
    records_app = create_records_app(settings)
    archive_app = create_archive_app(settings)
    yield Apps(records_app.test_client(), archive_app.test_client(), tokens)
    close(records_app, archive_app)


@pytest.fixture
def cors_apps(tmp_path: Path) -> Iterator[Apps]:
    settings = build_settings(
        tmp_path,
        fresh_url_sqlite(tmp_path, "records"),
        fresh_url_sqlite(tmp_path, "archive"),
        PUPIL_RECORDS_CORS_ORIGINS=f"{ORIGIN},http://127.0.0.1:5173",
    )
    store = TokenStore(settings.tokens_file)
    tokens = {"registrar": store.issue("registrar", "Сотрудник")}
    records_app = create_records_app(settings)
    archive_app = create_archive_app(settings)
    yield Apps(records_app.test_client(), archive_app.test_client(), tokens)
    close(records_app, archive_app)


def fresh_url_sqlite(folder: Path, name: str) -> str:
    return f"sqlite:///{folder / f'{name}.sqlite'}"


def nested(depth: int) -> str:
    """Return a JSON object whose innermost array is at `depth` levels."""
    return '{"a":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


def assert_hardened(response, *, api: bool) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    if api:
        assert response.headers["Cache-Control"] == "no-store"
    for name in response.headers.keys():
        assert not name.lower().startswith("access-control-"), name


# Headers on every response


def test_headers_on_successes_and_errors(apps: Apps):
    registrar = apps.auth("registrar")
    too_large = json.dumps({"surname": "Ж" * MAX_BODY})
    api_responses = [
        apps.records.get("/api/v1/pupils", headers=registrar),
        apps.records.get("/api/v1/pupils"),
        apps.records.get("/api/v1/pupils", headers=apps.auth("admin")),
        apps.records.get("/api/v1/unknown"),
        apps.records.delete("/api/v1/pupils", headers=registrar),
        apps.records.post(
            "/api/v1/pupils",
            data=too_large,
            content_type="application/json",
            headers=registrar,
        ),
        apps.records.post(
            "/api/v1/pupils",
            data=nested(40),
            content_type="application/json",
            headers=registrar,
        ),
        apps.records.get("/api/v1/openapi.json"),
        apps.archive.get("/api/v1/retention", headers=apps.auth("registrar")),
        apps.archive.get("/api/v1/schedule"),
    ]
    statuses = [response.status_code for response in api_responses]

    assert statuses == [200, 401, 403, 404, 405, 413, 400, 200, 403, 401]
    for response in api_responses:
        assert_hardened(response, api=True)


def test_headers_on_health_and_metrics(apps: Apps):
    for client in (apps.records, apps.archive):
        for path in ("/healthz", "/readyz", "/metrics"):
            response = client.get(path)
            assert response.status_code in (200, 503), path
            assert_hardened(response, api=False)


def test_docs_page_allows_only_its_own_style(apps: Apps):
    for client in (apps.records, apps.archive):
        response = client.get("/api/v1/docs")
        page = response.get_data(as_text=True)
        policy = response.headers["Content-Security-Policy"]
        [style] = re.findall(r"<style>(.*?)</style>", page, flags=re.S)
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()

        assert response.mimetype == "text/html"
        assert "default-src 'none'" in policy
        assert f"style-src 'sha256-{digest}'" in policy
        assert "unsafe-inline" not in policy
        assert "<script" not in page
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


# Body limits


def test_body_over_limit_is_413_before_reading(apps: Apps):
    response = apps.records.post(
        "/api/v1/pupils",
        data=b"{" + b" " * (MAX_BODY + 10) + b"}",
        content_type="application/json",
        headers=apps.auth("registrar"),
    )

    assert response.status_code == 413
    assert str(MAX_BODY) in response.get_json()["detail"]


@pytest.mark.parametrize("depth", [33, 2000])
def test_deep_json_is_400(apps: Apps, depth: int):
    body = nested(depth)
    assert len(body) < MAX_BODY
    response = apps.records.post(
        "/api/v1/pupils",
        data=body,
        content_type="application/json",
        headers=apps.auth("registrar"),
    )

    assert response.status_code == 400
    assert "deeper than 32" in response.get_json()["detail"]


def test_compressed_body_is_415_problem(apps: Apps):
    body = gzip.compress(json.dumps({"surname": "Иванов"}).encode())
    response = apps.records.post(
        "/api/v1/pupils",
        data=body,
        content_type="application/json",
        headers={**apps.auth("registrar"), "Content-Encoding": "gzip"},
    )

    assert response.status_code == 415
    assert response.mimetype == "application/problem+json"
    assert "Content codings are not accepted" in response.get_json()["detail"]
    assert response.headers["Accept-Encoding"] == "identity"


# CORS


def test_no_cors_headers_unless_configured(apps: Apps):
    simple = apps.records.get(
        "/api/v1/pupils", headers={**apps.auth("registrar"), "Origin": ORIGIN}
    )
    preflight = apps.records.options(
        "/api/v1/pupils",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"},
    )

    assert simple.status_code == 200
    assert_hardened(simple, api=True)
    assert_hardened(preflight, api=True)
    assert "Origin" not in simple.headers.get("Vary", "")


def test_cors_allows_configured_origin(cors_apps: Apps):
    response = cors_apps.records.get(
        "/api/v1/pupils", headers={**cors_apps.auth("registrar"), "Origin": ORIGIN}
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-Id" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_cors_ignores_other_origins(cors_apps: Apps):
    response = cors_apps.records.get(
        "/api/v1/pupils",
        headers={**cors_apps.auth("registrar"), "Origin": "https://evil.example"},
    )

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.headers["Vary"]


def test_cors_preflight_needs_no_token(cors_apps: Apps):
    response = cors_apps.archive.options(
        "/api/v1/retention",
        headers={
            "Origin": "http://127.0.0.1:5173",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, x-purpose",
        },
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5173"
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"]
    assert "Authorization" in allowed
    assert "X-Purpose" in allowed
    assert response.headers["Access-Control-Max-Age"] == "600"


# Production mode


def test_production_with_defaults_refuses_to_start(tmp_path: Path):
    settings = Settings.from_env({"PUPIL_RECORDS_ENV": "production"}, data_dir=tmp_path)

    for factory in (create_records_app, create_archive_app):
        with pytest.raises(ConfigurationError, match="production mode"):
            factory(settings)


def test_production_with_private_secrets_starts(tmp_path: Path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    TokenStore(folder / "tokens.json").issue("admin", "Администратор")
    key = base64.b64encode(os.urandom(32)).decode()
    settings = build_settings(
        folder,
        fresh_url_sqlite(folder, "records"),
        fresh_url_sqlite(folder, "archive"),
        PUPIL_RECORDS_ENV="production",
        PUPIL_RECORDS_MASTER_KEY=key,
    )

    records_app = create_records_app(settings)
    archive_app = create_archive_app(settings)

    assert records_app.test_client().get("/healthz").status_code == 200
    assert archive_app.test_client().get("/healthz").status_code == 200
    close(records_app, archive_app)
