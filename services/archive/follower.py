"""The archive follower: reads the records feed over HTTP and applies it.

Each page is applied to the retention aggregates together with the records
position it covers (one transaction), then the read model catches up with
the archive's own log. Failures back off and resume from the stored position.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eventsourcing.persistence import InterfaceError, OperationalError
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from tenacity import RetryCallState, Retrying, retry_if_exception_type
from tenacity.wait import wait_exponential, wait_random

from services.archive.application import ArchiveApplication
from services.archive.domain.schedule import RetentionSchedule, load_schedule
from services.archive.feed import FeedFormatError, FeedPage, parse_page
from services.archive.projection import ProjectionLoop, record_follower_heartbeat
from services.archive.readmodels import (
    RetentionProjector,
    store_records_head,
    writer_lock,
)
from shared.clock import utc_now
from shared.config import ConfigurationError, Settings
from shared.heartbeats import IdleBeats
from shared.locks import ProcessLock
from shared.storage import create_sql_engine, is_memory
from shared.wakeups import open_change_signal

logger = logging.getLogger(__name__)

FEED_PATH = "/api/v1/events"
PAGE_LIMIT = 500
LONG_POLL_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 5.0
# A long-polled response may take `wait` seconds, plus this margin to arrive.
READ_MARGIN_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 5.0
# Wrong tokens and malformed pages need a person, so they are retried slowly.
SLOW_RETRY_SECONDS = 30.0
# Maximum length of a rejected request's problem detail in the log.
PROBLEM_DETAIL_MAX_CHARS = 400
# How often a blocked feed request checks whether the follower must stop.
STOP_POLL_SECONDS = 0.2
# While failures repeat, every this many attempts is logged as a warning.
WARN_EVERY_ATTEMPTS = 12

T = TypeVar("T")


class FeedUnavailableError(Exception):
    """The records service could not be reached or failed (5xx, 429)."""


class FeedAuthError(Exception):
    """The records service rejected the follower's token (401 or 403)."""


class FeedRejectedError(Exception):
    """The records service rejected the feed request with another 4xx."""


class StopRequestedError(Exception):
    """The follower was asked to stop while it waited."""


# Errors after which the follower waits and tries the same position again.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    FeedUnavailableError,
    FeedAuthError,
    FeedRejectedError,
    FeedFormatError,
    OperationalError,
    InterfaceError,
    DBAPIError,
)
SLOW_ERRORS: tuple[type[BaseException], ...] = (
    FeedAuthError,
    FeedRejectedError,
    FeedFormatError,
)


class FeedClient:
    """Reads pages of `GET /api/v1/events` from the records service."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.url = base_url.rstrip("/") + FEED_PATH
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        if token:
            self._session.headers["Authorization"] = f"Bearer {token}"

    def fetch(self, *, after: int, limit: int, wait: int) -> FeedPage:
        """Return the page of public events after records position `after`."""
        params = {"after": after, "limit": limit, "wait": wait}
        timeout = (CONNECT_TIMEOUT_SECONDS, wait + READ_MARGIN_SECONDS)
        try:
            response = self._session.get(self.url, params=params, timeout=timeout)
        except requests.RequestException as error:
            raise FeedUnavailableError(
                f"GET {self.url} failed: {type(error).__name__}"
            ) from error

        status = response.status_code
        if status in (401, 403):
            raise FeedAuthError(
                f"GET {self.url} was rejected with HTTP {status}: check the "
                "subscriber token in ARCHIVE_FEED_TOKEN"
            )
        if status == 429 or status >= 500:
            raise FeedUnavailableError(f"GET {self.url} returned HTTP {status}")
        if status != 200:
            raise FeedRejectedError(
                f"GET {self.url} returned HTTP {status}{_problem_detail(response)}"
            )
        try:
            body = response.json()
        except ValueError:
            raise FeedFormatError(f"GET {self.url} returned invalid JSON") from None
        return parse_page(body, after=after)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()


def _problem_detail(response: requests.Response) -> str:
    """Return ": <detail>" of a problem+json response, or "" without one.

    The records service's details name positions and fields, never personal
    data, so they are safe to log.
    """
    try:
        body = response.json()
    except ValueError:
        return ""
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str) or not detail.strip():
        return ""
    return f": {detail.strip().rstrip('.')[:PROBLEM_DETAIL_MAX_CHARS]}"


class Follower:
    """Applies the records feed to the archive, one page at a time."""

    def __init__(
        self,
        app: ArchiveApplication,
        projector: RetentionProjector,
        client: FeedClient,
        *,
        page_limit: int = PAGE_LIMIT,
        long_poll_seconds: int = LONG_POLL_SECONDS,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
        slow_retry_seconds: float = SLOW_RETRY_SECONDS,
        projection: ProjectionLoop | None = None,
    ) -> None:
        self.app = app
        self.projector = projector
        self.client = client
        # Without a projection loop, each step projects the page itself.
        self.projection = projection
        self.page_limit = page_limit
        self.long_poll_seconds = long_poll_seconds
        self.slow_retry_seconds = slow_retry_seconds
        # Jitter spreads the retries of several followers after an outage.
        self._backoff = wait_exponential(
            multiplier=0.2, max=max_backoff_seconds
        ) + wait_random(0, 0.3)
        self._behind = True
        self._position = 0
        self._failing = False
        self._failure_beats = IdleBeats()

    def step(self, stop: threading.Event | None = None) -> FeedPage:
        """Fetch the next page, apply it, update the read model and the head."""
        position = self._position = self.app.processed_position()
        # While the records head is ahead, ask without waiting: the rest may
        # be events the feed does not publish, and a long poll would stall.
        wait = 0 if self._behind else self.long_poll_seconds
        page = _call_interruptibly(
            lambda: self.client.fetch(after=position, limit=self.page_limit, wait=wait),
            stop,
        )
        if page.last_position < position:
            logger.warning(
                "feed returned last_position %d, before the processed position %d",
                page.last_position,
                position,
            )
        self.app.apply_page(page)
        if self.projection is None:
            self.projector.catch_up()
        else:
            self.projection.nudge()

        store_records_head(self.projector.engine, page.head_position, utc_now())
        self._behind = page.head_position > page.last_position
        self._position = max(position, page.last_position)
        record_follower_heartbeat(
            self.projector.engine, position=self._position, page=page
        )
        if self._failing:
            self._failing = False
            logger.info("archive follower resumed at records position %d", position)
        return page

    def run(self, stop: threading.Event) -> None:
        """Follow the feed until `stop` is set, retrying after failures."""
        logger.info(
            "archive follower started at records position %d, reading %s",
            self.app.processed_position(),
            self.client.url,
        )
        self._retrying(stop)(self.projector.prepare)
        if self.projection is not None:
            self.projection.start()
        try:
            while not stop.is_set():
                try:
                    self._retrying(stop)(self.step, stop)
                except StopRequestedError:
                    break
        finally:
            if self.projection is not None:
                self.projection.stop()
        logger.info(
            "archive follower stopped at records position %d",
            self.app.processed_position(),
        )

    def _retrying(self, stop: threading.Event) -> Retrying:
        def pause(seconds: float) -> None:
            stop.wait(seconds)

        return Retrying(
            retry=retry_if_exception_type(RETRYABLE_ERRORS),
            wait=self._retry_delay,
            stop=lambda _state: stop.is_set(),
            sleep=pause,
            before_sleep=self._log_retry,
            retry_error_callback=lambda _state: None,
        )

    def _retry_delay(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, SLOW_ERRORS):
            return self.slow_retry_seconds
        return float(self._backoff(state))

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = state.upcoming_sleep
        attempt = state.attempt_number
        # The database may be the failing part, so the position is the one
        # that the last step read rather than a new query.
        position = self._position
        self._failing = True
        self._beat_while_failing()
        if isinstance(error, SLOW_ERRORS):
            logger.error(
                "archive follower: %s; retrying in %.1f s (records position %d, "
                "attempt %d)",
                error,
                delay,
                position,
                attempt,
            )
            return
        level = logging.WARNING
        if attempt != 1 and attempt % WARN_EVERY_ATTEMPTS != 0:
            level = logging.DEBUG
        logger.log(
            level,
            "archive follower: %s; retrying in %.1f s (records position %d, "
            "attempt %d)",
            error,
            delay,
            position,
            attempt,
        )

    def _beat_while_failing(self) -> None:
        # The heartbeat shows that the follower is alive and retrying; the
        # database may be what fails, so a failed beat is only logged.
        if not self._failure_beats.due():
            return
        try:
            record_follower_heartbeat(
                self.projector.engine, position=self._position, page=None
            )
        except (DBAPIError, OperationalError, InterfaceError) as error:
            logger.debug("archive follower heartbeat failed: %s", error)


@dataclass
class _Outcome:
    value: Any = None
    error: BaseException | None = None


def _call_interruptibly(call: Callable[[], T], stop: threading.Event | None) -> T:
    """Run a blocking call in a daemon thread, giving up early once `stop` is set.

    A long-polled request can block for many seconds. The abandoned thread
    ends by itself when the response arrives or the read timeout expires.
    """
    if stop is None:
        return call()
    outcomes: queue.Queue[_Outcome] = queue.Queue(maxsize=1)

    def target() -> None:
        try:
            outcomes.put(_Outcome(value=call()))
        except BaseException as error:  # handed to the waiting thread
            outcomes.put(_Outcome(error=error))

    threading.Thread(target=target, name="archive-feed-request", daemon=True).start()
    while True:
        try:
            outcome = outcomes.get(timeout=STOP_POLL_SECONDS)
        except queue.Empty:
            if stop.is_set():
                raise StopRequestedError("the follower is stopping") from None
            continue
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[no-any-return]


def run(
    settings: Settings,
    stop: threading.Event,
    *,
    app: ArchiveApplication | None = None,
    engine: Engine | None = None,
    schedule: RetentionSchedule | None = None,
) -> None:
    """Follow the records feed into the archive until `stop` is set.

    `app`, `engine` and `schedule` default to those of `settings`. Tests pass
    their own so that they can share an in-memory store.
    """
    if settings.archive_feed_token is None:
        if settings.production:
            raise ConfigurationError("ARCHIVE_FEED_TOKEN is required in production")
        logger.error(
            "ARCHIVE_FEED_TOKEN is not set: the records feed will reject the "
            "follower until a subscriber token is configured"
        )
    schedule = schedule or load_schedule()
    with _running_locks(settings):
        app = app if app is not None else ArchiveApplication.from_settings(settings)
        if engine is None:
            engine = create_sql_engine(settings.archive_database_url, writer=True)
        projector = RetentionProjector(app, engine, schedule)
        client = FeedClient(settings.records_url, settings.archive_feed_token)
        try:
            Follower(
                app, projector, client, projection=_projection(settings, projector)
            ).run(stop)
        finally:
            client.close()


def _projection(
    settings: Settings, projector: RetentionProjector
) -> ProjectionLoop | None:
    url = settings.archive_database_url
    # The in-memory read model is one connection, which two threads cannot
    # share, so there each step projects its page itself.
    if is_memory(url):
        return None
    signal = open_change_signal(
        url, projector.app.recorder, "pupil-records archive projector"
    )
    return ProjectionLoop(projector, signal)


@contextmanager
def _running_locks(settings: Settings) -> Iterator[None]:
    # The writer lock keeps a second follower and `archive rebuild` out. The
    # shared services lock makes the rebuild commands of both services fail
    # while the follower runs, as they do while `pupil-records run` runs.
    from services.runner import services_lock_path

    owner = "archive follower"
    with writer_lock(settings, owner):
        with ProcessLock(services_lock_path(settings), owner=owner, shared=True):
            yield
