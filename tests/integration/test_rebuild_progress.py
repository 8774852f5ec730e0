"""Progress bars of the offline rebuilds reach their total, with gaps in the log."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy import text
from tqdm import tqdm

from services.archive import readmodels as archive_readmodels
from services.archive.application import ArchiveApplication
from services.archive.testing import FeedScript
from services.records import projector as records_projector
from services.records.application import RecordsApplication
from services.records.keys import load_master_key
from shared.actor import acting_as
from shared.config import Settings
from shared.storage import create_sql_engine
from tests.conftest import REGISTRAR

# Positions skipped on PostgreSQL between two batches of events.
GAP = 500


class RecordedBar(tqdm):  # type: ignore[type-arg]
    """A tqdm bar that keeps every instance, so a test can read its counts."""

    instances: list[RecordedBar] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        RecordedBar.instances.append(self)


@pytest.fixture
def bars(monkeypatch: pytest.MonkeyPatch) -> list[RecordedBar]:
    RecordedBar.instances = []
    monkeypatch.setattr(records_projector, "tqdm", RecordedBar)
    monkeypatch.setattr(archive_readmodels, "tqdm", RecordedBar)
    return RecordedBar.instances


def skip_positions(url: str, table: str) -> None:
    """Advance the PostgreSQL sequence of `table`'s positions by GAP."""
    engine = create_sql_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "SELECT setval(pg_get_serial_sequence(:table, 'notification_id'),"
                    " (SELECT max(notification_id) FROM " + table + ") + :gap)"
                ),
                {"table": table, "gap": GAP},
            )
    finally:
        engine.dispose()


def register(app: RecordsApplication, first: int, count: int) -> None:
    with acting_as(REGISTRAR):
        for number in range(first, first + count):
            app.register_pupil(
                surname=f"Прогрессов-{number}",
                name="Иван",
                patronymic=None,
                birth_date=date(2016, 1, 2),
                opened_on=date(2024, 9, 2),
            )


def test_records_rebuild_bar_reaches_head(
    backend: str, database_url: str, tmp_path: Path, bars: list[RecordedBar]
) -> None:
    if backend == "memory":
        pytest.skip("rebuild needs a database that outlives the application")
    settings = Settings.from_env(
        {"RECORDS_DATABASE_URL": database_url}, data_dir=tmp_path
    )
    app = RecordsApplication(database_url, master_key=load_master_key(settings))
    register(app, 0, 3)
    if backend == "postgres":
        skip_positions(database_url, "records_events")
    register(app, 3, 3)
    head = app.head_position()
    app.close()

    replayed = records_projector.rebuild(settings, progress=True)

    assert replayed >= 6
    assert len(bars) == 1
    assert bars[0].total == head
    assert bars[0].n == head


def test_archive_rebuild_bar_reaches_head(
    backend: str, database_url: str, tmp_path: Path, bars: list[RecordedBar]
) -> None:
    if backend == "memory":
        pytest.skip("rebuild needs a database that outlives the application")
    settings = Settings.from_env(
        {"ARCHIVE_DATABASE_URL": database_url}, data_dir=tmp_path
    )
    feed = FeedScript()
    app = ArchiveApplication.from_settings(settings)
    for _ in range(3):
        feed.pupil_registered(uuid4(), date(2024, 9, 2))
    app.apply_page(feed.parsed_page(after=0))
    if backend == "postgres":
        skip_positions(database_url, "archive_events")
    for _ in range(3):
        feed.pupil_registered(uuid4(), date(2024, 9, 2))
    app.apply_page(feed.parsed_page(after=app.processed_position()))
    head = app.recorder.max_notification_id()
    app.close()

    replayed = archive_readmodels.rebuild(settings, progress=True)

    assert replayed == 6
    assert len(bars) == 1
    assert bars[0].total == head
    assert bars[0].n == head
