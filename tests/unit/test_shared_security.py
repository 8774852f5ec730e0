"""Production mode's checks of secrets, and the CORS origins setting."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from shared.auth import TokenStore
from shared.config import ConfigurationError, Settings
from shared.security import check_production, production_problems

RANDOM_PASSWORD = "pR9-vx2Lq8Zt4mWc7Ykd"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir closed to other users, with one token and a master key file."""
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    folder.chmod(0o700)
    TokenStore(folder / "tokens.json").issue("admin", "Администратор")
    key_file = folder / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    key_file.chmod(0o600)
    return folder


def settings_for(data_dir: Path, **env: str) -> Settings:
    base = {
        "PUPIL_RECORDS_ENV": "production",
        "RECORDS_DATABASE_URL": f"postgresql://records:{RANDOM_PASSWORD}@db/records",
        "ARCHIVE_DATABASE_URL": f"postgresql://archive:{RANDOM_PASSWORD}@db/archive",
    }
    return Settings.from_env({**base, **env}, data_dir=data_dir)


def test_prepared_settings_pass(data_dir: Path):
    settings = settings_for(data_dir)

    assert settings.production
    assert production_problems(settings) == []
    check_production(settings)


def test_sqlite_in_private_data_dir_passes(data_dir: Path):
    settings = settings_for(
        data_dir,
        RECORDS_DATABASE_URL=f"sqlite:///{data_dir / 'records.sqlite'}",
        ARCHIVE_DATABASE_URL=f"sqlite:///{data_dir / 'archive.sqlite'}",
    )

    assert production_problems(settings) == []


def test_world_readable_data_dir_rejected(data_dir: Path):
    data_dir.chmod(0o755)

    [problem] = production_problems(settings_for(data_dir))

    assert str(data_dir) in problem
    assert "chmod o-rwx" in problem


def test_missing_token_file_rejected(data_dir: Path):
    (data_dir / "tokens.json").unlink()

    [problem] = production_problems(settings_for(data_dir))

    assert "token file" in problem
    assert "pupil-records token issue" in problem


def test_token_file_readable_by_others_rejected(data_dir: Path):
    (data_dir / "tokens.json").chmod(0o644)

    [problem] = production_problems(settings_for(data_dir))

    assert "token file" in problem
    assert "chmod 600" in problem


def test_token_file_in_open_folder_rejected(data_dir: Path, tmp_path: Path):
    open_folder = tmp_path / "shared"
    open_folder.mkdir()
    open_folder.chmod(0o777)
    TokenStore(open_folder / "tokens.json").issue("admin", "Администратор")

    problems = production_problems(
        settings_for(
            data_dir, PUPIL_RECORDS_TOKENS_FILE=str(open_folder / "tokens.json")
        )
    )

    assert problems == [problems[0]]
    assert str(open_folder) in problems[0]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("postgresql://records@db/records", "no password"),
        ("postgresql://records:secret@db/records", "well-known"),
        ("postgresql://records:Password@db/records", "well-known"),
        ("memory://", "test store"),
    ],
)
def test_weak_database_urls_rejected(data_dir: Path, url: str, words: str):
    [problem] = production_problems(settings_for(data_dir, RECORDS_DATABASE_URL=url))

    assert "RECORDS_DATABASE_URL" in problem
    assert words in problem


def test_missing_master_key_rejected(data_dir: Path):
    (data_dir / "master.key").unlink()

    [problem] = production_problems(settings_for(data_dir))

    assert "master key file" in problem
    assert "PUPIL_RECORDS_MASTER_KEY" in problem


def test_master_key_file_readable_by_others_rejected(data_dir: Path):
    (data_dir / "master.key").chmod(0o640)

    [problem] = production_problems(settings_for(data_dir))

    assert "master key file" in problem


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(os.urandom(16)).decode(), "32 bytes"),
        (base64.b64encode(bytes(32)).decode(), "placeholder"),
    ],
)
def test_bad_master_key_variable_rejected(data_dir: Path, key: str, words: str):
    [problem] = production_problems(
        settings_for(data_dir, PUPIL_RECORDS_MASTER_KEY=key)
    )

    assert words in problem
    assert key not in problem


def test_master_key_variable_replaces_file(data_dir: Path):
    (data_dir / "master.key").unlink()
    key = base64.b64encode(os.urandom(32)).decode()

    assert (
        production_problems(settings_for(data_dir, PUPIL_RECORDS_MASTER_KEY=key)) == []
    )


def test_archive_needs_no_master_key(data_dir: Path):
    (data_dir / "master.key").unlink()

    assert production_problems(settings_for(data_dir), "archive") == []
    assert production_problems(settings_for(data_dir), "records") != []


def test_check_lists_every_problem_without_secrets(data_dir: Path):
    data_dir.chmod(0o755)
    settings = settings_for(
        data_dir, ARCHIVE_DATABASE_URL="postgresql://archive:secret@db/archive"
    )

    with pytest.raises(ConfigurationError) as raised:
        check_production(settings)

    message = str(raised.value)
    assert "PUPIL_RECORDS_ENV=production" in message
    assert str(data_dir) in message
    assert "ARCHIVE_DATABASE_URL" in message
    assert RANDOM_PASSWORD not in message
    assert ":secret@" not in message


# CORS origins


def test_cors_origins_default_to_none(tmp_path: Path):
    assert Settings.from_env({}, data_dir=tmp_path).cors_origins == ()


def test_cors_origins_parsed_and_passed_on(tmp_path: Path):
    settings = Settings.from_env(
        {
            "PUPIL_RECORDS_CORS_ORIGINS": (
                " https://Portal.example.org , http://127.0.0.1:5173,"
            )
        },
        data_dir=tmp_path,
    )

    assert settings.cors_origins == (
        "https://portal.example.org",
        "http://127.0.0.1:5173",
    )
    child = Settings.from_env(settings.with_env())
    assert child.cors_origins == settings.cors_origins


@pytest.mark.parametrize(
    "origin",
    ["*", "https://portal.example.org/", "portal.example.org", "ftp://x.org"],
)
def test_cors_origin_must_be_scheme_and_host(tmp_path: Path, origin: str):
    with pytest.raises(ConfigurationError, match="PUPIL_RECORDS_CORS_ORIGINS"):
        Settings.from_env({"PUPIL_RECORDS_CORS_ORIGINS": origin}, data_dir=tmp_path)
