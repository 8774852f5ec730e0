"""Programmes over HTTP: creation, reads, lists and their validation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.records.web.testing import (
    RecordsWebClient,
    expect,
    expect_problem,
    make_client,
    programme_body,
)

PROGRAMMES = "/api/v1/programmes"
UNKNOWN_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


@pytest.fixture
def web(tmp_path: Path, database_url: str) -> Iterator[RecordsWebClient]:
    client = make_client(tmp_path, database_url)
    yield client
    client.close()


def test_create_returns_programme_and_position(web):
    response = web.post(PROGRAMMES, programme_body(), "admin")

    body = expect(response, 201)
    assert response.headers["Location"] == f"{PROGRAMMES}/{body['id']}"
    assert body["code"] == "КРЗ-1"
    assert body["approved_order"] == {"number": "45-о", "date": "2024-08-20"}
    assert [c["code"] for c in body["criteria"]] == ["attention", "memory", "speech"]
    assert body["levels"] == {"high": 0.56, "medium": 0.3}
    assert body["max_total"] == 25
    assert body["position"] == web.head()


@pytest.mark.one_backend
def test_create_is_admin_only(web):
    for role in ("registrar", "methodist", "specialist", "subscriber", "inspector"):
        response = web.post(PROGRAMMES, programme_body(), role)
        expect_problem(response, 403)
    assert web.head() == 0


@pytest.mark.one_backend
def test_create_without_token_is_401(web):
    response = web.post(PROGRAMMES, programme_body(), None)

    expect_problem(response, 401)


def test_duplicate_code_is_409(web):
    web.create_programme("КРЗ-1")
    head = web.head()

    response = web.post(PROGRAMMES, programme_body(" крз-1 "), "admin")

    expect_problem(response, 409)
    assert web.head() == head


@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"levels": {"high": 0.3, "medium": 0.3}}, "levels.medium"),
        ({"levels": {"high": 1.2, "medium": 0.3}}, "levels.high"),
        ({"levels": {"high": 0.5, "medium": -0.1}}, "levels.medium"),
        ({"levels": {"high": "0.5", "medium": 0.1}}, "levels.high"),
        ({"levels": {"high": True, "medium": 0.1}}, "levels.high"),
        ({"levels": {"high": 0.5}}, "levels.medium"),
        ({"criteria": []}, "criteria"),
        (
            {"criteria": [{"code": "a", "title": "А", "max_score": 0}]},
            "criteria.0.max_score",
        ),
        (
            {"criteria": [{"code": "a", "title": "А", "max_score": 2.5}]},
            "criteria.0.max_score",
        ),
        (
            {"criteria": [{"code": "a", "title": "А", "max_score": 10**30}]},
            "criteria.0.max_score",
        ),
        (
            {"criteria": [{"code": "a", "title": "А", "max_score": "5"}]},
            "criteria.0.max_score",
        ),
        (
            {
                "criteria": [
                    {"code": "a", "title": "А", "max_score": 5},
                    {"code": "a", "title": "Б", "max_score": 5},
                ]
            },
            "criteria.1.code",
        ),
        (
            {"approved_order": {"number": "1", "date": "2999-01-01"}},
            "approved_order.date",
        ),
        (
            {"approved_order": {"number": "1", "date": "2024-02-30"}},
            "approved_order.date",
        ),
        (
            {"approved_order": {"number": " ", "date": "2024-02-01"}},
            "approved_order.number",
        ),
        ({"code": ""}, "code"),
        ({"title": None}, "title"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_programme_is_422(web, changes, path):
    response = web.post(PROGRAMMES, programme_body(**changes), "admin")

    body = expect_problem(response, 422)
    assert path in body["errors"]
    assert web.head() == 0


def test_levels_are_kept_exact(web):
    body = web.create_programme(levels={"high": 0.56, "medium": 0.1})

    stored = expect(web.get(f"{PROGRAMMES}/{body['id']}", "methodist"), 200)

    assert stored["levels"] == {"high": 0.56, "medium": 0.1}


def test_get_programme_by_id(web):
    created = web.create_programme()

    response = web.get(f"{PROGRAMMES}/{created['id']}", "specialist")

    body = expect(response, 200)
    created.pop("position")
    assert body == created


@pytest.mark.one_backend
def test_get_unknown_programme_is_404(web):
    for programme_id in (UNKNOWN_ID, "not-an-id"):
        response = web.get(f"{PROGRAMMES}/{programme_id}", "registrar")
        expect_problem(response, 404)


@pytest.mark.one_backend
def test_get_programme_refuses_subscriber(web):
    created = web.create_programme()

    response = web.get(f"{PROGRAMMES}/{created['id']}", "subscriber")

    expect_problem(response, 403)


def test_list_pages_by_code(web):
    for code in ("В-3", "А-1", "Б-2"):
        web.create_programme(code)

    first = expect(web.get(PROGRAMMES, "registrar", {"limit": 2}), 200)
    second = expect(
        web.get(PROGRAMMES, "registrar", {"limit": 2, "cursor": first["next_cursor"]}),
        200,
    )

    assert [p["code"] for p in first["items"]] == ["А-1", "Б-2"]
    assert [p["code"] for p in second["items"]] == ["В-3"]
    assert second["next_cursor"] is None


@pytest.mark.one_backend
@pytest.mark.parametrize(
    "query",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "ten"},
        {"cursor": "not a cursor"},
        {"cursor": "eyJhZnRlciI6Nn0"},
        {"min_position": -1},
        {"colour": "red"},
    ],
)
def test_list_rejects_invalid_query(web, query):
    response = web.get(PROGRAMMES, "registrar", query)

    body = expect_problem(response, 422)
    assert all(path.startswith("query.") for path in body["errors"])
