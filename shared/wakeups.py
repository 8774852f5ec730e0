"""Wake-ups of followers: LISTEN/NOTIFY on PostgreSQL, short polls elsewhere.

eventsourcing's PostgreSQL recorder runs `NOTIFY <app>_events` in every insert
transaction, and PostgreSQL delivers the notification when that transaction
commits. A `PostgresListener` keeps one dedicated connection that listens on
the channel and wakes every waiter of the process. It reconnects with backoff
after a lost connection, because psycopg does not. SQLite and the in-memory
store have no notifications, so their followers poll at a short interval.
A `WaitingLimiter` caps how many requests of a web process wait at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from shared.storage import eventsourcing_env, is_postgres

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05
# With notifications, polling only covers a notification lost in transit.
LISTEN_FALLBACK_SECONDS = 1.0
# How often a blocked wait or the listener checks whether it must stop.
CHECK_SECONDS = 0.2
RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5
# A `WaitingLimiter` logs its rejections at most this often.
REJECTION_LOG_SECONDS = 60.0


class ChangeSignal:
    """A change counter that waiters watch, and `notify()` wakes all of them.

    A waiter reads `mark()` before it looks for new events, and passes that
    mark to `wait()`, so that a change between the look and the wait is
    never missed.
    """

    def __init__(self, poll_interval: float = POLL_SECONDS) -> None:
        self.poll_interval = poll_interval
        self._changes = 0
        self._condition = threading.Condition()

    def mark(self) -> int:
        """Return the number of changes seen so far."""
        with self._condition:
            return self._changes

    def notify(self) -> None:
        """Count a change and wake every waiter."""
        with self._condition:
            self._changes += 1
            self._condition.notify_all()

    def wait(
        self, mark: int, timeout: float, stop: threading.Event | None = None
    ) -> bool:
        """Wait up to `timeout` s for a change after `mark`; return whether one came.

        Returns False early once `stop` is set.
        """
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._changes == mark:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (stop is not None and stop.is_set()):
                    return False
                self._condition.wait(min(remaining, CHECK_SECONDS))
            return True

    def close(self) -> None:
        """Release the signal's resources, of which a polling signal has none."""


class PostgresListener(ChangeSignal):
    """Listens on a PostgreSQL channel in a thread and signals each notification."""

    def __init__(
        self,
        connect_args: dict[str, Any],
        channel: str,
        *,
        poll_interval: float = LISTEN_FALLBACK_SECONDS,
    ) -> None:
        super().__init__(poll_interval)
        self.channel = channel
        self._connect_args = connect_args
        self._closed = threading.Event()
        self._connected = threading.Event()
        self._backend_pid: int | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"listen-{channel}", daemon=True
        )

    @property
    def backend_pid(self) -> int | None:
        """The server process id of the listening connection, while connected."""
        return self._backend_pid

    def start(self) -> PostgresListener:
        """Start listening in a daemon thread and return self."""
        self._thread.start()
        return self

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the listener has connected; True if it has."""
        return self._connected.wait(timeout)

    def close(self) -> None:
        """Stop listening and close the connection."""
        self._closed.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=CHECK_SECONDS * 5)

    def _run(self) -> None:
        delay = RECONNECT_FIRST_SECONDS
        while not self._closed.is_set():
            try:
                self._listen()
            except psycopg.Error as error:
                if self._closed.is_set():
                    break
                if self._backend_pid is not None:
                    delay = RECONNECT_FIRST_SECONDS
                logger.warning(
                    "listening on %s failed: %s; reconnecting in %.1f s",
                    self.channel,
                    _one_line(error),
                    delay,
                )
                self._closed.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
            finally:
                self._connected.clear()
                self._backend_pid = None

    def _listen(self) -> None:
        with psycopg.connect(**self._connect_args, autocommit=True) as connection:
            connection.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(self.channel))
            )
            self._backend_pid = connection.info.backend_pid
            logger.info("listening on %s", self.channel)
            # Events committed while no connection listened sent no
            # notification here, so waiters look again now.
            self.notify()
            self._connected.set()
            while not self._closed.is_set():
                for _notification in connection.notifies(
                    timeout=CHECK_SECONDS, stop_after=1
                ):
                    self.notify()


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else 'no details'}"


def postgres_connect_args(database_url: str, purpose: str) -> dict[str, Any]:
    """Return psycopg connection arguments for `database_url`.

    `purpose` names the connection in `pg_stat_activity.application_name`.
    TCP keepalives (a probe after 30 s of silence, then 3 more 10 s apart)
    make a silently dropped connection fail within about a minute, so that
    the listener reconnects instead of waiting forever.
    """
    env = eventsourcing_env(database_url)
    return {
        "host": env["POSTGRES_HOST"],
        "port": int(env["POSTGRES_PORT"]),
        "user": env["POSTGRES_USER"],
        "password": env["POSTGRES_PASSWORD"] or None,
        "dbname": env["POSTGRES_DBNAME"],
        "connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "application_name": purpose[:63],
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


def notification_channel(recorder: Any) -> str | None:
    """Return the channel the recorder notifies on insert, or None if it has none."""
    channel = getattr(recorder, "channel_name", None)
    return channel if isinstance(channel, str) and channel else None


def open_change_signal(database_url: str, recorder: Any, purpose: str) -> ChangeSignal:
    """Return a started listener on PostgreSQL, else a polling signal."""
    channel = notification_channel(recorder)
    if channel is None or not is_postgres(database_url):
        return ChangeSignal(POLL_SECONDS)
    args = postgres_connect_args(database_url, purpose)
    return PostgresListener(args, channel).start()


class WaitingLimiter:
    """Caps the requests of one process that may wait at the same time.

    A web worker has a fixed number of threads, and a request that waits (a
    long-poll of the feed, a read with `min_position`) holds one of them. The
    process-wide cap keeps threads free for other requests, such as `/healthz`,
    and the per-client cap keeps one token from taking every waiting slot. A
    request that gets no slot is served at once instead of waiting.
    """

    def __init__(self, max_waiting: int, max_waiting_per_client: int) -> None:
        if max_waiting < 0 or max_waiting_per_client < 1:
            raise ValueError(
                "max_waiting must not be negative and max_waiting_per_client "
                "must be at least 1"
            )
        self.max_waiting = max_waiting
        self.max_waiting_per_client = max_waiting_per_client
        self._lock = threading.Lock()
        self._waiting = 0
        self._by_client: dict[str, int] = {}
        self._rejected = 0
        self._rejected_since_log = 0
        self._last_log = float("-inf")

    @property
    def waiting(self) -> int:
        """The number of requests that hold a slot now."""
        with self._lock:
            return self._waiting

    @property
    def rejected(self) -> int:
        """The number of requests refused a slot since the limiter was built."""
        with self._lock:
            return self._rejected

    def try_acquire(self, client: str) -> bool:
        """Take a waiting slot for `client`; return False when a cap is reached."""
        with self._lock:
            held = self._by_client.get(client, 0)
            if self._waiting >= self.max_waiting or held >= self.max_waiting_per_client:
                self._count_rejection(held)
                return False
            self._waiting += 1
            self._by_client[client] = held + 1
            return True

    def release(self, client: str) -> None:
        """Give back a slot taken by `try_acquire(client)`."""
        with self._lock:
            held = self._by_client.get(client, 0)
            if held <= 0:
                raise RuntimeError(f"no waiting slot is held for {client!r}")
            self._waiting -= 1
            if held == 1:
                del self._by_client[client]
            else:
                self._by_client[client] = held - 1

    @contextmanager
    def slot(self, client: str) -> Iterator[bool]:
        """Hold a waiting slot for the block; yield whether one was granted."""
        granted = self.try_acquire(client)
        try:
            yield granted
        finally:
            if granted:
                self.release(client)

    def _count_rejection(self, held_by_client: int) -> None:
        # Called with the lock held. Rejections come in bursts, so they are
        # logged at most once per interval, with the count since the last one.
        self._rejected += 1
        self._rejected_since_log += 1
        now = time.monotonic()
        if now - self._last_log < REJECTION_LOG_SECONDS:
            return
        logger.warning(
            "%d request(s) served without waiting: %d of %d waiting "
            "slots are in use, %d of %d by the latest client",
            self._rejected_since_log,
            self._waiting,
            self.max_waiting,
            held_by_client,
            self.max_waiting_per_client,
        )
        self._rejected_since_log = 0
        self._last_log = now
