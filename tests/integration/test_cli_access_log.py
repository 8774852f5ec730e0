"""`pupil-records access-log verify`: the hash chain checked from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from services.cli import cli
from services.records.accesslog import AccessLog, AccessRead
from shared.actor import Principal
from shared.storage import create_sql_engine

READER = Principal(token_id="t-1", name="Иванова Анна", role="inspector")
PUPIL_ID = "9b0d5a3e-3f4a-4c59-9f53-8d6f4e7f0a11"


def fill_log(data_dir: Path, count: int) -> None:
    url = f"sqlite:///{data_dir / 'records.sqlite'}"
    engine = create_sql_engine(url, writer=True)
    log = AccessLog(engine, engine)
    log.create_tables()
    for number in range(count):
        log.append(
            AccessRead(
                actor=READER,
                endpoint=f"GET /api/v1/pupils/{PUPIL_ID}",
                pupil_ids=[PUPIL_ID],
                purpose=f"проверка {number}",
            )
        )
    engine.dispose()


def tamper(data_dir: Path, statement: str) -> None:
    engine = create_sql_engine(f"sqlite:///{data_dir / 'records.sqlite'}")
    with engine.begin() as connection:
        for action in ("update", "delete"):
            connection.execute(text(f"DROP TRIGGER access_log_no_{action}"))
        connection.execute(text(statement))
    engine.dispose()


def verify(data_dir: Path, *options: str) -> object:
    return CliRunner().invoke(
        cli, ["access-log", "verify", *options, "--data-dir", str(data_dir)], env={}
    )


def last_record(data_dir: Path) -> tuple[int, str]:
    engine = create_sql_engine(f"sqlite:///{data_dir / 'records.sqlite'}")
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT sequence, hash FROM access_log ORDER BY sequence DESC LIMIT 1")
        ).one()
    engine.dispose()
    return int(row[0]), str(row[1])


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in ("RECORDS_DATABASE_URL", "PUPIL_RECORDS_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    return tmp_path / "data"


def test_intact_chain_exits_zero(data_dir: Path) -> None:
    fill_log(data_dir, 4)

    result = verify(data_dir)

    assert result.exit_code == 0, result.output
    assert "access log intact: 4 records checked" in result.output


def test_edited_record_exits_one(data_dir: Path) -> None:
    fill_log(data_dir, 4)
    tamper(data_dir, "UPDATE access_log SET purpose = 'другое' WHERE sequence = 3")

    result = verify(data_dir)

    assert result.exit_code == 1
    assert "broken at record 3" in result.output
    assert "does not match its hash" in result.output
    assert "the 2 records before it are intact" in result.output


def test_removed_record_exits_one(data_dir: Path) -> None:
    fill_log(data_dir, 3)
    tamper(data_dir, "DELETE FROM access_log WHERE sequence = 2")

    result = verify(data_dir)

    assert result.exit_code == 1
    assert "record 2 is missing" in result.output


def test_database_without_access_log(data_dir: Path) -> None:
    data_dir.mkdir()
    engine = create_sql_engine(f"sqlite:///{data_dir / 'records.sqlite'}")
    engine.dispose()

    result = verify(data_dir)

    assert result.exit_code == 0, result.output
    assert "0 records checked" in result.output


def test_missing_database_exits_one(data_dir: Path) -> None:
    result = verify(data_dir)

    assert result.exit_code == 1
    assert "no records database at" in result.output
    assert not (data_dir / "records.sqlite").exists()


def test_intact_chain_prints_last_hash(data_dir: Path) -> None:
    fill_log(data_dir, 4)
    sequence, last_hash = last_record(data_dir)

    result = verify(data_dir)

    assert result.exit_code == 0, result.output
    assert f"last record: {sequence} {last_hash}" in result.output


def test_expected_hash_of_older_record_passes(data_dir: Path) -> None:
    fill_log(data_dir, 2)
    _, kept_hash = last_record(data_dir)
    fill_log(data_dir, 2)

    result = verify(data_dir, "--expect-last", kept_hash)

    assert result.exit_code == 0, result.output
    assert "4 records checked" in result.output


def test_removed_newest_records_need_kept_hash(data_dir: Path) -> None:
    fill_log(data_dir, 4)
    _, kept_hash = last_record(data_dir)
    tamper(data_dir, "DELETE FROM access_log WHERE sequence >= 3")

    unchecked = verify(data_dir)
    checked = verify(data_dir, "--expect-last", kept_hash)

    # The shortened chain still links, so only the kept hash shows the cut.
    assert unchecked.exit_code == 0, unchecked.output
    assert checked.exit_code == 1
    assert f"no record with hash {kept_hash}" in checked.output


def test_expected_hash_of_empty_log_fails(data_dir: Path) -> None:
    data_dir.mkdir()
    engine = create_sql_engine(f"sqlite:///{data_dir / 'records.sqlite'}")
    engine.dispose()

    result = verify(data_dir, "--expect-last", "0" * 64)

    assert result.exit_code == 1
    assert "no record with hash" in result.output
