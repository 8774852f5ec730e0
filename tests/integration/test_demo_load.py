"""The demo centre loaded over HTTP into a real records app on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from services.demo import DemoLoadError, DemoSummary, Plan, build_plan
from services.demo.loader import PlanLoader

try:
    from werkzeug.serving import BaseWSGIServer, make_server

    from services.records.web.testing import RecordsWebClient, make_client
except ImportError as error:  # the records web app is still being written
    pytest.skip(
        f"the records web app does not import: {error}", allow_module_level=True
    )

TODAY = date(2026, 12, 4)
SCALE = 0.05
ROLES = ("admin", "registrar", "methodist", "specialist")


@dataclass
class Loaded:
    """A records app served on 127.0.0.1 after the reduced demo was loaded."""

    url: str
    web: RecordsWebClient
    tokens: dict[str, str]
    plan: Plan
    summary: DemoSummary
    ids: dict[str, str]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    data_dir = tmp_path_factory.mktemp("demo")
    server_log = logging.getLogger("werkzeug")
    level = server_log.level
    server_log.setLevel(logging.WARNING)  # one line per request is noise here
    web = make_client(data_dir, f"sqlite:///{data_dir / 'records.sqlite'}")
    server: BaseWSGIServer = make_server("127.0.0.1", 0, web.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    tokens = {role: web.token(role) for role in ROLES}
    plan = build_plan(TODAY, scale=SCALE)
    loader = PlanLoader(url, tokens)
    try:
        summary = loader.run(plan, progress=False)
        yield Loaded(url, web, tokens, plan, summary, loader.ids)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        web.close()
        server_log.setLevel(level)


def get_json(web: RecordsWebClient, path: str, role: str, **query: Any) -> Any:
    response = web.get(path, role, query or None)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def all_pupils(web: RecordsWebClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = get_json(web, "/api/v1/pupils", "registrar", **query)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def test_reduced_demo_is_accepted_whole(loaded: Loaded) -> None:
    counts = loaded.plan.counts()

    assert loaded.summary.counts == dict(sorted(counts.items()))
    assert loaded.summary.last_position == loaded.web.head()
    assert loaded.summary.first_day <= date(2023, 9, 1)
    assert loaded.summary.last_day < TODAY
    assert len(loaded.ids) == sum(1 for c in loaded.plan if c.creates)


def test_service_lists_what_was_loaded(loaded: Loaded) -> None:
    counts = loaded.plan.counts()

    pupils = all_pupils(loaded.web)
    statuses = Counter(pupil["status"] for pupil in pupils)
    programmes = get_json(loaded.web, "/api/v1/programmes", "admin")["items"]
    assert len(pupils) == counts["pupil"]
    assert statuses["left"] > 0
    assert statuses["enrolled"] > 0
    assert len(programmes) == counts["programme"]


def test_special_leavings_close_files(loaded: Loaded) -> None:
    expected = {"2024-02-29": "2024-02-", "2025-12-31": "2026-01-"}
    for effective, closed_prefix in expected.items():
        command = next(
            c
            for c in loaded.plan
            if c.kind == "expulsion" and c.body["effective_date"] == effective
        )
        pupil_id = loaded.ids[command.params["pupil"].key]
        file = get_json(loaded.web, f"/api/v1/pupils/{pupil_id}", "methodist")
        assert file["status"] == "left"
        assert file["file_closed_on"].startswith(closed_prefix)


def test_past_journals_closed_after_load(loaded: Loaded) -> None:
    journals = [c for c in loaded.plan if c.kind == "journal"]
    for command in journals:
        journal_id = loaded.ids[command.creates or ""]
        path = f"/api/v1/journals/{journal_id}"
        journal = get_json(loaded.web, path, "specialist")
        year_end = date.fromisoformat(command.body["academic_year"]["end"])
        assert (journal["closed_on"] is not None) == (year_end < TODAY)


def test_second_load_stops_at_first_step(loaded: Loaded) -> None:
    with pytest.raises(DemoLoadError) as caught:
        PlanLoader(loaded.url, loaded.tokens).run(loaded.plan, progress=False)

    assert caught.value.step == 1
    assert "409" in str(caught.value)
    assert "programme" in str(caught.value)
