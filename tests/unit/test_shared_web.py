"""Helpers of the web base: polling for positions, JSON encoding, docs page."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from flask import Flask

from shared.problems import Problem
from shared.wakeups import WaitingLimiter
from shared.web import ApiJSONProvider, render_docs_page, wait_for_position


class Counter:
    def __init__(self, start: int, step: int) -> None:
        self.value = start
        self.step = step
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        current = self.value
        self.value += self.step
        return current


def test_wait_returns_at_once_when_reached():
    read = Counter(10, 0)

    assert wait_for_position(read, 10, timeout=1) == 10
    assert read.calls == 1


def test_wait_polls_until_reached():
    read = Counter(0, 1)

    assert wait_for_position(read, 3, timeout=5) == 3
    assert read.calls == 4


def test_wait_times_out_with_503():
    started = time.monotonic()

    with pytest.raises(Problem) as caught:
        wait_for_position(lambda: 4, 5, timeout=0.15)

    elapsed = time.monotonic() - started
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "1"
    assert "position 5" in caught.value.detail
    assert 0.15 <= elapsed < 1.0


def test_wait_without_slot_is_503_at_once():
    limiter = WaitingLimiter(max_waiting=0, max_waiting_per_client=1)
    read = Counter(4, 1)
    started = time.monotonic()

    with pytest.raises(Problem) as caught:
        wait_for_position(read, 6, timeout=5, slot=limiter.slot("token:t-1"))

    assert time.monotonic() - started < 1.0
    assert read.calls == 1
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "1"
    assert "too many requests are waiting" in caught.value.detail


def test_wait_holds_slot_while_polling():
    limiter = WaitingLimiter(max_waiting=1, max_waiting_per_client=1)
    held: list[int] = []

    def read() -> int:
        held.append(limiter.waiting)
        return len(held)

    assert wait_for_position(read, 3, timeout=5, slot=limiter.slot("a")) == 3
    assert held == [0, 1, 1]
    assert limiter.waiting == 0


def test_json_provider_encodes_domain_values():
    app = Flask("json-test")
    provider = ApiJSONProvider(app)
    pupil_id = uuid.UUID(int=1)

    text = provider.dumps(
        {
            "name": "Ёлкина",
            "birth_date": date(2015, 3, 8),
            "at": datetime(2024, 5, 1, 9, 30, tzinfo=UTC),
            "id": pupil_id,
            "share": Decimal("0.56"),
        }
    )

    assert '"name": "Ёлкина"' in text
    assert '"birth_date": "2015-03-08"' in text
    assert '"at": "2024-05-01T09:30:00.000000Z"' in text
    assert f'"id": "{pupil_id}"' in text
    assert '"share": "0.56"' in text


def test_docs_page_escapes_and_links():
    spec = {
        "info": {"title": "<Records>", "version": "v1"},
        "paths": {
            "/api/v1/pupils": {
                "post": {
                    "summary": "Open a <file>",
                    "x-roles": ["registrar"],
                    "x-personal-data": True,
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/Pupil"}
                            }
                        }
                    },
                    "responses": {"201": {}, "422": {}},
                }
            }
        },
        "components": {
            "schemas": {
                "Pupil": {
                    "properties": {"surname": {"type": "string", "maxLength": 200}},
                    "required": ["surname"],
                }
            }
        },
    }

    page = render_docs_page(spec)

    assert "&lt;Records&gt;" in page
    assert "<Records>" not in page
    assert "Open a &lt;file&gt;" in page
    assert "Roles: registrar" in page
    assert "X-Purpose" in page
    assert "href='#schema-Pupil'" in page
    assert "maxLength=200" in page
