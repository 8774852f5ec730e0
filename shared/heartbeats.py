"""Heartbeats of followers: position, head and the time of their last progress.

A follower (the records projector, the archive follower, the archive
projector) writes one row in its service's database. Readiness checks and
`/metrics` read the rows, so every web worker reports the same values however
many processes serve.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from eventsourcing.persistence import PersistenceError
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    MetaData,
    String,
    Table,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from shared.clock import utc_now

logger = logging.getLogger(__name__)

# A caught-up follower refreshes its row at most this often while idle.
IDLE_BEAT_SECONDS = 5.0

metadata = MetaData()

heartbeats = Table(
    "follower_heartbeats",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("head", BigInteger, nullable=False),
    # When the position last advanced, or was last seen at the head.
    Column("progressed_at", DateTime(timezone=True), nullable=False),
    # When the follower last wrote the row, progressing or not.
    Column("beat_at", DateTime(timezone=True), nullable=False),
    # When the last event the follower processed was recorded.
    Column("last_event_at", DateTime(timezone=True)),
)


@dataclass(frozen=True)
class Heartbeat:
    """The stored row of one follower."""

    name: str
    position: int
    head: int
    progressed_at: datetime
    beat_at: datetime
    last_event_at: datetime | None


@dataclass(frozen=True)
class FollowerState:
    """A follower as readiness and metrics see it: live values and its heartbeat."""

    name: str
    label: str
    position: int
    head: int
    heartbeat: Heartbeat | None

    @property
    def lag(self) -> int:
        """Events between the follower's position and the head."""
        return max(0, self.head - self.position)


def create_heartbeat_table(engine: Engine) -> None:
    """Create the heartbeat table if it does not exist."""
    metadata.create_all(engine)


def write_heartbeat(
    connection: Connection,
    name: str,
    *,
    position: int,
    head: int | None,
    last_event_at: datetime | None = None,
    now: datetime | None = None,
) -> None:
    """Store the follower's position and head inside the caller's transaction.

    The progress time moves when the position advanced or reached the head.
    A `head` or `last_event_at` of None keeps the stored value.
    """
    moment = (now if now is not None else utc_now()).astimezone(UTC)
    previous = connection.execute(
        select(heartbeats.c.position, heartbeats.c.head).where(
            heartbeats.c.name == name
        )
    ).first()
    if head is None:
        head = int(previous.head) if previous is not None else position
    values: dict[str, object] = {"position": position, "head": head, "beat_at": moment}
    if previous is None or position > previous.position or position >= head:
        values["progressed_at"] = moment
    if last_event_at is not None:
        values["last_event_at"] = last_event_at.astimezone(UTC)
    if previous is None:
        values.setdefault("progressed_at", moment)
        connection.execute(insert(heartbeats).values(name=name, **values))
    else:
        connection.execute(
            update(heartbeats).where(heartbeats.c.name == name).values(**values)
        )


def read_heartbeats(engine: Engine, names: Iterable[str]) -> dict[str, Heartbeat]:
    """Return the stored heartbeats of `names`, leaving out followers without a row."""
    requested = list(names)
    with engine.connect() as connection:
        rows = connection.execute(
            select(heartbeats).where(heartbeats.c.name.in_(requested))
        ).all()
    return {
        row.name: Heartbeat(
            name=row.name,
            position=int(row.position),
            head=int(row.head),
            progressed_at=_aware(row.progressed_at),
            beat_at=_aware(row.beat_at),
            last_event_at=_aware(row.last_event_at) if row.last_event_at else None,
        )
        for row in rows
    }


def _aware(moment: datetime) -> datetime:
    # SQLite gives the stored UTC time back without its time zone.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class IdleBeats:
    """Tells a caught-up follower when its next idle heartbeat is due."""

    def __init__(self, interval: float = IDLE_BEAT_SECONDS) -> None:
        self.interval = interval
        self._last = float("-inf")

    def due(self) -> bool:
        """Return True at most once per interval, and reset the interval then."""
        now = time.monotonic()
        if now - self._last < self.interval:
            return False
        self._last = now
        return True

    def reset(self) -> None:
        """Start a new interval, after a heartbeat written with progress."""
        self._last = time.monotonic()


def stall_reason(
    state: FollowerState,
    stall_seconds: float,
    *,
    require_beats: bool = False,
    now: datetime | None = None,
) -> str | None:
    """Return why the follower counts as stalled, or None.

    A follower is stalled when the head is ahead of its position and its
    position has not advanced for `stall_seconds`. With `require_beats` it is
    also stalled when it has written no heartbeat for that long, for followers
    whose head is known only from their own heartbeat.
    """
    beat = state.heartbeat
    if beat is None:
        return None
    moment = now if now is not None else utc_now()
    if state.head > state.position:
        still = (moment - beat.progressed_at).total_seconds()
        if still > stall_seconds:
            return (
                f"the {state.label} has not advanced for {still:.0f} s: it is at "
                f"position {state.position}, the head is at {state.head} "
                f"(allowed: {stall_seconds:g} s)"
            )
    silent = (moment - beat.beat_at).total_seconds()
    if require_beats and silent > stall_seconds:
        return (
            f"the {state.label} has not reported for {silent:.0f} s "
            f"(allowed: {stall_seconds:g} s); check that it runs"
        )
    return None


class FollowerCollector(Collector):
    """Exports position, head, lag and ages of followers at each scrape."""

    def __init__(self, states: Callable[[], Sequence[FollowerState]]) -> None:
        self._states = states

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Describing the families without reading the database keeps the
        # registration of the collector free of database connections.
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        try:
            states = self._states()
        except (SQLAlchemyError, PersistenceError, OSError) as error:
            logger.warning("follower metrics unavailable: %s", error)
            states = []
        except Exception:
            # A scrape must not fail: the other metrics are still useful.
            logger.exception("follower metrics failed")
            states = []
        position, head, lag, event_age, progress_age = families
        now = utc_now()
        for state in states:
            labels = [state.name]
            position.add_metric(labels, state.position)
            head.add_metric(labels, state.head)
            lag.add_metric(labels, state.lag)
            beat = state.heartbeat
            if beat is None:
                continue
            progress_age.add_metric(
                labels, max(0.0, (now - beat.progressed_at).total_seconds())
            )
            if beat.last_event_at is not None:
                event_age.add_metric(
                    labels, max(0.0, (now - beat.last_event_at).total_seconds())
                )
        yield from families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        def family(name: str, documentation: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation, labels=["follower"])

        return [
            family(
                "pupil_records_follower_position",
                "Last log position the follower processed",
            ),
            family(
                "pupil_records_follower_head_position",
                "Head position of the log the follower reads",
            ),
            family(
                "pupil_records_follower_lag_events",
                "Log positions between the follower's position and the head",
            ),
            family(
                "pupil_records_follower_last_event_age_seconds",
                "Seconds since the last event the follower processed was recorded",
            ),
            family(
                "pupil_records_follower_last_progress_age_seconds",
                "Seconds since the follower last advanced or was at the head",
            ),
        ]
