"""`records rebuild` and `archive rebuild`: locks and missing databases."""

from __future__ import annotations

import os
import stat
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect

from services import runner
from services.cli import cli
from services.records.application import RecordsApplication
from services.records.keys import load_master_key
from services.records.projector import RecordsProjector
from services.records.readmodels import RecordsReadModels
from shared.actor import acting_as
from shared.config import Settings
from shared.storage import create_sql_engine
from tests.conftest import REGISTRAR, read_models_engine


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("PUPIL_RECORDS_", "RECORDS_", "ARCHIVE_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return Settings.from_env(environ={}, data_dir=data_dir)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def store_pupils(settings: Settings, count: int) -> int:
    """Register `count` pupils and project them; return the log head."""
    url = settings.records_database_url
    app = RecordsApplication(url, master_key=load_master_key(settings))
    engine = read_models_engine(url)
    try:
        with acting_as(REGISTRAR):
            for number in range(count):
                app.register_pupil(
                    surname=f"Командов-{number}",
                    name="Иван",
                    patronymic=None,
                    birth_date=date(2016, 1, 2),
                    opened_on=date(2024, 9, 2),
                )
        RecordsProjector(app, engine).catch_up()
        return app.head_position()
    finally:
        engine.dispose()
        app.close()


def test_online_rebuild_runs_beside_services(settings: Settings) -> None:
    head = store_pupils(settings, 3)

    with runner.services_running(settings):
        code, out, err = invoke(
            "records", "rebuild", "--online", "--data-dir", str(settings.data_dir)
        )

    assert code == 0, err
    assert out == ""
    assert f"rebuilt online ({head} events replayed)" in err
    engine = read_models_engine(settings.records_database_url)
    assert RecordsReadModels(engine).position() == head
    assert RecordsReadModels(engine).counts()["rm_pupils"] == 3
    engine.dispose()


def test_online_rebuild_refused_during_offline(settings: Settings) -> None:
    store_pupils(settings, 1)

    with runner.services_stopped(settings, "pupil-records records rebuild"):
        code, out, err = invoke(
            "records", "rebuild", "--online", "--data-dir", str(settings.data_dir)
        )

    assert code == 1
    assert out == ""
    assert "cannot run" in err
    assert "pupil-records records rebuild" in err


def test_offline_rebuild_still_refused_while_running(settings: Settings) -> None:
    store_pupils(settings, 1)

    with runner.services_running(settings):
        code, _, err = invoke(
            "records", "rebuild", "--data-dir", str(settings.data_dir)
        )

    assert code == 1
    assert "while the services run" in err


def test_online_rebuild_of_memory_store_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECORDS_DATABASE_URL", "memory://")

    code, _, err = invoke(
        "records", "rebuild", "--online", "--data-dir", str(settings.data_dir)
    )

    assert code == 1
    assert "in-memory" in err
    assert len(err.strip().splitlines()) == 1


def test_online_rebuild_leaves_holder_named(settings: Settings) -> None:
    store_pupils(settings, 1)
    data_dir = str(settings.data_dir)

    with runner.services_running(settings):
        online_code, _, online_err = invoke(
            "records", "rebuild", "--online", "--data-dir", data_dir
        )
        code, _, err = invoke("records", "rebuild", "--data-dir", data_dir)

    assert online_code == 0, online_err
    assert code == 1
    assert "pupil-records run" in err
    assert "--online" not in err


REBUILDS = [
    ("records", "rebuild"),
    ("records", "rebuild", "--online"),
    ("archive", "rebuild"),
]


@pytest.mark.parametrize("command", REBUILDS)
def test_rebuild_without_data_dir_refused(tmp_path: Path, command) -> None:
    data_dir = tmp_path / "missing"

    code, out, err = invoke(*command, "--data-dir", str(data_dir))

    assert code == 1
    assert out == ""
    assert f"no {command[0]} database at {data_dir}" in err
    assert "rebuilt" not in err
    assert not data_dir.exists()


@pytest.mark.parametrize("command", REBUILDS)
def test_rebuild_of_empty_data_dir_creates_nothing(tmp_path: Path, command) -> None:
    data_dir = tmp_path / "empty"
    data_dir.mkdir()

    code, _, err = invoke(*command, "--data-dir", str(data_dir))

    assert code == 1
    assert f"no {command[0]} database" in err
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize("command", REBUILDS)
def test_rebuild_of_database_without_log_refused(
    backend: str,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command,
) -> None:
    if backend == "memory":
        pytest.skip("the in-memory store is checked by its own test")
    service = command[0]
    monkeypatch.setenv(f"{service.upper()}_DATABASE_URL", database_url)
    if backend == "sqlite":
        # An existing file without the event log, such as an empty one.
        path = Path(database_url.removeprefix("sqlite:///"))
        path.touch()
    data_dir = tmp_path / "data"

    code, _, err = invoke(*command, "--data-dir", str(data_dir))

    assert code == 1
    assert "has no event log" in err
    assert not data_dir.exists()
    engine = create_sql_engine(database_url)
    try:
        assert inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_rebuild_creates_data_dir_private(tmp_path: Path) -> None:
    from services.cli import services_stopped

    data_dir = tmp_path / "new"
    settings = Settings.from_env(environ={}, data_dir=data_dir)

    with services_stopped(settings, "archive rebuild"):
        pass

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
