"""Tests of the demo loader against a fake records service in memory."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
import requests

from services.demo import DemoLoadError, build_plan, load
from services.demo.loader import PlanLoader
from services.demo.model import Command, Plan

TODAY = date(2026, 12, 4)
URL = "http://127.0.0.1:9"
TOKENS = {
    role: f"token-{role}" for role in ("admin", "registrar", "methodist", "specialist")
}


def response(status: int, body: Any, reason: str = "") -> requests.Response:
    answer = requests.Response()
    answer.status_code = status
    answer.reason = reason
    answer._content = json.dumps(body).encode()
    answer.headers["Content-Type"] = (
        "application/json" if status < 400 else "application/problem+json"
    )
    return answer


class FakeService:
    """Fake service that returns a new id for every POST unless `rule` intervenes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, Any], str]] = []
        self.position = 0
        self.rule: Callable[[str, dict[str, Any]], requests.Response | None] = (
            lambda url, body: None
        )

    def post(self, url: str, *, json: Any, headers: Any, timeout: Any) -> Any:
        assert timeout[0] > 0
        assert timeout[1] > 0
        with self.lock:
            special = self.rule(url, json)
            if special is not None:
                return special
            self.position += 1
            self.requests.append((url, json, headers["Authorization"]))
            return response(201, {"id": str(uuid.uuid4()), "position": self.position})


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> FakeService:
    fake = FakeService()

    def post(self: requests.Session, url: str, **kwargs: Any) -> Any:
        return fake.post(url, **kwargs)

    monkeypatch.setattr(requests.Session, "post", post)
    return fake


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(TODAY, scale=0.05)


def problem(status: int, detail: str) -> requests.Response:
    body = {
        "type": "about:blank",
        "title": "Conflict",
        "status": status,
        "detail": detail,
    }
    return response(status, body, "Conflict")


def test_loader_sends_every_command(service: FakeService, plan: Plan) -> None:
    summary = PlanLoader(URL, TOKENS).run(plan, progress=False)

    assert len(service.requests) == len(plan)
    assert summary.commands == len(plan)
    assert summary.last_position == len(plan)
    assert summary.counts["session"] == plan.counts()["session"]


def test_loader_replaces_symbolic_ids(service: FakeService, plan: Plan) -> None:
    loader = PlanLoader(URL, TOKENS)
    loader.run(plan, progress=False)

    sent = {url for url, _body, _auth in service.requests}
    session = next(c for c in plan if c.kind == "session")
    journal_id = loader.ids[session.params["journal"].key]
    session_url = f"{URL}/api/v1/journals/{journal_id}/sessions"
    bodies = [body for url, body, _auth in service.requests if url == session_url]
    pupil_ids = {line["pupil_id"] for body in bodies for line in body["attendance"]}
    assert bodies
    assert pupil_ids <= set(loader.ids.values())
    assert all("{" not in url for url in sent)


def test_loader_uses_the_role_token(service: FakeService, plan: Plan) -> None:
    PlanLoader(URL, TOKENS).run(plan, progress=False)

    for url, _body, auth in service.requests:
        if url.endswith("/sessions"):
            assert auth == "Bearer token-specialist"
        elif url.endswith("/attestations"):
            assert auth == "Bearer token-methodist"
        elif url.endswith("/programmes"):
            assert auth == "Bearer token-admin"


def test_lanes_keep_plan_order(service: FakeService, plan: Plan) -> None:
    loader = PlanLoader(URL, TOKENS, workers=4)
    loader.run(plan, progress=False)

    sent_dates: dict[str, list[str]] = {}
    for url, body, _auth in service.requests:
        if url.endswith("/sessions"):
            sent_dates.setdefault(url, []).append(body["date"] + body["start_time"])
    for dates in sent_dates.values():
        assert dates == sorted(dates)


def test_rejection_names_step_and_problem(service: FakeService, plan: Plan) -> None:
    expulsions = [c for c in plan if c.kind == "expulsion"]
    target = expulsions[0]
    step = next(i for i, c in enumerate(plan, start=1) if c is target)
    service.rule = lambda url, body: (
        problem(409, "the pupil is not enrolled in this programme")
        if url.endswith("/expulsions")
        else None
    )

    with pytest.raises(DemoLoadError) as caught:
        PlanLoader(URL, TOKENS, workers=1).run(plan, progress=False)

    message = str(caught.value)
    assert caught.value.step == step
    assert caught.value.command is target
    assert "409" in message
    assert "not enrolled in this programme" in message
    assert f"demo step {step} (expulsion" in message
    assert len(service.requests) == step - 1


def test_unavailable_service_is_retried(service: FakeService, plan: Plan) -> None:
    failures = {"left": 2}

    def flaky(url: str, body: dict[str, Any]) -> requests.Response | None:
        if failures["left"] > 0:
            failures["left"] -= 1
            return problem(503, "the database is not reachable")
        return None

    service.rule = flaky
    PlanLoader(URL, TOKENS).run(plan, progress=False)

    assert failures["left"] == 0
    assert len(service.requests) == len(plan)


def test_answer_without_id_is_an_error(service: FakeService, plan: Plan) -> None:
    service.rule = lambda url, body: response(201, {"position": 1})

    with pytest.raises(DemoLoadError, match="response carries no id"):
        PlanLoader(URL, TOKENS).run(plan, progress=False)


def test_missing_role_token_is_rejected(service: FakeService, plan: Plan) -> None:
    tokens = {role: token for role, token in TOKENS.items() if role != "methodist"}

    with pytest.raises(ValueError, match="methodist"):
        PlanLoader(URL, tokens).run(plan, progress=False)

    assert service.requests == []


def test_load_prints_the_summary(
    service: FakeService, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = load(URL, TOKENS, today=TODAY, scale=0.05, progress=True)

    printed = capsys.readouterr().out
    assert "Demo centre loaded" in printed
    assert f"time span: {summary.first_day.isoformat()}" in printed
    assert "session" in printed
    assert summary.last_day < TODAY


def test_summary_lists_counts_per_kind(service: FakeService, plan: Plan) -> None:
    summary = PlanLoader(URL, TOKENS).run(plan, progress=False)

    text = str(summary)
    for kind, count in plan.counts().items():
        assert any(line.split() == [kind, str(count)] for line in text.splitlines())


def test_command_description_names_the_target(plan: Plan) -> None:
    session: Command = next(c for c in plan if c.kind == "session")

    assert session.describe().startswith("session journal=journal-")
    assert session.day.isoformat() in session.describe()
