"""The role matrix as data: entries, lookups, pupil ids and the rendered page."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.access import (
    ROUTES,
    SERVICES,
    STAFF,
    AccessTable,
    AccessTableError,
    Route,
    render_markdown,
    template_from_rule,
    template_shape,
)

ROLES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "roles.md"
PUPIL_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
OTHER_ID = "9b2e0a51-7c1d-4e5f-8a6b-2c3d4e5f6a7b"

# The personal-data reads that the public contract names.
CONTRACT_PERSONAL_READS = {
    ("records", "GET", "/api/v1/pupils"),
    ("records", "GET", "/api/v1/pupils/{pupil_id}"),
    ("records", "GET", "/api/v1/pupils/{pupil_id}/history"),
    ("records", "GET", "/api/v1/pupils/{pupil_id}/destruction-record"),
    ("records", "GET", "/api/v1/journals/{journal_id}"),
    ("records", "GET", "/api/v1/access-log"),
}


def test_roles_page_is_current():
    assert ROLES_PAGE.read_text(encoding="utf-8") == render_markdown(), (
        "docs/roles.md is out of date; run: python -m shared.access > docs/roles.md"
    )


def test_each_service_table_has_no_duplicates():
    for service in SERVICES:
        table = AccessTable.for_service(service)
        assert table.service == service
        assert {route.service for route in table.routes} == {service}


def test_personal_reads_match_contract():
    listed = {
        (route.service, route.method, route.path)
        for route in ROUTES
        if route.personal_data
    }

    assert listed == CONTRACT_PERSONAL_READS


def test_public_routes_are_health_metrics_and_docs():
    for service in SERVICES:
        public = {r.path for r in ROUTES if r.service == service and r.public}
        assert public == {
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/openapi.json",
            "/api/v1/docs",
        }


def test_subscriber_reads_only_the_feed():
    allowed = {
        (route.service, route.method, route.path)
        for route in ROUTES
        if not route.public and route.allows("subscriber")
    }

    assert allowed == {("records", "GET", "/api/v1/events")}


def test_no_token_is_refused_off_public_routes():
    for route in ROUTES:
        assert route.allows(None) == route.public, route.path


def test_find_matches_flask_and_openapi_forms():
    table = AccessTable.for_service("records")

    flask_form = table.find("GET", "/api/v1/pupils/<id:pupil_id>/history")
    openapi_form = table.find("GET", "/api/v1/pupils/{other_name}/history")

    assert flask_form is not None
    assert flask_form is openapi_form
    assert flask_form.personal_data


def test_find_head_follows_get():
    table = AccessTable.for_service("records")

    assert table.find("HEAD", "/api/v1/pupils") is table.find("GET", "/api/v1/pupils")


def test_find_unknown_route_or_method_is_none():
    table = AccessTable.for_service("records")

    assert table.find("GET", "/api/v1/unlisted") is None
    assert table.find("DELETE", "/api/v1/pupils") is None
    assert table.find("GET", "/api/v1/retention") is None


def test_template_conversions():
    assert template_from_rule("/a/<uuid:x>/b/<y>") == "/a/{x}/b/{y}"
    assert template_shape("/a/<id:x>/b/{y}") == "/a/{}/b/{}"


def test_pupil_ids_from_path():
    route = _read("/api/v1/pupils/{pupil_id}", "path.pupil_id")

    assert route.pupil_ids({"pupil_id": PUPIL_ID.upper()}, None) == [PUPIL_ID]
    assert route.pupil_ids({}, None) == []


def test_pupil_ids_from_nested_lists_once_each():
    route = _read("/api/v1/journals/{journal_id}", "sessions.attendance.pupil_id")
    body = {
        "sessions": [
            {"attendance": [{"pupil_id": PUPIL_ID}, {"pupil_id": OTHER_ID}]},
            {"attendance": [{"pupil_id": PUPIL_ID}]},
            {"attendance": []},
            {},
        ]
    }

    assert route.pupil_ids({}, body) == [PUPIL_ID, OTHER_ID]


def test_pupil_ids_ignore_other_shapes():
    route = _read("/api/v1/pupils", "items.id")

    assert route.pupil_ids({}, None) == []
    assert route.pupil_ids({}, {"items": [{"id": 7}, {"name": "x"}]}) == []
    assert route.pupil_ids({}, {"items": [{"id": OTHER_ID}]}) == [OTHER_ID]


@pytest.mark.parametrize(
    "changes",
    [
        {"service": "billing"},
        {"roles": frozenset({"teacher"})},
        {"roles": frozenset()},
        {"public": True},
        {"personal_data": True},
        {"pupils": "items.id"},
        {
            "roles": frozenset(),
            "public": True,
            "personal_data": True,
            "pupils": "items.id",
        },
    ],
)
def test_invalid_entries_are_rejected(changes):
    entry = {
        "service": "records",
        "method": "GET",
        "path": "/api/v1/x",
        "roles": frozenset({"admin"}),
    }
    entry.update(changes)

    with pytest.raises(AccessTableError):
        Route(**entry)


def test_duplicate_entries_are_rejected():
    route = Route("records", "GET", "/api/v1/x/{a}", roles=frozenset(STAFF))
    same_shape = Route("records", "GET", "/api/v1/x/{b}", roles=frozenset({"admin"}))

    with pytest.raises(AccessTableError):
        AccessTable([route, same_shape])


def test_unknown_service_is_rejected():
    with pytest.raises(AccessTableError):
        AccessTable.for_service("billing")


def _read(path: str, pupils: str) -> Route:
    return Route(
        "records",
        "GET",
        path,
        roles=frozenset({"inspector"}),
        personal_data=True,
        pupils=pupils,
    )
