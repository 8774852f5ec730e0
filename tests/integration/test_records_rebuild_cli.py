"""`pupil-records records rebuild --online` beside running services."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from services import runner
from services.cli import cli
from services.records.application import RecordsApplication
from services.records.keys import load_master_key
from services.records.projector import RecordsProjector
from services.records.readmodels import RecordsReadModels
from shared.actor import acting_as
from shared.config import Settings
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
    with runner.services_stopped(settings, "pupil-records records rebuild"):
        code, out, err = invoke(
            "records", "rebuild", "--online", "--data-dir", str(settings.data_dir)
        )

    assert code == 1
    assert out == ""
    assert "cannot run" in err
    assert "pupil-records records rebuild" in err


def test_offline_rebuild_still_refused_while_running(settings: Settings) -> None:
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
