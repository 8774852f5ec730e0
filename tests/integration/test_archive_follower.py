"""The archive follower against a fake records feed served on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date
from uuid import uuid4

import pytest
from eventsourcing.persistence import OperationalError

from services.archive.application import ArchiveApplication
from services.archive.domain.schedule import load_schedule
from services.archive.follower import FeedClient, Follower, run
from services.archive.readmodels import (
    RetentionProjector,
    get_entry,
    rebuild,
    records_head,
)
from services.archive.testing import FakeRecordsFeed, FeedScript
from shared.config import Settings
from shared.locks import LockHeldError
from shared.storage import create_sql_engine, eventsourcing_env

TOKEN = "subscriber-secret-token"


@pytest.fixture
def script():
    return FeedScript()


@pytest.fixture
def feed(script):
    with FakeRecordsFeed(script, tokens=[TOKEN]) as served:
        yield served


@pytest.fixture
def store(database_url):
    app = ArchiveApplication(env=eventsourcing_env(database_url))
    engine = create_sql_engine(database_url, writer=True)
    yield app, engine
    engine.dispose()
    app.close()


def make_follower(store, feed, token=TOKEN, **options) -> Follower:
    app, engine = store
    options.setdefault("page_limit", 5)
    options.setdefault("long_poll_seconds", 1)
    options.setdefault("max_backoff_seconds", 0.3)
    options.setdefault("slow_retry_seconds", 0.3)
    return Follower(
        app,
        RetentionProjector(app, engine, load_schedule()),
        FeedClient(feed.url, token),
        **options,
    )


class Running:
    """A follower loop in a background thread.

    Tests read the read model only after `halt`, because the in-memory read
    model is one SQLite connection that two threads cannot use at once. A
    step that has applied a page finishes its projection before the loop
    stops.
    """

    def __init__(self, target: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[threading.Event], None]) -> None:
        try:
            target(self.stop)
        except BaseException as error:
            self.errors.append(error)

    def halt(self) -> float:
        """Stop the loop and return how long it took to return."""
        started = time.monotonic()
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        assert self.errors == []
        return time.monotonic() - started


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def leave_centre(script: FeedScript, expelled_on: date) -> object:
    pupil_id = uuid4()
    script.pupil_registered(pupil_id, date(2024, 9, 2))
    script.pupil_enrolled(pupil_id, date(2024, 9, 2))
    script.pupil_expelled(pupil_id, expelled_on)
    return pupil_id


def archive_topics(app: ArchiveApplication) -> list[tuple[str, int]]:
    notifications = app.recorder.select_notifications(start=None, limit=10_000)
    return [(str(n.originator_id), n.originator_version) for n in notifications]


def test_follower_catches_up_in_pages(store, feed, script):
    app, engine = store
    pupils = [leave_centre(script, date(2025, 5, 31)) for _ in range(6)]
    script.skip(2)
    running = Running(make_follower(store, feed).run)

    wait_until(lambda: app.processed_position() == script.head)
    running.halt()

    assert records_head(engine) == script.head

    for pupil_id in pupils:
        entry = get_entry(engine, "personal_file", pupil_id)
        assert entry is not None
        assert entry.destroyable_from == date(2031, 1, 1)
    afters = [int(request["args"]["after"]) for request in feed.requests]
    assert afters == sorted(afters)
    assert all(request["args"]["limit"] == "5" for request in feed.requests)


def test_follower_applies_new_events_live(store, feed, script):
    app, engine = store
    running = Running(make_follower(store, feed).run)
    wait_until(lambda: len(feed.requests) >= 1)

    journal_id = uuid4()
    script.journal_opened(journal_id, date(2025, 9, 1), date(2026, 5, 31))
    script.journal_closed(journal_id, date(2026, 5, 29))
    wait_until(lambda: app.processed_position() == script.head)
    running.halt()

    entry = get_entry(engine, "journal", journal_id)
    assert entry is not None
    assert entry.destroyable_from == date(2032, 1, 1)


def test_follower_resumes_after_feed_outage(store, feed, script, caplog):
    caplog.set_level(logging.INFO, logger="services.archive.follower")
    app, engine = store
    first = leave_centre(script, date(2025, 5, 31))
    running = Running(make_follower(store, feed).run)
    wait_until(lambda: app.processed_position() == script.head)

    feed.stop()
    wait_until(lambda: "retrying" in caplog.text)
    second = leave_centre(script, date(2026, 5, 31))
    time.sleep(0.5)
    assert app.processed_position() < script.head

    feed.start()
    wait_until(lambda: app.processed_position() == script.head)
    running.halt()

    versions = archive_topics(app)
    assert len(versions) == len(set(versions))
    assert len(versions) == 4  # each file: opened, then closed
    assert get_entry(engine, "personal_file", first).destroyable_from == date(
        2031, 1, 1
    )
    assert get_entry(engine, "personal_file", second).destroyable_from == date(
        2032, 1, 1
    )
    assert "ConnectionError" in caplog.text
    assert "resumed at records position" in caplog.text


def test_follower_retries_server_errors(store, feed, script, caplog):
    caplog.set_level(logging.WARNING, logger="services.archive.follower")
    app, _engine = store
    feed.failure_status = 503
    leave_centre(script, date(2025, 5, 31))
    running = Running(make_follower(store, feed).run)
    wait_until(lambda: len(feed.requests) >= 3)

    assert app.processed_position() == 0
    feed.failure_status = None
    wait_until(lambda: app.processed_position() == script.head)
    running.halt()

    assert "HTTP 503" in caplog.text


def test_follower_retries_database_errors(store, feed, script, caplog):
    caplog.set_level(logging.WARNING, logger="services.archive.follower")
    app, engine = store
    pupil_id = leave_centre(script, date(2025, 5, 31))
    original = app.apply_page
    failures = []

    def fail_twice(page):
        if len(failures) < 2:
            failures.append(page.last_position)
            raise OperationalError("database is locked")
        return original(page)

    app.apply_page = fail_twice
    running = Running(make_follower(store, feed).run)
    wait_until(lambda: app.processed_position() == script.head)
    running.halt()

    assert failures == [script.head, script.head]
    assert "database is locked" in caplog.text
    versions = archive_topics(app)
    assert len(versions) == len(set(versions)) == 2
    assert get_entry(engine, "personal_file", pupil_id).destroyable_from == date(
        2031, 1, 1
    )


def test_rejected_token_logged_without_secret(store, feed, script, caplog):
    caplog.set_level(logging.INFO, logger="services.archive.follower")
    app, _engine = store
    leave_centre(script, date(2025, 5, 31))
    wrong = "wrong-secret-token"
    running = Running(make_follower(store, feed, token=wrong).run)
    wait_until(lambda: len(feed.requests) >= 2)
    running.halt()

    assert app.processed_position() == 0
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert "HTTP 401" in errors[0].getMessage()
    assert wrong not in caplog.text
    assert TOKEN not in caplog.text


def test_follower_sends_bearer_token(store, feed, script):
    app, _engine = store
    leave_centre(script, date(2025, 5, 31))
    running = Running(make_follower(store, feed).run)
    wait_until(lambda: app.processed_position() == script.head)
    running.halt()

    assert all(request["authorized"] for request in feed.requests)


def test_stop_interrupts_long_poll(store, feed, script):
    app, _engine = store
    leave_centre(script, date(2025, 5, 31))
    running = Running(make_follower(store, feed, long_poll_seconds=10).run)
    wait_until(lambda: app.processed_position() == script.head)
    wait_until(lambda: feed.requests[-1]["args"]["wait"] == "10")
    time.sleep(0.3)

    assert running.halt() < 1.5


def test_stop_interrupts_backoff(store, feed, script):
    feed.stop()
    running = Running(make_follower(store, feed, max_backoff_seconds=5).run)
    time.sleep(1.0)

    assert running.halt() < 1.5


def test_replayed_delivery_processed_once(store, feed, script):
    app, engine = store
    pupil_id = leave_centre(script, date(2025, 5, 31))
    follower = make_follower(store, feed)
    follower.projector.prepare()
    follower.step()
    log_head = app.recorder.max_notification_id()

    # The same page delivered again, as after a lost acknowledgement.
    page = script.parsed_page(after=0)
    assert not app.apply_page(page)
    follower.step()

    assert app.recorder.max_notification_id() == log_head
    assert get_entry(engine, "personal_file", pupil_id).position == script.head


def settings_for(tmp_path, database_url: str, feed: FakeRecordsFeed) -> Settings:
    return Settings.from_env(
        {
            "ARCHIVE_DATABASE_URL": database_url,
            "RECORDS_DATABASE_URL": f"sqlite:///{tmp_path / 'records.sqlite'}",
            "ARCHIVE_RECORDS_URL": feed.url,
            "ARCHIVE_FEED_TOKEN": TOKEN,
        },
        data_dir=tmp_path / "data",
    )


def test_run_follows_and_blocks_rebuild(tmp_path, feed, script):
    url = f"sqlite:///{tmp_path / 'archive.sqlite'}"
    settings = settings_for(tmp_path, url, feed)
    pupil_id = leave_centre(script, date(2025, 5, 31))
    running = Running(lambda stop: run(settings, stop))
    engine = create_sql_engine(url)
    try:
        wait_until(lambda: _entry_or_none(engine, pupil_id) is not None)

        with pytest.raises(LockHeldError, match="archive follower"):
            rebuild(settings, progress=False)
        assert running.halt() < 1.5

        assert rebuild(settings, progress=False) == 2
        entry = get_entry(engine, "personal_file", pupil_id)
        assert entry is not None
        assert entry.destroyable_from == date(2031, 1, 1)
    finally:
        engine.dispose()


def _entry_or_none(engine, pupil_id):
    try:
        return get_entry(engine, "personal_file", pupil_id)
    except Exception:  # the follower may not have created the tables yet
        return None
