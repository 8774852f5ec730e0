"""The archive's followers as readiness and metrics see them, and the projection loop.

The follower process runs two followers. The feed follower applies records
pages to the archive log; the archive projector follows that log into the
retention entries in a thread of its own, so that a slow or failing
projection never delays the feed. The projector wakes on a notification of
the archive log's channel on PostgreSQL, on a nudge from the feed follower
after each page, and otherwise polls. Both write heartbeat rows in the
archive database.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import Engine

from services.archive.application import ArchiveApplication
from services.archive.feed import FeedPage
from services.archive.readmodels import (
    RetentionProjector,
    projected_position,
    records_head,
)
from shared.heartbeats import (
    FollowerState,
    IdleBeats,
    read_heartbeats,
    write_heartbeat,
)
from shared.wakeups import ChangeSignal

logger = logging.getLogger(__name__)

FOLLOWER_NAME = "archive_follower"
PROJECTOR_NAME = "archive_projector"
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0
STOP_TIMEOUT_SECONDS = 10.0


class ProjectionLoop:
    """Keeps the retention entries in step with the archive log, in a thread."""

    def __init__(self, projector: RetentionProjector, signal: ChangeSignal) -> None:
        self.projector = projector
        self.signal = signal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def nudge(self) -> None:
        """Wake the loop, after the feed follower stored new archive events."""
        self.signal.notify()

    def start(self) -> None:
        """Start the loop in a thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name="archive-projector", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after its last catch-up, and close the signal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
            if self._thread.is_alive():
                logger.error(
                    "archive projector did not stop within %.0f s", STOP_TIMEOUT_SECONDS
                )
            self._thread = None
        self.signal.close()

    def run(self, stop: threading.Event) -> None:
        """Project new archive events until `stop` is set, then catch up once more."""
        idle_beats = IdleBeats()
        delay = FIRST_RETRY_SECONDS
        failures = 0
        while not stop.is_set():
            mark = self.signal.mark()
            try:
                applied = self.projector.catch_up()
                if applied or idle_beats.due():
                    self.beat()
                    idle_beats.reset()
            except Exception as error:
                failures += 1
                _log_failure(error, failures, delay)
                stop.wait(delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            if failures:
                logger.info("archive projector recovered after %d failures", failures)
                failures = 0
                delay = FIRST_RETRY_SECONDS
            self.signal.wait(mark, self.signal.poll_interval, stop)
        self._finish()

    def beat(self) -> None:
        """Write the projector's heartbeat: its position and the archive log head."""
        app = self.projector.app
        engine = self.projector.engine
        position = projected_position(engine)
        with engine.begin() as connection:
            write_heartbeat(
                connection,
                PROJECTOR_NAME,
                position=position,
                head=archive_head(app),
                last_event_at=_event_time(app, position),
            )

    def _finish(self) -> None:
        # A follower that stops leaves no applied page unprojected.
        try:
            self.projector.catch_up()
            self.beat()
        except Exception:
            logger.exception("archive projector failed its last catch-up")


def _log_failure(error: Exception, failures: int, delay: float) -> None:
    if failures == 1:
        logger.exception("archive projector failed; retrying in %.1f s", delay)
    else:
        logger.warning(
            "archive projector failed again (attempt %d): %s; retrying in %.1f s",
            failures,
            error,
            delay,
        )


def archive_head(app: ArchiveApplication) -> int:
    """Return the position of the newest event in the archive log, 0 if none."""
    return app.recorder.max_notification_id() or 0


def _event_time(app: ArchiveApplication, position: int) -> datetime | None:
    if position <= 0:
        return None
    found = app.recorder.select_notifications(start=position, limit=1)
    if not found or found[0].id != position:
        return None
    timestamp = getattr(app.mapper.to_domain_event(found[0]), "timestamp", None)
    return timestamp if isinstance(timestamp, datetime) else None


def record_follower_heartbeat(
    engine: Engine, *, position: int, page: FeedPage | None
) -> None:
    """Write the feed follower's heartbeat after a page, or while it cannot fetch one.

    Without a page the stored head and event time stay as they are.
    """
    head = page.head_position if page is not None else None
    last_event_at = None
    if page is not None and page.events:
        last_event_at = page.events[-1].recorded_at
    with engine.begin() as connection:
        write_heartbeat(
            connection,
            FOLLOWER_NAME,
            position=position,
            head=head,
            last_event_at=last_event_at,
        )


def follower_states(app: ArchiveApplication, engine: Engine) -> list[FollowerState]:
    """Return the feed follower and the archive projector with their heartbeats."""
    beats = read_heartbeats(engine, [FOLLOWER_NAME, PROJECTOR_NAME])
    follower_beat = beats.get(FOLLOWER_NAME)
    seen_head = records_head(engine)
    if follower_beat is not None:
        seen_head = max(seen_head, follower_beat.head)
    return [
        FollowerState(
            name=FOLLOWER_NAME,
            label="archive follower",
            position=app.processed_position(),
            head=seen_head,
            heartbeat=follower_beat,
        ),
        FollowerState(
            name=PROJECTOR_NAME,
            label="archive projector",
            position=projected_position(engine),
            head=archive_head(app),
            heartbeat=beats.get(PROJECTOR_NAME),
        ),
    ]
