"""Both services while their PostgreSQL server stops under load and comes back.

The server is a throwaway one of this test alone, so that stopping it
disturbs no other test. While it is down, every request that needs the
database gets a 503 with `Retry-After`, never a 500. Once it is up again on
the same port, the services and their workers recover without a restart.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests import pg_server
from tests.conftest import chosen_backends
from tests.e2e.helpers import (
    ArchiveClient,
    ProcessStack,
    RecordsClient,
    Workload,
    database_env,
    process_stack,
    requires_services,
    wait_for_archive,
    wait_for_records,
    wait_until,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    requires_services,
    pytest.mark.skipif(
        "postgres" not in chosen_backends(),
        reason="PUPIL_RECORDS_TEST_BACKENDS does not name postgres",
    ),
]

SEED = int(os.environ.get("PUPIL_RECORDS_CRASH_SEED", "20250531"))
OUTAGE_TIMEOUT_SECONDS = 90.0
RECOVERY_TIMEOUT_SECONDS = 90.0
ANSWERS_DURING_OUTAGE = {200, 201, 409, 503}


@pytest.fixture
def server() -> Iterator[pg_server.PostgresServer]:
    """A PostgreSQL server that only this test uses, so it may stop it."""
    started = pg_server.start_server()
    try:
        yield started
    finally:
        pg_server.remove_server(started)


@pytest.fixture
def outage_stack(
    tmp_path: Path, server: pg_server.PostgresServer
) -> Iterator[ProcessStack]:
    """The four processes on two fresh databases of the dedicated server."""
    databases = database_env("postgres", server)
    with process_stack(tmp_path / "data", tmp_path / "stack.out", databases) as stack:
        yield stack


class Load:
    """Writes and reads in background threads and keeps every status it got."""

    def __init__(self, stack: ProcessStack, workload: Workload, pupil_id: str) -> None:
        self.stack = stack
        self.workload = workload
        self.pupil_id = pupil_id
        self.stop = threading.Event()
        self.statuses: Counter[tuple[str, int | None]] = Counter()
        self.missing_retry_after: list[str] = []
        self._threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._read, daemon=True),
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _write(self) -> None:
        while not self.stop.is_set():
            outcome = self.workload.step()
            self.statuses[(f"POST {outcome.step}", outcome.status)] += 1
            if outcome.status == 503:
                time.sleep(0.2)

    def _read(self) -> None:
        records = RecordsClient(self.stack.records_url, self.stack.tokens)
        archive = ArchiveClient(self.stack.archive_url, self.stack.tokens)
        reads: list[tuple[str, Callable[[], requests.Response]]] = [
            ("GET personal file", lambda: records.get(self._pupil, role="registrar")),
            ("GET retention", lambda: archive.get(self._retention, role="archivist")),
        ]
        try:
            while not self.stop.is_set():
                for name, read in reads:
                    self.note(name, read())
                time.sleep(0.05)
        finally:
            records.close()
            archive.close()

    @property
    def _pupil(self) -> str:
        return f"/api/v1/pupils/{self.pupil_id}"

    @property
    def _retention(self) -> str:
        return f"/api/v1/retention/personal-files/{self.pupil_id}"

    def note(self, name: str, response: requests.Response) -> None:
        """Count the status of `response`; remember a 503 without Retry-After."""
        self.statuses[(name, response.status_code)] += 1
        if response.status_code == 503 and not response.headers.get("Retry-After"):
            self.missing_retry_after.append(name)

    def unexpected(self) -> dict[tuple[str, int | None], int]:
        """Return the counts of statuses other than 2xx, 409 and 503."""
        return {
            key: count
            for key, count in self.statuses.items()
            if key[1] not in ANSWERS_DURING_OUTAGE
        }


def probe_outage(stack: ProcessStack, pupil_id: str) -> dict[str, requests.Response]:
    """Send one request of each kind that needs the database, all at once."""
    body = {
        "surname": "Ростова",
        "name": "Наталья",
        "birth_date": "2016-03-14",
        "opened_on": "2024-08-26",
    }
    retention = f"/api/v1/retention/personal-files/{pupil_id}"
    probes: dict[str, Callable[[RecordsClient, ArchiveClient], requests.Response]] = {
        "records POST": lambda r, _: r.post("/api/v1/pupils", body, role="registrar"),
        "records GET": lambda r, _: r.get(
            f"/api/v1/pupils/{pupil_id}", role="registrar"
        ),
        "records readyz": lambda r, _: r.get("/readyz"),
        "archive GET": lambda _, a: a.get(retention, role="archivist"),
        "archive readyz": lambda _, a: a.get("/readyz"),
    }

    def send(
        probe: Callable[[RecordsClient, ArchiveClient], requests.Response],
    ) -> requests.Response:
        records = RecordsClient(stack.records_url, stack.tokens)
        archive = ArchiveClient(stack.archive_url, stack.tokens)
        try:
            return probe(records, archive)
        finally:
            records.close()
            archive.close()

    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        futures = {name: pool.submit(send, probe) for name, probe in probes.items()}
        return {name: future.result() for name, future in futures.items()}


def wait_until_unavailable(
    stack: ProcessStack, pupil_id: str
) -> dict[str, requests.Response]:
    """Probe until every kind of request has returned 503 at least once.

    Other statuses are allowed until the services notice the outage, but a
    500 fails the test at once.
    """
    unavailable: dict[str, requests.Response] = {}
    last: dict[str, int] = {}
    deadline = time.monotonic() + OUTAGE_TIMEOUT_SECONDS
    while len(unavailable) < 5:
        for name, response in probe_outage(stack, pupil_id).items():
            assert response.status_code != 500, f"{name}: {response.text}"
            last[name] = response.status_code
            if response.status_code == 503:
                unavailable.setdefault(name, response)
        assert time.monotonic() < deadline, f"no 503 from every service: {last}"
        time.sleep(0.5)
    return unavailable


def both_ready(stack: ProcessStack) -> bool:
    """Tell whether both services return 200 from /readyz."""
    urls = (stack.records_url + "/readyz", stack.archive_url + "/readyz")
    try:
        return all(requests.get(url, timeout=10).status_code == 200 for url in urls)
    except requests.RequestException:
        return False


def test_services_recover_after_postgres_restart(
    outage_stack: ProcessStack, server: pg_server.PostgresServer
) -> None:
    stack = outage_stack
    writer = RecordsClient(stack.records_url, stack.tokens)
    workload = Workload(writer, random.Random(SEED))
    workload.prepare()
    workload.run(20)
    pupil_id = next(iter(workload.pupils))
    wait_for_archive(stack.archive, workload.last_position, RECOVERY_TIMEOUT_SECONDS)

    with Load(stack, workload, pupil_id) as load:
        time.sleep(1.0)
        server.stop("fast")
        try:
            outage = wait_until_unavailable(stack, pupil_id)
        finally:
            server.start()
        wait_until(lambda: both_ready(stack), RECOVERY_TIMEOUT_SECONDS, "readiness")
        time.sleep(1.0)
    after = workload.register()
    wait_for_records(stack.records, after.body["position"], RECOVERY_TIMEOUT_SECONDS)
    wait_for_archive(stack.archive, after.body["position"], RECOVERY_TIMEOUT_SECONDS)
    retention = stack.archive.personal_file_retention(
        after.body["id"], after.body["position"]
    )

    for name, response in outage.items():
        assert response.headers.get("Retry-After"), name
        assert response.headers["Content-Type"].startswith(
            "application/problem+json"
        ), name
    assert load.unexpected() == {}, load.statuses
    assert load.missing_retry_after == []
    assert after.status == 201, after
    assert retention["status"] == "open"
    assert retention["closed_on"] is None
    writer.close()
