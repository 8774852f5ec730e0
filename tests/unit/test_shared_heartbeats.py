"""Heartbeat rows, stall verdicts and the change signal that wakes followers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Engine, create_engine

from shared.heartbeats import (
    FollowerCollector,
    FollowerState,
    Heartbeat,
    IdleBeats,
    create_heartbeat_table,
    read_heartbeats,
    stall_reason,
    write_heartbeat,
)
from shared.wakeups import ChangeSignal

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = create_engine("sqlite://")
    create_heartbeat_table(engine)
    yield engine
    engine.dispose()


def beat(engine: Engine, position: int, head: int | None, at: datetime, **extra):
    with engine.begin() as connection:
        write_heartbeat(
            connection, "projector", position=position, head=head, now=at, **extra
        )
    return read_heartbeats(engine, ["projector"])["projector"]


def state(position: int, head: int, heartbeat: Heartbeat | None) -> FollowerState:
    return FollowerState("projector", "projector", position, head, heartbeat)


def test_first_beat_counts_as_progress(engine):
    row = beat(engine, 3, 10, START)

    assert row.position == 3
    assert row.head == 10
    assert row.progressed_at == START
    assert row.beat_at == START
    assert row.last_event_at is None


def test_beat_without_advance_keeps_progress_time(engine):
    beat(engine, 3, 10, START)

    row = beat(engine, 3, 12, START + timedelta(seconds=30))

    assert row.progressed_at == START
    assert row.beat_at == START + timedelta(seconds=30)
    assert row.head == 12


def test_advance_moves_progress_time(engine):
    beat(engine, 3, 10, START)

    row = beat(engine, 4, 10, START + timedelta(seconds=30))

    assert row.progressed_at == START + timedelta(seconds=30)


def test_beat_at_head_moves_progress_time(engine):
    beat(engine, 10, 10, START)

    row = beat(engine, 10, 10, START + timedelta(minutes=5))

    assert row.progressed_at == START + timedelta(minutes=5)


def test_missing_head_keeps_stored_head(engine):
    beat(engine, 3, 10, START)

    row = beat(engine, 3, None, START + timedelta(seconds=1))

    assert row.head == 10


def test_event_time_kept_until_replaced(engine):
    recorded = START - timedelta(minutes=1)
    beat(engine, 3, 10, START, last_event_at=recorded)

    kept = beat(engine, 3, 10, START + timedelta(seconds=1))
    replaced = beat(engine, 4, 10, START + timedelta(seconds=2), last_event_at=START)

    assert kept.last_event_at == recorded
    assert replaced.last_event_at == START


def test_unknown_names_absent(engine):
    beat(engine, 1, 1, START)

    assert read_heartbeats(engine, ["other"]) == {}


def test_stalled_behind_head(engine):
    row = beat(engine, 3, 10, START)

    reason = stall_reason(state(3, 10, row), 60, now=START + timedelta(seconds=61))

    assert reason is not None
    assert "has not advanced for 61 s" in reason
    assert "position 3" in reason
    assert "head is at 10" in reason


def test_not_stalled_within_limit(engine):
    row = beat(engine, 3, 10, START)

    assert (
        stall_reason(state(3, 10, row), 60, now=START + timedelta(seconds=59)) is None
    )


def test_idle_at_head_not_stalled(engine):
    row = beat(engine, 10, 10, START)

    assert stall_reason(state(10, 10, row), 60, now=START + timedelta(hours=1)) is None


def test_live_head_decides_stall(engine):
    # The row says caught up, but the log has grown since the last beat.
    row = beat(engine, 10, 10, START)

    reason = stall_reason(state(10, 12, row), 60, now=START + timedelta(minutes=2))

    assert reason is not None
    assert "head is at 12" in reason


def test_silent_follower_stalled_when_beats_required(engine):
    row = beat(engine, 10, 10, START)
    later = START + timedelta(minutes=2)

    required = stall_reason(state(10, 10, row), 60, require_beats=True, now=later)
    optional = stall_reason(state(10, 10, row), 60, now=later)

    assert required is not None
    assert "has not reported for 120 s" in required
    assert optional is None


def test_no_heartbeat_no_verdict():
    assert stall_reason(state(0, 50, None), 60, require_beats=True) is None


def test_lag_never_negative():
    assert state(12, 10, None).lag == 0
    assert state(7, 10, None).lag == 3


def test_collector_exports_follower_values(engine):
    recorded = datetime.now(UTC) - timedelta(seconds=30)
    row = beat(engine, 7, 9, datetime.now(UTC), last_event_at=recorded)
    registry = CollectorRegistry()
    registry.register(FollowerCollector(lambda: [state(7, 10, row)]))

    text = generate_latest(registry).decode()

    assert 'pupil_records_follower_position{follower="projector"} 7.0' in text
    assert 'pupil_records_follower_head_position{follower="projector"} 10.0' in text
    assert 'pupil_records_follower_lag_events{follower="projector"} 3.0' in text
    age = _value(text, "pupil_records_follower_last_event_age_seconds")
    assert 29 <= age < 60


def test_collector_survives_database_error():
    def broken() -> list[FollowerState]:
        raise OSError("connection refused")

    registry = CollectorRegistry()
    registry.register(FollowerCollector(broken))

    text = generate_latest(registry).decode()

    assert "# TYPE pupil_records_follower_position gauge" in text
    assert 'follower="' not in text


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


def test_idle_beats_due_once_per_interval():
    beats = IdleBeats(interval=60)

    assert beats.due()
    assert not beats.due()


def test_idle_beats_reset_postpones():
    beats = IdleBeats(interval=60)
    beats.reset()

    assert not beats.due()


def test_signal_wakes_waiter_on_notify():
    signal = ChangeSignal(poll_interval=60)
    mark = signal.mark()
    timer = threading.Timer(0.05, signal.notify)
    timer.start()

    started = time.monotonic()
    changed = signal.wait(mark, timeout=10)

    assert changed
    assert time.monotonic() - started < 5
    timer.join()


def test_signal_change_before_wait_not_missed():
    signal = ChangeSignal()
    mark = signal.mark()
    signal.notify()

    assert signal.wait(mark, timeout=0)


def test_signal_times_out_without_change():
    signal = ChangeSignal()

    assert not signal.wait(signal.mark(), timeout=0.05)


def test_signal_wait_ends_on_stop():
    signal = ChangeSignal()
    stop = threading.Event()
    timer = threading.Timer(0.05, stop.set)
    timer.start()

    started = time.monotonic()
    changed = signal.wait(signal.mark(), timeout=30, stop=stop)

    assert not changed
    assert time.monotonic() - started < 5
    timer.join()
