"""The baselines: the bare eventsourcing library on the benchmark's own database.

`RawApplication` stores a minimal aggregate with the library's defaults. On
PostgreSQL it uses the records store's database, in tables named after it
(`bench_raw_events`). On SQLite it uses a file beside the records file,
because the library's SQLite tables have fixed names.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import ApplicationRecorder, Mapper

from bench.stats import Latency
from shared.config import Settings
from shared.storage import eventsourcing_env, is_postgres
from shared.wakeups import POLL_SECONDS

PAGE_SIZE = 2000


class Note(Aggregate):
    """A minimal aggregate: created by one event with one short text."""

    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text


class RawApplication(Application[UUID]):
    """The library's Application with its default mapper and recorder."""

    name = "bench_raw"


def raw_url(settings: Settings) -> str:
    """Return the database URL of the baseline next to the records store."""
    url = settings.records_database_url
    if is_postgres(url):
        return url
    return f"sqlite:///{Path(settings.data_dir) / 'raw.sqlite'}"


@contextmanager
def raw_application(url: str) -> Iterator[RawApplication]:
    """Open the baseline application on `url` and close it afterwards."""
    app = RawApplication(env=eventsourcing_env(url))
    try:
        yield app
    finally:
        app.close()


def save_note(app: RawApplication) -> int:
    """Save one new Note (one event in one transaction); return its position."""
    recordings = app.save(Note(text="Запись"))
    return recordings[-1].notification.id


@dataclass(frozen=True)
class Decoded:
    """How many events a read of the log decoded, in wall and CPU seconds."""

    events: int
    seconds: float
    cpu_seconds: float


def read_and_decode(
    recorder: ApplicationRecorder, mapper: Mapper[Any], page: int = PAGE_SIZE
) -> Decoded:
    """Read the whole log in pages by position and decode every event."""
    started, cpu = time.perf_counter(), time.process_time()
    count = 0
    last = 0
    while True:
        notifications = recorder.select_notifications(
            start=last, limit=page, inclusive_of_start=False
        )
        for notification in notifications:
            mapper.to_domain_event(notification)
        count += len(notifications)
        if len(notifications) < page:
            elapsed = time.perf_counter() - started
            return Decoded(count, elapsed, time.process_time() - cpu)
        last = notifications[-1].id


def measure_propagation(
    app: RawApplication,
    *,
    listen: bool,
    samples: int,
    pause: tuple[float, float],
    seed: int,
) -> Latency:
    """Time each saved Note until a follower of the log receives it.

    With `listen` (PostgreSQL) the follower is the library's LISTEN/NOTIFY
    subscription. Otherwise it polls at the services' own poll interval,
    because SQLite has no notifications.
    """
    rng = random.Random(seed)
    follower = _Follower(app, listen)
    follower.start()
    latencies: list[float] = []
    try:
        for _ in range(samples):
            time.sleep(rng.uniform(*pause))
            saved_at = time.perf_counter()
            position = save_note(app)
            latencies.append(follower.wait_for(position) - saved_at)
    finally:
        follower.stop()
    return Latency.of(latencies)


class _Follower:
    """Follows the log in a thread and notes when each position arrived."""

    def __init__(self, app: RawApplication, listen: bool) -> None:
        self.recorder = app.recorder
        self.start_after = app.recorder.max_notification_id() or 0
        self.arrivals: dict[int, float] = {}
        self._arrived = threading.Condition()
        self._stop = threading.Event()
        self._listen_mode = listen
        self._subscription: Any = None
        follow: Callable[[], None] = self._listen if listen else self._poll
        self._thread = threading.Thread(target=follow, name="raw-follower")
        self._thread.daemon = True

    def start(self) -> None:
        if self._listen_mode:
            self._subscription = self.recorder.subscribe(gt=self.start_after)
        self._thread.start()

    def wait_for(self, position: int, timeout: float = 30.0) -> float:
        """Return when `position` arrived; raise TimeoutError after `timeout`."""
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: position in self.arrivals, timeout=timeout
            ):
                raise TimeoutError(f"the follower did not see position {position}")
            return self.arrivals.pop(position)

    def stop(self) -> None:
        self._stop.set()
        if self._subscription is not None:
            self._subscription.stop()
        self._thread.join(timeout=10)

    def _arrive(self, position: int) -> None:
        now = time.perf_counter()
        with self._arrived:
            self.arrivals[position] = now
            self._arrived.notify_all()

    def _listen(self) -> None:
        with self._subscription as subscription:
            for notification in subscription:
                self._arrive(notification.id)

    def _poll(self) -> None:
        last = self.start_after
        while not self._stop.wait(POLL_SECONDS):
            for notification in self.recorder.select_notifications(
                start=last, limit=PAGE_SIZE, inclusive_of_start=False
            ):
                self._arrive(notification.id)
                last = notification.id
