"""Stall detection in `/readyz` and follower metrics in `/metrics`, both services."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from flask import Flask

from services.archive.application import ArchiveApplication
from services.archive.domain.schedule import load_schedule
from services.archive.projection import (
    FOLLOWER_NAME,
    PROJECTOR_NAME,
    ProjectionLoop,
    record_follower_heartbeat,
)
from services.archive.readmodels import RetentionProjector
from services.archive.testing import FeedScript
from services.archive.web import create_app as create_archive_app
from services.archive.web.runtime import ArchiveRuntime
from services.records.projector import HEARTBEAT_NAME, RecordsProjector
from services.records.web.runtime import get_runtime
from services.records.web.testing import RecordsWebClient, make_client
from shared.clock import utc_now
from shared.config import Settings
from shared.heartbeats import write_heartbeat
from shared.storage import create_sql_engine, eventsourcing_env
from shared.wakeups import ChangeSignal

LONG_AGO = timedelta(minutes=10)


def metric(text: str, name: str, **labels: str) -> float:
    """Return the value of one sample in Prometheus text output."""
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no sample {prefix.strip()} in the metrics")


# Records service


@pytest.fixture
def web(tmp_path: Path, database_url: str, backend: str) -> Iterator[RecordsWebClient]:
    if backend == "memory":
        pytest.skip("the in-memory store is projected inline before every read")
    client = make_client(tmp_path, database_url)
    yield client
    client.close()


def project_with_heartbeat(web: RecordsWebClient) -> int:
    """Project the log as the projector process does; return the head."""
    runtime = get_runtime(web.app)
    projector = RecordsProjector(
        runtime.application, runtime.engine, heartbeat_name=HEARTBEAT_NAME
    )
    projector.catch_up()
    return runtime.application.head_position()


def age_heartbeat(web: RecordsWebClient, position: int, head: int) -> None:
    """Store a heartbeat whose last progress was long ago."""
    with get_runtime(web.app).engine.begin() as connection:
        write_heartbeat(
            connection,
            HEARTBEAT_NAME,
            position=position,
            head=head,
            now=utc_now() - LONG_AGO,
        )


def test_records_ready_when_projector_current(web):
    web.register_pupil()
    project_with_heartbeat(web)

    response = web.client.get("/readyz")

    assert response.status_code == 200


def test_records_stalled_projector_not_ready(web):
    web.register_pupil()
    head = web.head()
    age_heartbeat(web, 0, head)

    response = web.client.get("/readyz")

    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    detail = response.get_json()["detail"]
    assert "records projector has not advanced" in detail
    assert f"the head is at {head}" in detail


def test_records_idle_projector_stays_ready(web):
    web.register_pupil()
    head = project_with_heartbeat(web)
    age_heartbeat(web, head, head)

    assert web.client.get("/readyz").status_code == 200


def test_records_metrics_report_projector(web):
    web.register_pupil()
    head = project_with_heartbeat(web)
    web.register_pupil(surname="Петров")

    text = web.client.get("/metrics").get_data(as_text=True)

    follower = {"follower": "records_projector"}
    assert metric(text, "pupil_records_follower_position", **follower) == head
    assert metric(text, "pupil_records_follower_head_position", **follower) == head + 2
    assert metric(text, "pupil_records_follower_lag_events", **follower) == 2
    age = metric(text, "pupil_records_follower_last_event_age_seconds", **follower)
    assert 0 <= age < 600
    assert metric(text, "pupil_records_events_appended_total") == head + 2


def test_events_appended_counts_new_events(web):
    web.register_pupil()
    first = web.client.get("/metrics").get_data(as_text=True)
    web.register_pupil(surname="Сидоров")

    second = web.client.get("/metrics").get_data(as_text=True)

    before = metric(first, "pupil_records_events_appended_total")
    assert metric(second, "pupil_records_events_appended_total") == before + 2
    assert before + 2 == web.head()


def test_events_appended_skips_position_gaps(web, backend, database_url):
    if backend != "postgres":
        pytest.skip("only PostgreSQL positions have gaps")
    web.register_pupil()
    # A failed insert uses up positions in the same way.
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("SELECT nextval('records_events_notification_id_seq')")
    web.register_pupil(surname="Сидоров")

    text = web.client.get("/metrics").get_data(as_text=True)

    assert metric(text, "pupil_records_events_appended_total") == web.head() - 1


def test_records_metrics_count_requests(web):
    web.register_pupil()

    text = web.client.get("/metrics").get_data(as_text=True)

    created = {"method": "POST", "route": "/api/v1/pupils", "status": "201"}
    assert metric(text, "http_requests_total", **created) == 1
    timed = {"method": "POST", "route": "/api/v1/pupils"}
    assert metric(text, "http_request_duration_seconds_count", **timed) == 1


def test_metrics_agree_across_workers(web, tmp_path, database_url):
    web.register_pupil()
    project_with_heartbeat(web)
    other = make_client(tmp_path, database_url)
    try:
        texts = [
            client.client.get("/metrics").get_data(as_text=True)
            for client in (web, other)
        ]
    finally:
        other.close()

    names = ("pupil_records_follower_position", "pupil_records_follower_lag_events")
    for name in names:
        values = {metric(text, name, follower="records_projector") for text in texts}
        assert len(values) == 1


# Archive service


class Archive:
    """An archive app with its store, fed by hand from a feed script."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        settings = Settings.from_env(
            {
                "ARCHIVE_DATABASE_URL": database_url,
                "PUPIL_RECORDS_FOLLOWER_STALL_SECONDS": "60",
            },
            data_dir=tmp_path,
        )
        self.app = ArchiveApplication(env=eventsourcing_env(database_url))
        self.engine = create_sql_engine(database_url, writer=True)
        self.projector = RetentionProjector(self.app, self.engine, load_schedule())
        self.projector.prepare()
        self.runtime = ArchiveRuntime(
            settings, application=self.app, engine=self.engine
        )
        self.flask: Flask = create_archive_app(settings, runtime=self.runtime)
        self.script = FeedScript()

    def follow(self, *, project: bool = True) -> None:
        """Apply the next page as the follower does, projecting it unless told not."""
        after = self.app.processed_position()
        page = self.script.parsed_page(after=after, limit=1000)
        self.app.apply_page(page)
        record_follower_heartbeat(
            self.engine, position=self.app.processed_position(), page=page
        )
        if project:
            self.projector.catch_up()
            ProjectionLoop(self.projector, ChangeSignal()).beat()

    def age(self, name: str, position: int, head: int) -> None:
        with self.engine.begin() as connection:
            write_heartbeat(
                connection, name, position=position, head=head, now=utc_now() - LONG_AGO
            )

    def get(self, path: str):
        return self.flask.test_client().get(path)


@pytest.fixture
def archive(database_url: str, tmp_path: Path) -> Iterator[Archive]:
    opened = Archive(database_url, tmp_path)
    yield opened
    opened.runtime.close()


def test_archive_ready_when_followers_current(archive):
    archive.script.pupil_registered(uuid4(), date(2024, 9, 2))
    archive.follow()

    assert archive.get("/readyz").status_code == 200


def test_archive_silent_follower_not_ready(archive):
    archive.script.pupil_registered(uuid4(), date(2024, 9, 2))
    archive.follow()
    head = archive.app.processed_position()
    archive.age(FOLLOWER_NAME, head, head)

    response = archive.get("/readyz")

    assert response.status_code == 503
    assert "archive follower has not reported" in response.get_json()["detail"]


def test_archive_stalled_projector_not_ready(archive):
    archive.script.pupil_registered(uuid4(), date(2024, 9, 2))
    archive.follow(project=False)
    archive.age(PROJECTOR_NAME, 0, 0)

    response = archive.get("/readyz")

    assert response.status_code == 503
    detail = response.get_json()["detail"]
    assert "archive projector has not advanced" in detail
    assert "position 0" in detail


def test_archive_metrics_report_both_followers(archive):
    archive.script.pupil_registered(uuid4(), date(2024, 9, 2))
    archive.script.skip(3)
    archive.follow()
    records_head = archive.script.head
    archive_head = archive.app.recorder.max_notification_id()

    text = archive.get("/metrics").get_data(as_text=True)

    feed = {"follower": "archive_follower"}
    assert metric(text, "pupil_records_follower_position", **feed) == records_head
    assert metric(text, "pupil_records_follower_head_position", **feed) == records_head
    assert metric(text, "pupil_records_follower_lag_events", **feed) == 0
    age = metric(text, "pupil_records_follower_last_event_age_seconds", **feed)
    assert 0 <= age < 600
    own = {"follower": "archive_projector"}
    assert metric(text, "pupil_records_follower_position", **own) == archive_head
    assert metric(text, "pupil_records_follower_head_position", **own) == archive_head
    assert metric(text, "pupil_records_follower_lag_events", **own) == 0


def test_archive_metrics_show_unprojected_events(archive):
    archive.script.pupil_registered(uuid4(), date(2024, 9, 2))
    archive.follow(project=False)

    text = archive.get("/metrics").get_data(as_text=True)

    own = {"follower": "archive_projector"}
    assert metric(text, "pupil_records_follower_position", **own) == 0
    assert metric(text, "pupil_records_follower_lag_events", **own) == 1


def test_feed_event_time_recorded(archive):
    archive.script.pupil_registered(uuid4(), date(2024, 9, 2))
    page = archive.script.parsed_page(after=0)

    recorded = page.events[0].recorded_at

    assert recorded is not None
    assert abs(datetime.now(UTC) - recorded) < timedelta(minutes=5)
