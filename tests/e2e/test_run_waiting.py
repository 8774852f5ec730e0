"""Requests that wait (long-polls, `min_position`) under gunicorn, as `run` serves them.

Each records web worker lets only some of its threads wait, and each token
only a few of those, so many waiting requests cannot delay `/healthz` or
commands.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from shared.auth import TokenStore
from tests.e2e.helpers import RunningServices, requires_services

pytestmark = [pytest.mark.e2e, requires_services, pytest.mark.one_backend]

WAITING_REQUESTS = 10
LONG_POLL_SECONDS = 20
# Far below the long-poll time, with room for a slow shared machine.
PROMPT_SECONDS = 5.0


# Each worker lets one token hold this many waiting requests; `run` starts
# two workers.
PER_TOKEN = 2
SERVICES_ENV = {"PUPIL_RECORDS_MAX_WAITING_PER_TOKEN": str(PER_TOKEN)}


class Waiters:
    """Requests sent from threads; their responses are kept in order of arrival."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.responses: list[requests.Response] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def send(self, call: Callable[[], requests.Response]) -> None:
        def run() -> None:
            try:
                response = call()
            except BaseException as error:  # reported by the test
                with self._lock:
                    self.errors.append(error)
                return
            with self._lock:
                self.responses.append(response)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def waiters() -> Iterator[Waiters]:
    found = Waiters()
    yield found
    found.join(LONG_POLL_SECONDS + 10)


def get(url: str, token: str, **params: Any) -> requests.Response:
    return requests.get(
        url,
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=LONG_POLL_SECONDS + 15,
    )


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def head_position(services: RunningServices) -> int:
    body = services.records.get_json("/api/v1/events", role="subscriber")
    return int(body["head_position"])


def test_long_polls_of_one_token_leave_health_prompt(
    services: RunningServices, waiters: Waiters
) -> None:
    url = f"{services.records_url}/api/v1/events"
    token = services.tokens["subscriber"]
    after = head_position(services)
    for _ in range(WAITING_REQUESTS):
        waiters.send(lambda: get(url, token, after=after, wait=LONG_POLL_SECONDS))
    time.sleep(1.0)

    health, health_seconds = timed(
        lambda: requests.get(f"{services.records_url}/healthz", timeout=30)
    )
    ready, ready_seconds = timed(
        lambda: requests.get(f"{services.records_url}/readyz", timeout=30)
    )

    assert health.status_code == 200
    assert health_seconds < PROMPT_SECONDS
    assert ready.status_code == 200
    assert ready_seconds < PROMPT_SECONDS
    # Most long-polls got no waiting slot and returned at once, empty.
    assert len(waiters.responses) >= WAITING_REQUESTS - 2 * PER_TOKEN
    for response in waiters.responses:
        assert response.status_code == 200
        assert response.json()["events"] == []

    pupil, post_seconds = timed(
        lambda: services.records.post(
            "/api/v1/pupils",
            {"surname": "Ждущий", "name": "Пётр", "birth_date": "2016-03-14"},
            role="registrar",
        )
    )
    assert pupil.status_code == 201
    assert post_seconds < PROMPT_SECONDS
    waiters.join(PROMPT_SECONDS * 2)
    assert waiters.errors == []
    assert len(waiters.responses) == WAITING_REQUESTS


def test_long_polls_of_many_tokens_leave_health_prompt(
    services: RunningServices, waiters: Waiters
) -> None:
    store = TokenStore(services.data_dir / "tokens.json")
    tokens = [
        store.issue("subscriber", f"Subscriber {index}")
        for index in range(WAITING_REQUESTS * 3)
    ]
    url = f"{services.records_url}/api/v1/events"
    after = head_position(services)
    for token in tokens:
        waiters.send(
            lambda token=token: get(url, token, after=after, wait=LONG_POLL_SECONDS)
        )
    time.sleep(1.5)

    health, health_seconds = timed(
        lambda: requests.get(f"{services.records_url}/healthz", timeout=30)
    )
    listing, listing_seconds = timed(
        lambda: services.records.get("/api/v1/programmes", role="admin")
    )

    assert health.status_code == 200
    assert health_seconds < PROMPT_SECONDS
    assert listing.status_code == 200
    assert listing_seconds < PROMPT_SECONDS

    services.records.post(
        "/api/v1/pupils",
        {"surname": "Будящий", "name": "Иван", "birth_date": "2016-03-14"},
        role="registrar",
    )
    waiters.join(PROMPT_SECONDS * 2)
    assert waiters.errors == []
    assert len(waiters.responses) == len(tokens)


def test_min_position_beyond_head_is_503(
    services: RunningServices,
) -> None:
    url = f"{services.records_url}/api/v1/programmes"
    head = head_position(services)

    response, seconds = timed(
        lambda: get(url, services.tokens["registrar"], min_position=head + 1)
    )

    assert response.status_code == 503
    assert seconds < PROMPT_SECONDS
    assert response.headers["Retry-After"]
    assert response.json()["head_position"] == head


def test_unreached_archive_positions_leave_services_prompt(
    services: RunningServices, waiters: Waiters
) -> None:
    # The archive cannot tell a position the records service has not written
    # yet from one its follower has not fetched yet, so these requests wait.
    url = f"{services.archive_url}/api/v1/retention"
    token = services.tokens["archivist"]
    for _ in range(WAITING_REQUESTS):
        waiters.send(lambda: get(url, token, min_position=99_999_999))
    time.sleep(1.0)

    pupil, post_seconds = timed(
        lambda: services.records.post(
            "/api/v1/pupils",
            {"surname": "Спешащий", "name": "Олег", "birth_date": "2016-03-14"},
            role="registrar",
        )
    )
    health, health_seconds = timed(
        lambda: requests.get(f"{services.archive_url}/healthz", timeout=30)
    )

    assert pupil.status_code == 201
    assert post_seconds < PROMPT_SECONDS
    assert health.status_code == 200
    assert health_seconds < PROMPT_SECONDS
    rejected = [r for r in waiters.responses if r.status_code == 503]
    assert len(rejected) >= WAITING_REQUESTS - 2 * PER_TOKEN
    for response in rejected:
        assert response.headers["Retry-After"] == "1"
        assert "too many requests are waiting" in response.json()["detail"]
